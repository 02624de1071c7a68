//! The micro-batcher: consumed records gathered into batches for the scorer.
//!
//! A batch closes when it holds `max_records`, when `max_wait` has passed since its first
//! record, or earlier, when the consumer has nothing more ready and the scorer is idle (so a
//! trickle of records is not held back for `max_wait`, and a flood forms full batches).
//! Records are copied once, into one buffer per batch: no allocation per record.

use rdkafka::message::{BorrowedMessage, Message};
use std::ops::Range;
use std::time::{Duration, Instant};

/// A batch also closes once its records hold this many bytes, so a run of large records
/// cannot make batches (four may be alive per worker) large.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One consumed record inside a [`Batch`].
#[derive(Debug, Clone)]
pub struct Item {
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Record timestamp (ms since the epoch), if the record has one.
    pub timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

/// Records on their way to the scorer, their bytes in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    /// The acknowledgement epoch the records were consumed in.
    pub epoch: u64,
    data: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Batch {
        Batch {
            epoch: 0,
            data: Vec::with_capacity(records * 256),
            items: Vec::with_capacity(records),
        }
    }

    fn copy(&mut self, bytes: Option<&[u8]>) -> Option<Range<usize>> {
        let b = bytes?;
        let start = self.data.len();
        self.data.extend_from_slice(b);
        Some(start..self.data.len())
    }

    /// Appends a record, copying its key and value.
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        let key = self.copy(key);
        let payload = self.copy(payload);
        self.items.push(Item {
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
        });
    }

    /// The records.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// A record's key.
    pub fn key(&self, item: &Item) -> Option<&[u8]> {
        item.key.clone().map(|r| &self.data[r])
    }

    /// A record's value (`None` for a tombstone).
    pub fn payload(&self, item: &Item) -> Option<&[u8]> {
        item.payload.clone().map(|r| &self.data[r])
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `(partition, offset, timestamp)` of every record.
    pub fn positions(&self) -> impl Iterator<Item = (i32, i64, Option<i64>)> + '_ {
        self.items
            .iter()
            .map(|i| (i.partition, i.offset, i.timestamp_ms))
    }

    /// Drops the records of `partitions` (revoked before they were dispatched). Their bytes
    /// stay in the buffer until the batch is dropped.
    pub fn remove_partitions(&mut self, partitions: &[i32]) {
        self.items.retain(|i| !partitions.contains(&i.partition));
    }
}

/// Gathers records into batches.
#[derive(Debug)]
pub struct Batcher {
    max_records: usize,
    max_wait: Duration,
    current: Batch,
    first_at: Option<Instant>,
}

impl Batcher {
    /// A batcher closing batches at `max_records` or `max_wait` after their first record.
    pub fn new(max_records: usize, max_wait: Duration) -> Batcher {
        Batcher {
            max_records,
            max_wait,
            current: Batch::with_capacity(max_records),
            first_at: None,
        }
    }

    /// Adds a consumed message. Returns whether the batch is now full.
    pub fn push(&mut self, m: &BorrowedMessage<'_>) -> bool {
        self.push_parts(
            m.partition(),
            m.offset(),
            m.timestamp().to_millis(),
            m.key(),
            m.payload(),
        )
    }

    /// Adds a record given by its parts. Returns whether the batch is now full.
    pub fn push_parts(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> bool {
        if self.current.is_empty() {
            self.first_at = Some(Instant::now());
        }
        self.current
            .push(partition, offset, timestamp_ms, key, payload);
        self.is_full()
    }

    /// Whether the current batch holds `max_records` records or `MAX_BATCH_BYTES` bytes.
    fn is_full(&self) -> bool {
        self.current.len() >= self.max_records || self.current.data.len() >= MAX_BATCH_BYTES
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// How long until the current batch must close (`None` when empty).
    pub fn time_left(&self, now: Instant) -> Option<Duration> {
        self.first_at
            .map(|t| (t + self.max_wait).saturating_duration_since(now))
    }

    /// Whether the current batch is due: full, or waited `max_wait`.
    pub fn is_due(&self, now: Instant) -> bool {
        !self.is_empty() && (self.is_full() || self.time_left(now).is_some_and(|d| d.is_zero()))
    }

    /// Closes the current batch, tagging it with `epoch`.
    pub fn take(&mut self, epoch: u64) -> Batch {
        self.first_at = None;
        let mut b = std::mem::replace(&mut self.current, Batch::with_capacity(self.max_records));
        b.epoch = epoch;
        b
    }

    /// Drops waiting records of `partitions` (revoked before dispatch: never produced, so the
    /// next owner reads them from the committed offset).
    pub fn remove_partitions(&mut self, partitions: &[i32]) {
        self.current.remove_partitions(partitions);
        if self.current.is_empty() {
            self.first_at = None;
        }
    }

    /// Drops every waiting record (a rewind re-reads them).
    pub fn clear(&mut self) -> Batch {
        self.take(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_when_full_or_after_the_wait_from_the_first_record() {
        let mut b = Batcher::new(3, Duration::from_millis(50));
        let t0 = Instant::now();
        assert!(!b.is_due(t0), "empty is never due");
        assert!(!b.push_parts(0, 1, None, Some(b"k"), Some(b"one")));
        assert!(!b.is_due(Instant::now()));
        assert!(b.is_due(t0 + Duration::from_millis(60)));
        assert!(!b.push_parts(1, 7, Some(5), None, None));
        assert!(b.push_parts(0, 2, None, None, Some(b"three")));
        let batch = b.take(4);
        assert!(b.is_empty() && b.time_left(t0).is_none());
        assert_eq!(batch.epoch, 4);
        let items = batch.items();
        assert_eq!(batch.key(&items[0]), Some(&b"k"[..]));
        assert_eq!(batch.payload(&items[0]), Some(&b"one"[..]));
        assert_eq!(batch.payload(&items[1]), None, "a tombstone stays null");
        assert_eq!(batch.payload(&items[2]), Some(&b"three"[..]));
        assert_eq!(
            batch.positions().collect::<Vec<_>>(),
            [(0, 1, None), (1, 7, Some(5)), (0, 2, None)],
            "positions carry the record timestamps"
        );
    }

    #[test]
    fn large_records_close_a_batch_by_bytes() {
        let mut b = Batcher::new(1000, Duration::from_secs(1));
        let big = vec![b'x'; MAX_BATCH_BYTES / 2];
        assert!(!b.push_parts(0, 1, None, None, Some(&big)));
        assert!(b.push_parts(0, 2, None, None, Some(&big)));
        assert!(b.is_due(Instant::now()));
    }

    #[test]
    fn revoked_partitions_leave_the_waiting_batch() {
        let mut b = Batcher::new(10, Duration::from_secs(1));
        b.push_parts(0, 1, None, None, Some(b"a"));
        b.push_parts(1, 1, None, None, Some(b"b"));
        b.remove_partitions(&[0]);
        assert_eq!(b.take(0).positions().collect::<Vec<_>>(), [(1, 1, None)]);
        b.push_parts(2, 1, None, None, Some(b"c"));
        b.remove_partitions(&[2]);
        assert!(b.is_empty() && b.time_left(Instant::now()).is_none());
    }
}
