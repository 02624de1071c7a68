//! At-least-once offset tracking.
//!
//! Per partition, the offsets consumed and not yet delivered, in order. An offset may be stored
//! (then committed) only when it and everything below it is delivered: the value stored is the
//! next offset to read, `highest contiguous delivered + 1`.

use std::collections::{HashMap, VecDeque};

/// Offsets in flight for every owned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, VecDeque<(i64, bool)>>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was consumed and is now in flight.
    pub fn consumed(&mut self, partition: i32, offset: i64) {
        let q = self.partitions.entry(partition).or_default();
        // Offsets arrive in increasing order per partition; after a rebalance the same offsets
        // may arrive again, which keeps the queue ordered once older entries are gone.
        if q.back().is_some_and(|&(last, _)| offset <= last) {
            // A replay below what we track: forget the stale tail so ordering holds.
            while q.back().is_some_and(|&(last, _)| offset <= last) {
                q.pop_back();
            }
        }
        q.push_back((offset, false));
    }

    /// Records that `offset` of `partition` reached its output (or dead-letter) topic. Returns
    /// the offset to store when the contiguous delivered prefix moved, i.e. the next offset a
    /// restarted consumer should read.
    pub fn delivered(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let q = self.partitions.get_mut(&partition)?;
        let i = q.binary_search_by_key(&offset, |&(o, _)| o).ok()?;
        q[i].1 = true;
        let mut next = None;
        while let Some(&(o, true)) = q.front() {
            next = Some(o + 1);
            q.pop_front();
        }
        next
    }

    /// Forgets partitions no longer owned (after a revoke): their in-flight records will be
    /// replayed by the next owner from the last commit.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for p in partitions {
            self.partitions.remove(&p);
        }
    }

    /// Records in flight across all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
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
        t.revoke([3]);
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
        assert_eq!(t.delivered(0, 1), None.or(Some(2)));
        assert_eq!(t.delivered(0, 2), Some(3));
    }
}
