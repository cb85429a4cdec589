use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::UpdateRule;

/// RMSProp (Hinton, Coursera lecture 6e, 2012, in PyTorch's form):
/// `sq_grad_avg = alpha * sq_grad_avg + (1 - alpha) * g^2`,
/// `w -= lr * g / (sqrt(sq_grad_avg) + eps)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    /// Decay of the squared-gradient average, in [0, 1). Default 0.99 (PyTorch).
    pub alpha: f32,
    /// Added to the root of the average. Default 1e-8.
    pub eps: f32,
}

impl Default for RmsProp {
    fn default() -> Self {
        Self {
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

impl UpdateRule for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["sq_grad_avg"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        let (alpha, eps) = (self.alpha, self.eps);
        Zip::from(value)
            .and(&grad)
            .and(&mut state[0])
            .for_each(|w, &g, s| {
                *s = alpha * *s + (1.0 - alpha) * g * g;
                *w -= lr * g / (s.sqrt() + eps);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_trajectories, trajectories};

    #[test]
    fn by_hand() {
        // lr = 0.01, alpha = 0.99, eps = 1e-8.
        // E1 = 0.01*0.25 = 0.0025,               w1 = 1 - 0.01*0.5/0.05 = 0.9
        // E2 = 0.99*0.0025 + 0.01 = 0.012475,    w2 = 0.9 + 0.01/0.1116915 = 0.9895323
        // E3 = 0.99*0.012475 + 0.04 = 0.05235025, w3 = 0.9895323 - 0.02/0.2288018 = 0.9021204
        // E1 = 0.01,                             w1 = -2 - 0.01*1/0.1 = -2.1
        // E2 = 0.0099 + 0.000625 = 0.010525,     w2 = -2.1 - 0.0025/0.1025914 = -2.1243685
        // E3 = 0.01041975 + 0.0025 = 0.01291975, w3 = -2.1243685 + 0.005/0.1136650 = -2.0803796
        assert_trajectories(
            trajectories(RmsProp::default(), 0.01),
            [0.9, 0.989_532_3, 0.902_120_4],
            [-2.1, -2.124_368_5, -2.080_379_6],
        );
    }
}
