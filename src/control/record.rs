//! The stream-deployment resource as the seed API shapes it, and its persisted form.

use crate::config::{Delivery, StartFrom};
use crate::opinion::SubjectsConfig;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Kafka connection as the seed sends it. Unknown fields (`kafka_admin_url`, `api_key`, …)
/// are kept and echoed back redacted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    /// Bootstrap servers.
    pub kafka_brokers_sasl: Vec<String>,
    /// SASL user; with `password`, the connection is SASL_SSL (PLAIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SASL password. Never returned by the API, never printed; written only to the
    /// deployment's record on disk (mode 0600).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_password"
    )]
    pub password: Option<SecretString>,
    /// Everything else the client sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Writes a password in the persisted record (the API redacts it: see [`redact`]).
fn expose_password<S: serde::Serializer>(
    p: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(p.expose_secret()),
        None => s.serialize_none(),
    }
}

/// A topic reference (`source` or `target`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRef {
    /// Topic name.
    pub topic: String,
    /// Always `kafka`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The `input` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// Where to connect.
    pub connection: Connection,
    /// What to read.
    pub source: TopicRef,
}

/// The `output` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    /// Where to connect.
    pub connection: Connection,
    /// What to write.
    pub target: TopicRef,
}

/// Body of `POST …/deployments`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateRequest {
    /// Display name.
    pub name: String,
    /// Must be `stream`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Input topic and connection.
    pub input: Input,
    /// Output topic and connection.
    pub output: Output,
    /// Delivery guarantee (`at_least_once` when absent).
    #[serde(default)]
    pub delivery: Delivery,
    /// Where a new deployment starts reading (`earliest` when absent).
    #[serde(default)]
    pub start_from: StartFrom,
    /// Subjects to follow: name → keywords, hashtags or @mentions.
    #[serde(default)]
    pub subjects: SubjectsConfig,
    /// Topic for windowed opinion summaries (on the output cluster).
    #[serde(default)]
    pub summary_topic: Option<String>,
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Desired {
    /// Should be consuming.
    Running,
    /// Should be stopped.
    Stopped,
}

/// Where a deployment was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Created over HTTP (persisted in the state directory).
    Api,
    /// Declared in configuration (recreated from it at every start).
    Config,
}

/// A deployment as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Deployment id.
    pub guid: String,
    /// `instance_id` path segment it was created under.
    pub instance_id: String,
    /// Model context id (`published_model_id`).
    pub published_model_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Input.
    pub input: Input,
    /// Output.
    pub output: Output,
    /// Requested state.
    pub desired: Desired,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub modified_at: DateTime<Utc>,
    /// Where it was declared.
    pub origin: Origin,
    /// Delivery guarantee (`at_least_once` in records written before it existed).
    #[serde(default)]
    pub delivery: Delivery,
    /// Where it starts reading when its group has no committed offset.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Subjects it follows.
    #[serde(default, skip_serializing_if = "SubjectsConfig::is_empty")]
    pub subjects: SubjectsConfig,
    /// Summary topic, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_topic: Option<String>,
}

/// Field names whose values are never returned.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "api_key",
        "apikey",
        "secret",
        "token",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A connection as returned by the API: secrets replaced by `"********"`.
pub fn redact(c: &Connection) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for (k, val) in m.iter_mut() {
            if is_secret(k) {
                *val = Value::String("********".into());
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let c: Connection = serde_json::from_value(serde_json::json!({
            "kafka_brokers_sasl": ["a:9093"], "user": "u", "password": "p",
            "api_key": "k", "kafka_admin_url": "https://x"
        }))
        .unwrap();
        let v = redact(&c);
        assert_eq!(v["password"], "********");
        assert_eq!(v["api_key"], "********");
        assert_eq!(v["user"], "u");
        assert_eq!(v["kafka_admin_url"], "https://x");
        assert!(!v.to_string().contains("\"p\""));
    }
}
