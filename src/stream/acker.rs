//! The acknowledger: what is in flight, what was delivered, and which offsets may be stored.
//!
//! Per partition, the offsets handed to the scorer and not yet delivered, in order. An offset
//! may be stored (then committed) only when it and everything below it is delivered: the value
//! stored is the next offset to read, `highest contiguous delivered + 1`.
//!
//! [`Acker`] is shared by one worker's stages: the consumer registers dispatched batches and
//! stores the offsets it finds ready, the producer's delivery callback marks records delivered,
//! and any stage may raise a [`Fault`], which the consumer answers by rewinding. Every rewind
//! starts a new *epoch*: deliveries and batches of an older epoch are ignored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One record in flight: its offset, its input timestamp (ms since the epoch, for the
/// end-to-end latency) and whether it was delivered.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    offset: i64,
    timestamp_ms: Option<i64>,
    done: bool,
}

/// Offsets in flight for every owned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, VecDeque<InFlight>>,
    in_flight: usize,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was consumed and is now in flight.
    pub fn consumed(&mut self, partition: i32, offset: i64) {
        self.consumed_at(partition, offset, None);
    }

    /// [`consumed`](Self::consumed), remembering the record's timestamp.
    pub fn consumed_at(&mut self, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        let q = self.partitions.entry(partition).or_default();
        // Offsets arrive in increasing order per partition; a replay below what is tracked
        // (after a seek) drops the stale tail so the queue stays ordered.
        while q.back().is_some_and(|last| offset <= last.offset) {
            q.pop_back();
            self.in_flight -= 1;
        }
        q.push_back(InFlight {
            offset,
            timestamp_ms,
            done: false,
        });
        self.in_flight += 1;
    }

    /// Records that `offset` of `partition` reached its output (or dead-letter) topic. Returns
    /// the offset to store when the contiguous delivered prefix moved, i.e. the next offset a
    /// restarted consumer should read.
    pub fn delivered(&mut self, partition: i32, offset: i64) -> Option<i64> {
        self.delivered_timed(partition, offset).0
    }

    /// [`delivered`](Self::delivered), also returning the record's input timestamp.
    pub fn delivered_timed(&mut self, partition: i32, offset: i64) -> (Option<i64>, Option<i64>) {
        let Some(q) = self.partitions.get_mut(&partition) else {
            return (None, None);
        };
        let Some(i) = position(q, offset) else {
            return (None, None);
        };
        q[i].done = true;
        let timestamp = q[i].timestamp_ms;
        let mut next = None;
        while let Some(r) = q.front().filter(|r| r.done) {
            next = Some(r.offset + 1);
            q.pop_front();
            self.in_flight -= 1;
        }
        (next, timestamp)
    }

    /// Marks every offset of `partition` below `next` delivered (a committed transaction),
    /// passing each record's input timestamp to `observe`. Returns how many records that
    /// acknowledged.
    pub fn delivered_below(
        &mut self,
        partition: i32,
        next: i64,
        observe: &mut impl FnMut(Option<i64>),
    ) -> u64 {
        let mut n = 0;
        if let Some(q) = self.partitions.get_mut(&partition) {
            while let Some(r) = q.front().filter(|r| r.offset < next) {
                observe(r.timestamp_ms);
                q.pop_front();
                self.in_flight -= 1;
                n += 1;
            }
        }
        n
    }

    /// Forgets partitions (revoked, lost, or newly assigned: nothing of an earlier owner
    /// may linger).
    pub fn forget(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for p in partitions {
            if let Some(q) = self.partitions.remove(&p) {
                self.in_flight -= q.len();
            }
        }
    }

    /// Records in flight across all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Records in flight in the given partitions.
    pub fn in_flight_of(&self, partitions: &[i32]) -> usize {
        partitions
            .iter()
            .filter_map(|p| self.partitions.get(p))
            .map(VecDeque::len)
            .sum()
    }

    /// The first undelivered offset of every partition with records in flight: where to
    /// resume reading so that nothing undelivered is skipped.
    pub fn resume_points(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(&p, q)| q.iter().find(|r| !r.done).map(|r| (p, r.offset)))
            .collect()
    }
}

/// Where `offset` sits in a partition's in-flight queue. Consumed offsets are usually
/// contiguous (no compaction, no transaction markers), so the offset's distance from the
/// front is tried first; a binary search (the queue is ordered) answers otherwise. The
/// search was the delivery thread's largest cost: a dozen cache misses across a long ring.
fn position(q: &VecDeque<InFlight>, offset: i64) -> Option<usize> {
    let guess = usize::try_from(offset - q.front()?.offset).ok()?;
    if q.get(guess).is_some_and(|r| r.offset == offset) {
        return Some(guess);
    }
    q.binary_search_by_key(&offset, |r| r.offset).ok()
}

/// Something that stops delivery from going on as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A delivery failed in a way a fresh producer and a replay may fix (timeout, broker
    /// error, fenced producer, aborted transaction).
    Retry(String),
    /// Delivery cannot succeed without an operator (missing topic, authorization).
    Fatal(String),
}

#[derive(Debug, Default)]
struct State {
    tracker: OffsetTracker,
    to_store: HashMap<i32, i64>,
    epoch: u64,
    fault: Option<Fault>,
    commit_requested: bool,
    delivered_count: u64,
    /// Threads in [`Acker::wait_delivered`]: a delivery signals only when one waits (each
    /// signal is a futex system call, and deliveries come once a record).
    waiters: usize,
}

/// The acknowledgement state one worker's stages share.
#[derive(Debug, Default)]
pub struct Acker {
    state: Mutex<State>,
    /// Signalled whenever records are delivered or a fault is raised.
    changed: Condvar,
}

impl Acker {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a short call that leaves the state consistent, so a poisoned lock
        // (a panic elsewhere) still holds usable data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Registers a dispatched batch's records `(partition, offset, timestamp)` as in flight.
    pub fn dispatched(&self, records: impl Iterator<Item = (i32, i64, Option<i64>)>) {
        let mut s = self.lock();
        for (p, o, t) in records {
            s.tracker.consumed_at(p, o, t);
        }
    }

    /// Marks a record of `epoch` delivered (at-least-once). Returns its input timestamp.
    pub fn delivered(&self, epoch: u64, partition: i32, offset: i64) -> Option<i64> {
        let mut s = self.lock();
        if s.epoch != epoch {
            return None;
        }
        s.delivered_count += 1;
        let (next, timestamp) = s.tracker.delivered_timed(partition, offset);
        if let Some(next) = next {
            s.to_store.insert(partition, next);
            if s.waiters > 0 {
                self.changed.notify_all();
            }
        }
        timestamp
    }

    /// Marks everything below each `(partition, next)` delivered (a committed transaction),
    /// passing each record's input timestamp to `observe`.
    pub fn committed(
        &self,
        epoch: u64,
        offsets: &HashMap<i32, i64>,
        mut observe: impl FnMut(Option<i64>),
    ) {
        let mut s = self.lock();
        if s.epoch != epoch {
            return;
        }
        for (&p, &next) in offsets {
            s.delivered_count += s.tracker.delivered_below(p, next, &mut observe);
        }
        self.changed.notify_all();
    }

    /// Records delivered (or committed in a transaction) since the last call.
    pub fn take_delivered_count(&self) -> u64 {
        std::mem::take(&mut self.lock().delivered_count)
    }

    /// Takes the offsets whose delivered prefix moved since the last call.
    pub fn take_to_store(&self) -> HashMap<i32, i64> {
        std::mem::take(&mut self.lock().to_store)
    }

    /// Raises a fault for `epoch` (ignored when the epoch is over; the first fault stays).
    pub fn raise(&self, epoch: u64, fault: Fault) {
        let mut s = self.lock();
        if s.epoch == epoch && s.fault.is_none() {
            s.fault = Some(fault);
            self.changed.notify_all();
        }
    }

    /// The pending fault, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.lock().fault.clone()
    }

    /// Starts a new epoch after a fault: returns where to resume reading each partition that
    /// had records in flight, and the delivered prefix to store first. The tracker is emptied.
    pub fn rewind(&self) -> (Vec<(i32, i64)>, HashMap<i32, i64>) {
        let mut s = self.lock();
        s.epoch += 1;
        s.fault = None;
        s.commit_requested = false;
        let points = s.tracker.resume_points();
        let stored = std::mem::take(&mut s.to_store);
        s.tracker = OffsetTracker::default();
        (points, stored)
    }

    /// Records in flight across all partitions.
    pub fn in_flight(&self) -> usize {
        self.lock().tracker.in_flight()
    }

    /// Forgets partitions (see [`OffsetTracker::forget`]) and offsets not yet stored for them.
    pub fn forget(&self, partitions: &[i32]) {
        let mut s = self.lock();
        s.tracker.forget(partitions.iter().copied());
        for p in partitions {
            s.to_store.remove(p);
        }
    }

    /// Asks a transactional producer to commit as soon as it has records (someone waits for
    /// them), or withdraws the request.
    pub fn set_commit_requested(&self, requested: bool) {
        self.lock().commit_requested = requested;
    }

    /// Whether a commit was asked for.
    pub fn commit_requested(&self) -> bool {
        self.lock().commit_requested
    }

    /// Waits until nothing of `partitions` (every partition when `None`) is in flight, a
    /// fault is raised, or `timeout` passes. Returns whether nothing is left in flight.
    pub fn wait_delivered(&self, partitions: Option<&[i32]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            let left = match partitions {
                Some(ps) => s.tracker.in_flight_of(ps),
                None => s.tracker.in_flight(),
            };
            if left == 0 {
                return true;
            }
            let now = Instant::now();
            if s.fault.is_some() || now >= deadline {
                return false;
            }
            s.waiters += 1;
            s = self
                .changed
                .wait_timeout(s, (deadline - now).min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_the_contiguous_delivered_prefix() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.consumed(0, o);
        }
        assert_eq!(t.delivered(0, 12), None, "10 and 11 are not delivered yet");
        assert_eq!(t.delivered(0, 11), None);
        assert_eq!(
            t.delivered(0, 10),
            Some(13),
            "10..=12 delivered: next to read is 13"
        );
        assert_eq!(t.delivered(0, 14), None);
        assert_eq!(t.delivered(0, 13), Some(15));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn offsets_with_gaps_are_found_and_unknown_ones_ignored() {
        // Compaction and transaction markers leave gaps between consumed offsets.
        let mut t = OffsetTracker::default();
        for o in [10, 11, 13, 20, 21] {
            t.consumed(0, o);
        }
        assert_eq!(t.delivered(0, 5), None, "below the front");
        assert_eq!(t.delivered(0, 15), None, "never consumed");
        assert_eq!(t.delivered(0, 99), None, "past the back");
        assert_eq!(t.delivered(0, 20), None);
        assert_eq!(t.delivered(0, 13), None);
        assert_eq!(t.delivered(0, 11), None);
        assert_eq!(t.in_flight(), 5, "unknown offsets changed nothing");
        assert_eq!(
            t.delivered(0, 10),
            Some(21),
            "10, 11, 13 and 20 were delivered"
        );
        assert_eq!(t.delivered(0, 21), Some(22));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        t.consumed(0, 5);
        t.consumed(1, 7);
        assert_eq!(t.delivered(1, 7), Some(8));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.delivered(0, 5), Some(6));
    }

    #[test]
    fn unknown_and_revoked_offsets_are_ignored() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.delivered(3, 1), None);
        t.consumed(3, 1);
        t.forget([3]);
        assert_eq!(t.delivered(3, 1), None);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_replay_after_reassignment_keeps_order() {
        let mut t = OffsetTracker::default();
        t.consumed(0, 1);
        t.consumed(0, 2);
        t.consumed(0, 1); // re-fetched from the committed offset
        t.consumed(0, 2);
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.delivered(0, 1), Some(2));
        assert_eq!(t.delivered(0, 2), Some(3));
    }

    #[test]
    fn a_rewind_resumes_at_the_first_undelivered_offset_and_ignores_the_old_epoch() {
        let a = Acker::default();
        a.dispatched(
            [(0, 10), (0, 11), (0, 12), (1, 5)]
                .into_iter()
                .map(|(p, o)| (p, o, None)),
        );
        a.delivered(0, 0, 10);
        a.delivered(0, 0, 12);
        a.raise(0, Fault::Retry("timed out".into()));
        assert_eq!(a.fault(), Some(Fault::Retry("timed out".into())));
        let (mut points, stored) = a.rewind();
        points.sort_unstable();
        assert_eq!(points, [(0, 11), (1, 5)]);
        assert_eq!(stored.get(&0), Some(&11));
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.fault(), None);
        a.dispatched([(0, 11)].into_iter().map(|(p, o)| (p, o, None)));
        a.delivered(0, 0, 11); // a late callback of the old producer
        a.raise(0, Fault::Retry("late".into()));
        assert_eq!(a.in_flight(), 1);
        assert_eq!(a.fault(), None);
        a.delivered(1, 0, 11);
        assert!(a.wait_delivered(None, Duration::ZERO));
    }

    #[test]
    fn a_stale_entry_after_reassignment_does_not_block_the_partition() {
        // Consumed 100 before losing the partition; it comes back at 200.
        let a = Acker::default();
        a.dispatched([(0, 100)].into_iter().map(|(p, o)| (p, o, None)));
        a.forget(&[0]);
        a.dispatched([(0, 200)].into_iter().map(|(p, o)| (p, o, None)));
        a.delivered(0, 0, 200);
        assert_eq!(a.take_to_store().get(&0), Some(&201));
    }

    #[test]
    fn a_transaction_commit_delivers_everything_below_its_offsets() {
        let a = Acker::default();
        a.dispatched(
            [(0, 1), (0, 2), (0, 3), (2, 7)]
                .into_iter()
                .map(|(p, o)| (p, o, None)),
        );
        a.set_commit_requested(true);
        assert!(a.commit_requested());
        a.committed(0, &HashMap::from([(0, 3), (2, 8)]), |_| {});
        assert_eq!(a.in_flight(), 1);
        assert!(!a.wait_delivered(Some(&[0]), Duration::from_millis(5)));
        assert!(a.wait_delivered(Some(&[2]), Duration::ZERO));
    }

    #[test]
    fn a_delivery_wakes_a_waiter_at_once() {
        // Deliveries signal only when someone waits: the waiter must still be woken by the
        // delivery, not by the end of its 100 ms wait slice.
        let a = std::sync::Arc::new(Acker::default());
        a.dispatched([(0, 1, None)].into_iter());
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || {
                let ok = a.wait_delivered(None, Duration::from_secs(5));
                (ok, Instant::now())
            })
        };
        while a.lock().waiters == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let delivered_at = Instant::now();
        a.delivered(0, 0, 1);
        let (ok, woke_at) = waiter.join().unwrap();
        assert!(ok);
        assert!(
            woke_at.duration_since(delivered_at) < Duration::from_millis(80),
            "woken {:?} after the delivery",
            woke_at.duration_since(delivered_at)
        );
    }
}
