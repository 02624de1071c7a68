//! `topics read`: a topic's records from the beginning of every partition, read by assigning
//! the partitions (no consumer group, so nothing waits for a group join).

use super::{partitions, BrokerArgs};
use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `topics read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to read.
    topic: String,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop after this long without a record.
    #[arg(long, default_value_t = 5000)]
    idle_ms: u64,
    /// Print each record as a JSON object with its partition, offset, key and headers (a
    /// dead letter's reason is in its headers), the value as text.
    #[arg(long)]
    headers: bool,
}

/// Runs `topics read`.
pub fn run(a: &ReadArgs) -> anyhow::Result<ExitCode> {
    let parts = partitions(&a.brokers, &a.topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers.brokers)
        // librdkafka needs a group id to create a consumer; with assign() it never joins.
        .set("group.id", "streamscore-topics-read")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        // End-of-partition events say the first fetches were answered (see below).
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(&a.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    let mut last = Instant::now();
    // Until the brokers first answer a fetch, the idle time also allows for connecting and
    // looking up offsets.
    let mut answered = false;
    let idle = |answered: bool| {
        Duration::from_millis(a.idle_ms + if answered { 0 } else { a.brokers.timeout_ms })
    };
    while a.max.is_none_or(|m| n < m) && last.elapsed() < idle(answered) {
        let msg = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => {
                answered = true;
                continue;
            }
            Some(m) => m.with_context(|| format!("reading {}", a.topic))?,
        };
        answered = true;
        last = Instant::now();
        let line = if a.headers {
            let mut v = serde_json::to_vec(&described(&msg))?;
            v.push(b'\n');
            v
        } else {
            let mut v = msg.payload().unwrap_or_default().to_vec();
            v.push(b'\n');
            v
        };
        match out.write_all(&line).and_then(|()| out.flush()) {
            Ok(()) => n += 1,
            // A closed pipe (`read | head`) is a normal way to stop.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("read {n} records from {}", a.topic);
    Ok(ExitCode::SUCCESS)
}

/// A record as JSON: partition, offset, timestamp, key, headers and value (bytes as lossy
/// UTF-8 text; a null value as null).
fn described(m: &BorrowedMessage<'_>) -> Value {
    let text = |b: Option<&[u8]>| b.map(|b| Value::String(String::from_utf8_lossy(b).into()));
    let mut headers = Map::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            headers.insert(h.key.to_owned(), text(h.value).unwrap_or(Value::Null));
        }
    }
    json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp_ms": m.timestamp().to_millis(),
        "key": text(m.key()),
        "headers": headers,
        "value": text(m.payload()),
    })
}
