//! Sharpness-aware minimization as a wrapper around any optimizer.

use ndarray::ArrayD;
use tegaki_tensor::HasParams;

use crate::{OptimError, Optimizer, OptimizerState, Trainable};

/// Keeps `rho / norm` finite when every gradient is zero (the reference
/// implementation's constant).
const NORM_EPS: f32 = 1e-12;

/// SAM (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently
/// Improving Generalization"), optionally adaptive (ASAM, Kwon et al. 2021).
///
/// Each [`step`](Optimizer::step):
/// 1. forward/backward at `w` (the returned loss);
/// 2. perturb `w += e`, with `e = rho * g / ||g||` over all parameters
///    together; adaptive: `e = rho * w^2 * g / ||w * g||`;
/// 3. forward/backward at `w + e`;
/// 4. restore `w` exactly and let the base optimizer update it with the
///    gradients from step 3.
///
/// [`apply`](Optimizer::apply) alone (gradients computed elsewhere, no second
/// pass available) is the base optimizer's plain update.
pub struct Sam {
    base: Box<dyn Optimizer>,
    rho: f32,
    adaptive: bool,
}

impl Sam {
    /// Wraps `base` with neighbourhood radius `rho` (0.05 in the paper).
    pub fn new(base: Box<dyn Optimizer>, rho: f32, adaptive: bool) -> Self {
        Self {
            base,
            rho,
            adaptive,
        }
    }

    /// Adds the ascent step `e` to every parameter; returns the original
    /// values, so restoring is exact rather than `w + e - e`.
    fn perturb(&self, params: &mut dyn HasParams) -> Vec<ArrayD<f32>> {
        let adaptive = self.adaptive;
        let mut sum = 0.0f64;
        params.visit_params(&mut |_, p| {
            for (&w, &g) in p.value.iter().zip(&p.grad) {
                let s = if adaptive { w.abs() * g } else { g };
                sum += f64::from(s) * f64::from(s);
            }
        });
        let scale = self.rho / (sum.sqrt() as f32 + NORM_EPS);
        let mut saved = Vec::new();
        params.visit_params(&mut |_, p| {
            saved.push(p.value.clone());
            p.value.zip_mut_with(&p.grad, |w, &g| {
                let e = if adaptive { *w * *w * g } else { g } * scale;
                *w += e;
            });
        });
        saved
    }
}

impl Optimizer for Sam {
    fn step(&mut self, model: &mut dyn Trainable) -> f32 {
        let loss = model.forward_backward();
        let saved = self.perturb(model);
        model.forward_backward();
        let mut saved = saved.into_iter();
        model.visit_params(&mut |name, p| {
            p.value = saved.next().unwrap_or_else(|| {
                panic!("SAM: parameter `{name}` appeared during the perturbed pass")
            });
        });
        self.base.apply(model);
        loss
    }

    fn apply(&mut self, params: &mut dyn HasParams) {
        self.base.apply(params);
    }

    fn lr(&self) -> f32 {
        self.base.lr()
    }

    fn steps(&self) -> u64 {
        self.base.steps()
    }

    fn state(&self) -> OptimizerState {
        self.base.state()
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.base.load_state(state)
    }

    fn bind(&mut self, params: &mut dyn HasParams) {
        self.base.bind(params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Sgd;
    use crate::testutil::Quadratic;
    use crate::{Driver, Schedule};

    fn sgd(lr: f32) -> Box<dyn Optimizer> {
        Box::new(Driver::new(Sgd, Schedule::constant(lr)))
    }

    #[track_caller]
    fn assert_close(got: &ArrayD<f32>, want: [f32; 2]) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "got {got}, expected {want:?}");
        }
    }

    #[test]
    fn sam_takes_the_formula_step_on_a_quadratic() {
        // f = (w0^2 + 10 w1^2) / 2 at w = (1, 1): g = (1, 10), ||g|| = sqrt(101) = 10.0498756.
        // e = 0.05 g / ||g|| = (0.0049751860, 0.0497518595); w + e = (1.0049751860, 1.0497518595)
        // g(w + e) = (1.0049751860, 10.497518595); SGD lr 0.1 from w:
        // w' = (1 - 0.1004975186, 1 - 1.0497518595) = (0.8995024814, -0.0497518595)
        let mut model = Quadratic::new(&[1.0, 1.0], &[1.0, 10.0], &[0.0, 0.0]);
        let mut opt = Sam::new(sgd(0.1), 0.05, false);
        let loss = opt.step(&mut model);
        assert_eq!(loss, 5.5, "SAM returns the loss at the unperturbed weights");
        assert_eq!(model.calls, 2);
        assert_close(&model.params[0].value, [0.899_502_5, -0.049_751_86]);
        assert_eq!(opt.steps(), 1);
    }

    #[test]
    fn adaptive_sam_scales_the_neighbourhood_by_the_weights() {
        // w = (2, 1): g = (2, 10); |w| g = (4, 10), norm sqrt(116) = 10.7703296.
        // e = 0.05 w^2 g / 10.7703296 = 0.05 (8, 10) / 10.7703296 = (0.0371390676, 0.0464238345)
        // g(w + e) = (2.0371390676, 10.464238345); w' = (2 - 0.2037139068, 1 - 1.0464238345)
        let mut model = Quadratic::new(&[2.0, 1.0], &[1.0, 10.0], &[0.0, 0.0]);
        let mut opt = Sam::new(sgd(0.1), 0.05, true);
        opt.step(&mut model);
        assert_close(&model.params[0].value, [1.796_286_1, -0.046_423_83]);
    }

    #[test]
    fn restoring_is_exact() {
        // With lr = 0 the weights must come back bit for bit, whatever the perturbation.
        let w0 = [0.1f32, -3.7];
        let mut model = Quadratic::new(&w0, &[1.0, 10.0], &[0.3, 0.0]);
        let mut opt = Sam::new(sgd(0.0), 0.05, false);
        opt.step(&mut model);
        assert_eq!(model.params[0].value.as_slice().unwrap(), &w0);
    }
}
