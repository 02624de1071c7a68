//! Platt scaling of the linear margin, fitted with `linfa-logistic` on held-out examples.
//!
//! This is where linfa fits: a dense one-feature logistic regression over a few thousand rows.

use crate::model::Calibration;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

/// Calibration could not be fitted.
#[derive(Debug, thiserror::Error)]
#[error("calibration failed: {0}")]
pub struct CalibrationError(String);

/// Fits `P(positive) = sigmoid(a * margin + b)` to held-out `(margin, is_positive)` pairs.
/// Needs both classes present.
pub fn fit(margins: &[f32], positive: &[bool]) -> Result<Calibration, CalibrationError> {
    let x = Array2::from_shape_vec(
        (margins.len(), 1),
        margins.iter().map(|&m| f64::from(m)).collect(),
    )
    .map_err(|e| CalibrationError(e.to_string()))?;
    let y: Array1<bool> = positive.iter().copied().collect();
    let data = Dataset::new(x, y);
    let fitted = LogisticRegression::default()
        .alpha(1e-4)
        .max_iterations(200)
        .fit(&data)
        .map_err(|e| CalibrationError(e.to_string()))?;
    // linfa models the probability of whichever class is more frequent; flip if that is
    // the negative class.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let a = (sign * fitted.params()[0]) as f32;
    let b = (sign * fitted.intercept()) as f32;
    if !(a.is_finite() && b.is_finite()) {
        return Err(CalibrationError(format!("non-finite fit a={a} b={b}")));
    }
    Ok(Calibration { a, b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_scale() {
        // Margins whose true probability is sigmoid(2m - 0.5): generate labels deterministically
        // by thresholding a low-discrepancy sequence.
        let mut margins = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000 {
            let m = (i as f32 / 4000.0) * 6.0 - 3.0;
            let p = 1.0 / (1.0 + (-(2.0 * m - 0.5)).exp());
            let u = ((i as f64 * 0.618_033_988_75) % 1.0) as f32;
            margins.push(m);
            labels.push(u < p);
        }
        let c = fit(&margins, &labels).unwrap();
        assert!((c.a - 2.0).abs() < 0.3, "{c:?}");
        assert!((c.b + 0.5).abs() < 0.3, "{c:?}");
    }
}
