use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::UpdateRule;

/// AdaDelta (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method",
/// Algorithm 1):
///
/// ```text
/// sq_grad_avg   = rho * sq_grad_avg + (1 - rho) * g^2                   E[g^2]
/// delta         = sqrt(sq_update_avg + eps) / sqrt(sq_grad_avg + eps) * g
/// sq_update_avg = rho * sq_update_avg + (1 - rho) * delta^2             E[dx^2]
/// w            -= lr * delta
/// ```
///
/// The second accumulator holds squared *updates*, which gives the step the
/// units of `w` (the seed accumulated squared gradients there instead). The
/// paper has no learning rate; `lr` is PyTorch's multiplier, default 1.0. The
/// first update is therefore `sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaDelta {
    /// Decay of both averages, in [0, 1). Default 0.9 (PyTorch; the paper used 0.95).
    pub rho: f32,
    /// Conditioning constant inside both roots. Default 1e-6.
    pub eps: f32,
}

impl Default for AdaDelta {
    fn default() -> Self {
        Self {
            rho: 0.9,
            eps: 1e-6,
        }
    }
}

impl UpdateRule for AdaDelta {
    fn name(&self) -> &'static str {
        "adadelta"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["sq_grad_avg", "sq_update_avg"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        let (rho, eps) = (self.rho, self.eps);
        let [sq_grad, sq_update] = state else {
            panic!(
                "AdaDelta keeps 2 state tensors per parameter, got {}",
                state.len()
            );
        };
        Zip::from(value)
            .and(&grad)
            .and(sq_grad)
            .and(sq_update)
            .for_each(|w, &g, eg, edx| {
                *eg = rho * *eg + (1.0 - rho) * g * g;
                let delta = (*edx + eps).sqrt() / (*eg + eps).sqrt() * g;
                *edx = rho * *edx + (1.0 - rho) * delta * delta;
                *w -= lr * delta;
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_trajectories, trajectories};

    #[test]
    fn by_hand() {
        // lr = 1, rho = 0.9, eps = 1e-6.
        // Eg1 = 0.1*0.25 = 0.025;  d1 = sqrt(1e-6)/sqrt(0.025001)*0.5 = 0.0031622144
        //   Edx1 = 0.1*d1^2 = 9.9996e-7;  w1 = 1 - d1 = 0.9968378
        // Eg2 = 0.0225 + 0.1 = 0.1225;  d2 = sqrt(1.99996e-6)/sqrt(0.122501)*-1 = -0.0040405533
        //   Edx2 = 0.9*9.9996e-7 + 0.1*d2^2 = 2.5325711e-6;  w2 = 0.9968378 + 0.0040406 = 1.0008783
        // Eg3 = 0.11025 + 0.4 = 0.51025;  d3 = sqrt(3.5325711e-6)/sqrt(0.510251)*2 = 0.0052623959
        //   w3 = 1.0008783 - 0.0052624 = 0.9956159
        // Eg1 = 0.1;  d1 = sqrt(1e-6)/sqrt(0.100001)*1 = 0.0031622618, Edx1 = 9.9999e-7, w1 = -2.0031623
        // Eg2 = 0.09 + 0.00625 = 0.09625;  d2 = sqrt(1.99999e-6)/sqrt(0.096251)*0.25 = 0.0011395970
        //   Edx2 = 0.9*9.9999e-7 + 0.1*d2^2 = 1.0298591e-6;  w2 = -2.0043019
        // Eg3 = 0.086625 + 0.025 = 0.111625;  d3 = sqrt(2.0298591e-6)/sqrt(0.111626)*-0.5 = -0.0021321624
        //   w3 = -2.0043019 + 0.0021322 = -2.0021697
        assert_trajectories(
            trajectories(AdaDelta::default(), 1.0),
            [0.996_837_8, 1.000_878_3, 0.995_615_9],
            [-2.003_162_3, -2.004_301_9, -2.002_169_7],
        );
    }

    #[test]
    fn first_update_is_in_units_of_sqrt_eps() {
        // Zeiler's first step: sqrt(eps) / sqrt(g^2 (1 - rho) + eps) * g, for
        // gradients over many magnitudes; lr multiplies it.
        for &(g, rho, eps, lr) in &[
            (1e-3f32, 0.9f32, 1e-6f32, 1.0f32),
            (3.0, 0.95, 1e-6, 1.0),
            (-250.0, 0.9, 1e-4, 0.5),
        ] {
            let mut opt = crate::Driver::new(AdaDelta { rho, eps }, crate::Schedule::constant(lr));
            let mut p = vec![tegaki_tensor::Param::new(ndarray::ArrayD::zeros(
                ndarray::IxDyn(&[1]),
            ))];
            p[0].grad.fill(g);
            crate::Optimizer::apply(&mut opt, &mut p);
            let (g64, rho64, eps64) = (f64::from(g), f64::from(rho), f64::from(eps));
            let want =
                -f64::from(lr) * eps64.sqrt() / (g64 * g64 * (1.0 - rho64) + eps64).sqrt() * g64;
            let got = f64::from(p[0].value[[0]]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "g = {g}: first update {got}, expected {want}"
            );
        }
    }
}
