//! One consumer of a deployment: fetch → micro-batch → score (blocking pool) → produce →
//! store delivered offsets.
//!
//! The loop owns everything it touches. Backpressure: it stops calling `recv` while a full
//! batch waits for the scorer or while too many records are in flight, and librdkafka's
//! prefetch queue is bounded (`queued.max.messages.kbytes`), so a slow output never grows
//! memory without bound.

use super::kafka::consumer_config;
use super::offsets::OffsetTracker;
use super::record::{score_batch, InRecord, OutRecord, ScoreContext, ServingModel};
use super::{RateLimitedLog, Stats, StreamError};
use crate::config::DeploymentConfig;
use crate::model::ModelHandle;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Everything one worker needs.
pub struct Worker {
    /// Worker number within the deployment (for logs and client ids).
    pub index: usize,
    /// The deployment's settings.
    pub config: Arc<DeploymentConfig>,
    /// Scoring context shared by the deployment's workers.
    pub score_ctx: Arc<ScoreContext>,
    /// The serving model; swapped atomically by the control plane.
    pub model: Arc<ModelHandle<ServingModel>>,
    /// The deployment's producer.
    pub producer: FutureProducer,
    /// Graceful stop: stop fetching, deliver what is in flight, commit.
    pub stop: CancellationToken,
    /// Hard stop: abandon in-flight records without storing their offsets.
    pub abort: CancellationToken,
    /// Deployment counters.
    pub stats: Arc<Stats>,
}

/// Consumer context: on revoke, commit what was stored and forget the revoked partitions.
struct RebalanceContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    topic: Arc<str>,
    label: String,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions_of(tpl, &self.topic);
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                debug!(worker = %self.label, error = %e, "commit on revoke");
            }
            lock(&self.tracker).revoke(revoked.iter().copied());
            info!(worker = %self.label, partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions_of(tpl, &self.topic);
            info!(worker = %self.label, partitions = ?assigned, "partitions assigned");
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

/// Locks the tracker; a poisoned lock (a panic elsewhere while holding it) still holds
/// consistent data, since every update is a single short call.
fn lock(m: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Runs until stopped (drains) or aborted (abandons).
    pub async fn run(self) -> Result<(), StreamError> {
        let cfg = &self.config;
        let label = format!("{}#{}", cfg.name, self.index);
        let topic: Arc<str> = cfg.input.topic.as_str().into();
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let context = RebalanceContext {
            tracker: tracker.clone(),
            topic: topic.clone(),
            label: label.clone(),
        };
        let consumer: StreamConsumer<RebalanceContext> =
            consumer_config(cfg, self.index).create_with_context(context)?;
        consumer.subscribe(&[&topic])?;
        info!(worker = %label, topic = %topic, group = %cfg.group_id(), "consumer started");

        let max_records = cfg.batch.max_records;
        let max_wait = Duration::from_millis(cfg.batch.max_wait_ms);
        let max_in_flight = max_records * 4;
        let mut batch: Vec<InRecord> = Vec::with_capacity(max_records);
        let mut deadline: Option<Instant> = None;
        let mut scoring: Option<JoinHandle<Vec<OutRecord>>> = None;
        let mut deliveries = FuturesUnordered::new();
        let mut to_store: HashMap<i32, i64> = HashMap::new();
        let mut stopping = false;
        let mut fetch_errors = RateLimitedLog::new(Duration::from_secs(5));

        loop {
            let now = Instant::now();
            let batch_ready = !batch.is_empty()
                && scoring.is_none()
                && (stopping || batch.len() >= max_records || deadline.is_some_and(|d| now >= d));
            if batch_ready {
                let records = std::mem::replace(&mut batch, Vec::with_capacity(max_records));
                deadline = None;
                let model = self.model.current();
                let ctx = self.score_ctx.clone();
                scoring = Some(tokio::task::spawn_blocking(move || {
                    score_batch(&model, &ctx, records)
                }));
                continue;
            }
            if stopping && batch.is_empty() && scoring.is_none() && deliveries.is_empty() {
                break;
            }
            let in_flight = lock(&tracker).in_flight();
            let can_receive = !stopping && batch.len() < max_records && in_flight < max_in_flight;
            let wake_at = deadline.unwrap_or_else(|| now + Duration::from_secs(3600));

            tokio::select! {
                biased;
                _ = self.abort.cancelled() => {
                    warn!(worker = %label, in_flight, "drain time is up: abandoning in-flight records uncommitted (they will be replayed)");
                    break;
                }
                _ = self.stop.cancelled(), if !stopping => {
                    info!(worker = %label, in_flight, "stopping: draining in-flight records");
                    stopping = true;
                }
                Some(done) = deliveries.next(), if !deliveries.is_empty() => {
                    let mut t = lock(&tracker);
                    let mut note = |d: Option<(i32, i64)>| {
                        if let Some((p, o)) = d {
                            if let Some(next) = t.delivered(p, o) {
                                to_store.insert(p, next);
                            }
                        }
                    };
                    note(done);
                    while let Some(Some(done)) = deliveries.next().now_or_never() {
                        note(done);
                    }
                    drop(t);
                    store_offsets(&consumer, &topic, &mut to_store, &label);
                }
                res = async { match scoring.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    scoring = None;
                    let outputs = res.map_err(|e| StreamError::Scoring(e.to_string()))?;
                    for out in outputs {
                        deliveries.push(deliver(self.producer.clone(), out, self.abort.clone(), self.stats.clone()));
                    }
                }
                _ = tokio::time::sleep_until(wake_at), if deadline.is_some() && scoring.is_none() => {}
                msg = consumer.recv(), if can_receive => match msg {
                    Ok(m) => {
                        lock(&tracker).consumed(m.partition(), m.offset());
                        self.stats.consumed(1);
                        batch.push(InRecord {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            payload: m.payload().map(<[u8]>::to_vec),
                            timestamp_ms: m.timestamp().to_millis(),
                        });
                        if batch.len() == 1 {
                            deadline = Some(Instant::now() + max_wait);
                        }
                    }
                    Err(e) => fetch_errors.log(|n| {
                        warn!(worker = %label, error = %e, repeated = n, "Kafka consumer error; retrying");
                    }),
                }
            }
        }

        store_offsets(&consumer, &topic, &mut to_store, &label);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => info!(worker = %label, "offsets committed"),
            Err(e) => debug!(worker = %label, error = %e, "final commit (nothing stored is fine)"),
        }
        consumer.unsubscribe();
        info!(worker = %label, "consumer stopped");
        Ok(())
    }
}

/// Stores the offsets of partitions whose delivered prefix moved. Storing for a partition no
/// longer owned fails harmlessly.
fn store_offsets(
    consumer: &StreamConsumer<RebalanceContext>,
    topic: &str,
    to_store: &mut HashMap<i32, i64>,
    label: &str,
) {
    if to_store.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(to_store.len());
    for (p, next) in to_store.drain() {
        if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Offset(next)) {
            error!(worker = %label, error = %e, "bad offset");
        }
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        debug!(worker = %label, error = %e, "offset store refused (partition no longer owned)");
    }
}

/// Produces one record, retrying until it is delivered or the worker is aborted. Resolves to
/// the source `(partition, offset)` once delivered, `None` when abandoned.
async fn deliver(
    producer: FutureProducer,
    rec: OutRecord,
    abort: CancellationToken,
    stats: Arc<Stats>,
) -> Option<(i32, i64)> {
    static FAILURES: std::sync::OnceLock<Mutex<RateLimitedLog>> = std::sync::OnceLock::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut fr = FutureRecord::to(&rec.topic)
            .payload(&rec.value)
            .headers(rec.headers.clone());
        if let Some(k) = rec.key.as_deref() {
            fr = fr.key(k);
        }
        let result = tokio::select! {
            r = producer.send(fr, Timeout::Never) => r,
            _ = abort.cancelled() => return None,
        };
        match result {
            Ok(_) => {
                stats.delivered(rec.dead_letter.is_some());
                return Some((rec.partition, rec.offset));
            }
            Err((e, _)) => {
                stats.retried();
                let log = FAILURES
                    .get_or_init(|| Mutex::new(RateLimitedLog::new(Duration::from_secs(5))));
                log.lock().unwrap_or_else(|p| p.into_inner()).log(|n| {
                    warn!(topic = %rec.topic, error = %e, repeated = n, "delivery failed; retrying (offset not committed)");
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = abort.cancelled() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
