//! `topics produce`: lines of a file (or stdin) as records, optionally paced and repeated.

use super::{partitions, BrokerArgs};
use anyhow::Context;
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Arguments of `topics produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to write.
    topic: String,
    /// Input file; stdin when absent.
    file: Option<PathBuf>,
    /// Records per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Start the file over at its end, forever (needs a file; stop with Ctrl-C or SIGTERM).
    #[arg(long = "loop", requires = "file")]
    repeat: bool,
}

/// Delivery outcomes: counted, and the first error kept.
#[derive(Default)]
struct Outcomes {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Outcomes {}

impl ProducerContext for Outcomes {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.delivered.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.clone());
            }
        }
    }
}

/// The key of a line: a JSON object's `id` (string or number).
fn key_of(line: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("id")?
    {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Runs `topics produce`.
pub fn run(a: &ProduceArgs) -> anyhow::Result<ExitCode> {
    partitions(&a.brokers, &a.topic)?;
    let producer: ThreadedProducer<Outcomes> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers.brokers)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create_with_context(Outcomes::default())
        .context("creating the Kafka producer")?;
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let reader: Box<dyn BufRead> = match &a.file {
            Some(p) => Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        };
        let before = sent;
        for line in reader.lines() {
            let line = line.context("reading the input")?;
            if line.trim().is_empty() {
                continue;
            }
            if a.rate > 0 {
                // Paced: record n leaves at n / rate seconds.
                let due = started + Duration::from_secs_f64(sent as f64 / a.rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            send(
                &producer,
                &a.topic,
                key_of(&line).as_deref(),
                line.as_bytes(),
            )?;
            sent += 1;
        }
        if !a.repeat || sent == before {
            break;
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the last deliveries")?;
    let o = producer.context();
    if let Some(e) = o
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        anyhow::bail!(
            "{} of {sent} records not delivered to {} at {}: {e}",
            o.failed.load(Relaxed),
            a.topic,
            a.brokers.brokers
        );
    }
    eprintln!(
        "produced {} records to {}",
        o.delivered.load(Relaxed),
        a.topic
    );
    Ok(ExitCode::SUCCESS)
}

/// Hands one record to librdkafka, waiting while its queue is full.
fn send(
    producer: &ThreadedProducer<Outcomes>,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
    rec.key = key;
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                std::thread::sleep(Duration::from_millis(5));
                rec = back;
            }
            Err((e, _)) => return Err(e).context(format!("producing to {topic}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn keys_come_from_a_json_id() {
        assert_eq!(
            key_of(r#"{"id": "a1", "text": "x"}"#).as_deref(),
            Some("a1")
        );
        assert_eq!(key_of(r#"{"id": 42}"#).as_deref(), Some("42"));
        assert_eq!(key_of(r#"{"text": "no id"}"#), None);
        assert_eq!(key_of("plain text"), None);
    }
}
