//! The sentiment model: an immutable, loaded classifier and a handle to swap it atomically.
//!
//! A [`Model`] is text pipeline + feature hasher + linear weights + Platt calibration. It never
//! changes after loading: share it as `Arc<Model>` across threads. [`ModelHandle`] holds the
//! current model and replaces it atomically; a scorer that already took an `Arc` keeps scoring
//! with the old model until it lets go.

mod format;
mod meta;

pub use format::{ModelFileError, FORMAT_VERSION, MAGIC};

/// The shipped default model, embedded at build time from `models/sentiment-en.model`.
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../../models/sentiment-en.model");
pub use meta::{Calibration, Evaluation, Metadata, TrainingFile};

use crate::features::{FeatureHasher, FeatureSettings};
use crate::text::{Pipeline, PipelineSpec};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The two classes a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Label {
    /// Negative sentiment.
    Negative,
    /// Positive sentiment.
    Positive,
}

impl Label {
    /// Both labels, negative first (the order of class indices everywhere).
    pub const ALL: [Label; 2] = [Label::Negative, Label::Positive];

    /// The label's wire name: `NEGATIVE` or `POSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "NEGATIVE",
            Label::Positive => "POSITIVE",
        }
    }

    /// Class index: 0 for negative, 1 for positive.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses a label name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model's answer for one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The predicted label.
    pub label: Label,
    /// Calibrated probability of the predicted label, in `[0.5, 1]`.
    pub probability: f32,
}

impl Prediction {
    fn from_positive_probability(p: f32) -> Self {
        if p >= 0.5 {
            Prediction {
                label: Label::Positive,
                probability: p,
            }
        } else {
            Prediction {
                label: Label::Negative,
                probability: 1.0 - p,
            }
        }
    }

    /// Calibrated probability that the text is positive.
    pub fn positive_probability(&self) -> f32 {
        match self.label {
            Label::Positive => self.probability,
            Label::Negative => 1.0 - self.probability,
        }
    }
}

/// Reusable buffers for scoring: the current token's text and the current text's feature
/// slots. Keep one per thread to score without allocating.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    token: String,
    slots: Vec<u32>,
}

/// Everything a model is made of, before it is sealed into a [`Model`].
#[derive(Debug, Clone)]
pub struct ModelParts {
    /// Descriptive metadata.
    pub metadata: Metadata,
    /// The text pipeline.
    pub text: PipelineSpec,
    /// The feature hashing settings.
    pub features: FeatureSettings,
    /// One weight per feature slot (`2^features.bits` of them).
    pub weights: Vec<f32>,
    /// Intercept of the linear score.
    pub bias: f32,
    /// Maps the linear score to a probability.
    pub calibration: Calibration,
}

/// A loaded, validated, immutable sentiment model.
#[derive(Debug)]
pub struct Model {
    metadata: Metadata,
    pipeline: Pipeline,
    hasher: FeatureHasher,
    weights: Box<[f32]>,
    bias: f32,
    calibration: Calibration,
    version: String,
    bytes_len: usize,
}

impl Model {
    /// Seals `parts` into a model by encoding it to the file format and decoding it again, so an
    /// in-memory model is exactly what its file would load as. Returns the model and its bytes.
    pub fn from_parts(parts: &ModelParts) -> Result<(Model, Vec<u8>), ModelFileError> {
        let bytes = format::encode(parts)?;
        let model = Model::from_bytes(&bytes)?;
        Ok((model, bytes))
    }

    /// Decodes and validates a model file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelFileError> {
        format::decode(bytes)
    }

    /// The model at `path`, or the shipped default model (embedded in the binary) without one.
    pub fn load_or_default(path: Option<&Path>) -> Result<Model, ModelFileError> {
        match path {
            Some(p) => Model::load(p),
            None => Model::from_bytes(DEFAULT_MODEL),
        }
    }

    /// Reads, decodes and validates the model file at `path`.
    pub fn load(path: &Path) -> Result<Model, ModelFileError> {
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Model::from_bytes(&bytes)
    }

    /// The model's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Content version: the first 12 hex digits of the file's SHA-256 checksum.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The text pipeline the model runs.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The feature hashing settings.
    pub fn feature_settings(&self) -> &FeatureSettings {
        self.hasher.settings()
    }

    /// The weight table, one weight per feature slot.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Size in bytes of the model's file encoding.
    pub fn file_size(&self) -> usize {
        self.bytes_len
    }

    /// Bytes of memory held by the weight table.
    pub fn weights_memory(&self) -> usize {
        std::mem::size_of_val(&*self.weights)
    }

    /// The raw linear score of `text` (positive means positive sentiment).
    #[inline]
    pub fn margin(&self, text: &str, scratch: &mut Scratch) -> f32 {
        let scale =
            self.hasher
                .features_into(&self.pipeline, text, &mut scratch.token, &mut scratch.slots);
        let w = &self.weights;
        // Slots are always below the table size (checked at load); `get` keeps a corrupt
        // invariant from ever becoming a panic on the serving path.
        let sum: f32 = scratch
            .slots
            .iter()
            .map(|&slot| w.get(slot as usize).copied().unwrap_or(0.0))
            .sum();
        self.bias + sum * scale
    }

    /// Labels one text.
    pub fn score(&self, text: &str) -> Prediction {
        self.score_with(text, &mut Scratch::default())
    }

    /// Labels one text using caller-owned scratch space (no allocation once warm).
    #[inline]
    pub fn score_with(&self, text: &str, scratch: &mut Scratch) -> Prediction {
        let z = self.margin(text, scratch);
        Prediction::from_positive_probability(self.calibration.probability(z))
    }

    /// Labels a batch of texts, appending one prediction per text to `out` in order.
    pub fn score_batch_into<T: AsRef<str>>(&self, texts: &[T], out: &mut Vec<Prediction>) {
        let mut scratch = Scratch::default();
        out.reserve(texts.len());
        out.extend(
            texts
                .iter()
                .map(|t| self.score_with(t.as_ref(), &mut scratch)),
        );
    }

    /// Labels a batch of texts.
    pub fn score_batch<T: AsRef<str>>(&self, texts: &[T]) -> Vec<Prediction> {
        let mut out = Vec::with_capacity(texts.len());
        self.score_batch_into(texts, &mut out);
        out
    }
}

/// The current model of a deployment, replaceable while other threads score.
///
/// `current()` is lock-free and returns an `Arc`: a batch scores entirely with the model it
/// started with, and a swap never blocks scorers. `T` is [`Model`] or a wrapper that carries
/// the model's identity alongside it.
#[derive(Debug)]
pub struct ModelHandle<T = Model> {
    current: ArcSwap<T>,
}

impl<T> ModelHandle<T> {
    /// A handle serving `model`.
    pub fn new(model: Arc<T>) -> Self {
        ModelHandle {
            current: ArcSwap::new(model),
        }
    }

    /// The model serving now.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Replaces the serving model; returns the one it replaced.
    pub fn swap(&self, model: Arc<T>) -> Arc<T> {
        self.current.swap(model)
    }
}

#[cfg(test)]
mod tests;
