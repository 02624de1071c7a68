//! The data plane: a deployment's consumer pool, micro-batcher, scorer and producer.
//!
//! ```text
//! input topic ─► worker × N (consumer, batcher) ─► score_batch (blocking pool) ─► producer
//!                      ▲                                                            │
//!                      └──────── store offset when delivered (tracker) ◄────────────┘
//! ```
//!
//! Each worker is one consumer in the deployment's group; partitions spread across workers and
//! across processes. See [`worker`] for the loop and [`offsets`] for the at-least-once rule.

pub mod kafka;
pub mod offsets;
pub mod record;
mod stats;
pub mod worker;

pub use record::{InRecord, OutRecord, ScoreContext, ServingModel};
pub use stats::{Stats, StatsSnapshot};

use crate::config::DeploymentConfig;
use crate::input::InputSpec;
use crate::model::ModelHandle;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use worker::Worker;

/// Why a deployment stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A Kafka client could not be created or subscribed.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The scoring task failed (a bug: scoring must not panic).
    #[error("scoring task failed: {0}")]
    Scoring(String),
}

/// Handles to stop a running deployment.
#[derive(Debug, Clone, Default)]
pub struct StopHandles {
    /// Graceful: stop fetching, drain, commit, leave the group.
    pub stop: CancellationToken,
    /// Hard: abandon in-flight records uncommitted.
    pub abort: CancellationToken,
}

/// Runs one deployment until stopped: `workers` consumers sharing one producer.
pub async fn run_deployment(
    config: Arc<DeploymentConfig>,
    deployment_id: &str,
    model: Arc<ModelHandle<ServingModel>>,
    handles: StopHandles,
    stats: Arc<Stats>,
) -> Result<(), StreamError> {
    let producer: FutureProducer = kafka::producer_config(&config).create()?;
    let score_ctx = Arc::new(ScoreContext {
        deployment: deployment_id.into(),
        input_topic: config.input.topic.as_str().into(),
        output_topic: config.output.topic.as_str().into(),
        dlq_topic: config.dlq_topic().into(),
        input: InputSpec {
            format: config.input.format,
            text_field: config.input.text_field.clone(),
            max_bytes: config.input.max_record_bytes,
        },
    });
    let mut set = JoinSet::new();
    for index in 0..config.workers {
        let w = Worker {
            index,
            config: config.clone(),
            score_ctx: score_ctx.clone(),
            model: model.clone(),
            producer: producer.clone(),
            stop: handles.stop.clone(),
            abort: handles.abort.clone(),
            stats: stats.clone(),
        };
        set.spawn(w.run());
    }
    let progress = tokio::spawn(progress_task(
        config.name.clone(),
        stats.clone(),
        handles.stop.clone(),
    ));
    let mut result = Ok(());
    while let Some(joined) = set.join_next().await {
        let r = joined
            .map_err(|e| StreamError::Scoring(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = r {
            error!(deployment = %config.name, error = %e, "worker failed; stopping the deployment");
            handles.stop.cancel();
            result = Err(e);
        }
    }
    progress.abort();
    // Everything delivered was awaited by the workers; flush anything still queued.
    let flushing = producer.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await;
    info!(deployment = %config.name, stats = ?stats.snapshot(), "deployment stopped");
    result
}

/// Logs the deployment's counters every 10 seconds while they move.
async fn progress_task(name: String, stats: Arc<Stats>, stop: CancellationToken) {
    let mut last = stats.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = stats.snapshot();
        if now != last {
            info!(deployment = %name, consumed = now.consumed, scored = now.scored,
                  dead_lettered = now.dead_lettered, delivery_retries = now.delivery_retries, "progress");
            last = now;
        }
    }
}

/// Logs an event at most once per interval, reporting how often it happened meanwhile.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// A limiter that logs at most once per `every`.
    pub fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Calls `emit` with the number of occurrences it stands for, or counts it silently.
    pub fn log(&mut self, emit: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|l| now.duration_since(l) >= self.every)
        {
            emit(self.suppressed + 1);
            self.suppressed = 0;
            self.last = Some(now);
        } else {
            self.suppressed += 1;
        }
    }
}
