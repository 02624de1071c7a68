//! A streaming deployment as declared in configuration.

use crate::input::InputFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub kafka: BTreeMap<String, String>,
}

const fn default_workers() -> usize {
    1
}

/// Where input records come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Kafka bootstrap servers, comma-separated `host:port`.
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
    pub kafka: BTreeMap<String, String>,
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
    /// librdkafka settings for the producer only (e.g. the output cluster's credentials).
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
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
        }
    }
}

/// librdkafka settings streamscore manages itself; setting them would break delivery guarantees.
pub const MANAGED_KAFKA_KEYS: &[&str] = &[
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "bootstrap.servers",
    "enable.idempotence",
];

impl DeploymentConfig {
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

    /// Checks values serde cannot: returns `(key, reason)` for the first bad one, with `key`
    /// relative to the deployment (e.g. `input.topic`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: &str| Err((k.to_owned(), r.to_owned()));
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
        if !(1..=100_000).contains(&self.batch.max_records) {
            return bad("batch.max_records", "must be between 1 and 100000");
        }
        if self.batch.max_wait_ms > 60_000 {
            return bad("batch.max_wait_ms", "must be at most 60000");
        }
        if !(1..=64 * 1024 * 1024).contains(&self.input.max_record_bytes) {
            return bad("input.max_record_bytes", "must be between 1 and 67108864");
        }
        if let Some(k) = self
            .kafka
            .keys()
            .find(|k| MANAGED_KAFKA_KEYS.contains(&k.as_str()))
        {
            return Err((
                format!("kafka.\"{k}\""),
                "is managed by streamscore and cannot be overridden".into(),
            ));
        }
        Ok(())
    }
}
