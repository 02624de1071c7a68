//! A streaming deployment as declared in configuration.

use super::KafkaTable;
use crate::input::InputFormat;
use crate::opinion::{Subjects, SubjectsConfig, SummaryConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One streaming deployment: where tweets come from, which model labels them, where the labels go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Unique name; also names the default consumer group (`streamscore-<name>`).
    pub name: String,
    /// Model file; the embedded shipped model when absent.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Model-store context id: models uploaded under it (`PUT /pm/v1/model/{context_id}`)
    /// hot-swap into this deployment, and its newest stored version is served at start when
    /// there is one (else `model`).
    #[serde(default)]
    pub context_id: Option<String>,
    /// Input topic and how to read its records.
    pub input: InputConfig,
    /// Output and dead-letter topics.
    pub output: OutputConfig,
    /// Consumer group id (default `streamscore-<name>`). Instances sharing it share partitions.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Consumers in this process, all in the same group.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Micro-batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Extra librdkafka settings for both consumer and producer (e.g. `"session.timeout.ms"`).
    #[serde(default)]
    pub kafka: KafkaTable,
    /// Delivery guarantee: `at_least_once` (default) or `exactly_once` (Kafka transactions).
    #[serde(default)]
    pub delivery: Delivery,
    /// Where a consumer group without committed offsets starts reading.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Offset commit cadence.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Report the deployment STALLED when nothing was delivered for this long while records
    /// wait (milliseconds).
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Subjects to follow: name → keywords, hashtags or @mentions (see [`crate::opinion`]).
    #[serde(default)]
    pub subjects: SubjectsConfig,
    /// Windowed opinion summaries (window length, lateness, history, summary topic).
    #[serde(default)]
    pub summary: SummaryConfig,
}

/// Delivery guarantee of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets committed after delivery; a crash replays (bounded) duplicates, loses nothing.
    #[default]
    AtLeastOnce,
    /// Outputs and input offsets committed in one Kafka transaction; `read_committed` readers
    /// see each output once.
    ExactlyOnce,
}

/// Where a deployment whose consumer group has no committed offset starts reading. Once the
/// group has committed, it always resumes from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// From the oldest record the topic still holds: nothing already in it is skipped.
    #[default]
    Earliest,
    /// From records produced after the group first gets its partitions.
    Latest,
}

impl StartFrom {
    /// librdkafka's `auto.offset.reset` value.
    pub fn offset_reset(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// When delivered input offsets are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// At-least-once: commit stored offsets this often (milliseconds).
    #[serde(default = "default_commit_interval_ms")]
    pub interval_ms: u64,
    /// At-least-once: commit at once after this many records were delivered (per worker), so
    /// a catch-up burst replays at most this many after a crash.
    #[serde(default = "default_commit_max_records")]
    pub max_records: u64,
    /// Exactly-once: commit a transaction this long after it opened (milliseconds).
    #[serde(default = "default_transaction_interval_ms")]
    pub transaction_interval_ms: u64,
    /// Exactly-once: commit a transaction once it holds this many records (per worker).
    #[serde(default = "default_transaction_max_records")]
    pub transaction_max_records: u64,
}

const fn default_commit_interval_ms() -> u64 {
    200
}

const fn default_commit_max_records() -> u64 {
    20_000
}

const fn default_transaction_interval_ms() -> u64 {
    1000
}

/// Each commit costs a broker round trip or three while the worker's scorer waits (about
/// 70 ms on tansu): on the pipeline bench, 10,000 records a transaction scored at 0.50× the
/// at-least-once rate, 100,000 at 0.92×.
const fn default_transaction_max_records() -> u64 {
    100_000
}

const fn default_stall_timeout_ms() -> u64 {
    DeploymentConfig::DEFAULT_STALL_TIMEOUT_MS
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            interval_ms: default_commit_interval_ms(),
            max_records: default_commit_max_records(),
            transaction_interval_ms: default_transaction_interval_ms(),
            transaction_max_records: default_transaction_max_records(),
        }
    }
}

const fn default_workers() -> usize {
    1
}

/// Where input records come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Kafka bootstrap servers, comma-separated `host:port` (default `127.0.0.1:9092`).
    #[serde(default = "default_bootstrap_servers")]
    pub bootstrap_servers: String,
    /// Topic to read.
    pub topic: String,
    /// `json` (object with the text), `text` (the value is the text) or `auto`.
    #[serde(default = "default_format")]
    pub format: InputFormat,
    /// JSON field holding the text.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// Largest record value accepted; larger ones go to the dead-letter topic.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// librdkafka settings for the consumers only (e.g. the input cluster's credentials).
    #[serde(default)]
    pub kafka: KafkaTable,
}

/// The bootstrap servers when none are given: a broker on this host.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

fn default_bootstrap_servers() -> String {
    DEFAULT_BOOTSTRAP_SERVERS.into()
}

fn default_format() -> InputFormat {
    InputFormat::Json
}

fn default_text_field() -> String {
    "text".into()
}

const fn default_max_record_bytes() -> usize {
    512 * 1024
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Topic for labeled records.
    pub topic: String,
    /// Topic for records that cannot be scored (default `<topic>.dlq`).
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Bootstrap servers of the output cluster (default: the input's).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Largest record produced (key, value and headers), in bytes; longer dead letters are cut
    /// to fit, with the original size and SHA-256 in headers. Match the brokers' limit.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// librdkafka settings for the producer only (e.g. the output cluster's credentials).
    #[serde(default)]
    pub kafka: KafkaTable,
}

const fn default_max_message_bytes() -> usize {
    OutputConfig::DEFAULT_MAX_MESSAGE_BYTES
}

impl OutputConfig {
    /// librdkafka's and Kafka's own default message size limit.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;
}

/// Micro-batching: a batch closes at `max_records` or `max_wait_ms` after its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one batch.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Longest a batch waits for more records after its first, in milliseconds.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Most records in flight (consumed, not yet delivered) per worker; past it, reading
    /// pauses.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Threads that parse, score and encode a worker's batches. With 1 the worker's scoring
    /// thread does it between sends; with more, that many encode batches at once while the
    /// scoring thread sends their records in order.
    #[serde(default = "default_scoring_threads")]
    pub scoring_threads: usize,
}

const fn default_scoring_threads() -> usize {
    2
}

/// Most encoding threads a worker may have.
pub const MAX_SCORING_THREADS: usize = 64;

const fn default_max_in_flight() -> usize {
    20_000
}

const fn default_max_records() -> usize {
    512
}

const fn default_max_wait_ms() -> u64 {
    20
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            max_wait_ms: default_max_wait_ms(),
            max_in_flight: default_max_in_flight(),
            scoring_threads: default_scoring_threads(),
        }
    }
}

/// librdkafka settings streamscore manages itself, refused in every `kafka` table: the
/// delivery guarantee rests on them. The reason names the setting to use instead, if any.
pub const MANAGED_KAFKA_KEYS: &[(&str, &str)] = &[
    (
        "enable.auto.offset.store",
        "offsets are stored only once delivered",
    ),
    ("enable.auto.commit", "set by `delivery`"),
    ("auto.commit.interval.ms", "use commit.interval_ms"),
    ("group.id", "use group_id"),
    (
        "bootstrap.servers",
        "use input.bootstrap_servers / output.bootstrap_servers",
    ),
    ("enable.idempotence", "the producer is always idempotent"),
    ("acks", "the producer always waits for all replicas"),
    (
        "request.required.acks",
        "the producer always waits for all replicas",
    ),
    ("transactional.id", "set by `delivery = \"exactly_once\"`"),
    ("isolation.level", "inputs are read committed"),
    ("auto.offset.reset", "use start_from"),
    ("message.max.bytes", "use output.max_message_bytes"),
];

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    /// The key, relative to the deployment (e.g. `input.topic`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidSetting {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Refuses managed librdkafka keys in a pass-through table named `table`.
pub fn check_kafka_table(table: &str, kafka: &KafkaTable) -> Result<(), InvalidSetting> {
    for k in kafka.keys() {
        if let Some((_, why)) = MANAGED_KAFKA_KEYS.iter().find(|(m, _)| m == k) {
            return Err(InvalidSetting::new(
                format!("{table}.\"{k}\""),
                format!("is managed by streamscore and cannot be overridden ({why})"),
            ));
        }
    }
    Ok(())
}

impl BatchConfig {
    /// Checks the batching limits; keys are relative to `batch`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(1..=100_000).contains(&self.max_records) {
            return Err(InvalidSetting::new(
                "batch.max_records",
                "must be between 1 and 100000",
            ));
        }
        if self.max_wait_ms > 60_000 {
            return Err(InvalidSetting::new(
                "batch.max_wait_ms",
                "must be at most 60000",
            ));
        }
        if self.max_in_flight < self.max_records || self.max_in_flight > 1_000_000 {
            return Err(InvalidSetting::new(
                "batch.max_in_flight",
                "must be at least batch.max_records and at most 1000000",
            ));
        }
        if !(1..=MAX_SCORING_THREADS).contains(&self.scoring_threads) {
            return Err(InvalidSetting::new(
                "batch.scoring_threads",
                format!("must be between 1 and {MAX_SCORING_THREADS}"),
            ));
        }
        Ok(())
    }
}

impl DeploymentConfig {
    /// Default of `stall_timeout_ms`.
    pub const DEFAULT_STALL_TIMEOUT_MS: u64 = 60_000;

    /// The consumer group id.
    pub fn group_id(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("streamscore-{}", self.name))
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.output
            .dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.output.topic))
    }

    /// Output bootstrap servers.
    pub fn output_servers(&self) -> &str {
        self.output
            .bootstrap_servers
            .as_deref()
            .unwrap_or(&self.input.bootstrap_servers)
    }

    /// Checks values serde cannot; the error names the first bad key, relative to the
    /// deployment (e.g. `input.topic`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |k: &str, r: &str| Err(InvalidSetting::new(k, r));
        if self.name.trim().is_empty() {
            return bad("name", "must not be empty");
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("name", "may only hold letters, digits, '-', '_' and '.'");
        }
        if let Some(ctx) = &self.context_id {
            if let Err(e) = crate::store::validate_context_id(ctx) {
                return Err(InvalidSetting::new("context_id", e.to_string()));
            }
        }
        if self.input.bootstrap_servers.trim().is_empty() {
            return bad("input.bootstrap_servers", "must not be empty");
        }
        if self.input.topic.trim().is_empty() {
            return bad("input.topic", "must not be empty");
        }
        if self.output.topic.trim().is_empty() {
            return bad("output.topic", "must not be empty");
        }
        if self.output.topic == self.input.topic {
            return bad("output.topic", "must differ from input.topic");
        }
        let dlq = self.dlq_topic();
        if dlq.trim().is_empty() || dlq == self.output.topic || dlq == self.input.topic {
            return bad(
                "output.dlq_topic",
                "must be non-empty and differ from the input and output topics",
            );
        }
        if !(1..=64).contains(&self.workers) {
            return bad("workers", "must be between 1 and 64");
        }
        self.batch.validate()?;
        if !(1..=64 * 1024 * 1024).contains(&self.input.max_record_bytes) {
            return bad("input.max_record_bytes", "must be between 1 and 67108864");
        }
        if !(16 * 1024..=1_000_000_000).contains(&self.output.max_message_bytes) {
            return bad(
                "output.max_message_bytes",
                "must be between 16384 and 1000000000",
            );
        }
        if !(10..=60_000).contains(&self.commit.interval_ms) {
            return bad("commit.interval_ms", "must be between 10 and 60000");
        }
        if !(1..=10_000_000).contains(&self.commit.max_records) {
            return bad("commit.max_records", "must be between 1 and 10000000");
        }
        if !(10..=600_000).contains(&self.commit.transaction_interval_ms) {
            return bad(
                "commit.transaction_interval_ms",
                "must be between 10 and 600000",
            );
        }
        if !(1..=10_000_000).contains(&self.commit.transaction_max_records) {
            return bad(
                "commit.transaction_max_records",
                "must be between 1 and 10000000",
            );
        }
        if !(1_000..=86_400_000).contains(&self.stall_timeout_ms) {
            return bad("stall_timeout_ms", "must be between 1000 and 86400000");
        }
        if let Err(e) = Subjects::compile(&self.subjects) {
            return Err(InvalidSetting::new("subjects", e.to_string()));
        }
        if let Err((key, why)) = self.summary.validate() {
            return Err(InvalidSetting::new(format!("summary.{key}"), why));
        }
        if let Some(t) = &self.summary.topic {
            if [&self.input.topic, &self.output.topic, &dlq].contains(&t) {
                return bad(
                    "summary.topic",
                    "must differ from the input, output and dead-letter topics",
                );
            }
        }
        check_kafka_table("kafka", &self.kafka)?;
        check_kafka_table("input.kafka", &self.input.kafka)?;
        check_kafka_table("output.kafka", &self.output.kafka)?;
        Ok(())
    }
}
