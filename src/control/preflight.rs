//! Pre-flight checks before a deployment runs: the brokers answer and its topics exist.

use crate::config::DeploymentConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::sync::Mutex;
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
    /// The brokers refused the SASL login (wrong user or password, or a mechanism they do
    /// not offer).
    #[error("SASL authentication failed: {0}")]
    Authentication(String),
    /// The TLS handshake failed (e.g. a certificate the client does not trust).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// A topic the deployment reads or writes does not exist.
    #[error("topic {0:?} does not exist")]
    MissingTopic(String),
    /// The input topic has more partitions than a deployment can track.
    #[error("input topic {topic:?} has {partitions} partitions; at most {max} are supported")]
    TooManyPartitions {
        /// The input topic.
        topic: String,
        /// Its partition count.
        partitions: usize,
        /// [`MAX_INPUT_PARTITIONS`](crate::stream::producer::MAX_INPUT_PARTITIONS).
        max: usize,
    },
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
        let mut v = vec![config.output.topic.clone(), config.dlq_topic()];
        v.extend(config.summary.topic.clone());
        v
    } else {
        Vec::new()
    };
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), PreflightError> {
        let consumer: BaseConsumer<Probe> = c
            .create_with_context(Probe::default())
            .map_err(PreflightError::Settings)?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|e| {
                // Its log lines and error events reach the context only when polled.
                let _ = consumer.poll(Duration::from_millis(50));
                consumer.context().explain(e)
            })?;
        // A topic the brokers do not know has no partitions.
        let partitions = |t: &str| {
            md.topics()
                .iter()
                .find(|m| m.name() == t)
                .map_or(0, |m| m.partitions().len())
        };
        for t in std::iter::once(&input).chain(&outputs) {
            if partitions(t) == 0 {
                return Err(PreflightError::MissingTopic(t.clone()));
            }
        }
        check_input_partitions(&input, partitions(&input))
    })
    .await;
    outcome.map_err(|e| PreflightError::Task(e.to_string()))?
}

/// Refuses an input topic whose partitions a delivery report could not tell apart.
fn check_input_partitions(topic: &str, partitions: usize) -> Result<(), PreflightError> {
    use crate::stream::producer::MAX_INPUT_PARTITIONS;
    if partitions > MAX_INPUT_PARTITIONS {
        return Err(PreflightError::TooManyPartitions {
            topic: topic.to_owned(),
            partitions,
            max: MAX_INPUT_PARTITIONS,
        });
    }
    Ok(())
}

/// Remembers the last authentication or TLS error librdkafka reported while probing, so a
/// failed probe says why instead of "transport failure".
#[derive(Default)]
struct Probe {
    refused: Mutex<Option<PreflightError>>,
}

impl Probe {
    fn explain(&self, e: KafkaError) -> PreflightError {
        let refused = self.refused.lock().ok().and_then(|mut r| r.take());
        refused.unwrap_or(PreflightError::Unreachable(e))
    }

    fn note(&self, refused: PreflightError) {
        if let Ok(mut r) = self.refused.lock() {
            *r = Some(refused);
        }
    }
}

impl ClientContext for Probe {
    // librdkafka reports a refused login or handshake as a log line (often with a transport
    // error code: tansu, for one, just closes the connection on a PLAIN login it refuses).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if message.contains("SASL") {
            self.note(PreflightError::Authentication(message.to_owned()));
        } else if message.contains("SSL handshake failed")
            || message.contains("certificate verify failed")
        {
            self.note(PreflightError::Tls(message.to_owned()));
        } else {
            tracing::debug!(?level, fac, message, "librdkafka (pre-flight)");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                self.note(PreflightError::Authentication(reason.to_owned()))
            }
            Some(RDKafkaErrorCode::SSL) => self.note(PreflightError::Tls(reason.to_owned())),
            _ => {}
        }
    }
}

impl ConsumerContext for Probe {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::producer::MAX_INPUT_PARTITIONS;

    #[test]
    fn an_input_topic_with_more_partitions_than_tracked_is_refused() {
        assert!(check_input_partitions("in", MAX_INPUT_PARTITIONS).is_ok());
        let e = check_input_partitions("in", MAX_INPUT_PARTITIONS + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input topic \"in\" has 32769 partitions; at most 32768 are supported"
        );
    }
}
