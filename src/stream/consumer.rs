//! The consumer stage: a thread polling a `BaseConsumer` without pause, so rebalances are
//! always served, feeding the batcher and dispatching batches to the scorer.
//!
//! - **Backpressure**: a batch the scorer has no room for is offered again for up to 50 ms
//!   between polls; with `batch.max_in_flight` records in flight (a slow output), or while a
//!   rewind backs off, the assigned partitions are paused (and polling goes on) until half of
//!   them are delivered.
//! - **Offsets** (at-least-once): the acker's delivered prefixes are stored every round and
//!   committed (asynchronously) every `commit.interval_ms`, or at once after
//!   `commit.max_records` deliveries, which bounds what a crash replays; a periodic commit
//!   waits for the previous one's answer, so a slow coordinator paces them.
//! - **Rebalances** ([`rebalance`]): assigned partitions start at concrete offsets looked up
//!   first (librdkafka's own lookup does not survive a pause); revoked ones hand their
//!   records in flight over (bounded), stored and committed.
//! - **Faults**: a retriable delivery fault rewinds: the delivered prefix is stored, every
//!   partition with undelivered records is sought back to its first one, the epoch moves (the
//!   scorer builds a new producer) and reading resumes after a back-off. A fatal fault ends the
//!   worker with its reason.
//! - **Start**: a worker takes its first partitions only once every worker of the deployment
//!   has joined the group (or 3 s passed), so no worker drains the backlog alone
//!   ([`super::start_gate`]).
//! - **Stall**: when nothing is delivered for `stall_timeout` while records wait, the
//!   deployment's status says so (with the last error) until deliveries move again.

use super::acker::{Acker, Fault};
use super::batcher::{Batch, Batcher};
use super::start_gate::StartGate;
use super::{RateLimitedLog, Stats, StreamError};
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod rebalance;

/// The consumer type of a worker.
pub type KafkaConsumer = BaseConsumer<IntakeContext>;

/// Most records polled between two housekeeping rounds (faults, offsets, backpressure).
const POLL_BURST: usize = 256;
/// Longest a poll blocks when nothing is waiting.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Longest wait for a seek of every partition.
const SEEK_WAIT: Duration = Duration::from_secs(5);
/// Poll while paused (rebalances and back-off are served promptly).
const BUSY_POLL: Duration = Duration::from_millis(10);
/// Poll while a partial batch waits behind a batch queued for the scorer.
const SCORER_BUSY_POLL: Duration = Duration::from_millis(1);
/// Longest the consumer waits for room in the scorer's queue before polling again.
const BLOCKED_WAIT: Duration = Duration::from_millis(50);
/// Longest an unanswered asynchronous commit holds back the next one.
const COMMIT_STUCK: Duration = Duration::from_secs(10);
/// First and longest back-off between rewinds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Records consumed but not yet handed to the scorer.
#[derive(Debug)]
struct Intake {
    batcher: Batcher,
    /// A closed batch the scorer had no room for (already registered with the acker).
    blocked: Option<Batch>,
}

/// Consumer callbacks: rebalances, run inside `poll` on the consumer thread.
pub struct IntakeContext {
    acker: Arc<Acker>,
    intake: Mutex<Intake>,
    batches: Sender<Batch>,
    topic: Arc<str>,
    label: String,
    transactional: bool,
    paused: AtomicBool,
    abandoning: AtomicBool,
    /// An asynchronous commit is outstanding (cleared by its callback).
    commit_in_flight: AtomicBool,
    /// Deployment counters (assigned partitions, lag).
    stats: Arc<Stats>,
    /// Partitions of the input topic this consumer owns.
    owned: Mutex<BTreeSet<i32>>,
    /// The deployment's workers start reading together.
    gate: Arc<StartGate>,
    /// This worker's index (its place in the gate).
    index: usize,
    /// Where a partition without a committed offset starts (`Beginning` or `End`).
    reset: Offset,
}

impl ClientContext for IntakeContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag of each owned
    /// partition, from the partition end the consumer saw in its last fetch response.
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&*self.topic) else {
            return;
        };
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        for p in topic.partitions.values() {
            if owned.contains(&p.partition) {
                if let Some(lag) = partition_lag(p) {
                    self.stats.metrics().set_lag(p.partition, lag);
                }
            }
        }
    }
}

/// Records not yet delivered in a partition: its end (the last stable offset for a
/// read-committed consumer, else the high watermark, both as the last fetch response gave
/// them) minus the delivered position (the stored offset, else the committed one). `None`
/// while either is unknown.
fn partition_lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    let end = if p.ls_offset >= 0 {
        p.ls_offset
    } else {
        p.hi_offset
    };
    let position = if p.stored_offset >= 0 {
        p.stored_offset
    } else {
        p.committed_offset
    };
    (end >= 0 && position >= 0).then(|| (end - position).max(0))
}

impl IntakeContext {
    /// Partitions no longer owned: counted out, their lag series removed.
    fn disown(&self, partitions: &[i32]) {
        self.stats.assigned(-(partitions.len() as i64));
        self.stats.metrics().remove_lag(partitions);
    }

    fn lock(&self) -> MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for IntakeContext {
    /// The consumer is closed: its partitions are no longer owned.
    fn drop(&mut self) {
        let owned: Vec<i32> =
            std::mem::take(&mut *self.owned.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        self.disown(&owned);
    }
}

/// Stores next-offsets. Storing for a partition no longer owned fails harmlessly.
fn store(consumer: &KafkaConsumer, topic: &str, offsets: HashMap<i32, i64>, label: &str) -> u64 {
    if offsets.is_empty() {
        return 0;
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (&p, &next) in &offsets {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(next));
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        debug!(worker = %label, error = %e, "offset store refused (partition no longer owned)");
    }
    offsets.len() as u64
}

/// Settings of one consumer thread.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Worker label for logs.
    pub label: String,
    /// Worker index (its bit in the stall mask).
    pub index: usize,
    /// Input topic.
    pub topic: Arc<str>,
    /// Batch size limit.
    pub max_records: usize,
    /// Batch wait limit.
    pub max_wait: Duration,
    /// Pause reading past this many records in flight.
    pub max_in_flight: usize,
    /// Commit stored offsets this often (at-least-once)...
    pub commit_interval: Duration,
    /// ... or at once after this many records were stored.
    pub commit_max_records: u64,
    /// Offsets go through transactions, not the consumer.
    pub transactional: bool,
    /// Report a stall after this long without a delivery while records wait.
    pub stall_timeout: Duration,
    /// Where a partition without a committed offset starts (`Beginning` or `End`).
    pub reset: Offset,
}

/// Builds the context for a worker's consumer.
pub fn context(
    s: &IntakeSettings,
    acker: Arc<Acker>,
    batches: Sender<Batch>,
    stats: Arc<Stats>,
    gate: Arc<StartGate>,
) -> IntakeContext {
    IntakeContext {
        acker,
        intake: Mutex::new(Intake {
            batcher: Batcher::new(s.max_records, s.max_wait),
            blocked: None,
        }),
        batches,
        topic: s.topic.clone(),
        label: s.label.clone(),
        transactional: s.transactional,
        paused: AtomicBool::new(false),
        abandoning: AtomicBool::new(false),
        commit_in_flight: AtomicBool::new(false),
        stats,
        owned: Mutex::new(BTreeSet::new()),
        gate,
        index: s.index,
        reset: s.reset,
    }
}

/// Runs the consumer loop until stopped (drains: everything in flight delivered and
/// committed), aborted (abandons in-flight records uncommitted) or a fatal fault.
pub fn run(
    consumer: &KafkaConsumer,
    s: &IntakeSettings,
    acker: &Acker,
    stats: &Stats,
    stop: &CancellationToken,
    abort: &CancellationToken,
) -> Result<(), StreamError> {
    let ctx = consumer.context();
    let mut draining = false;
    let mut backoff = BACKOFF_MIN;
    let mut resume_at: Option<Instant> = None;
    let mut stored_since_commit = 0u64;
    let mut last_commit = Instant::now();
    let mut last_progress = Instant::now();
    // A delivery failed and nothing was delivered since: the rewound records still wait (in
    // the topic, to be read again), so an empty tracker is no sign of progress.
    let mut failing = false;
    let mut poll_errors = RateLimitedLog::new(Duration::from_secs(5));
    let mut rewinds = RateLimitedLog::new(Duration::from_secs(5));
    let outcome = loop {
        if abort.is_cancelled() {
            warn!(worker = %s.label, in_flight = acker.in_flight(), "drain time is up: abandoning in-flight records uncommitted (they will be replayed)");
            ctx.abandoning.store(true, Relaxed);
            break Ok(());
        }
        if !draining && stop.is_cancelled() {
            info!(worker = %s.label, in_flight = acker.in_flight(), "stopping: draining in-flight records");
            draining = true;
        }
        match acker.fault() {
            Some(Fault::Fatal(why)) => {
                stats.set_last_error(&why);
                break Err(StreamError::Delivery(why));
            }
            Some(Fault::Retry(why)) => {
                stats.retried();
                stats.set_last_error(&why);
                rewinds.log(|n| warn!(worker = %s.label, reason = %why, repeated = n, retry_in_ms = backoff.as_millis() as u64, "delivery failed; rewinding to the first undelivered record"));
                rewind(consumer, s, acker);
                failing = true;
                resume_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            None => {}
        }

        // Offsets: store the delivered prefixes; commit early after many.
        let now = Instant::now();
        let delivered = acker.take_delivered_count();
        if delivered > 0 {
            last_progress = now;
            failing = false;
            backoff = BACKOFF_MIN;
            stats.set_stalled(s.index, false);
        }
        if !s.transactional {
            stored_since_commit += delivered;
            store(consumer, &s.topic, acker.take_to_store(), &s.label);
            // The record count bounds what a crash replays: it commits regardless. The timer
            // waits for the previous commit's answer (or COMMIT_STUCK), so a slow coordinator
            // paces the periodic commits instead of queueing them.
            let by_count = stored_since_commit >= s.commit_max_records;
            let by_time = stored_since_commit > 0
                && now >= last_commit + s.commit_interval
                && (!ctx.commit_in_flight.load(Relaxed)
                    || now.duration_since(last_commit) >= COMMIT_STUCK);
            if by_count || by_time {
                stored_since_commit = 0;
                last_commit = now;
                ctx.commit_in_flight.store(true, Relaxed);
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                    ctx.commit_in_flight.store(false, Relaxed);
                    debug!(worker = %s.label, error = %e, "commit");
                }
            }
        }
        let in_flight = acker.in_flight();
        if in_flight == 0 && !failing {
            last_progress = now;
            stats.set_stalled(s.index, false);
        } else if now.duration_since(last_progress) >= s.stall_timeout {
            stats.set_stalled(s.index, true);
        }

        // Dispatch: a blocked batch first (waiting briefly for room: rebalances are served
        // at the next poll), then a due one.
        let (waiting, blocked) = {
            let mut intake = ctx.lock();
            if let Some(b) = intake.blocked.take() {
                intake.blocked = send_within(&ctx.batches, b, BLOCKED_WAIT)?;
            }
            if intake.blocked.is_none() && (intake.batcher.is_due(now) || draining) {
                intake.blocked = dispatch(&mut intake.batcher, ctx, acker, stats)?;
            }
            (!intake.batcher.is_empty(), intake.blocked.is_some())
        };
        if draining {
            acker.set_commit_requested(true);
            if !waiting && !blocked && in_flight == 0 {
                break Ok(());
            }
        }

        // Backpressure: pause while too much is in flight (resume at half), backing off or
        // draining (the start gate holds the first assignment instead, in `rebalance`). A
        // full scorer queue alone does not pause: the consumer waits on it above.
        let backing_off = resume_at.is_some_and(|t| now < t);
        let paused = ctx.paused.load(Relaxed);
        let over = if paused {
            in_flight > s.max_in_flight / 2
        } else {
            in_flight >= s.max_in_flight
        };
        let pause = draining || over || backing_off;
        if pause != paused && set_paused(consumer, s, pause) {
            ctx.paused.store(pause, Relaxed);
        }

        let timeout = if blocked {
            // The dispatch above already waited for room.
            Duration::ZERO
        } else if waiting && !ctx.batches.is_empty() {
            // A partial batch waits behind a queued one: look again soon (the scorer may
            // fall idle), without spinning on a core the scorer and the broker need.
            SCORER_BUSY_POLL
        } else if pause {
            BUSY_POLL
        } else if waiting {
            Duration::ZERO
        } else {
            IDLE_POLL
        };
        // A burst of polls between housekeeping rounds, so per-record work stays small.
        let mut timeout = timeout;
        for _ in 0..POLL_BURST {
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let mut intake = ctx.lock();
                    if intake.batcher.push(&m) {
                        if intake.blocked.is_none() {
                            intake.blocked = dispatch(&mut intake.batcher, ctx, acker, stats)?;
                        }
                        break;
                    }
                }
                Some(Err(e)) => {
                    poll_errors.log(|n| {
                        warn!(worker = %s.label, error = %e, repeated = n, "Kafka consumer error; retrying");
                    });
                    break;
                }
                None => {
                    // Nothing more ready: an idle scorer takes what is waiting now.
                    let mut intake = ctx.lock();
                    if !intake.batcher.is_empty()
                        && intake.blocked.is_none()
                        && ctx.batches.is_empty()
                    {
                        intake.blocked = dispatch(&mut intake.batcher, ctx, acker, stats)?;
                    }
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
    };
    if outcome.is_ok() && !ctx.abandoning.load(Relaxed) && !s.transactional {
        store(consumer, &s.topic, acker.take_to_store(), &s.label);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // NoOffset: everything stored was already committed by the periodic commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                info!(worker = %s.label, "offsets committed")
            }
            Err(e) => {
                warn!(worker = %s.label, error = %e, "final commit failed (records since the last commit will be replayed)")
            }
        }
    }
    if outcome.is_err() {
        ctx.abandoning.store(true, Relaxed);
    }
    outcome
}

/// Closes the batcher's batch and offers it to the scorer; returns it when there is no room.
fn dispatch(
    batcher: &mut Batcher,
    ctx: &IntakeContext,
    acker: &Acker,
    stats: &Stats,
) -> Result<Option<Batch>, StreamError> {
    if batcher.is_empty() {
        return Ok(None);
    }
    let batch = batcher.take(acker.epoch());
    acker.dispatched(batch.positions());
    stats.consumed(batch.len() as u64);
    try_dispatch(&ctx.batches, batch)
}

fn try_dispatch(batches: &Sender<Batch>, batch: Batch) -> Result<Option<Batch>, StreamError> {
    match batches.try_send(batch) {
        Ok(()) => Ok(None),
        Err(TrySendError::Full(b)) => Ok(Some(b)),
        Err(TrySendError::Disconnected(_)) => Err(scorer_gone()),
    }
}

/// Offers a batch to the scorer for up to `wait`; returns it when there is still no room.
fn send_within(
    batches: &Sender<Batch>,
    batch: Batch,
    wait: Duration,
) -> Result<Option<Batch>, StreamError> {
    match batches.send_timeout(batch, wait) {
        Ok(()) => Ok(None),
        Err(SendTimeoutError::Timeout(b)) => Ok(Some(b)),
        Err(SendTimeoutError::Disconnected(_)) => Err(scorer_gone()),
    }
}

fn scorer_gone() -> StreamError {
    StreamError::Scoring("the scorer thread ended".into())
}

/// After a fault: store the delivered prefix, drop what waits, seek every partition with
/// undelivered records back to its first one, and start a new epoch.
fn rewind(consumer: &KafkaConsumer, s: &IntakeSettings, acker: &Acker) {
    let ctx = consumer.context();
    {
        let mut intake = ctx.lock();
        let waiting = intake.batcher.clear();
        acker.dispatched(waiting.positions());
        intake.blocked = None;
    }
    let (points, delivered) = acker.rewind();
    if !s.transactional {
        store(consumer, &s.topic, delivered, &s.label);
        let _ = consumer.commit_consumer_state(CommitMode::Async);
    }
    let points = points.into_iter().map(|(p, o)| (p, Offset::Offset(o)));
    seek(consumer, s, points, "seek after a failed delivery");
}

/// Seeks partitions of the input topic, all in one call bounded by [`SEEK_WAIT`]; a
/// partition that cannot seek is logged as `what` and read on from where it is.
fn seek(
    consumer: &KafkaConsumer,
    s: &IntakeSettings,
    to: impl IntoIterator<Item = (i32, Offset)>,
    what: &str,
) {
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in to {
        let _ = tpl.add_partition_offset(&s.topic, p, offset);
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.seek_partitions(tpl, SEEK_WAIT) {
        Ok(result) => {
            for e in result.elements() {
                if let Err(error) = e.error() {
                    warn!(worker = %s.label, partition = e.partition(), offset = ?e.offset(), %error, "{what}");
                }
            }
        }
        Err(error) => warn!(worker = %s.label, %error, "{what}"),
    }
}

/// Pauses or resumes every assigned partition; returns whether it took effect (else the
/// next round tries again). A resume also seeks each partition to where the worker stopped
/// reading: librdkafka does not wake a fetcher that went idle because all its partitions were
/// paused, so without the seek a resumed partition can sit up to a second unread
/// (confluentinc/confluent-kafka-go#630); a seek makes the partition fetchable again, which
/// does wake it. The position is the next record after the last one polled, where librdkafka
/// resumes anyway, so nothing is skipped or read twice.
fn set_paused(consumer: &KafkaConsumer, s: &IntakeSettings, pause: bool) -> bool {
    let r = consumer.assignment().and_then(|assignment| {
        if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        }
    });
    if let Err(e) = &r {
        debug!(worker = %s.label, error = %e, pause, "pause/resume");
    }
    if r.is_ok() && !pause {
        wake_fetchers(consumer, s);
    }
    r.is_ok()
}

/// Seeks every partition the worker has read from to its current position (see
/// [`set_paused`]). A partition not read from since its assignment or last seek has no
/// position and is left alone, and so is one at offset 0: librdkafka applies a seek to 0
/// without a fetch-state change, so it would not wake anything.
fn wake_fetchers(consumer: &KafkaConsumer, s: &IntakeSettings) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let to: Vec<(i32, Offset)> = positions
        .elements_for_topic(&s.topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o > 0 => Some((e.partition(), Offset::Offset(o))),
            _ => None,
        })
        .collect();
    seek(consumer, s, to, "seek after a resume");
}
