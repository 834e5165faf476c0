//! How many requests the gateway works on at once: a limit learned from their latency, and a
//! short wait for a place instead of an instant refusal.
//!
//! The limit follows a latency gradient (as Netflix's `Gradient2`): the average latency of each
//! window of 32 requests against its long-run average over about 600 windows. While the recent
//! latency stays within 1.5× the long-run level the limit grows by about its square root each
//! window; as queueing shows (recent ≫ long-run) it shrinks toward the capacity. It moves only
//! while the load uses at least half of it, so a quiet spell does not inflate it.
//!
//! A request beyond the limit waits (first come, first served) up to
//! [`GatewayConfig::admission_wait`](crate::config::GatewayConfig::admission_wait) for a place;
//! only when that runs out, or when too many already wait, is it answered `503 overloaded`. A
//! client that retries at once (no backoff) is thus held rather than refused thousands of
//! times a second, and the work the process does stays the work that succeeds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The smallest limit the gradient goes down to.
const MIN_LIMIT: usize = 8;
/// Where the limit starts.
const INITIAL_LIMIT: usize = 64;
/// Samples between two adjustments of the limit.
const SAMPLES_PER_ADJUSTMENT: u32 = 32;

/// The admission gate of one gateway.
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    /// The current limit (permits given out or available, minus `debt`).
    limit: AtomicUsize,
    /// Permits to take back as they are returned (the limit went down while they were out).
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    max: usize,
    max_waiting: usize,
    wait: Duration,
    latency: Mutex<Latency>,
    /// Where the limit and the requests in flight are shown (`http_concurrency_limit`,
    /// `http_in_flight`), kept current as they change.
    metrics: Option<Arc<jetsource_telemetry::Metrics>>,
}

/// Request latency, in seconds: the window being filled, its average, and a long-run average
/// over about 600 windows.
#[derive(Default)]
struct Latency {
    sum: f64,
    count: u32,
    long: f64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No place within the wait, or too many waiting already.
    Overloaded,
}

/// A place among the requests in flight; returns itself (and its latency) when dropped.
pub(crate) struct Place {
    permit: Option<OwnedSemaphorePermit>,
    admission: Arc<Admission>,
    started: Instant,
    /// Whether its latency says something about capacity (a request that reached the work).
    sample: bool,
}

impl Place {
    /// Marks the request as one whose latency measures the gateway's capacity (it got past
    /// authentication and its limits).
    pub(crate) fn measured(&mut self) {
        self.sample = true;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let now = self.admission.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        if let Some(metrics) = &self.admission.metrics {
            metrics.http_in_flight.set(now as i64);
        }
        if let Some(permit) = self.permit.take() {
            let owed =
                self.admission.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok();
            if owed {
                permit.forget();
            }
        }
        if self.sample {
            self.admission.observe(self.started.elapsed());
        }
    }
}

impl Admission {
    /// A gate letting at most `max` requests in at once, each waiting at most `wait` for a place
    /// with at most `max_waiting` waiting.
    pub(crate) fn new(
        max: usize,
        wait: Duration,
        max_waiting: usize,
        metrics: Option<Arc<jetsource_telemetry::Metrics>>,
    ) -> Arc<Self> {
        let limit = INITIAL_LIMIT.min(max);
        if let Some(metrics) = &metrics {
            metrics.http_concurrency_limit.set(limit as i64);
        }
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max,
            max_waiting,
            wait,
            latency: Mutex::new(Latency::default()),
            metrics,
        })
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A place for one request: at once if there is one, else after a wait.
    pub(crate) async fn admit(self: &Arc<Self>) -> Result<Place, Refused> {
        let place = |permit| {
            let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(metrics) = &self.metrics {
                metrics.http_in_flight.set(now as i64);
            }
            Place { permit: Some(permit), admission: Arc::clone(self), started: Instant::now(), sample: false }
        };
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(place(permit));
        }
        if self.max == 0 || self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            if self.max != 0 {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(Refused::Overloaded);
        }
        let waited = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(place(permit)),
            _ => Err(Refused::Overloaded),
        }
    }

    /// One request's latency; at the end of each window of samples the limit moves along the
    /// gradient.
    fn observe(&self, took: Duration) {
        let current = self.limit();
        let next = {
            let mut latency = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            latency.sum += took.as_secs_f64().max(1e-6);
            latency.count += 1;
            if latency.count < SAMPLES_PER_ADJUSTMENT {
                return;
            }
            let short = latency.sum / f64::from(latency.count);
            (latency.sum, latency.count) = (0.0, 0);
            latency.long = if latency.long == 0.0 { short } else { latency.long + (short - latency.long) / 600.0 };
            // A long-run level far above the recent one is stale (the work got faster for
            // good): let it come down.
            if latency.long > 2.0 * short {
                latency.long *= 0.95;
            }
            // Only a load that uses the limit says anything about it.
            if self.in_flight() < current / 2 {
                return;
            }
            next_limit(current, short, latency.long, self.max)
        };
        self.set_limit(current, next);
    }

    fn set_limit(&self, current: usize, next: usize) {
        if next == current || self.limit.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        if let Some(metrics) = &self.metrics {
            metrics.http_concurrency_limit.set(next as i64);
        }
        if next > current {
            let mut more = next - current;
            // Cancel debt first, then hand out new permits.
            while more > 0 {
                let debt = self.debt.load(Ordering::Acquire);
                if debt == 0 {
                    break;
                }
                let paid = debt.min(more);
                if self.debt.compare_exchange(debt, debt - paid, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    more -= paid;
                }
            }
            self.permits.add_permits(more);
        } else {
            let fewer = current - next;
            let taken = self.permits.forget_permits(fewer);
            self.debt.fetch_add(fewer - taken, Ordering::AcqRel);
        }
    }
}

/// The gradient step: shrink by the ratio of long-run to recent latency (at most halving),
/// grow by a queue allowance of √limit, smoothed, within [8, max].
fn next_limit(limit: usize, short: f64, long: f64, max: usize) -> usize {
    let limit_f = limit as f64;
    let gradient = (1.5 * long / short).clamp(0.5, 1.0);
    let target = limit_f * gradient + limit_f.sqrt();
    let smoothed = limit_f * 0.8 + target * 0.2;
    (smoothed.round() as usize).clamp(MIN_LIMIT.min(max), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_grows_while_latency_holds_and_shrinks_as_it_queues() {
        let mut limit = 64;
        for _ in 0..200 {
            limit = next_limit(limit, 0.002, 0.002, 1024);
        }
        assert!(limit > 500, "steady latency lets the limit grow: {limit}");
        let grown = limit;
        for _ in 0..50 {
            limit = next_limit(limit, 0.020, 0.002, 1024);
        }
        assert!(limit < grown / 4, "ten times the latency brings it down: {grown} → {limit}");
        assert!(limit >= MIN_LIMIT);
        assert_eq!(next_limit(1024, 0.001, 0.001, 1024), 1024, "never past the maximum");
    }

    #[tokio::test]
    async fn a_request_past_the_limit_waits_for_a_place_then_is_refused() {
        let gate = Admission::new(1, Duration::from_millis(50), 10, None);
        let first = gate.admit().await.unwrap();
        let refused = gate.admit().await.err();
        assert_eq!(refused, Some(Refused::Overloaded), "no place within the wait");

        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.admit().await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()), "a place freed during the wait is taken");

        let none = Admission::new(0, Duration::from_secs(5), 10, None);
        let started = Instant::now();
        assert_eq!(none.admit().await.err(), Some(Refused::Overloaded));
        assert!(started.elapsed() < Duration::from_secs(5), "a gate with no places does not wait");
    }

    #[tokio::test]
    async fn a_lower_limit_takes_places_back_as_they_return() {
        let gate = Admission::new(64, Duration::from_millis(10), 10, None);
        let places: Vec<_> = futures::future::join_all((0..64).map(|_| gate.admit())).await;
        gate.set_limit(64, 16);
        drop(places);
        let held: Vec<_> = futures::future::join_all((0..20).map(|_| gate.admit())).await;
        assert_eq!(held.iter().filter(|p| p.is_ok()).count(), 16);
        assert_eq!(gate.limit(), 16);
    }
}
