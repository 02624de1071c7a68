//! Classification figures: confusion matrix, accuracy, per-class precision/recall, macro-F1.

use crate::dataset::Example;
use crate::model::{Label, Model, Scratch};
use serde::Serialize;
use std::time::Instant;

/// Counts of (true label, predicted label) pairs; rows are truth, columns predictions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// `counts[truth][predicted]`, negative first.
    pub counts: [[u64; 2]; 2],
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassFigures {
    /// The class.
    pub label: Label,
    /// Share of predictions of this class that were right.
    pub precision: f64,
    /// Share of this class's rows that were found.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Rows whose true label is this class.
    pub support: u64,
}

impl Confusion {
    /// Records one prediction.
    pub fn add(&mut self, truth: Label, predicted: Label) {
        self.counts[truth.index()][predicted.index()] += 1;
    }

    /// Rows counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of rows predicted correctly (0 when empty).
    pub fn accuracy(&self) -> f64 {
        ratio(self.counts[0][0] + self.counts[1][1], self.total())
    }

    /// Figures of one class.
    pub fn class(&self, label: Label) -> ClassFigures {
        let i = label.index();
        let tp = self.counts[i][i];
        let predicted = self.counts[0][i] + self.counts[1][i];
        let support = self.counts[i][0] + self.counts[i][1];
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassFigures {
            label,
            precision,
            recall,
            f1,
            support,
        }
    }

    /// Mean F1 over both classes.
    pub fn macro_f1(&self) -> f64 {
        Label::ALL.iter().map(|&l| self.class(l).f1).sum::<f64>() / 2.0
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Everything `eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Rows scored.
    pub rows: u64,
    /// Share right.
    pub accuracy: f64,
    /// Mean per-class F1.
    pub macro_f1: f64,
    /// Per-class figures, negative first.
    pub classes: Vec<ClassFigures>,
    /// Confusion matrix.
    pub confusion: Confusion,
    /// Single-thread scoring speed over the set, from raw text.
    pub tweets_per_second: f64,
}

/// Scores `examples` with `model` on this thread and reports the figures. The timing covers
/// scoring only (repeated until at least 200 ms have passed, so small sets still give a usable
/// rate).
pub fn evaluate(model: &Model, examples: &[Example]) -> Report {
    let mut confusion = Confusion::default();
    let mut scratch = Scratch::default();
    for e in examples {
        confusion.add(e.label, model.score_with(&e.text, &mut scratch).label);
    }
    let start = Instant::now();
    let mut scored = 0u64;
    while start.elapsed().as_millis() < 200 && !examples.is_empty() {
        for e in examples {
            std::hint::black_box(model.score_with(&e.text, &mut scratch));
        }
        scored += examples.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    Report {
        rows: confusion.total(),
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        classes: Label::ALL.iter().map(|&l| confusion.class(l)).collect(),
        confusion,
        tweets_per_second: if secs > 0.0 {
            scored as f64 / secs
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_match_a_hand_computed_matrix() {
        let mut c = Confusion::default();
        // truth NEG: 3 right, 1 wrong; truth POS: 4 right, 2 wrong.
        for _ in 0..3 {
            c.add(Label::Negative, Label::Negative);
        }
        c.add(Label::Negative, Label::Positive);
        for _ in 0..4 {
            c.add(Label::Positive, Label::Positive);
        }
        for _ in 0..2 {
            c.add(Label::Positive, Label::Negative);
        }
        assert_eq!(c.total(), 10);
        assert!((c.accuracy() - 0.7).abs() < 1e-12);
        let neg = c.class(Label::Negative);
        assert!((neg.precision - 0.6).abs() < 1e-12);
        assert!((neg.recall - 0.75).abs() < 1e-12);
        let pos = c.class(Label::Positive);
        assert!((pos.precision - 0.8).abs() < 1e-12);
        assert!((pos.recall - 4.0 / 6.0).abs() < 1e-12);
        let f1n = 2.0 * 0.6 * 0.75 / 1.35;
        let f1p = 2.0 * 0.8 * (4.0 / 6.0) / (0.8 + 4.0 / 6.0);
        assert!((c.macro_f1() - (f1n + f1p) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn empty_matrix_gives_zeros_not_nan() {
        let c = Confusion::default();
        assert_eq!(c.accuracy(), 0.0);
        assert_eq!(c.macro_f1(), 0.0);
    }
}
