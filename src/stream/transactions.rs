//! The exactly-once variant of producer + acker: outputs, dead letters and the input offsets
//! they answer go to Kafka in one transaction.
//!
//! The scorer opens a transaction before producing a batch and commits it, with the next input
//! offset of every partition it produced for, when it is `interval` old, holds `max_records`
//! records, or someone (a revoke, a stop) waits for it. Only then are the records acknowledged.
//! An abortable error aborts the transaction and raises [`Fault::Retry`]: the consumer rewinds
//! to the last committed offsets and the records are produced again in a new transaction, so a
//! `read_committed` reader sees each output once.
//!
//! A committed transaction *settles* before its records are acknowledged and before the next
//! one opens: the worker reads the group's committed offsets back until they reach the
//! transaction's. Kafka makes them visible as soon as its commit markers are written; tansu
//! defers them while another producer's open transaction overlaps on an output partition, and
//! merges them into this producer's next transaction, so an abort of that one (a crash, a
//! fence) would drop offsets whose outputs are already visible, and the next owner would score
//! them twice. Waiting keeps a revoke from handing over partitions before their offsets are
//! readable, too. The wait is bounded ([`settle_timeout`]): past it the worker warns and goes on.

use super::acker::{Acker, Fault};
use super::producer::Sink;
use super::stats::coarse_now_ms;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How long a transaction call may block before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// When to commit.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Commit a transaction this long after it opened.
    pub interval: Duration,
    /// Commit a transaction holding this many records.
    pub max_records: usize,
}

/// What a transaction needs of its worker's consumer.
pub trait GroupView: Send + Sync {
    /// The consumer's current group metadata, sent with the offsets.
    fn metadata(&self) -> Option<ConsumerGroupMetadata>;
    /// The offsets the group has committed for `partitions`.
    fn committed(
        &self,
        partitions: &TopicPartitionList,
        timeout: Duration,
    ) -> KafkaResult<TopicPartitionList>;
}

impl<C: ConsumerContext> GroupView for BaseConsumer<C> {
    fn metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.group_metadata()
    }

    fn committed(
        &self,
        partitions: &TopicPartitionList,
        timeout: Duration,
    ) -> KafkaResult<TopicPartitionList> {
        self.committed_offsets(partitions.clone(), timeout)
    }
}

/// Longest a committed transaction waits for its offsets to become readable: long enough for
/// another worker's transaction, opened at most `interval` ago, to commit too.
pub fn settle_timeout(interval: Duration) -> Duration {
    interval * 2 + Duration::from_secs(5)
}

/// The open transaction of one worker's producer.
#[derive(Debug)]
pub struct Transaction {
    cadence: Cadence,
    opened: Option<Instant>,
    next_offsets: HashMap<i32, i64>,
    records: usize,
}

fn txn_error(what: &str, e: KafkaError) -> Fault {
    Fault::Retry(format!("transaction {what} failed: {e}"))
}

impl Transaction {
    /// A transaction state for a producer that `init`ed transactions.
    pub fn new(cadence: Cadence) -> Transaction {
        Transaction {
            cadence,
            opened: None,
            next_offsets: HashMap::new(),
            records: 0,
        }
    }

    /// Registers the producer's transactional id with the broker (fencing older producers
    /// that used it).
    pub fn init(sink: &Sink) -> Result<(), Fault> {
        sink.producer()
            .init_transactions(CALL_TIMEOUT)
            .map_err(|e| txn_error("init", e))
    }

    /// Opens a transaction if none is open.
    pub fn ensure_open(&mut self, sink: &Sink) -> Result<(), Fault> {
        if self.opened.is_none() {
            sink.producer()
                .begin_transaction()
                .map_err(|e| txn_error("begin", e))?;
            self.opened = Some(Instant::now());
        }
        Ok(())
    }

    /// Notes a record produced in the open transaction for input `(partition, offset)`.
    pub fn produced(&mut self, partition: i32, offset: i64) {
        self.next_offsets.insert(partition, offset + 1);
        self.records += 1;
    }

    /// Whether the open transaction should be committed now.
    pub fn due(&self, requested: bool) -> bool {
        self.records > 0
            && (requested
                || self.records >= self.cadence.max_records
                || self
                    .opened
                    .is_some_and(|t| t.elapsed() >= self.cadence.interval))
    }

    /// Commits the open transaction with the input offsets, then acknowledges its records.
    /// On failure the transaction is aborted when it can be, and the fault says to rewind.
    pub fn commit(
        &mut self,
        sink: &Sink,
        input_topic: &str,
        group: &dyn GroupView,
        acker: &Acker,
    ) -> Result<(), Fault> {
        if self.opened.is_none() {
            return Ok(());
        }
        let result = self.try_commit(sink, input_topic, group.metadata());
        let offsets = std::mem::take(&mut self.next_offsets);
        self.opened = None;
        self.records = 0;
        match result {
            Ok(()) => {
                let timeout = settle_timeout(self.cadence.interval);
                if let Err(unsettled) = settle(group, input_topic, &offsets, timeout) {
                    warn!(
                        topic = input_topic,
                        partitions = ?unsettled,
                        timeout_ms = timeout.as_millis() as u64,
                        "transaction committed but the broker does not show its input offsets \
                         yet; going on (a crash or rebalance now may score these records again)"
                    );
                }
                let now = coarse_now_ms();
                acker.committed(sink.epoch(), &offsets, |t| {
                    sink.stats().observe_latency(now, t)
                });
                Ok(())
            }
            Err(e) => {
                // Best effort: a transaction that cannot be aborted either is fenced or fatal,
                // and the rewind builds a new producer anyway.
                let _ = sink.producer().abort_transaction(CALL_TIMEOUT);
                Err(e)
            }
        }
    }

    fn try_commit(
        &self,
        sink: &Sink,
        input_topic: &str,
        group: Option<ConsumerGroupMetadata>,
    ) -> Result<(), Fault> {
        let group =
            group.ok_or_else(|| Fault::Retry("consumer group metadata unavailable".into()))?;
        let mut tpl = TopicPartitionList::with_capacity(self.next_offsets.len());
        for (&p, &next) in &self.next_offsets {
            tpl.add_partition_offset(input_topic, p, Offset::Offset(next))
                .map_err(|e| txn_error("offsets", e))?;
        }
        let producer = sink.producer();
        let started = Instant::now();
        producer
            .send_offsets_to_transaction(&tpl, &group, CALL_TIMEOUT)
            .map_err(|e| txn_error("send offsets", e))?;
        let offsets_sent = started.elapsed();
        producer
            .commit_transaction(CALL_TIMEOUT)
            .map_err(|e| txn_error("commit", e))?;
        debug!(
            records = self.records,
            offsets_ms = offsets_sent.as_millis() as u64,
            commit_ms = (started.elapsed() - offsets_sent).as_millis() as u64,
            "transaction committed"
        );
        Ok(())
    }

    /// Aborts the open transaction, if any (its records will be produced again).
    pub fn abort(&mut self, sink: &Sink) {
        if self.opened.take().is_some() {
            let _ = sink.producer().abort_transaction(CALL_TIMEOUT);
        }
        self.next_offsets.clear();
        self.records = 0;
    }
}

/// Reads the group's committed offsets back until every partition of `offsets` reached its
/// value, or `timeout` passed; then `Err` names the partitions still behind.
fn settle(
    group: &dyn GroupView,
    topic: &str,
    offsets: &HashMap<i32, i64>,
    timeout: Duration,
) -> Result<(), Vec<i32>> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pending: Vec<i32> = offsets.keys().copied().collect();
    let mut pause = Duration::from_millis(2);
    loop {
        let mut tpl = TopicPartitionList::with_capacity(pending.len());
        for &p in &pending {
            tpl.add_partition(topic, p);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(committed) = group.committed(&tpl, left.max(Duration::from_millis(100))) {
            pending.retain(|&p| {
                let seen = committed.find_partition(topic, p).map(|e| e.offset());
                !matches!(seen, Some(Offset::Offset(o)) if o >= offsets[&p])
            });
        }
        if pending.is_empty() {
            debug!(
                waited_ms = started.elapsed().as_millis() as u64,
                "transaction settled"
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            pending.sort_unstable();
            return Err(pending);
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_size_age_or_request_and_never_empty() {
        let mut t = Transaction::new(Cadence {
            interval: Duration::from_secs(3600),
            max_records: 2,
        });
        assert!(!t.due(true), "an empty transaction is never due");
        t.opened = Some(Instant::now());
        t.produced(0, 5);
        assert!(!t.due(false));
        assert!(t.due(true));
        t.produced(0, 6);
        assert!(t.due(false));
        assert_eq!(t.next_offsets.get(&0), Some(&7));
        t.cadence.interval = Duration::ZERO;
        t.records = 1;
        assert!(t.due(false));
    }

    /// A group whose committed offsets reach `target` after `lag` reads.
    struct Lagging {
        reads: std::sync::atomic::AtomicUsize,
        lag: usize,
        target: i64,
    }

    impl GroupView for Lagging {
        fn metadata(&self) -> Option<ConsumerGroupMetadata> {
            None
        }

        fn committed(
            &self,
            partitions: &TopicPartitionList,
            _timeout: Duration,
        ) -> KafkaResult<TopicPartitionList> {
            let n = self
                .reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut out = TopicPartitionList::new();
            for e in partitions.elements() {
                let o = if n >= self.lag { self.target } else { 3 };
                out.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
            }
            Ok(out)
        }
    }

    #[test]
    fn settling_waits_for_the_offsets_and_names_what_stays_behind() {
        let offsets = HashMap::from([(0, 10), (2, 7)]);
        let slow = Lagging {
            reads: 0.into(),
            lag: 3,
            target: 10,
        };
        assert_eq!(
            settle(&slow, "in", &offsets, Duration::from_secs(5)),
            Ok(())
        );
        assert_eq!(
            slow.reads.into_inner(),
            4,
            "read until every partition caught up"
        );
        let short = Lagging {
            reads: 0.into(),
            lag: 0,
            target: 8,
        };
        let started = Instant::now();
        assert_eq!(
            settle(&short, "in", &offsets, Duration::from_millis(120)),
            Err(vec![0]),
            "partition 2 reached 8 >= 7; partition 0 stays at 8 < 10"
        );
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert!(started.elapsed() < Duration::from_secs(2), "bounded");
    }
}
