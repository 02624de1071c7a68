//! FTRL-Proximal logistic regression over sparse hashed features (McMahan et al., 2013).
//!
//! Why not linfa: linfa's learners take dense `ndarray` matrices, and our feature space has
//! `2^20` columns over ~130k rows — a dense matrix of 500 GB. FTRL touches only the features an
//! example has, regularizes with L1 (sparse weights) and L2, and adapts the learning rate per
//! feature, which suits hashed text features well.

/// FTRL hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FtrlParams {
    /// Learning-rate scale.
    pub alpha: f32,
    /// Learning-rate smoothing.
    pub beta: f32,
    /// L1 regularization strength.
    pub l1: f32,
    /// L2 regularization strength.
    pub l2: f32,
}

/// Optimizer state: per-slot `z` and `n` accumulators, plus an unregularized bias.
pub struct Ftrl {
    params: FtrlParams,
    z: Vec<f32>,
    n: Vec<f32>,
    bias_z: f32,
    bias_n: f32,
    /// Scratch: the current example's weights.
    w: Vec<f32>,
}

impl Ftrl {
    /// Fresh state for a table of `dimension` slots.
    pub fn new(dimension: usize, params: FtrlParams) -> Self {
        Ftrl {
            params,
            z: vec![0.0; dimension],
            n: vec![0.0; dimension],
            bias_z: 0.0,
            bias_n: 0.0,
            w: Vec::new(),
        }
    }

    #[inline]
    fn weight(&self, z: f32, n: f32, l1: f32, l2: f32) -> f32 {
        if z.abs() <= l1 {
            0.0
        } else {
            let p = &self.params;
            -(z - z.signum() * l1) / ((p.beta + n.sqrt()) / p.alpha + l2)
        }
    }

    /// One update on an example with feature `slots`, each of value `scale`, true label
    /// `positive`, weighted by `importance`.
    pub fn update(&mut self, slots: &[u32], scale: f32, positive: bool, importance: f32) {
        let p = self.params;
        self.w.clear();
        let mut margin = self.weight(self.bias_z, self.bias_n, 0.0, 0.0);
        for &s in slots {
            let s = s as usize;
            let w = self.weight(self.z[s], self.n[s], p.l1, p.l2);
            self.w.push(w);
            margin += w * scale;
        }
        let prob = sigmoid(margin);
        let g = (prob - if positive { 1.0 } else { 0.0 }) * importance;
        for (i, &s) in slots.iter().enumerate() {
            let s = s as usize;
            let gi = g * scale;
            let n = self.n[s];
            let sigma = ((n + gi * gi).sqrt() - n.sqrt()) / p.alpha;
            self.z[s] += gi - sigma * self.w[i];
            self.n[s] = n + gi * gi;
        }
        let bw = self.weight(self.bias_z, self.bias_n, 0.0, 0.0);
        let sigma = ((self.bias_n + g * g).sqrt() - self.bias_n.sqrt()) / p.alpha;
        self.bias_z += g - sigma * bw;
        self.bias_n += g * g;
    }

    /// The final weights and bias.
    pub fn finish(&self) -> (Vec<f32>, f32) {
        let p = self.params;
        let weights = self
            .z
            .iter()
            .zip(&self.n)
            .map(|(&z, &n)| self.weight(z, n, p.l1, p.l2))
            .collect();
        (weights, self.weight(self.bias_z, self.bias_n, 0.0, 0.0))
    }
}

/// The logistic function.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_signal() {
        let params = FtrlParams {
            alpha: 0.5,
            beta: 1.0,
            l1: 0.0,
            l2: 0.0,
        };
        let mut f = Ftrl::new(8, params);
        for _ in 0..200 {
            f.update(&[1, 3], 1.0, true, 1.0);
            f.update(&[2, 3], 1.0, false, 1.0);
        }
        let (w, b) = f.finish();
        assert!(w[1] > 1.0 && w[2] < -1.0, "{w:?}");
        assert!(sigmoid(b + w[1] + w[3]) > 0.9);
        assert!(sigmoid(b + w[2] + w[3]) < 0.1);
        assert_eq!(w[0], 0.0);
    }

    #[test]
    fn l1_zeroes_rare_noise() {
        let params = FtrlParams {
            alpha: 0.1,
            beta: 1.0,
            l1: 5.0,
            l2: 0.0,
        };
        let mut f = Ftrl::new(4, params);
        f.update(&[1], 1.0, true, 1.0);
        assert_eq!(f.finish().0[1], 0.0);
    }
}
