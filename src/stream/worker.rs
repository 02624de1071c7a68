//! One worker of a deployment: a consumer thread and a scorer thread (with its encoding
//! threads) joined by a bounded channel, sharing an [`Acker`]. The deployment runs `workers`
//! of them in one consumer group.

use super::acker::Acker;
use super::consumer::{self, IntakeSettings, KafkaConsumer};
use super::kafka::{consumer_config, producer_config};
use super::record::{ScoreContext, ServingModel};
use super::scorer::{Scorer, Transactional};
use super::transactions::Cadence;
use super::{Stats, StreamError};
use crate::config::{Delivery, DeploymentConfig, StartFrom};
use crate::model::ModelHandle;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Longest a worker waits for its transactional producer before subscribing.
const PRODUCER_READY_WAIT: Duration = Duration::from_secs(30);

/// Longest a stopping worker waits for its consumer to leave the group.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Longest a stopping worker serves its unsubscribe's rebalance before closing.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// Batches that may wait for the scorer besides the one it scores: one prefetched batch, as
/// in text-embeddings-inference's batching queue, plus one so the consumer rarely waits.
const SCORER_QUEUE: usize = 2;

/// Everything one worker needs.
pub struct Worker {
    /// Worker number within the deployment (for logs, client ids and the stall mask).
    pub index: usize,
    /// The deployment's settings.
    pub config: Arc<DeploymentConfig>,
    /// Scoring context shared by the deployment's workers.
    pub score_ctx: Arc<ScoreContext>,
    /// The serving model; swapped atomically by the control plane.
    pub model: Arc<ModelHandle<ServingModel>>,
    /// Graceful stop: stop fetching, deliver what is in flight, commit.
    pub stop: CancellationToken,
    /// Hard stop: abandon in-flight records without committing them.
    pub abort: CancellationToken,
    /// Deployment counters.
    pub stats: Arc<Stats>,
    /// The deployment's opinion windows.
    pub opinion: Arc<crate::opinion::Opinion>,
    /// Shared by the deployment's workers: they start reading together.
    pub gate: Arc<super::start_gate::StartGate>,
}

impl Worker {
    /// Runs the worker on the calling thread until stopped, aborted or failed.
    pub fn run(self) -> Result<(), StreamError> {
        let cfg = &self.config;
        let label = format!("{}#{}", cfg.name, self.index);
        let transactional = cfg.delivery == Delivery::ExactlyOnce;
        let settings = IntakeSettings {
            label: label.clone(),
            index: self.index,
            topic: cfg.input.topic.as_str().into(),
            max_records: cfg.batch.max_records,
            max_wait: Duration::from_millis(cfg.batch.max_wait_ms),
            // A transaction's records stay in flight until it commits: room for a whole
            // transaction besides what awaits delivery.
            max_in_flight: if transactional {
                cfg.batch.max_in_flight + cfg.commit.transaction_max_records as usize
            } else {
                cfg.batch.max_in_flight
            },
            commit_interval: Duration::from_millis(cfg.commit.interval_ms),
            commit_max_records: cfg.commit.max_records,
            transactional,
            stall_timeout: Duration::from_millis(cfg.stall_timeout_ms),
            reset: match cfg.start_from {
                StartFrom::Earliest => Offset::Beginning,
                StartFrom::Latest => Offset::End,
            },
        };
        let acker = Arc::new(Acker::default());
        let (batches_tx, batches_rx) = crossbeam_channel::bounded(SCORER_QUEUE);
        let context = consumer::context(
            &settings,
            acker.clone(),
            batches_tx,
            self.stats.clone(),
            self.gate.clone(),
        );
        let consumer: Arc<KafkaConsumer> =
            Arc::new(consumer_config(cfg, self.index).create_with_context(context)?);
        info!(worker = %label, topic = %settings.topic, group = %cfg.group_id(), delivery = ?cfg.delivery, "consumer started");

        // A local abort, so a failed worker stops its own scorer at once.
        let abort = self.abort.child_token();
        let producer_ready = CancellationToken::new();
        let finished = CancellationToken::new();
        let scorer = Scorer {
            label: label.clone(),
            batches: batches_rx,
            model: self.model.clone(),
            ctx: self.score_ctx.clone(),
            acker: acker.clone(),
            stats: self.stats.clone(),
            producer_config: producer_config(cfg, self.index),
            transactional: transactional.then(|| Transactional {
                cadence: Cadence {
                    interval: Duration::from_millis(cfg.commit.transaction_interval_ms),
                    max_records: cfg.commit.transaction_max_records as usize,
                },
                group: consumer.clone(),
            }),
            abort: abort.clone(),
            finished: finished.clone(),
            producer_ready: producer_ready.clone(),
            opinion: self.opinion.clone(),
            scoring_threads: cfg.batch.scoring_threads,
        };
        let scorer = std::thread::Builder::new()
            .name(format!("ss-score-{}", self.index))
            .spawn(move || scorer.run())
            .map_err(|e| StreamError::Scoring(format!("cannot start the scorer thread: {e}")))?;
        // Exactly-once: read committed offsets only once this worker's transactional producer
        // is initialised, which completes or aborts what a crashed predecessor left open.
        if transactional {
            let deadline = std::time::Instant::now() + PRODUCER_READY_WAIT;
            while !producer_ready.is_cancelled() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        consumer.subscribe(&[&settings.topic])?;
        let result = consumer::run(
            &consumer,
            &settings,
            &acker,
            &self.stats,
            &self.stop,
            &abort,
        );
        if result.is_err() {
            abort.cancel();
        }
        finished.cancel();
        let scored = scorer
            .join()
            .unwrap_or_else(|_| Err(StreamError::Scoring("the scorer thread panicked".into())));
        close(consumer, &label);
        result.and(scored)
    }
}

/// Unsubscribes and serves the resulting rebalance (and any assignment still on its way)
/// until the consumer holds no partition, for at most [`LEAVE_WAIT`]. librdkafka 2.5 and
/// later can abort the process in `rd_kafka_cgrp_terminated` ("assert:
/// !rd_kafka_assignment_in_progress") when a consumer is closed while an assignment is in
/// progress (librdkafka issue #4792, open; seen once here when two workers stopped together:
/// the first one's leave started an assignment to the second as it closed). Messages polled
/// meanwhile are dropped unstored: they are read again by the partitions' next owner.
fn leave(consumer: &KafkaConsumer, label: &str) {
    consumer.unsubscribe();
    let deadline = std::time::Instant::now() + LEAVE_WAIT;
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let held = consumer.assignment().map_or(0, |a| a.count());
        if held == 0 {
            return;
        }
        if std::time::Instant::now() >= deadline {
            warn!(worker = %label, partitions = held, "stopping: the group has not taken this worker's partitions back yet; closing anyway");
            return;
        }
    }
}

/// Closes the consumer (it leaves the group), waiting at most [`CLOSE_WAIT`]. librdkafka's
/// close waits for the broker to answer the leave and any commit still in flight, with no
/// deadline of its own (a CI run saw one never answered); past the wait the close goes on
/// on a detached thread, so a stop never hangs on the broker. Offsets were committed before.
fn close(consumer: Arc<KafkaConsumer>, label: &str) {
    leave(&consumer, label);
    let (closed_tx, closed_rx) = std::sync::mpsc::sync_channel(1);
    // If the thread cannot start, the closure (and the consumer) drops here: a blocking close.
    let _ = std::thread::Builder::new()
        .name("ss-close".into())
        .spawn(move || {
            // Dropping the last handle closes the consumer.
            drop(consumer);
            let _ = closed_tx.send(());
        });
    match closed_rx.recv_timeout(CLOSE_WAIT) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            warn!(worker = %label, wait_ms = CLOSE_WAIT.as_millis() as u64, "consumer stopped; the broker has not confirmed its leave yet (closing in the background; the group's session timeout removes it at the latest)")
        }
        _ => info!(worker = %label, "consumer stopped"),
    }
}
