//! Standby instances and the order of deliveries across a takeover.
//!
//! Every durable consumer the loop reads is a pinned-client priority group
//! ([`standby`]): the server delivers to one pull client at a time, and the others wait on
//! standby until the pinned one stops pulling for [`PIN_TIMEOUT`] (its process died, or hung).
//! That alone does not keep order: what the dead instance had received but not acknowledged
//! is redelivered only after the ack wait, *after* the new instance has received later events.
//! So the loop admits a delivery only when every earlier delivery of the consumer is either
//! acknowledged or held by this instance ([`InOrder::admit`]); otherwise it rewinds the
//! consumer to its acknowledgement floor (the consumer reset API of nats-server 2.14), drops
//! what it received before the rewind, and takes the deliveries again in stream order.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{PriorityPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream::Stream};

/// The priority group every consumer instance pulls in.
pub const GROUP: &str = "active";

/// How long the pinned instance may go without pulling before a standby takes over.
pub const PIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long one pull request waits: well below [`PIN_TIMEOUT`], so an idle but live instance
/// renews its pin.
pub const PULL_EXPIRES: Duration = Duration::from_millis(400);

/// `config` as a pinned-client consumer: one active instance, any number on standby.
pub fn standby(config: pull::Config) -> pull::Config {
    pull::Config {
        priority_policy: PriorityPolicy::PinnedClient,
        priority_groups: vec![GROUP.to_owned()],
        priority_timeout: PIN_TIMEOUT,
        ..config
    }
}

/// What to do with a delivery.
pub(crate) enum Admit {
    /// Handle it: every earlier delivery is acknowledged or held here (until the hold drops).
    Take(Option<Held>),
    /// Leave it (unacknowledged): it was delivered before a rewind, or is already acknowledged.
    Drop,
}

/// Deliveries of one consumer held by this instance, and the order check.
pub(crate) struct InOrder {
    consumer: PullConsumer,
    stream: Option<Stream>,
    stream_name: String,
    name: String,
    /// The delivery sequence expected next; `None` before the first (or after a failed check).
    next: Option<u64>,
    /// A rewind was asked for: deliveries restart at 1, older ones are void.
    rewound: bool,
    /// Delivery sequences received and not yet acknowledged, tagged with the rewind count they
    /// belong to (a rewind restarts the numbering).
    held: Arc<Mutex<BTreeSet<(u64, u64)>>>,
    generation: u64,
    /// How many times the consumer was rewound by this instance.
    pub(crate) rewinds: u64,
    /// Deliveries started (again) here since the last [`InOrder::take_resumed`]: at start, after
    /// a takeover or a rewind. What the instance cached of the consumer's output may be stale.
    resumed: bool,
    /// The consumer is shared by instances in parallel (not pinned): no order to keep.
    shared: bool,
}

/// Where the deliveries before one are.
enum Earlier {
    /// Acknowledged, or held by this instance.
    Settled,
    /// This one is acknowledged already.
    Stale,
    /// Some are with another instance (or were lost with it).
    Outstanding,
}

/// A delivery held by this instance; dropped once it is acknowledged (or never will be).
pub(crate) struct Held {
    set: Arc<Mutex<BTreeSet<(u64, u64)>>>,
    key: (u64, u64),
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

impl InOrder {
    pub(crate) fn new(consumer: PullConsumer) -> Self {
        let cached = consumer.cached_info();
        let shared = cached.config.priority_policy != PriorityPolicy::PinnedClient;
        Self {
            shared,
            stream_name: cached.stream_name.clone(),
            name: cached.name.clone(),
            consumer,
            stream: None,
            next: None,
            rewound: false,
            held: Arc::default(),
            generation: 0,
            rewinds: 0,
            resumed: false,
        }
    }

    /// Whether `message` may be handled now.
    pub(crate) async fn admit(&mut self, message: &jetstream::Message) -> Admit {
        if self.shared {
            return Admit::Take(None);
        }
        let Ok(info) = message.info() else { return Admit::Take(None) };
        let seq = info.consumer_sequence;
        if self.rewound {
            if seq != 1 {
                return Admit::Drop; // delivered before the rewind
            }
            self.rewound = false;
            self.resumed = true;
        } else if self.next != Some(seq) {
            match self.earlier(seq).await {
                Earlier::Settled => self.resumed = true,
                Earlier::Stale => return Admit::Drop,
                Earlier::Outstanding => {
                    self.rewind(&message.context).await;
                    return Admit::Drop;
                }
            }
        }
        self.next = Some(seq + 1);
        let key = (self.generation, seq);
        self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(key);
        Admit::Take(Some(Held { set: Arc::clone(&self.held), key }))
    }

    /// Whether the consumer has one active instance (pulls in the priority group).
    pub(crate) fn pinned(&self) -> bool {
        !self.shared
    }

    /// Whether deliveries started (again) since the last call.
    pub(crate) fn take_resumed(&mut self) -> bool {
        std::mem::take(&mut self.resumed)
    }

    /// Where the deliveries before `seq` are (asks the server).
    async fn earlier(&mut self, seq: u64) -> Earlier {
        let floor = match self.consumer.info().await {
            Ok(info) => info.ack_floor.consumer_sequence,
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "cannot check the delivery order; rewinding");
                return Earlier::Outstanding;
            }
        };
        if seq <= floor {
            return Earlier::Stale;
        }
        let generation = self.generation;
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .range((generation, floor + 1)..(generation, seq))
            .count() as u64;
        if held == seq - floor - 1 { Earlier::Settled } else { Earlier::Outstanding }
    }

    /// Rewinds the consumer to its acknowledgement floor: everything after it comes again, in
    /// order, numbered from 1.
    pub(crate) async fn rewind(&mut self, js: &jetstream::Context) {
        if self.shared {
            return; // what is unacknowledged comes again after the ack wait
        }
        if self.stream.is_none() {
            self.stream = js.get_stream(&self.stream_name).await.ok();
        }
        let Some(stream) = &self.stream else {
            tracing::warn!(consumer = %self.name, "cannot reach the stream to rewind; checking again on the next delivery");
            self.next = None;
            return;
        };
        match stream.reset_consumer(&self.name, None).await {
            Ok(reset) => {
                tracing::info!(consumer = %self.name, from = reset.reset_seq, "deliveries not acknowledged by another instance: rewound to the acknowledgement floor");
                self.generation += 1;
                self.rewinds += 1;
                self.rewound = true;
                self.next = Some(1);
            }
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "cannot rewind; checking again on the next delivery");
                self.next = None;
            }
        }
    }
}
