//! Running counters of a deployment, shared by its workers.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one deployment since it started in this process.
#[derive(Debug, Default)]
pub struct Stats {
    consumed: AtomicU64,
    scored: AtomicU64,
    dead_lettered: AtomicU64,
    delivery_retries: AtomicU64,
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
    /// Deliveries that failed and were sent again.
    pub delivery_retries: u64,
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

    /// Current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            consumed: self.consumed.load(Relaxed),
            scored: self.scored.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            delivery_retries: self.delivery_retries.load(Relaxed),
        }
    }
}
