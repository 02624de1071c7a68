//! The exactly-once variant of producer + acker: outputs, dead letters and the input offsets
//! they answer go to Kafka in one transaction.
//!
//! The scorer opens a transaction before producing a batch and commits it, with the next input
//! offset of every partition it produced for, when it is `interval` old, holds `max_records`
//! records, or someone (a revoke, a stop) waits for it. Only then are the records acknowledged.
//! An abortable error aborts the transaction and raises [`Fault::Retry`]: the consumer rewinds
//! to the last committed offsets and the records are produced again in a new transaction, so a
//! `read_committed` reader sees each output once.

use super::acker::{Acker, Fault};
use super::producer::Sink;
use super::stats::now_ms;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
        group: Option<ConsumerGroupMetadata>,
        acker: &Acker,
    ) -> Result<(), Fault> {
        if self.opened.is_none() {
            return Ok(());
        }
        let result = self.try_commit(sink, input_topic, group);
        let offsets = std::mem::take(&mut self.next_offsets);
        self.opened = None;
        self.records = 0;
        match result {
            Ok(()) => {
                let now = now_ms();
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
        producer
            .send_offsets_to_transaction(&tpl, &group, CALL_TIMEOUT)
            .map_err(|e| txn_error("send offsets", e))?;
        producer
            .commit_transaction(CALL_TIMEOUT)
            .map_err(|e| txn_error("commit", e))
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
}
