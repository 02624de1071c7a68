//! Running counters of a deployment, shared by its workers. They are the deployment's
//! Prometheus counters ([`DeploymentMetrics`]); a snapshot reports them since this start.

use crate::metrics::DeploymentMetrics;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters of one deployment since it started in this process.
#[derive(Debug, Default)]
pub struct Stats {
    metrics: DeploymentMetrics,
    /// Counter values when this start began.
    base: StatsSnapshot,
    /// One bit per worker whose deliveries have not moved for `stall_timeout_ms`.
    stalled: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Wall-clock time in ms since the Unix epoch (the unit of Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// [`now_ms`] read from the kernel's coarse clock (`CLOCK_REALTIME_COARSE`, advanced every
/// tick: within ~4 ms). For once-a-record uses such as the latency histogram, whose smallest
/// bucket is 5 ms: on this project's VMs a precise clock read costs ~0.5 µs, a tenth of a
/// record's whole budget, where the coarse one is a memory read.
pub fn coarse_now_ms() -> i64 {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration, and
        // CLOCK_REALTIME_COARSE exists on every Linux since 2.6.32.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000;
        }
    }
    now_ms()
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Records read from the input topic.
    pub consumed: u64,
    /// Records labeled and delivered to the output topic.
    pub scored: u64,
    /// Records delivered to the dead-letter topic.
    pub dead_lettered: u64,
    /// Failed deliveries answered by a rewind and a new producer.
    pub delivery_retries: u64,
    /// Workers whose deliveries are stuck while records wait.
    pub stalled_workers: u32,
    /// Input partitions the deployment's consumers own.
    pub assigned_partitions: u32,
}

impl Stats {
    /// Counters for a deployment starting now, recording into its metrics.
    pub fn new(metrics: DeploymentMetrics) -> Stats {
        let mut s = Stats {
            metrics,
            base: StatsSnapshot::default(),
            stalled: AtomicU64::new(0),
            last_error: Mutex::new(None),
        };
        s.base = s.snapshot();
        s.base.assigned_partitions = 0;
        s.metrics.assigned.set(0);
        s
    }

    /// The deployment's metric handles.
    pub fn metrics(&self) -> &DeploymentMetrics {
        &self.metrics
    }

    /// Counts consumed records.
    pub fn consumed(&self, n: u64) {
        self.metrics.consumed.inc_by(n);
    }

    /// Counts one delivered record.
    pub fn delivered(&self, dead_letter: bool) {
        if dead_letter {
            self.metrics.produced_dead_letter.inc();
        } else {
            self.metrics.produced_output.inc();
        }
    }

    /// Observes the end-to-end latency of a record delivered at `now_ms` (see [`now_ms`]) whose
    /// input timestamp was `timestamp_ms`. A timestamp ahead of this clock counts as 0.
    pub fn observe_latency(&self, now_ms: i64, timestamp_ms: Option<i64>) {
        if let Some(t) = timestamp_ms.filter(|&t| t > 0) {
            let ms = now_ms.saturating_sub(t).max(0);
            self.metrics.latency_seconds.observe(ms as f64 / 1000.0);
        }
    }

    /// Counts one retried delivery.
    pub fn retried(&self) {
        self.metrics.retries.inc();
    }

    /// Adds to (or, negative, takes from) the partitions owned.
    pub fn assigned(&self, delta: i64) {
        self.metrics.assigned.add(delta);
    }

    /// Marks worker `index` (below 64) stalled or moving.
    pub fn set_stalled(&self, index: usize, stalled: bool) {
        let bit = 1u64 << (index % 64);
        if stalled {
            self.stalled.fetch_or(bit, Relaxed);
        } else if self.stalled.load(Relaxed) & bit != 0 {
            self.stalled.fetch_and(!bit, Relaxed);
        }
    }

    /// Remembers the last delivery error (shown with a stall).
    pub fn set_last_error(&self, why: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_owned());
    }

    /// The last delivery error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let m = &self.metrics;
        StatsSnapshot {
            consumed: m.consumed.get() - self.base.consumed,
            scored: m.produced_output.get() - self.base.scored,
            dead_lettered: m.produced_dead_letter.get() - self.base.dead_lettered,
            delivery_retries: m.retries.get() - self.base.delivery_retries,
            stalled_workers: self.stalled.load(Relaxed).count_ones(),
            assigned_partitions: m.assigned.get().max(0) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_tells_the_same_time_within_a_tick() {
        for _ in 0..100 {
            let (before, coarse, after) = (now_ms(), coarse_now_ms(), now_ms());
            assert!(
                coarse >= before - 20 && coarse <= after,
                "{before} {coarse} {after}"
            );
        }
    }
}
