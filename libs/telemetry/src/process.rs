//! The standard process metrics of Prometheus clients, read from `/proc` at each scrape:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds` and
//! `process_start_time_seconds`. Elsewhere than Linux nothing is written.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks a second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux architecture
/// Prometheus' own client supports).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` tells of this process.
#[derive(Debug, Default)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: f64,
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    parse(&stat, &boot, &status, &limits, open_fds)
}

fn parse(stat: &str, boot: &str, status: &str, limits: &str, open_fds: f64) -> Option<Reading> {
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let btime: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let kib = |key: &str| -> Option<f64> {
        status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse::<f64>().ok()
    };
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::INFINITY);
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        start_time_seconds: btime + field(22)? / TICKS_PER_SECOND,
        resident_bytes: kib("VmRSS:")? * 1024.0,
        virtual_bytes: kib("VmSize:")? * 1024.0,
        open_fds,
        max_fds,
    })
}

/// Writes the process metrics at each scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(now) = read() else { return Ok(()) };
        let cpu = ConstCounter::new(now.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        for (name, help, unit, value) in [
            ("process_resident_memory", "Resident memory size in bytes", Some(Unit::Bytes), now.resident_bytes),
            ("process_virtual_memory", "Virtual memory size in bytes", Some(Unit::Bytes), now.virtual_bytes),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                now.start_time_seconds,
            ),
            ("process_open_fds", "Open file descriptors", None, now.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", None, now.max_fds),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_as_prometheus_clients_do() {
        let stat = "4242 (shop up) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 12 0 12345 900000000 2000 18446744073709551615";
        let reading = parse(
            stat,
            "cpu  1 2 3\nbtime 1700000000\n",
            "Name:\tshop\nVmSize:\t  878906 kB\nVmRSS:\t   10240 kB\n",
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n",
            17.0,
        )
        .unwrap();
        assert_eq!(reading.cpu_seconds, 3.0, "utime + stime, in ticks of 1/100 s");
        assert!((reading.start_time_seconds - 1_700_000_123.45).abs() < 1e-3, "{}", reading.start_time_seconds);
        assert_eq!((reading.resident_bytes, reading.virtual_bytes), (10240.0 * 1024.0, 878906.0 * 1024.0));
        assert_eq!((reading.open_fds, reading.max_fds), (17.0, 20000.0));
        assert!(read().is_some(), "this machine's /proc reads");
    }
}
