//! Training: labeled files in, a sealed [`Model`] out.
//!
//! Steps: hash every example's features once; hold out a seeded random share for calibration
//! and an honest accuracy figure; run FTRL logistic regression for a few seeded-shuffle epochs
//! with class-balanced, per-file weights; fit Platt calibration on the held-out margins; seal
//! the model; evaluate it on the held-out share and the dev file. Same inputs and seed, same
//! model bytes (apart from `created_at`).

mod calibrate;
mod ftrl;

pub use calibrate::CalibrationError;
pub use ftrl::{sigmoid, Ftrl, FtrlParams};

use crate::dataset::{Dataset, Example};
use crate::evaluate::{evaluate, Report};
use crate::features::{FeatureHasher, FeatureSettings};
use crate::model::{
    Calibration, Evaluation, Label, Metadata, Model, ModelFileError, ModelParts, Scratch,
    TrainingFile,
};
use crate::text::{HfTokenizerError, Pipeline, PipelineSpec, TweetSettings};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// No training examples, or only one class.
    #[error("training data needs examples of both labels (got {positive} positive, {negative} negative)")]
    OneClass {
        /// Positive examples.
        positive: usize,
        /// Negative examples.
        negative: usize,
    },
    /// A setting is out of range.
    #[error("invalid training setting: {0}")]
    Setting(String),
    /// The text pipeline could not be built.
    #[error(transparent)]
    Tokenizer(#[from] HfTokenizerError),
    /// Calibration failed.
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    /// The trained model could not be sealed.
    #[error(transparent)]
    Model(#[from] ModelFileError),
}

/// Everything that shapes a trained model.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Model name written into the metadata.
    pub name: String,
    /// Seed for the hold-out split and epoch shuffles.
    pub seed: u64,
    /// Passes over the training examples.
    pub epochs: u32,
    /// Optimizer settings.
    pub ftrl: FtrlParams,
    /// Share of the training examples held out for calibration and the held-out figure.
    pub holdout: f32,
    /// Weight examples so both classes carry the same total weight.
    pub balance_classes: bool,
    /// Text pipeline.
    pub text: PipelineSpec,
    /// Feature hashing.
    pub features: FeatureSettings,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            name: "sentiment-en".into(),
            seed: 42,
            epochs: 6,
            ftrl: FtrlParams {
                alpha: 2.0,
                beta: 1.0,
                l1: 0.0,
                l2: 0.1,
            },
            holdout: 0.05,
            balance_classes: true,
            text: PipelineSpec::Tweet(TweetSettings::default()),
            features: FeatureSettings::default(),
        }
    }
}

impl TrainConfig {
    fn hyper_parameters(&self) -> BTreeMap<String, serde_json::Value> {
        [
            ("seed", json!(self.seed)),
            ("epochs", json!(self.epochs)),
            ("optimizer", json!("ftrl_proximal")),
            ("alpha", json!(self.ftrl.alpha)),
            ("beta", json!(self.ftrl.beta)),
            ("l1", json!(self.ftrl.l1)),
            ("l2", json!(self.ftrl.l2)),
            ("holdout", json!(self.holdout)),
            ("balance_classes", json!(self.balance_classes)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// A training file and the weight of each of its examples.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file's examples and summary.
    pub dataset: Dataset,
    /// Importance of each example relative to other files' (1.0 = plain).
    pub weight: f32,
}

/// A trained model with its file bytes and figures.
pub struct Trained {
    /// The sealed model.
    pub model: Model,
    /// Its file encoding, ready to write.
    pub bytes: Vec<u8>,
    /// Figures on the held-out share of the training files (if any was held out).
    pub holdout: Option<Report>,
    /// Figures on the dev file (if one was given).
    pub dev: Option<Report>,
}

/// Hashed features of all examples, stored flat.
struct Featurized {
    slots: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    scales: Vec<f32>,
}

impl Featurized {
    fn build(
        hasher: &FeatureHasher,
        pipeline: &Pipeline,
        texts: &[&Example],
        bar: &ProgressBar,
    ) -> Self {
        let mut f = Featurized {
            slots: Vec::new(),
            ranges: Vec::with_capacity(texts.len()),
            scales: Vec::with_capacity(texts.len()),
        };
        let mut scratch = String::new();
        let mut one = Vec::new();
        for (i, e) in texts.iter().enumerate() {
            let scale = hasher.features_into(pipeline, &e.text, &mut scratch, &mut one);
            let start = f.slots.len() as u32;
            f.slots.extend_from_slice(&one);
            f.ranges.push((start, f.slots.len() as u32));
            f.scales.push(scale);
            if i % 4096 == 0 {
                bar.set_position(i as u64);
            }
        }
        f
    }

    fn slots(&self, i: usize) -> &[u32] {
        let (a, b) = self.ranges[i];
        &self.slots[a as usize..b as usize]
    }
}

/// Trains a model on `sources`, reporting progress on `bar`; `dev` is only evaluated, never
/// trained on.
pub fn train(
    sources: &[Source],
    dev: Option<&Dataset>,
    config: &TrainConfig,
    bar: &ProgressBar,
    created_at: DateTime<Utc>,
) -> Result<Trained, TrainError> {
    if !(0.0..0.5).contains(&config.holdout) {
        return Err(TrainError::Setting(format!(
            "holdout {} not in [0, 0.5)",
            config.holdout
        )));
    }
    if config.epochs == 0 {
        return Err(TrainError::Setting("epochs must be at least 1".into()));
    }
    if !crate::features::BITS_RANGE.contains(&config.features.bits) {
        return Err(TrainError::Setting(format!(
            "feature bits {} out of range",
            config.features.bits
        )));
    }
    let pipeline = Pipeline::from_spec(&config.text)?;
    let hasher = FeatureHasher::new(config.features.clone());

    // All examples with their file weight, in file order, then a seeded split.
    let mut all: Vec<(&Example, f32)> = sources
        .iter()
        .flat_map(|s| s.dataset.examples.iter().map(move |e| (e, s.weight)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    all.shuffle(&mut rng);
    let n_holdout = (all.len() as f64 * f64::from(config.holdout)).round() as usize;
    let (held, train_set) = all.split_at(n_holdout);

    let positive = train_set
        .iter()
        .filter(|(e, _)| e.label == Label::Positive)
        .count();
    let negative = train_set.len() - positive;
    if positive == 0 || negative == 0 {
        return Err(TrainError::OneClass { positive, negative });
    }
    let class_weight = |l: Label| -> f32 {
        if !config.balance_classes {
            return 1.0;
        }
        let total: f32 = train_set.iter().map(|(_, w)| w).sum();
        let of_class: f32 = train_set
            .iter()
            .filter(|(e, _)| e.label == l)
            .map(|(_, w)| w)
            .sum();
        total / (2.0 * of_class)
    };
    let class_weights = [class_weight(Label::Negative), class_weight(Label::Positive)];

    bar.set_length(train_set.len() as u64);
    bar.set_message("hashing features");
    let examples: Vec<&Example> = train_set.iter().map(|(e, _)| *e).collect();
    let feats = Featurized::build(&hasher, &pipeline, &examples, bar);

    let mut ftrl = Ftrl::new(hasher.dimension(), config.ftrl);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    bar.set_length(u64::from(config.epochs) * train_set.len() as u64);
    bar.set_position(0);
    for epoch in 0..config.epochs {
        bar.set_message(format!("training epoch {}/{}", epoch + 1, config.epochs));
        order.shuffle(&mut rng);
        for (k, &i) in order.iter().enumerate() {
            let (e, w) = train_set[i];
            let importance = w * class_weights[e.label.index()];
            ftrl.update(
                feats.slots(i),
                feats.scales[i],
                e.label == Label::Positive,
                importance,
            );
            if k % 8192 == 0 {
                bar.set_position(u64::from(epoch) * train_set.len() as u64 + k as u64);
            }
        }
    }
    let (weights, bias) = ftrl.finish();

    let summaries: Vec<TrainingFile> = sources
        .iter()
        .map(|s| TrainingFile {
            weight: s.weight,
            ..s.dataset.summary.clone()
        })
        .collect();
    let mut parts = ModelParts {
        metadata: Metadata {
            name: config.name.clone(),
            labels: Label::ALL.iter().map(|l| l.as_str().to_owned()).collect(),
            created_at,
            training: summaries,
            hyper_parameters: config.hyper_parameters(),
            evaluation: vec![],
        },
        text: config.text.clone(),
        features: config.features.clone(),
        weights,
        bias,
        calibration: Calibration::default(),
    };

    bar.set_message("calibrating and evaluating");
    let held: Vec<Example> = held.iter().map(|(e, _)| (*e).clone()).collect();
    if !held.is_empty() {
        let (raw, _) = Model::from_parts(&parts)?;
        let mut scratch = Scratch::default();
        let margins: Vec<f32> = held
            .iter()
            .map(|e| raw.margin(&e.text, &mut scratch))
            .collect();
        let labels: Vec<bool> = held.iter().map(|e| e.label == Label::Positive).collect();
        if labels.iter().any(|&l| l) && labels.iter().any(|&l| !l) {
            parts.calibration = calibrate::fit(&margins, &labels)?;
        }
    }
    let (model, _) = Model::from_parts(&parts)?;
    let holdout = (!held.is_empty()).then(|| evaluate(&model, &held));
    let dev_report = dev.map(|d| evaluate(&model, &d.examples));
    let figure = |set: &str, source: String, r: &Report| Evaluation {
        set: set.into(),
        source,
        rows: r.rows,
        accuracy: r.accuracy,
        macro_f1: r.macro_f1,
    };
    if let Some(r) = &holdout {
        let source = format!(
            "{:.0}% of the training files, seed {}",
            config.holdout * 100.0,
            config.seed
        );
        parts.metadata.evaluation.push(figure("holdout", source, r));
    }
    if let (Some(r), Some(d)) = (&dev_report, dev) {
        parts
            .metadata
            .evaluation
            .push(figure("dev", d.summary.file.clone(), r));
    }
    let (model, bytes) = Model::from_parts(&parts)?;
    bar.finish_and_clear();
    Ok(Trained {
        model,
        bytes,
        holdout,
        dev: dev_report,
    })
}

#[cfg(test)]
mod tests;
