//! Deployments created over the API: the request checked, and turned into the same
//! [`DeploymentConfig`] a config file gives (validated the same way).

use super::record::{self, CreateRequest, DeploymentRecord};
use super::{ControlError, Entry, Manager};
use crate::config::{DeploymentConfig, InputConfig, KafkaTable, OutputConfig};
use crate::input::InputFormat;
use crate::opinion::SummaryConfig;
use secrecy::ExposeSecret;

impl Manager {
    /// What the data plane runs for an entry.
    pub(super) fn deployment_config(&self, e: &Entry) -> DeploymentConfig {
        match &e.declared {
            Some(d) => d.clone(),
            None => self.api_deployment_config(&e.record),
        }
    }

    /// The data-plane settings of a deployment created over the API.
    pub(super) fn api_deployment_config(&self, r: &DeploymentRecord) -> DeploymentConfig {
        DeploymentConfig {
            name: r.guid.clone(),
            model: None,
            // Its model comes from the store under `published_model_id` (see `model_for`).
            context_id: None,
            input: InputConfig {
                bootstrap_servers: r.input.connection.kafka_brokers_sasl.join(","),
                topic: r.input.source.topic.clone(),
                format: InputFormat::Json,
                text_field: "text".into(),
                max_record_bytes: 512 * 1024,
                kafka: sasl(&r.input.connection),
            },
            output: OutputConfig {
                topic: r.output.target.topic.clone(),
                dlq_topic: None,
                bootstrap_servers: Some(r.output.connection.kafka_brokers_sasl.join(",")),
                max_message_bytes: OutputConfig::DEFAULT_MAX_MESSAGE_BYTES,
                kafka: sasl(&r.output.connection),
            },
            group_id: Some(format!("streamscore-{}", r.guid)),
            workers: self.settings.workers,
            batch: self.settings.batch,
            kafka: self.settings.kafka.clone(),
            delivery: r.delivery,
            start_from: r.start_from,
            commit: self.settings.commit,
            stall_timeout_ms: DeploymentConfig::DEFAULT_STALL_TIMEOUT_MS,
            subjects: r.subjects.clone(),
            summary: SummaryConfig {
                topic: r.summary_topic.clone(),
                ..self.settings.summary.clone()
            },
        }
    }
}

/// SASL_SSL + PLAIN settings when a connection carries a user and password, as in the seed.
pub(super) fn sasl(c: &record::Connection) -> KafkaTable {
    match (&c.user, &c.password) {
        (Some(u), Some(p)) if !u.is_empty() => KafkaTable::from_iter([
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("sasl.mechanisms".to_string(), "PLAIN".to_string()),
            ("sasl.username".to_string(), u.clone()),
            ("sasl.password".to_string(), p.expose_secret().to_owned()),
        ]),
        _ => KafkaTable::default(),
    }
}

pub(super) fn validate_create(r: &CreateRequest) -> Result<(), ControlError> {
    let bad = |m: &str| Err(ControlError::Invalid(m.to_owned()));
    if r.kind != "stream" {
        return bad("type must be \"stream\"");
    }
    if r.name.trim().is_empty() {
        return bad("name must not be empty");
    }
    for (what, c) in [
        ("input", &r.input.connection),
        ("output", &r.output.connection),
    ] {
        if c.kafka_brokers_sasl.is_empty()
            || c.kafka_brokers_sasl.iter().any(|b| b.trim().is_empty())
        {
            return Err(ControlError::Invalid(format!(
                "{what}.connection.kafka_brokers_sasl must list host:port brokers"
            )));
        }
        if c.user.is_some() != c.password.is_some() {
            return Err(ControlError::Invalid(format!(
                "{what}.connection needs both user and password, or neither"
            )));
        }
    }
    if r.input.source.kind != "kafka" || r.output.target.kind != "kafka" {
        return bad("input.source.type and output.target.type must be \"kafka\"");
    }
    if r.input.source.topic.trim().is_empty() || r.output.target.topic.trim().is_empty() {
        return bad("input.source.topic and output.target.topic must not be empty");
    }
    if r.input.source.topic == r.output.target.topic
        && r.input.connection.kafka_brokers_sasl == r.output.connection.kafka_brokers_sasl
    {
        return bad("output.target.topic must differ from input.source.topic");
    }
    Ok(())
}
