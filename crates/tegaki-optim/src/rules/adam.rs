use ndarray::{ArrayD, ArrayViewD, Zip};
use rayon::prelude::*;

use crate::UpdateRule;

/// Tensors of at least this many elements are updated on the rayon pool.
const PARALLEL_MIN: usize = 1 << 16;

/// Adam (Kingma & Ba 2015), bias-corrected, with `eps` placed as PyTorch does:
///
/// ```text
/// m  = beta1 * m + (1 - beta1) * g
/// v  = beta2 * v + (1 - beta2) * g^2
/// w -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// At `t = 1`, `m_hat = g` and `v_hat = g^2`, so the first step is
/// `lr * sign(g)` up to `eps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Decay of the first moment, in [0, 1). Default 0.9.
    pub beta1: f32,
    /// Decay of the second moment, in [0, 1). Default 0.999.
    pub beta2: f32,
    /// Added to the root of the second moment. Default 1e-8.
    pub eps: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Elements per parallel piece of the slice path.
const PIECE: usize = 1 << 14;

tegaki_tensor::simd_dispatch! {
    /// The Adam step over matching slices; `c` is
    /// `[beta1, beta2, step_size, sqrt(bias2), eps]`. Same operations, in the
    /// same order, as the elementwise closure below.
    fn adam_slices(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &[f32; 5]) {
        let [beta1, beta2, step_size, bias2_sqrt, eps] = *c;
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *w -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
        }
    }
}

/// The shared Adam step; `AdamW` adds its decay before it.
fn adam_update(
    cfg: &Adam,
    value: &mut ArrayD<f32>,
    grad: ArrayViewD<'_, f32>,
    state: &mut [ArrayD<f32>],
    lr: f32,
    t: u64,
) {
    let Adam { beta1, beta2, eps } = *cfg;
    // Bias corrections in f64: beta^t for large t loses nothing there.
    let t = t as f64;
    let bias1 = 1.0 - f64::from(beta1).powf(t);
    let bias2 = 1.0 - f64::from(beta2).powf(t);
    let step_size = (f64::from(lr) / bias1) as f32;
    let bias2_sqrt = bias2.sqrt() as f32;
    let [m, v] = state else {
        panic!(
            "Adam keeps 2 state tensors per parameter, got {}",
            state.len()
        );
    };
    let step = |w: &mut f32, &g: &f32, m: &mut f32, v: &mut f32| {
        *m = beta1 * *m + (1.0 - beta1) * g;
        *v = beta2 * *v + (1.0 - beta2) * g * g;
        *w -= step_size * *m / (v.sqrt() / bias2_sqrt + eps);
    };
    let consts = [beta1, beta2, step_size, bias2_sqrt, eps];
    // Contiguous tensors in one memory order: slice kernels compiled per
    // instruction set (vector sqrt and divide), in parallel pieces.
    // Equal shapes and strides: memory-order slices line up element by element.
    let aligned = [grad.strides(), m.strides(), v.strides()]
        .iter()
        .all(|s| *s == value.strides());
    if aligned
        && let (Some(w), Some(g), Some(m), Some(v)) = (
            value.as_slice_memory_order_mut(),
            grad.as_slice_memory_order(),
            m.as_slice_memory_order_mut(),
            v.as_slice_memory_order_mut(),
        )
    {
        if w.len() >= PARALLEL_MIN {
            w.par_chunks_mut(PIECE)
                .zip(g.par_chunks(PIECE))
                .zip(m.par_chunks_mut(PIECE))
                .zip(v.par_chunks_mut(PIECE))
                .for_each(|(((w, g), m), v)| adam_slices(w, g, m, v, &consts));
        } else {
            adam_slices(w, g, m, v, &consts);
        }
        return;
    }
    let big = value.len() >= PARALLEL_MIN;
    let zip = Zip::from(value).and(&grad).and(m).and(v);
    // Elementwise, so splitting across threads cannot change a single bit.
    if big {
        zip.par_for_each(step);
    } else {
        zip.for_each(step);
    }
}

impl UpdateRule for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["m", "v"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        t: u64,
    ) {
        adam_update(self, value, grad, state, lr, t);
    }
}

/// AdamW (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay,
/// `w *= 1 - lr * weight_decay` before the Adam step, so the decay is not
/// rescaled by the second moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// The Adam part.
    pub adam: Adam,
    /// Decoupled decay, >= 0. Default 0.01 (PyTorch).
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            adam: Adam::default(),
            weight_decay: 0.01,
        }
    }
}

impl UpdateRule for AdamW {
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["m", "v"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        t: u64,
    ) {
        let shrink = 1.0 - lr * self.weight_decay;
        value.mapv_inplace(|w| w * shrink);
        adam_update(&self.adam, value, grad, state, lr, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_trajectories, trajectories};

    #[test]
    fn mixed_layouts_take_the_elementwise_path_with_the_same_result() {
        use ndarray::{Array2, ShapeBuilder};
        let shape = (300, 257); // above PARALLEL_MIN: the parallel paths
        let w0 = Array2::from_shape_fn(shape, |(i, j)| ((i * 31 + j * 7) % 97) as f32 * 0.01);
        let g = Array2::from_shape_fn(shape, |(i, j)| ((i * 13 + j) % 89) as f32 * 0.02 - 0.8);
        let run = |fortran: bool| {
            let mut w = if fortran {
                let mut f = Array2::zeros(shape.f());
                f.assign(&w0);
                f.into_dyn()
            } else {
                w0.clone().into_dyn()
            };
            let mut state = vec![ArrayD::zeros(w.raw_dim()), ArrayD::zeros(w.raw_dim())];
            for t in 1..=3 {
                adam_update(
                    &Adam::default(),
                    &mut w,
                    g.view().into_dyn(),
                    &mut state,
                    1e-2,
                    t,
                );
            }
            w.as_standard_layout().into_owned()
        };
        // Standard everywhere: slice kernels. Column-major value with
        // standard gradient and state: the elementwise Zip.
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn adam_by_hand() {
        // lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8.
        // t=1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25, w1 = 1 - 0.1*0.5/0.5 = 0.9
        // t=2: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975
        //      m_hat = -0.055/0.19 = -0.28947368, v_hat = 0.00124975/0.001999 = 0.62518759
        //      w2 = 0.9 + 0.1*0.28947368/0.79068804 = 0.93661035
        // t=3: m = -0.0495 + 0.2 = 0.1505, v = 0.00124850025 + 0.004 = 0.00524850025
        //      m_hat = 0.1505/0.271 = 0.55535055, v_hat = 0.00524850025/0.002997001 = 1.75125075
        //      w3 = 0.93661035 - 0.1*0.55535055/1.32334831 = 0.89464479
        // second component (w0 = -2, g = 1, 0.25, -0.5):
        // t=1: m_hat = 1, v_hat = 1, w1 = -2.1
        // t=2: m = 0.115, v = 0.0010615, m_hat = 0.60526316, v_hat = 0.53101551
        //      w2 = -2.1 - 0.1*0.60526316/0.72870809 = -2.18305975
        // t=3: m = 0.0535, v = 0.0013104385, m_hat = 0.19741697, v_hat = 0.43724994
        //      w3 = -2.18305975 - 0.1*0.19741697/0.66124877 = -2.21291493
        assert_trajectories(
            trajectories(Adam::default(), 0.1),
            [0.9, 0.936_610_35, 0.894_644_8],
            [-2.1, -2.183_059_8, -2.212_915],
        );
    }

    #[test]
    fn adamw_by_hand() {
        // As Adam, but each step first shrinks w by (1 - 0.1*0.01) = 0.999:
        // w1 = 0.999 - 0.1 = 0.899
        // w2 = 0.899*0.999 + 0.03661035 = 0.898101 + 0.03661035 = 0.93471135
        // w3 = 0.93471135*0.999 - 0.04196556 = 0.93377664 - 0.04196556 = 0.89181108
        // w1 = -2*0.999 - 0.1 = -2.098
        // w2 = -2.098*0.999 - 0.08305975 = -2.095902 - 0.08305975 = -2.17896175
        // w3 = -2.17896175*0.999 - 0.02985517 = -2.17678279 - 0.02985517 = -2.20663796
        let rule = AdamW {
            adam: Adam::default(),
            weight_decay: 0.01,
        };
        assert_trajectories(
            trajectories(rule, 0.1),
            [0.899, 0.934_711_35, 0.891_811_1],
            [-2.098, -2.178_961_8, -2.206_638],
        );
    }

    #[test]
    fn first_step_is_lr_times_sign() {
        let lr = 0.01;
        let grads = [3.0f32, -1e-3, 250.0, -7.5];
        let mut opt = crate::Driver::new(Adam::default(), crate::Schedule::constant(lr));
        let mut p = vec![tegaki_tensor::Param::new(ndarray::ArrayD::zeros(
            ndarray::IxDyn(&[4]),
        ))];
        p[0].grad = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[4]), grads.to_vec()).unwrap();
        crate::Optimizer::apply(&mut opt, &mut p);
        for (w, g) in p[0].value.iter().zip(grads) {
            // |step| = lr * |g| / (|g| + eps): within lr * eps / |g| of lr
            // (plus f32 rounding, 1e-6 relative).
            let bound = lr * (1e-8 / g.abs() + 1e-6);
            assert!((w + lr * g.signum()).abs() <= bound, "g = {g}: step {w}");
        }
    }
}
