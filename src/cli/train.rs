//! `streamscore train`.

use super::existing_file;
use crate::dataset::Dataset;
use crate::features::FeatureSettings;
use crate::text::{PipelineSpec, TweetSettings};
use crate::train::{train, FtrlParams, Source, TrainConfig};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training files: JSON lines {"text", "label"}. `FILE@WEIGHT` gives each example of that
    /// file a weight (default 1).
    #[arg(long = "train", required = true, num_args = 1.., value_name = "FILE[@WEIGHT]")]
    train: Vec<String>,
    /// Development file, evaluated (never trained on) and recorded in the model's metadata.
    #[arg(long, value_parser = existing_file)]
    dev: Option<PathBuf>,
    /// Where to write the model file.
    #[arg(long)]
    out: PathBuf,
    /// Seed for the hold-out split and the epoch shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Model name stored in the metadata.
    #[arg(long, default_value = "sentiment-en")]
    name: String,
    /// Passes over the training data.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: u32,
    /// The weight table has 2^bits slots.
    #[arg(long, default_value_t = FeatureSettings::default().bits)]
    bits: u8,
    /// L2 regularization strength.
    #[arg(long, default_value_t = TrainConfig::default().ftrl.l2)]
    l2: f32,
    /// L1 regularization strength.
    #[arg(long, default_value_t = TrainConfig::default().ftrl.l1)]
    l1: f32,
    /// Learning-rate scale.
    #[arg(long, default_value_t = TrainConfig::default().ftrl.alpha)]
    alpha: f32,
    /// Share of the training files held out for calibration and the held-out figure.
    #[arg(long, default_value_t = TrainConfig::default().holdout)]
    holdout: f32,
    /// Use this Hugging Face tokenizer.json instead of the built-in tweet tokenizer.
    #[arg(long, value_parser = existing_file)]
    tokenizer: Option<PathBuf>,
    /// Words after a negator marked as negated (0: off). Tweet tokenizer only.
    #[arg(long, default_value_t = TweetSettings::default().negation_scope)]
    negation_scope: u8,
}

fn parse_source(arg: &str) -> anyhow::Result<(PathBuf, f32)> {
    match arg.rsplit_once('@') {
        Some((path, w)) if !path.is_empty() && w.parse::<f32>().is_ok() => {
            let w: f32 = w.parse()?;
            anyhow::ensure!(
                w.is_finite() && w > 0.0,
                "weight in {arg:?} must be positive"
            );
            Ok((PathBuf::from(path), w))
        }
        _ => Ok((PathBuf::from(arg), 1.0)),
    }
}

/// Runs `train`.
pub fn run(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let text = match &a.tokenizer {
        Some(p) => PipelineSpec::HuggingFace {
            tokenizer_json: std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?,
        },
        None => PipelineSpec::Tweet(TweetSettings {
            negation_scope: a.negation_scope,
            ..TweetSettings::default()
        }),
    };
    let config = TrainConfig {
        name: a.name.clone(),
        seed: a.seed,
        epochs: a.epochs,
        ftrl: FtrlParams {
            alpha: a.alpha,
            l1: a.l1,
            l2: a.l2,
            ..TrainConfig::default().ftrl
        },
        holdout: a.holdout,
        text,
        features: FeatureSettings {
            bits: a.bits,
            ..FeatureSettings::default()
        },
        ..TrainConfig::default()
    };

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut sources = Vec::new();
    for arg in &a.train {
        let (path, weight) = parse_source(arg)?;
        bar.set_message(format!("reading {}", path.display()));
        let dataset = Dataset::read(&path)?;
        sources.push(Source { dataset, weight });
    }
    let dev = a.dev.as_deref().map(Dataset::read).transpose()?;
    let trained = train(&sources, dev.as_ref(), &config, &bar, chrono::Utc::now())?;
    crate::store::write_atomically(&a.out, &trained.bytes)
        .with_context(|| format!("writing {}", a.out.display()))?;

    let rows: u64 = sources.iter().map(|s| s.dataset.summary.rows).sum();
    println!(
        "trained {} on {rows} rows from {} files → {} ({:.1} MB, version {})",
        config.name,
        sources.len(),
        a.out.display(),
        trained.bytes.len() as f64 / 1e6,
        trained.model.version()
    );
    if let Some(r) = &trained.holdout {
        println!(
            "held-out: accuracy {:.4}  macro-F1 {:.4}  ({} rows)",
            r.accuracy, r.macro_f1, r.rows
        );
    }
    if let Some(r) = &trained.dev {
        println!(
            "dev:      accuracy {:.4}  macro-F1 {:.4}  ({} rows)",
            r.accuracy, r.macro_f1, r.rows
        );
    }
    Ok(ExitCode::SUCCESS)
}
