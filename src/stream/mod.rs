//! The data plane: one deployment's workers, each a staged pipeline.
//!
//! ```text
//!             consumer thread                      scorer thread           librdkafka
//! input ──► consumer.rs ──► batcher.rs ══bounded══► scorer.rs ──► producer.rs ──► output/DLQ
//! topic     poll, pause,    max records,  channel    │  ▲ in order  send; delivery callback
//!           rebalances      max wait                 ▼  │          carries (partition, offset)
//!              ▲                             encode_pool.rs: batches parsed,      │
//!              │                             scored, encoded on N threads         │
//!              └── store + commit ◄── acker.rs (contiguous delivered) ◄──────────┘
//!                                     transactions.rs (exactly-once: offsets in the txn)
//! ```
//!
//! Follow one record: [`consumer`] polls it and copies it into the [`batcher`]'s batch; the
//! batch is registered with the [`acker`] and sent to the [`scorer`], which has it parsed,
//! scored and encoded ([`record`]) by its [`encode_pool`] (or by itself, with one scoring
//! thread) and hands the results to the [`producer`] in consumption order. The delivery callback marks it
//! delivered in the acker; the consumer stores each partition's contiguous delivered prefix and
//! commits it. A failed delivery rewinds the worker to its first undelivered record with a new
//! producer ([`acker::Fault`]). [`worker`] assembles one pipeline; `workers` of them share the
//! deployment's consumer group.

pub mod acker;
pub mod batcher;
pub mod consumer;
pub mod encode_pool;
pub mod kafka;
mod output;
pub mod producer;
pub mod record;
pub mod scorer;
pub mod start_gate;
mod stats;
pub mod transactions;
pub mod worker;

pub use record::{ScoreContext, ServingModel};
pub use stats::{now_ms, Stats, StatsSnapshot};

use crate::config::DeploymentConfig;
use crate::input::InputSpec;
use crate::model::ModelHandle;
use crate::opinion::summary::{self, SummaryWriter};
use crate::opinion::Opinion;
use rdkafka::error::KafkaError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use worker::Worker;

/// Why a deployment stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A Kafka client could not be created or subscribed.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The scoring thread failed (a bug: scoring must not panic).
    #[error("scoring failed: {0}")]
    Scoring(String),
    /// Records cannot be delivered without an operator (missing topic, authorization).
    #[error("{0}")]
    Delivery(String),
}

/// Handles to stop a running deployment.
#[derive(Debug, Clone, Default)]
pub struct StopHandles {
    /// Graceful: stop fetching, drain, commit, leave the group.
    pub stop: CancellationToken,
    /// Hard: abandon in-flight records uncommitted.
    pub abort: CancellationToken,
}

/// Runs one deployment until stopped: `workers` pipelines, each on its own threads.
pub async fn run_deployment(
    config: Arc<DeploymentConfig>,
    deployment_id: &str,
    model: Arc<ModelHandle<ServingModel>>,
    handles: StopHandles,
    stats: Arc<Stats>,
    opinion: Arc<Opinion>,
) -> Result<(), StreamError> {
    if opinion.restore_due() {
        let n = summary::restore(&config, deployment_id, &opinion)
            .await
            .map_err(|e| StreamError::Delivery(e.to_string()))?;
        if n > 0 {
            info!(deployment = %config.name, windows = n, "opinion windows restored from the summary topic");
        }
    }
    let mut writer = SummaryWriter::new(&config, deployment_id, opinion.clone())
        .map_err(|e| StreamError::Delivery(e.to_string()))?;
    let writer_stop = CancellationToken::new();
    let ws = writer_stop.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => writer.tick().await,
                _ = ws.cancelled() => return writer,
            }
        }
    });
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
        max_message_bytes: config.output.max_message_bytes,
        subjects: opinion.subjects().cloned(),
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(config.workers.max(1));
    let gate = Arc::new(start_gate::StartGate::new(
        config.workers,
        start_gate::FORM_WAIT,
    ));
    for index in 0..config.workers {
        let w = Worker {
            index,
            config: config.clone(),
            score_ctx: score_ctx.clone(),
            model: model.clone(),
            stop: handles.stop.clone(),
            abort: handles.abort.clone(),
            stats: stats.clone(),
            opinion: opinion.clone(),
            gate: gate.clone(),
        };
        let done = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ss-consume-{index}"))
            .spawn(move || {
                let _ = done.blocking_send(w.run());
            });
        if let Err(e) = spawned {
            let _ = done_tx
                .send(Err(StreamError::Scoring(format!(
                    "cannot start a worker: {e}"
                ))))
                .await;
        }
    }
    drop(done_tx);
    let progress = tokio::spawn(progress_task(
        config.name.clone(),
        stats.clone(),
        handles.stop.clone(),
    ));
    let mut result = Ok(());
    while let Some(r) = done_rx.recv().await {
        if let Err(e) = r {
            error!(deployment = %config.name, error = %e, "worker failed; stopping the deployment");
            handles.stop.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    progress.abort();
    writer_stop.cancel();
    if let Ok(writer) = writer.await {
        // Open windows are saved only when everything counted in them was committed.
        let clean = result.is_ok() && !handles.abort.is_cancelled();
        writer.finish(clean, Duration::from_secs(10)).await;
    }
    let s = stats.snapshot();
    info!(deployment = %config.name, consumed = s.consumed, scored = s.scored,
          dead_lettered = s.dead_lettered, delivery_retries = s.delivery_retries, "deployment stopped");
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
