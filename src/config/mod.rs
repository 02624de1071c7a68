//! Configuration: `config/default.toml` (compiled in), then a file given with `--config`, then
//! environment variables `STREAMSCORE__SECTION__KEY`, validated into typed settings.

mod deployment;

pub use deployment::{
    BatchConfig, DeploymentConfig, InputConfig, OutputConfig, MANAGED_KAFKA_KEYS,
};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use std::path::Path;

/// The documented defaults, compiled into the binary so it runs without the repository.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or a key is unknown or of the wrong type.
    #[error("configuration error: {0}")]
    Load(#[from] config::ConfigError),
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Logging.
    pub log: LogSettings,
    /// Shutdown behaviour.
    pub shutdown: ShutdownSettings,
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
        if self.shutdown.drain_timeout_ms == 0 || self.shutdown.drain_timeout_ms > 300_000 {
            return Err(ConfigError::Invalid {
                key: "shutdown.drain_timeout_ms".into(),
                reason: "must be between 1 and 300000".into(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in self.deployments.iter().enumerate() {
            d.validate().map_err(|(key, reason)| ConfigError::Invalid {
                key: format!("deployments[{i}].{key}"),
                reason,
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
