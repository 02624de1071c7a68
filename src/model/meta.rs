//! Metadata and calibration stored in a model file's header.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Descriptive metadata of a model: what it is and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Model name, e.g. `sentiment-en`.
    pub name: String,
    /// Class names, negative first: always `["NEGATIVE", "POSITIVE"]`.
    pub labels: Vec<String>,
    /// When the model was trained.
    pub created_at: DateTime<Utc>,
    /// The files it was trained on.
    pub training: Vec<TrainingFile>,
    /// Trainer settings, as the trainer named them.
    pub hyper_parameters: BTreeMap<String, serde_json::Value>,
    /// Figures measured when it was trained.
    pub evaluation: Vec<Evaluation>,
}

/// One training file, identified well enough to rebuild the model from the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingFile {
    /// File name (no directories: they differ between machines).
    pub file: String,
    /// Rows read.
    pub rows: u64,
    /// Rows labeled POSITIVE.
    pub positive: u64,
    /// Rows labeled NEGATIVE.
    pub negative: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Weight each of its examples carried in training.
    pub weight: f32,
}

/// Figures of the model on one labeled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// What the set was: `holdout` (held out of the training files) or `dev`.
    pub set: String,
    /// File name, or a description of the split.
    pub source: String,
    /// Rows scored.
    pub rows: u64,
    /// Share of rows labeled correctly.
    pub accuracy: f64,
    /// Mean of the two classes' F1 scores.
    pub macro_f1: f64,
}

/// Platt scaling: `P(positive) = sigmoid(a * margin + b)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Slope applied to the linear margin.
    pub a: f32,
    /// Offset added after the slope.
    pub b: f32,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { a: 1.0, b: 0.0 }
    }
}

impl Calibration {
    /// Calibrated probability of the positive class for a linear margin.
    #[inline]
    pub fn probability(&self, margin: f32) -> f32 {
        let p = 1.0 / (1.0 + (-(self.a * margin + self.b)).exp());
        if p.is_nan() {
            0.5
        } else {
            p
        }
    }
}
