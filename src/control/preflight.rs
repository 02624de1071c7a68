//! Pre-flight checks before a deployment runs: the brokers answer and its topics exist.

use crate::config::DeploymentConfig;
use rdkafka::error::KafkaError;
use std::time::Duration;

/// Why a deployment cannot start yet. The message is its FAILED reason.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// librdkafka refused the client settings.
    #[error("invalid Kafka settings: {0}")]
    Settings(KafkaError),
    /// No broker answered a metadata request in time.
    #[error("brokers unreachable: {0}")]
    Unreachable(KafkaError),
    /// A topic the deployment reads or writes does not exist.
    #[error("topic {0:?} does not exist")]
    MissingTopic(String),
    /// The check itself could not run.
    #[error("pre-flight check failed: {0}")]
    Task(String),
}

/// Checks, before consuming, that the brokers answer and both topics exist.
pub(super) async fn preflight(config: &DeploymentConfig) -> Result<(), PreflightError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = crate::stream::kafka::consumer_config(config, 0);
    // A metadata probe only: without a group id it never touches the consumer group.
    c.remove("group.id");
    let input = config.input.topic.clone();
    // The output and dead-letter topics are checked only when they live on the input's
    // cluster.
    let same_cluster = config.output_servers() == config.input.bootstrap_servers;
    let outputs: Vec<String> = if same_cluster {
        vec![config.output.topic.clone(), config.dlq_topic()]
    } else {
        Vec::new()
    };
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), PreflightError> {
        let consumer: BaseConsumer = c.create().map_err(PreflightError::Settings)?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(PreflightError::Unreachable)?;
        for t in std::iter::once(&input).chain(&outputs) {
            let found = md
                .topics()
                .iter()
                .any(|m| m.name() == t.as_str() && !m.partitions().is_empty());
            if !found {
                return Err(PreflightError::MissingTopic(t.clone()));
            }
        }
        Ok(())
    })
    .await;
    outcome.map_err(|e| PreflightError::Task(e.to_string()))?
}
