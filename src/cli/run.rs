//! `streamscore run`: the daemon.

use crate::config::{
    BatchConfig, CommitConfig, Delivery, DeploymentConfig, InputConfig, KafkaTable, LogFormat,
    OutputConfig, Settings, StartFrom,
};
use crate::input::InputFormat;
use crate::opinion::{SubjectsConfig, SummaryConfig};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Arguments of `run`. Flags describe one deployment for quick starts; `--config` can declare
/// any number.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML, same layout as config/default.toml).
    #[arg(long, env = "STREAMSCORE_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers for the flag-defined deployment.
    #[arg(long, env = "STREAMSCORE_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Input topic; giving it defines a deployment from these flags.
    #[arg(long, env = "STREAMSCORE_INPUT_TOPIC")]
    input_topic: Option<String>,
    /// Output topic of the flag-defined deployment.
    #[arg(long, env = "STREAMSCORE_OUTPUT_TOPIC")]
    output_topic: Option<String>,
    /// Dead-letter topic (default `<output>.dlq`).
    #[arg(long, env = "STREAMSCORE_DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// Consumer group (default `streamscore-<name>`).
    #[arg(long, env = "STREAMSCORE_GROUP")]
    group: Option<String>,
    /// Model file (default: the embedded shipped model).
    #[arg(long, env = "STREAMSCORE_MODEL")]
    model: Option<PathBuf>,
    /// Model-store context id whose uploads hot-swap the flag-defined deployment.
    #[arg(long)]
    context_id: Option<String>,
    /// Name of the flag-defined deployment.
    #[arg(long, env = "STREAMSCORE_NAME", default_value = "default")]
    name: String,
    /// Consumers in this process.
    #[arg(long, env = "STREAMSCORE_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Input record format.
    #[arg(long, value_enum, default_value_t = InputFormat::Json)]
    format: InputFormat,
    /// Batch size limit.
    #[arg(long, default_value_t = BatchConfig::default().max_records)]
    batch_max_records: usize,
    /// Batch wait limit in milliseconds.
    #[arg(long, default_value_t = BatchConfig::default().max_wait_ms)]
    batch_max_wait_ms: u64,
    /// Most records in flight per worker before reading pauses.
    #[arg(long, default_value_t = BatchConfig::default().max_in_flight)]
    max_in_flight: usize,
    /// Threads that parse, score and encode each worker's batches at once, while the worker's
    /// scoring thread sends them in order (1: that thread encodes too).
    #[arg(long, default_value_t = BatchConfig::default().scoring_threads)]
    scoring_threads: usize,
    /// Commit at once after this many delivered records per worker (bounds replays).
    #[arg(long, default_value_t = CommitConfig::default().max_records)]
    commit_max_records: u64,
    /// Exactly-once: commit a transaction once it holds this many records per worker.
    #[arg(long, default_value_t = CommitConfig::default().transaction_max_records)]
    transaction_max_records: u64,
    /// Largest record produced, in bytes (longer dead letters are cut to fit).
    #[arg(long, default_value_t = OutputConfig::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Report STALLED after this long without a delivery while records wait (milliseconds).
    #[arg(long, default_value_t = DeploymentConfig::DEFAULT_STALL_TIMEOUT_MS)]
    stall_timeout_ms: u64,
    /// Bootstrap servers of the output cluster (default: `--brokers`).
    #[arg(long, env = "STREAMSCORE_OUTPUT_BROKERS")]
    output_brokers: Option<String>,
    /// Delivery guarantee of the flag-defined deployment.
    #[arg(long, value_enum, default_value_t = Delivery::AtLeastOnce)]
    delivery: Delivery,
    /// Where the flag-defined deployment starts when its group has no committed offset.
    #[arg(long, value_enum, default_value_t = StartFrom::Earliest)]
    start_from: StartFrom,
    /// HTTP API address (overrides `http.listen`; port 0 picks a free port).
    #[arg(long, env = "STREAMSCORE_LISTEN")]
    listen: Option<String>,
    /// State directory (overrides `state.dir`).
    #[arg(long, env = "STREAMSCORE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Control socket path (overrides `control.socket`).
    #[arg(long, env = "STREAMSCORE_SOCKET")]
    socket: Option<PathBuf>,
    /// A subject to follow, `NAME=KEYWORD,KEYWORD,…` (repeatable; keywords may be #hashtags
    /// or @mentions).
    #[arg(long = "subject", value_name = "NAME=KEYWORDS")]
    subjects: Vec<String>,
    /// Topic for the windowed opinion summaries (one JSON record per closed window).
    #[arg(long)]
    summary_topic: Option<String>,
    /// Opinion window length in milliseconds.
    #[arg(long, default_value_t = SummaryConfig::default().window_ms)]
    summary_window_ms: u64,
    /// How late (milliseconds after a window's end) a record may still count in it.
    #[arg(long, default_value_t = SummaryConfig::default().allowed_lateness_ms)]
    summary_lateness_ms: u64,
    /// Extra librdkafka setting, `KEY=VALUE` (repeatable).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
}

impl RunArgs {
    /// The deployment the flags describe, if `--input-topic` was given.
    fn flag_deployment(&self) -> anyhow::Result<Option<DeploymentConfig>> {
        let Some(input) = &self.input_topic else {
            anyhow::ensure!(
                self.output_topic.is_none(),
                "--output-topic needs --input-topic"
            );
            return Ok(None);
        };
        let output = self
            .output_topic
            .clone()
            .context("--input-topic needs --output-topic")?;
        let mut kafka = KafkaTable::default();
        for kv in &self.kafka {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--kafka {kv:?}: expected KEY=VALUE"))?;
            kafka.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let mut subjects = SubjectsConfig::new();
        for kv in &self.subjects {
            let (name, keywords) = kv
                .split_once('=')
                .with_context(|| format!("--subject {kv:?}: expected NAME=KEYWORD,KEYWORD"))?;
            subjects.insert(
                name.trim().to_owned(),
                keywords.split(',').map(|k| k.trim().to_owned()).collect(),
            );
        }
        let d = DeploymentConfig {
            name: self.name.clone(),
            model: self.model.clone(),
            context_id: self.context_id.clone(),
            input: InputConfig {
                bootstrap_servers: self.brokers.clone(),
                topic: input.clone(),
                format: self.format,
                text_field: "text".into(),
                max_record_bytes: 512 * 1024,
                kafka: KafkaTable::default(),
            },
            output: OutputConfig {
                topic: output,
                dlq_topic: self.dlq_topic.clone(),
                bootstrap_servers: self.output_brokers.clone(),
                max_message_bytes: self.max_message_bytes,
                kafka: KafkaTable::default(),
            },
            group_id: self.group.clone(),
            workers: self.workers,
            batch: BatchConfig {
                max_records: self.batch_max_records,
                max_wait_ms: self.batch_max_wait_ms,
                max_in_flight: self.max_in_flight,
                scoring_threads: self.scoring_threads,
            },
            kafka,
            delivery: self.delivery,
            start_from: self.start_from,
            commit: CommitConfig {
                max_records: self.commit_max_records,
                transaction_max_records: self.transaction_max_records,
                ..CommitConfig::default()
            },
            stall_timeout_ms: self.stall_timeout_ms,
            subjects,
            summary: SummaryConfig {
                topic: self.summary_topic.clone(),
                window_ms: self.summary_window_ms,
                allowed_lateness_ms: self.summary_lateness_ms,
                ..SummaryConfig::default()
            },
        };
        d.validate()
            .map_err(|e| anyhow::anyhow!("flag for {}: {}", e.key, e.reason))?;
        Ok(Some(d))
    }
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (e.g. in tests) is harmless: keep the first.
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs `run`.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(a.config.as_deref())?;
    if let Some(listen) = &a.listen {
        settings.http.listen = listen.clone();
    }
    if let Some(dir) = &a.state_dir {
        settings.state.dir = dir.clone();
    }
    if let Some(socket) = &a.socket {
        settings.control.socket = socket.clone();
    }
    if let Some(d) = a.flag_deployment()? {
        anyhow::ensure!(
            settings.deployments.iter().all(|c| c.name != d.name),
            "deployment {:?} is declared both in the config and by flags",
            d.name
        );
        settings.deployments.push(d);
    }
    init_logging(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamscore")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    // Bind before starting anything, so a taken port fails fast and cleanly.
    let listener = match settings.http.listen.as_str() {
        "" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP API to {addr}"))?,
        ),
    };
    // The first SIGTERM/SIGINT drains; a second one stops at once.
    let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
    let (s, a) = (shutdown.clone(), abort.clone());
    tokio::spawn(async move {
        wait_for_signal().await;
        s.cancel();
        wait_for_signal().await;
        a.cancel();
    });
    let clean = crate::daemon::run(settings, listener, shutdown, abort).await?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
