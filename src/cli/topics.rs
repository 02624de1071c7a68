//! `streamscore topics create`: create topics with the Kafka admin API.

use anyhow::Context;
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create topics; ones that already exist are left as they are.
    Create {
        /// Kafka bootstrap servers.
        #[arg(long, env = "STREAMSCORE_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Partitions per topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Produce each line of a file (or stdin) as one record; a JSON line's `id` becomes the key.
    Produce {
        /// Kafka bootstrap servers.
        #[arg(long, env = "STREAMSCORE_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Topic to write.
        topic: String,
        /// Input file; stdin when absent.
        file: Option<std::path::PathBuf>,
    },
    /// Print a topic's records from the beginning, one line each, until `--max` records or
    /// `--idle-ms` without a new one.
    Read {
        /// Kafka bootstrap servers.
        #[arg(long, env = "STREAMSCORE_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Topic to read.
        topic: String,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this long without a record.
        #[arg(long, default_value_t = 5000)]
        idle_ms: u64,
    },
}

/// Runs `topics`.
pub fn run(a: TopicsArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match a.command {
        TopicsCommand::Create {
            brokers,
            partitions,
            replication,
            topics,
        } => rt.block_on(create(&brokers, partitions, replication, &topics)),
        TopicsCommand::Produce {
            brokers,
            topic,
            file,
        } => rt.block_on(produce(&brokers, &topic, file)),
        TopicsCommand::Read {
            brokers,
            topic,
            max,
            idle_ms,
        } => rt.block_on(read(&brokers, &topic, max, idle_ms)),
    }
}

async fn produce(
    brokers: &str,
    topic: &str,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::io::BufRead;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .context("creating the Kafka producer")?;
    let reader: Box<dyn BufRead> = match &file {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut n = 0u64;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| match &v["id"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push_back(async move {
            let mut rec = FutureRecord::to(&topic).payload(&line);
            if let Some(k) = &key {
                rec = rec.key(k);
            }
            producer
                .send(rec, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
        });
        n += 1;
    }
    use futures::StreamExt;
    while let Some(r) = pending.next().await {
        r.context("delivering a record")?;
    }
    eprintln!("produced {n} records to {topic}");
    Ok(ExitCode::SUCCESS)
}

async fn read(
    brokers: &str,
    topic: &str,
    max: Option<u64>,
    idle_ms: u64,
) -> anyhow::Result<ExitCode> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("streamscore-read-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .context("creating the Kafka consumer")?;
    consumer.subscribe(&[topic])?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while max.is_none_or(|m| n < m) {
        let next = tokio::time::timeout(Duration::from_millis(idle_ms), consumer.recv()).await;
        let Ok(msg) = next else { break };
        let msg = msg?;
        let written = out
            .write_all(msg.payload().unwrap_or_default())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        match written {
            Ok(()) => n += 1,
            // A closed pipe (`read | head`) is a normal way to stop.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("read {n} records from {topic}");
    Ok(ExitCode::SUCCESS)
}

async fn create(
    brokers: &str,
    partitions: i32,
    replication: i32,
    topics: &[String],
) -> anyhow::Result<ExitCode> {
    {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .context("creating the Kafka admin client")?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .context("creating topics")?;
        for r in results {
            match r {
                Ok(t) => println!("created {t}"),
                Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => println!("exists  {t}"),
                Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
