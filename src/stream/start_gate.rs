//! The start gate: a deployment's workers begin reading together, once the group has formed.
//!
//! A deployment's `workers` consumers join one group at the same moment, but a coordinator
//! may complete the joins in different rounds (tansu answers the second one a 1 s round after
//! the first; Apache Kafka delays a new group's first rebalance by
//! `group.initial.rebalance.delay.ms` for the same reason). Whichever worker is assigned first
//! would read every partition alone, then be revoked when its siblings join: a second of one
//! worker's speed, and a revoke with records in flight. So each worker's rebalance callback
//! holds its first assignment (librdkafka keeps the group's heartbeats going meanwhile) until
//! every sibling has had its first assignment, or [`FORM_WAIT`] has passed since the first one
//! (a sibling with no partition to own may never be told of an assignment; the wait counts
//! from an assignment, not from the start, because a coordinator may hold a new group's first
//! join for seconds). The gate opens once and stays open: later rebalances never wait.
//!
//! Holding the assignment, not pausing the assigned partitions: librdkafka does not wake an
//! idle fetcher when a partition is resumed, so partitions resumed when the gate opened sat up
//! to a second unread (confluentinc/confluent-kafka-go#630 shows the same delay), which halved
//! the pipeline bench's throughput whenever the joins came a round apart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest the workers wait for each other before reading.
pub const FORM_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting worker looks at the gate.
const POLL: Duration = Duration::from_millis(5);

/// Shared by a deployment's workers for one start.
#[derive(Debug)]
pub struct StartGate {
    /// One bit per worker that has been assigned at least once.
    joined: AtomicU64,
    /// Bits of every worker (`workers` ≤ 64, checked by configuration).
    all: u64,
    open: AtomicBool,
    wait: Duration,
    /// When the first worker was assigned, plus `wait`.
    deadline: OnceLock<Instant>,
}

impl StartGate {
    /// A closed gate for `workers` workers, opening at the latest `wait` after the first
    /// assignment.
    pub fn new(workers: usize, wait: Duration) -> StartGate {
        let all = match workers {
            0 => 0,
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        StartGate {
            joined: AtomicU64::new(0),
            all,
            open: AtomicBool::new(all.count_ones() <= 1),
            wait,
            deadline: OnceLock::new(),
        }
    }

    /// Worker `index` received an assignment (possibly empty).
    pub fn joined(&self, index: usize) {
        self.deadline.get_or_init(|| Instant::now() + self.wait);
        let bit = 1u64.checked_shl(index as u32).unwrap_or(0);
        let now = self.joined.fetch_or(bit, Relaxed) | bit;
        if now & self.all == self.all {
            self.open.store(true, Relaxed);
        }
    }

    /// Blocks until the gate is open (at most the wait after the first assignment; at once
    /// before any assignment, which cannot happen to a caller that has just joined).
    pub fn wait_open(&self) {
        while !self.is_open() {
            if self.deadline.get().is_none() {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the workers may read: all have joined, or the wait since the first is over.
    /// (Before any assignment there is nothing to read.)
    pub fn is_open(&self) -> bool {
        if self.open.load(Relaxed) {
            return true;
        }
        if self.deadline.get().is_some_and(|d| Instant::now() >= *d) {
            self.open.store(true, Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_when_every_worker_has_joined() {
        let g = StartGate::new(3, Duration::from_secs(60));
        assert!(!g.is_open());
        g.joined(0);
        g.joined(0);
        g.joined(2);
        assert!(!g.is_open(), "worker 1 has not joined yet");
        g.joined(1);
        assert!(g.is_open());
    }

    #[test]
    fn a_worker_waits_for_its_sibling_or_the_deadline() {
        let g = std::sync::Arc::new(StartGate::new(2, Duration::from_secs(60)));
        g.joined(0);
        let sibling = {
            let g = g.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                g.joined(1);
            })
        };
        let t = Instant::now();
        g.wait_open();
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert!(g.is_open());
        sibling.join().unwrap();

        let g = StartGate::new(2, Duration::from_millis(100));
        g.joined(0);
        let t = Instant::now();
        g.wait_open();
        assert!(t.elapsed() < Duration::from_secs(5), "bounded by the wait");
        assert!(g.is_open());
    }

    #[test]
    fn a_single_worker_never_waits_and_the_wait_is_bounded() {
        assert!(StartGate::new(1, Duration::from_secs(60)).is_open());
        let g = StartGate::new(2, Duration::ZERO);
        assert!(!g.is_open(), "the wait starts at the first assignment");
        g.joined(1);
        assert!(g.is_open(), "past the wait the gate opens without worker 0");
        let g = StartGate::new(64, Duration::from_secs(60));
        (0..64).for_each(|i| g.joined(i));
        assert!(g.is_open());
    }
}
