//! `streamscore topics create|produce|read`: small Kafka tools for local setups, demos and
//! scripts. Every command first asks the brokers for metadata (bounded by `--timeout-ms`), so
//! a wrong address or a missing topic fails within seconds with a message naming it.

mod produce;
mod read;

use anyhow::Context;
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

/// Where the brokers are and how long to wait for them.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "STREAMSCORE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Longest wait for the brokers to answer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create topics; ones that already exist are left as they are.
    Create {
        #[command(flatten)]
        brokers: BrokerArgs,
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
    Produce(produce::ProduceArgs),
    /// Print a topic's records from the beginning of every partition (no consumer group), one
    /// line each, until `--max` records or `--idle-ms` without a new one.
    Read(read::ReadArgs),
}

/// Runs `topics`.
pub fn run(a: TopicsArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        TopicsCommand::Create {
            brokers,
            partitions,
            replication,
            topics,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(create(&brokers, partitions, replication, &topics))
        }
        TopicsCommand::Produce(a) => produce::run(&a),
        TopicsCommand::Read(a) => read::run(&a),
    }
}

/// The cluster's metadata, or an error naming the brokers that did not answer in time.
pub fn probe(b: &BrokerArgs, topic: Option<&str>) -> anyhow::Result<Metadata> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.brokers)
        .create()
        .with_context(|| format!("invalid broker list {:?}", b.brokers))?;
    consumer
        .fetch_metadata(topic, Duration::from_millis(b.timeout_ms))
        .with_context(|| {
            format!(
                "no answer from Kafka at {} within {} ms (is the broker running, and is the address right?)",
                b.brokers, b.timeout_ms
            )
        })
}

/// The partitions of `topic`, or an error saying it does not exist.
pub fn partitions(b: &BrokerArgs, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = probe(b, Some(topic))?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    match t {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => anyhow::bail!(
            "topic {topic:?} does not exist at {} (create it: streamscore topics create {topic})",
            b.brokers
        ),
    }
}

async fn create(
    b: &BrokerArgs,
    partitions: i32,
    replication: i32,
    topics: &[String],
) -> anyhow::Result<ExitCode> {
    probe(b, None)?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b.brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let wait = Duration::from_millis(b.timeout_ms.max(1000) * 4);
    let opts = AdminOptions::new()
        .operation_timeout(Some(wait))
        .request_timeout(Some(wait));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .with_context(|| format!("creating topics at {}", b.brokers))?;
    for r in results {
        match r {
            Ok(t) => println!("created {t}"),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => println!("exists  {t}"),
            Err((t, e)) => anyhow::bail!("creating topic {t} at {}: {e}", b.brokers),
        }
    }
    Ok(ExitCode::SUCCESS)
}
