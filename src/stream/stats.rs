//! Running counters of a deployment, shared by its workers.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters of one deployment since it started in this process.
#[derive(Debug, Default)]
pub struct Stats {
    consumed: AtomicU64,
    scored: AtomicU64,
    dead_lettered: AtomicU64,
    delivery_retries: AtomicU64,
    /// One bit per worker whose deliveries have not moved for `stall_timeout_ms`.
    stalled: AtomicU64,
    last_error: Mutex<Option<String>>,
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
}

impl Stats {
    /// Counts consumed records.
    pub fn consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Relaxed);
    }

    /// Counts one delivered record.
    pub fn delivered(&self, dead_letter: bool) {
        if dead_letter {
            self.dead_lettered.fetch_add(1, Relaxed);
        } else {
            self.scored.fetch_add(1, Relaxed);
        }
    }

    /// Counts one retried delivery.
    pub fn retried(&self) {
        self.delivery_retries.fetch_add(1, Relaxed);
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
        StatsSnapshot {
            consumed: self.consumed.load(Relaxed),
            scored: self.scored.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            delivery_retries: self.delivery_retries.load(Relaxed),
            stalled_workers: self.stalled.load(Relaxed).count_ones(),
        }
    }
}
