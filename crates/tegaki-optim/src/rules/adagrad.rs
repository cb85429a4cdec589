use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::UpdateRule;

/// AdaGrad (Duchi, Hazan & Singer 2011):
/// `sum_sq_grad += g^2`, `w -= lr * g / (sqrt(sum_sq_grad) + eps)`.
///
/// The `eps` keeps a parameter whose gradient has always been zero from
/// dividing 0 by 0 (the seed's version had none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaGrad {
    /// Added to the root of the accumulator. Default 1e-10 (PyTorch).
    pub eps: f32,
}

impl Default for AdaGrad {
    fn default() -> Self {
        Self { eps: 1e-10 }
    }
}

impl UpdateRule for AdaGrad {
    fn name(&self) -> &'static str {
        "adagrad"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["sum_sq_grad"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        let eps = self.eps;
        Zip::from(value)
            .and(&grad)
            .and(&mut state[0])
            .for_each(|w, &g, s| {
                *s += g * g;
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
        // lr = 0.1, eps = 1e-10 (below f32 resolution here).
        // G1 = 0.25, w1 = 1 - 0.1*0.5/0.5 = 0.9
        // G2 = 1.25, w2 = 0.9 + 0.1/sqrt(1.25) = 0.9 + 0.0894427 = 0.9894427
        // G3 = 5.25, w3 = 0.9894427 - 0.2/sqrt(5.25) = 0.9894427 - 0.0872872 = 0.9021556
        // G1 = 1,      w1 = -2 - 0.1 = -2.1
        // G2 = 1.0625, w2 = -2.1 - 0.025/sqrt(1.0625) = -2.1 - 0.0242536 = -2.1242536
        // G3 = 1.3125, w3 = -2.1242536 + 0.05/sqrt(1.3125) = -2.1242536 + 0.0436436 = -2.0806100
        assert_trajectories(
            trajectories(AdaGrad::default(), 0.1),
            [0.9, 0.989_442_7, 0.902_155_6],
            [-2.1, -2.124_253_6, -2.080_61],
        );
    }

    #[test]
    fn zero_gradient_does_not_divide_by_zero() {
        let mut opt = crate::Driver::new(AdaGrad::default(), crate::Schedule::constant(0.1));
        let mut p = vec![tegaki_tensor::Param::new(ndarray::ArrayD::zeros(
            ndarray::IxDyn(&[3]),
        ))];
        crate::Optimizer::apply(&mut opt, &mut p);
        assert!(p[0].value.iter().all(|&w| w == 0.0), "{:?}", p[0].value);
    }
}
