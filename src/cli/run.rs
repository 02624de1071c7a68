//! `streamscore run`: the daemon.

use super::load_model;
use crate::config::{
    BatchConfig, DeploymentConfig, InputConfig, LogFormat, OutputConfig, Settings,
};
use crate::input::InputFormat;
use crate::model::ModelHandle;
use crate::stream::{run_deployment, ServingModel, Stats, StopHandles};
use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

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
        let mut kafka = BTreeMap::new();
        for kv in &self.kafka {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--kafka {kv:?}: expected KEY=VALUE"))?;
            kafka.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let d = DeploymentConfig {
            name: self.name.clone(),
            model: self.model.clone(),
            input: InputConfig {
                bootstrap_servers: self.brokers.clone(),
                topic: input.clone(),
                format: self.format,
                text_field: "text".into(),
                max_record_bytes: 512 * 1024,
            },
            output: OutputConfig {
                topic: output,
                dlq_topic: self.dlq_topic.clone(),
                bootstrap_servers: None,
            },
            group_id: self.group.clone(),
            workers: self.workers,
            batch: BatchConfig {
                max_records: self.batch_max_records,
                max_wait_ms: self.batch_max_wait_ms,
            },
            kafka,
        };
        d.validate()
            .map_err(|(key, reason)| anyhow::anyhow!("flag for {key}: {reason}"))?;
        Ok(Some(d))
    }
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    if let Some(d) = a.flag_deployment()? {
        anyhow::ensure!(
            settings.deployments.iter().all(|c| c.name != d.name),
            "deployment {:?} is declared both in the config and by flags",
            d.name
        );
        settings.deployments.push(d);
    }
    anyhow::ensure!(
        !settings.deployments.is_empty(),
        "nothing to run: declare [[deployments]] in a --config file, or give --input-topic and --output-topic"
    );
    init_logging(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamscore")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let handles = StopHandles::default();
    let mut set = tokio::task::JoinSet::new();
    for d in settings.deployments {
        let model = load_model(d.model.as_deref())?;
        let serving = ServingModel {
            context_id: model.metadata().name.clone(),
            version: model.version().to_owned(),
            model,
        };
        info!(deployment = %d.name, model = %serving.context_id, version = %serving.version,
              input = %d.input.topic, output = %d.output.topic, workers = d.workers, "starting deployment");
        let handle = Arc::new(ModelHandle::new(Arc::new(serving)));
        let id = d.name.clone();
        let h = handles.clone();
        set.spawn(async move {
            let name = d.name.clone();
            let r = run_deployment(Arc::new(d), &id, handle, h, Arc::new(Stats::default())).await;
            (name, r)
        });
    }
    let drain = Duration::from_millis(settings.shutdown.drain_timeout_ms);
    let signals = handles.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!(
            drain_timeout_ms = drain.as_millis() as u64,
            "shutdown requested: draining"
        );
        signals.stop.cancel();
        tokio::select! {
            _ = tokio::time::sleep(drain) => warn!("drain timeout reached"),
            _ = wait_for_signal() => warn!("second signal: stopping now"),
        }
        signals.abort.cancel();
    });
    let mut failed = false;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Err(e))) => {
                error!(deployment = %name, error = %e, "deployment failed");
                failed = true;
            }
            Ok((_, Ok(()))) => {}
            Err(e) => {
                error!(error = %e, "deployment task failed");
                failed = true;
            }
        }
    }
    info!("streamscore stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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
