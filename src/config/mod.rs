//! Configuration: `config/default.toml` (compiled in), then a file given with `--config`, then
//! environment variables `STREAMSCORE__SECTION__KEY`, validated into typed settings.

mod deployment;
mod kafka_table;

pub use deployment::{
    check_kafka_table, BatchConfig, CommitConfig, Delivery, DeploymentConfig, InputConfig,
    InvalidSetting, OutputConfig, StartFrom, MANAGED_KAFKA_KEYS,
};
pub use kafka_table::KafkaTable;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;
use std::path::Path;

/// The documented defaults, compiled into the binary so it runs without the repository.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or a key is unknown or of the wrong type.
    #[error("configuration error: {}", readable(.0))]
    Load(config::ConfigError),
    /// A value is out of range or inconsistent.
    #[error("configuration error: {key}: {reason}")]
    Invalid {
        /// The full key, e.g. `deployments[0].input.topic`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Validated settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Logging.
    pub log: LogSettings,
    /// Shutdown behaviour.
    pub shutdown: ShutdownSettings,
    /// HTTP API.
    pub http: HttpSettings,
    /// Where models and deployments are kept.
    pub state: StateSettings,
    /// Credentials.
    pub auth: AuthSettings,
    /// Control socket and defaults of API-created deployments.
    pub control: ControlPlaneSettings,
    /// Deployments declared in configuration.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Filter in `tracing` syntax, e.g. `info` or `streamscore=debug,rdkafka=warn`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Shutdown settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// Longest a drain may take before in-flight work is abandoned (uncommitted, so replayed).
    pub drain_timeout_ms: u64,
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on (`host:port`; port 0 picks a free one); empty disables the API.
    pub listen: String,
    /// Largest accepted model upload, in bytes.
    pub max_model_bytes: usize,
}

/// State directory settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Folder for uploaded models (`models/`) and deployments (`deployments/`).
    pub dir: std::path::PathBuf,
}

/// A list given either as a list or, from an environment variable, as one comma-separated string.
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
    })
}

/// Credentials. Secrets belong in the environment or in files, never in the repository; they
/// are held as [`SecretString`]s, which never print (`Debug` shows `[REDACTED]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Model-API access keys (`STREAMSCORE__AUTH__ACCESS_KEYS=k1,k2`).
    #[serde(deserialize_with = "secrets_list")]
    pub access_keys: Vec<SecretString>,
    /// File with more access keys, one per line.
    pub access_keys_file: Option<std::path::PathBuf>,
    /// Users allowed to get tokens: name → Argon2 PHC hash (`streamscore hash-password`).
    pub users: std::collections::BTreeMap<String, String>,
    /// Token signing key; empty draws a random one per process start.
    pub signing_key: SecretString,
    /// File holding the token signing key.
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Token lifetime in seconds.
    pub token_ttl_s: u64,
}

/// [`list_or_comma_separated`], each item a secret.
fn secrets_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    Ok(list_or_comma_separated(d)?
        .into_iter()
        .map(SecretString::from)
        .collect())
}

/// Control socket and defaults of deployments created over the API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSettings {
    /// Unix socket path; empty disables it.
    pub socket: std::path::PathBuf,
    /// Consumers per API-created deployment.
    pub workers: usize,
    /// Micro-batching of API-created deployments.
    pub batch: BatchConfig,
    /// Extra librdkafka settings of API-created deployments.
    pub kafka: KafkaTable,
    /// Offset commit cadence of API-created deployments.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Opinion windows of API-created deployments (their summary topic comes from the API).
    #[serde(default)]
    pub summary: crate::opinion::SummaryConfig,
    /// Most deployments in this process (declared and API-created together).
    pub max_deployments: usize,
    /// Longest deployment name, in characters.
    pub max_name_chars: usize,
    /// Longest deployment description, in characters.
    pub max_description_chars: usize,
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(e)
    }
}

/// The `config` crate's message with key paths made whole: it writes `deployments[0]input`
/// for `deployments[0].input`.
fn readable(e: &config::ConfigError) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('.');
        }
    }
    out
}

impl Settings {
    /// Loads defaults, then `file` (if any), then `STREAMSCORE__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(
            file,
            Environment::with_prefix("STREAMSCORE")
                .prefix_separator("__")
                .separator("__"),
        )
    }

    /// Like [`Settings::load`] with an explicit environment source (for tests).
    pub fn load_with_env(file: Option<&Path>, env: Environment) -> Result<Settings, ConfigError> {
        let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(f) = file {
            b = b.add_source(File::from(f).format(FileFormat::Toml).required(true));
        }
        let settings: Settings = b
            .add_source(env.try_parsing(true))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, hash) in &self.auth.users {
            if let Err(e) = argon2::PasswordHash::new(hash) {
                return Err(ConfigError::Invalid {
                    key: format!("auth.users.{name}"),
                    reason: format!(
                        "not an Argon2 PHC hash ({e}); make one with `streamscore hash-password`"
                    ),
                });
            }
        }
        if self.shutdown.drain_timeout_ms == 0 || self.shutdown.drain_timeout_ms > 300_000 {
            return Err(ConfigError::Invalid {
                key: "shutdown.drain_timeout_ms".into(),
                reason: "must be between 1 and 300000".into(),
            });
        }
        let invalid = |e: InvalidSetting| ConfigError::Invalid {
            key: format!("control.{}", e.key),
            reason: e.reason,
        };
        self.control.batch.validate().map_err(invalid)?;
        check_kafka_table("kafka", &self.control.kafka).map_err(invalid)?;
        if self.deployments.len() > self.control.max_deployments {
            return Err(ConfigError::Invalid {
                key: "deployments".into(),
                reason: format!(
                    "{} declared, more than control.max_deployments ({})",
                    self.deployments.len(),
                    self.control.max_deployments
                ),
            });
        }
        if !(1..=64).contains(&self.control.workers) {
            return Err(invalid(InvalidSetting {
                key: "workers".into(),
                reason: "must be between 1 and 64".into(),
            }));
        }
        if let Err((key, why)) = self.control.summary.validate() {
            return Err(invalid(InvalidSetting {
                key: format!("summary.{key}"),
                reason: why,
            }));
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            d.validate().map_err(|e| ConfigError::Invalid {
                key: format!("deployments[{i}].{}", e.key),
                reason: e.reason,
            })?;
            if !names.insert(d.name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: format!("deployments[{i}].name"),
                    reason: format!("duplicate deployment name {:?}", d.name),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
