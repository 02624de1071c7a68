//! A worker's rebalances: where assigned partitions start reading, and what revoked ones hand
//! over.
//!
//! - **Assign**: the first assignment of a worker waits for its siblings
//!   ([`crate::stream::start_gate`]); then every partition gets a concrete start offset
//!   before librdkafka sees the assignment: its committed offset, else the partition's first
//!   or next offset (`start_from`), looked up here. librdkafka's own lookup of a logical
//!   start offset does not survive a pause or resume while it is on its way: the reply is
//!   dropped and the partition either waits for good (confluentinc/librdkafka#2190) or gets
//!   a retry timer that later fires on the running partition and sends it back to its start
//!   (every record read twice: seen in the join-under-load test, 5,000 duplicates).
//!   Backpressure may pause partitions right after an assignment, so the lookup is done here.
//!   If the broker does not answer within [`START_WAIT`], the partitions are assigned as
//!   given (librdkafka looks them up) and a warning says so.
//! - **Revoke**: records of the revoked partitions still in the batcher are dropped (never
//!   produced), the rest in flight are waited for (bounded), stored and committed before the
//!   partitions go; lost partitions are forgotten at once.
//! - **Either**: the tracker forgets the partitions, so nothing of an earlier epoch lingers.

use super::{store, IntakeContext, KafkaConsumer};
use crate::stream::acker::Fault;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Longest a revoke waits for the revoked partitions' records in flight.
const REVOKE_WAIT: Duration = Duration::from_secs(10);
/// Longest an assignment waits for the broker to name its partitions' start offsets.
const START_WAIT: Duration = Duration::from_secs(5);

impl ConsumerContext for IntakeContext {
    /// librdkafka's rebalance callback, run inside `poll` on the consumer thread.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // The first assignment waits (bounded) for the deployment's other workers,
                // rather than taking its partitions paused: librdkafka does not wake an idle
                // fetcher on resume, so partitions resumed after the gate sat up to 1 s unread.
                self.gate.joined(self.index);
                self.gate.wait_open();
                self.resolve_start(consumer, tpl);
                let applied = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                self.assigned(consumer, tpl);
                applied
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(consumer, tpl);
                unassign(consumer, tpl, cooperative)
            }
            other => {
                let error = RDKafkaErrorCode::from(other);
                warn!(worker = %self.label, %error, "rebalance failed; the group will retry");
                unassign(consumer, tpl, cooperative)
            }
        };
        if let Err(error) = applied {
            warn!(worker = %self.label, %error, "rebalance: librdkafka refused the assignment change");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.commit_in_flight.store(false, Relaxed);
        if let Err(e) = result {
            debug!(worker = %self.label, error = %e, "commit");
        }
    }
}

fn set_start(tpl: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64) {
    // The partition is in the list (it came from it), so this cannot fail.
    let _ = tpl.set_partition_offset(topic, partition, Offset::Offset(offset));
}

fn unassign(
    consumer: &KafkaConsumer,
    tpl: &TopicPartitionList,
    cooperative: bool,
) -> KafkaResult<()> {
    if cooperative {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    }
}

impl IntakeContext {
    /// Sets each assigned partition's start offset: committed, else the partition's start or
    /// end (one ListOffsets per leader). Left as given (a logical offset librdkafka looks up)
    /// when the broker does not answer within [`START_WAIT`] in all.
    fn resolve_start(&self, consumer: &KafkaConsumer, tpl: &mut TopicPartitionList) {
        let deadline = Instant::now() + START_WAIT;
        let committed = match consumer.committed_offsets(tpl.clone(), START_WAIT) {
            Ok(committed) => committed,
            Err(error) => return self.unresolved(&error.to_string()),
        };
        // Partitions without a committed offset: the broker's first or next offset, asked
        // for by "timestamp" -2 (earliest) or -1 (latest), the values of `Beginning`/`End`.
        let mut bounds = TopicPartitionList::new();
        for e in committed.elements_for_topic(&self.topic) {
            match e.offset() {
                Offset::Offset(o) => set_start(tpl, &self.topic, e.partition(), o),
                _ => {
                    let _ = bounds.add_partition_offset(&self.topic, e.partition(), self.reset);
                }
            }
        }
        if bounds.count() == 0 {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.offsets_for_times(bounds, left) {
            Ok(found) => {
                for e in found.elements_for_topic(&self.topic) {
                    match e.offset() {
                        Offset::Offset(o) if o >= 0 => {
                            set_start(tpl, &self.topic, e.partition(), o)
                        }
                        other => {
                            self.unresolved(&format!("partition {}: {other:?}", e.partition()))
                        }
                    }
                }
            }
            Err(error) => self.unresolved(&error.to_string()),
        }
    }

    fn unresolved(&self, why: &str) {
        warn!(worker = %self.label, reason = why, "start offsets unknown at assignment; librdkafka looks them up (a pause during that lookup can make it read a partition twice)");
    }

    /// After an assignment: the tracker forgets the partitions, they are owned and counted,
    /// and paused or resumed as the worker is.
    fn assigned(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let assigned = partitions_of(tpl, &self.topic);
        // Nothing of an earlier owner's epoch may linger for these partitions.
        self.acker.forget(&assigned);
        let added = {
            let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
            assigned.iter().filter(|&&p| owned.insert(p)).count()
        };
        self.stats.assigned(added as i64);
        // librdkafka may keep a partition's pause across an eager reassignment: state it
        // explicitly, or a partition paused before a revoke could stay paused for good.
        let _ = if self.paused.load(Relaxed) {
            consumer.pause(tpl)
        } else {
            consumer.resume(tpl)
        };
        let starts: Vec<(i32, Offset)> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        info!(worker = %self.label, partitions = ?assigned, ?starts, "partitions assigned");
    }

    /// Before revoked partitions go: lost ones are forgotten, the others handed over.
    fn revoked(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let revoked = partitions_of(tpl, &self.topic);
        self.lock().batcher.remove_partitions(&revoked);
        let gone: Vec<i32> = {
            let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
            revoked
                .iter()
                .copied()
                .filter(|p| owned.remove(p))
                .collect()
        };
        self.disown(&gone);
        if consumer.assignment_lost() || self.abandoning.load(Relaxed) {
            self.acker.forget(&revoked);
            info!(worker = %self.label, partitions = ?revoked, "partitions lost");
            return;
        }
        self.hand_over(consumer, &revoked);
    }

    /// Deliver what is in flight for the revoked partitions (bounded), store and commit, then
    /// forget them.
    fn hand_over(&self, consumer: &KafkaConsumer, revoked: &[i32]) {
        let blocked = self.lock().blocked.take();
        if let Some(b) = blocked {
            if let Err(e) = self.batches.send_timeout(b, REVOKE_WAIT) {
                self.lock().blocked = Some(e.into_inner());
            }
        }
        self.acker.set_commit_requested(true);
        let clean = self.acker.wait_delivered(Some(revoked), REVOKE_WAIT);
        self.acker.set_commit_requested(false);
        if !self.transactional {
            store(
                consumer,
                &self.topic,
                self.acker.take_to_store(),
                &self.label,
            );
            commit_before_handing_over(consumer, &self.label);
        } else if !clean {
            // The open transaction holds outputs of partitions the next owner will read again
            // from the last committed offsets: abort it (the fault makes the scorer abort and
            // the worker rewind what it keeps) rather than let it commit late.
            self.acker.raise(
                self.acker.epoch(),
                Fault::Retry("partitions revoked before their transaction committed".into()),
            );
        }
        self.acker.forget(revoked);
        info!(worker = %self.label, partitions = ?revoked, all_delivered = clean, "partitions revoked");
    }
}

/// Commits what was stored before revoked partitions go, retrying a refused commit twice:
/// what a failed commit leaves uncommitted, the next owner reads again.
fn commit_before_handing_over(consumer: &KafkaConsumer, label: &str) {
    for attempt in 1..=3u64 {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => return,
            // Nothing stored since the last commit: nothing to do.
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => return,
            Err(e) => {
                warn!(worker = %label, error = %e, attempt, "commit before a revoke failed (records since the last commit will be read again by the next owner)");
                std::thread::sleep(Duration::from_millis(100 * attempt));
            }
        }
    }
}

/// The partitions of `topic` in a rebalance's list.
fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}
