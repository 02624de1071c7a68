//! The summary topic: one JSON record per closed window and subject, keyed
//! `<deployment>/<subject>/<window start ms>`, written at least once; read back when a
//! deployment first starts in a process so a replay never counts an emitted window twice.
//!
//! At a clean stop (everything consumed was delivered and committed) the open windows are
//! written too, with `"closed": false`; the next start seeds its open windows from them, so a
//! restart splits no window. After a crash (`kill -9`) the open windows' counts for records
//! already committed are lost: the windows emitted after it may *undercount* by up to the
//! records of one window plus the lateness, and are never doubled.

use super::{Opinion, WindowSummary};
use crate::config::DeploymentConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Longest the summary topic is read at start.
pub const RESTORE_DEADLINE: Duration = Duration::from_secs(30);
/// Most closed windows waiting for the summary topic while it cannot be written; older ones
/// are dropped (and logged) past it.
pub const MAX_PENDING: usize = 10_000;
/// Largest summary record read back (larger ones are not ours).
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Summary topic I/O failed.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// A Kafka client could not be created or used.
    #[error("summary topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The reading thread failed.
    #[error("summary topic: reading failed: {0}")]
    Task(String),
}

/// A summary record's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// Deployment id.
    pub deployment: String,
    /// The window.
    #[serde(flatten)]
    pub window: WindowSummary,
}

/// The record key of a window: `<deployment>/<subject>/<start ms>`.
pub fn key(deployment: &str, w: &WindowSummary) -> String {
    format!("{deployment}/{}/{}", w.subject, w.start_ms)
}

/// Client settings for the summary topic (on the output cluster).
fn client_config(d: &DeploymentConfig) -> ClientConfig {
    let mut c = crate::stream::kafka::producer_config(d, 0);
    c.remove("transactional.id");
    c.remove("transaction.timeout.ms");
    c.set("client.id", format!("streamscore-{}-summary", d.name));
    c
}

/// Reads this deployment's windows back from the summary topic (bounded by
/// [`RESTORE_DEADLINE`]; windows older than the history are skipped) into `opinion`.
pub async fn restore(
    d: &DeploymentConfig,
    deployment: &str,
    opinion: &Opinion,
) -> Result<usize, SummaryError> {
    let Some(topic) = d.summary.topic.clone() else {
        return Ok(0);
    };
    let mut c = client_config(d);
    for k in [
        "linger.ms",
        "message.timeout.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "enable.idempotence",
        "acks",
    ] {
        c.remove(k);
    }
    c.set("enable.partition.eof", "true")
        .set(
            "group.id",
            format!("streamscore-{deployment}-summary-reader"),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let prefix = format!("{deployment}/");
    let oldest = crate::stream::now_ms() - opinion.config().history_ms as i64;
    let saved = tokio::task::spawn_blocking(move || read_topic(c, &topic, &prefix, oldest))
        .await
        .map_err(|e| SummaryError::Task(e.to_string()))??;
    let n = saved.len();
    opinion.restore(saved);
    Ok(n)
}

fn read_topic(
    c: ClientConfig,
    topic: &str,
    prefix: &str,
    oldest: i64,
) -> Result<Vec<WindowSummary>, SummaryError> {
    let consumer: BaseConsumer<Reader> = c.create_with_context(Reader)?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    let partitions = tpl.count();
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + RESTORE_DEADLINE;
    let mut at_end = std::collections::HashSet::new();
    let mut latest: HashMap<(String, i64), WindowSummary> = HashMap::new();
    while at_end.len() < partitions && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        at_end.remove(&msg.partition());
        let ours = msg.key().is_some_and(|k| k.starts_with(prefix.as_bytes()));
        let Some(value) = msg
            .payload()
            .filter(|v| ours && v.len() <= MAX_RECORD_BYTES)
        else {
            continue;
        };
        if let Ok(r) = serde_json::from_slice::<SummaryRecord>(value) {
            if r.window.start_ms >= oldest {
                latest.insert((r.window.subject.clone(), r.window.start_ms), r.window);
            }
        }
    }
    if at_end.len() < partitions {
        warn!(
            topic,
            "summary topic not read to its end within the deadline"
        );
    }
    let mut v: Vec<WindowSummary> = latest.into_values().collect();
    v.sort_by_key(|w| w.start_ms);
    Ok(v)
}

/// The restore consumer's context: reaching a partition's end is expected, not an error.
struct Reader;

impl rdkafka::ClientContext for Reader {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_))
            && !reason.contains("PartitionEOF")
        {
            warn!(%error, reason, "summary topic reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Reader {}

/// Writes closed windows to the summary topic, at least once, in closing order.
pub struct SummaryWriter {
    deployment: String,
    topic: Option<String>,
    producer: Option<FutureProducer>,
    pending: VecDeque<WindowSummary>,
    opinion: Arc<Opinion>,
    backoff: Duration,
    next_try: Instant,
}

impl SummaryWriter {
    /// A writer for `deployment`; without a summary topic it only closes windows.
    pub fn new(
        d: &DeploymentConfig,
        deployment: &str,
        opinion: Arc<Opinion>,
    ) -> Result<SummaryWriter, SummaryError> {
        let producer = match &d.summary.topic {
            Some(_) => Some(client_config(d).create()?),
            None => None,
        };
        Ok(SummaryWriter {
            deployment: deployment.to_owned(),
            topic: d.summary.topic.clone(),
            producer,
            pending: VecDeque::new(),
            opinion,
            backoff: Duration::from_secs(1),
            next_try: Instant::now(),
        })
    }

    /// Closes the windows that are due and writes what is waiting (one pass).
    pub async fn tick(&mut self) {
        let closed = self.opinion.close_due(crate::stream::now_ms());
        self.queue(closed);
        self.write_pending().await;
    }

    fn queue(&mut self, windows: Vec<WindowSummary>) {
        if self.producer.is_none() {
            return;
        }
        self.pending.extend(windows);
        let excess = self.pending.len().saturating_sub(MAX_PENDING);
        if excess > 0 {
            warn!(deployment = %self.deployment, dropped = excess,
                  "summary topic unwritable for long: oldest closed windows dropped");
            self.pending.drain(..excess);
        }
    }

    async fn write_pending(&mut self) {
        let (Some(p), Some(topic)) = (&self.producer, &self.topic) else {
            return;
        };
        if self.pending.is_empty() || Instant::now() < self.next_try {
            return;
        }
        while let Some(w) = self.pending.front() {
            let value = serde_json::to_vec(&SummaryRecord {
                deployment: self.deployment.clone(),
                window: w.clone(),
            })
            .unwrap_or_default();
            let k = key(&self.deployment, w);
            let sent = p
                .send(
                    FutureRecord::to(topic).key(&k).payload(&value),
                    Duration::from_secs(5),
                )
                .await;
            match sent {
                Ok(_) => {
                    self.pending.pop_front();
                    self.backoff = Duration::from_secs(1);
                }
                Err((e, _)) => {
                    warn!(deployment = %self.deployment, error = %e, retry_in_s = self.backoff.as_secs(),
                          "summary record not delivered; retrying");
                    self.next_try = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                    return;
                }
            }
        }
    }

    /// At a stop: writes what is waiting and, when the stop was clean, the open windows
    /// (`"closed": false`), within `within`.
    pub async fn finish(mut self, clean: bool, within: Duration) {
        if self.producer.is_none() {
            return;
        }
        if clean {
            let open = self.opinion.open_summaries();
            self.queue(open);
        }
        let deadline = Instant::now() + within;
        while !self.pending.is_empty() && Instant::now() < deadline {
            self.next_try = Instant::now();
            self.write_pending().await;
            if !self.pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if self.pending.is_empty() {
            info!(deployment = %self.deployment, "summary windows written");
        } else {
            warn!(deployment = %self.deployment, left = self.pending.len(),
                  "summary windows not written before the stop deadline");
        }
    }
}
