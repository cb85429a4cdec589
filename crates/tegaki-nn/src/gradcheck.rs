//! The one finite-difference gradient checker every layer is tested with.
//!
//! The scalar being differentiated is `L = sum(y * r)` for a fixed random
//! upstream gradient `r` (not all ones, which would hide transposition bugs).
//! The analytic gradients come from one `forward` + `backward(r)`; the numeric
//! ones from central differences `(L(v + h) - L(v - h)) / 2h`, on the input and
//! on every parameter the layer visits. Every RNG and buffer the layer exposes is
//! restored before each forward pass, so Dropout draws the same mask and
//! BatchNorm's running statistics do not drift.
//!
//! Callers keep inputs away from kinks (ReLU at 0, max-pool ties): the checker
//! cannot tell a kink from a bug.

use ndarray::ArrayD;
use rand::RngExt;
use tegaki_tensor::{RngState, SeededRng, rng};

use crate::{Layer, Mode};

/// Step and tolerances of a check. f32 arithmetic limits how small the step
/// can be; these defaults hold for every smooth layer in tegaki.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Central-difference step.
    pub step: f32,
    /// Absolute tolerance.
    pub abs: f64,
    /// Relative tolerance (on the larger magnitude of the two gradients).
    pub rel: f64,
    /// At most this many entries of each tensor are checked (chosen at random,
    /// seeded); smaller tensors are checked entirely.
    pub max_entries: usize,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            step: 1e-2,
            abs: 2e-3,
            rel: 2e-2,
            max_entries: 120,
        }
    }
}

/// A mismatch found by [`check_layer`].
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// `"input"` or the parameter's name.
    pub tensor: String,
    /// Flat index of the entry.
    pub index: usize,
    /// Gradient from `backward`.
    pub analytic: f64,
    /// Gradient from central differences.
    pub numeric: f64,
}

fn snapshot(layer: &mut dyn Layer) -> (Vec<RngState>, Vec<ArrayD<f32>>) {
    let mut rngs = Vec::new();
    layer.visit_rngs(&mut |_, r| rngs.push(RngState::capture(r)));
    let mut bufs = Vec::new();
    layer.visit_buffers(&mut |_, b| bufs.push(b.clone()));
    (rngs, bufs)
}

fn restore(layer: &mut dyn Layer, state: &(Vec<RngState>, Vec<ArrayD<f32>>)) {
    let mut i = 0;
    layer.visit_rngs(&mut |_, r| {
        *r = state.0[i].restore();
        i += 1;
    });
    let mut j = 0;
    layer.visit_buffers(&mut |_, b| {
        b.assign(&state.1[j]);
        j += 1;
    });
}

fn objective(y: &ArrayD<f32>, r: &ArrayD<f32>) -> f64 {
    y.iter()
        .zip(r.iter())
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

fn entries(len: usize, tol: &Tolerance, rng: &mut SeededRng) -> Vec<usize> {
    if len <= tol.max_entries {
        (0..len).collect()
    } else {
        (0..tol.max_entries)
            .map(|_| rng.random_range(0..len))
            .collect()
    }
}

/// Checks the input gradient and every parameter gradient of `layer` at `x`
/// in `mode`; returns every mismatch (empty when the layer is right).
pub fn find_mismatches(
    layer: &mut dyn Layer,
    x: &ArrayD<f32>,
    mode: Mode,
    tol: Tolerance,
    seed: u64,
) -> Vec<Mismatch> {
    let mut pick = rng::stream(seed, "gradcheck");
    let state = snapshot(layer);
    let y = layer.forward(x.clone(), mode);
    let r = tegaki_tensor::Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor(y.shape(), &mut pick);
    let dx = layer.backward(r.clone());
    assert_eq!(
        dx.shape(),
        x.shape(),
        "{}: input gradient has the wrong shape",
        layer.describe()
    );
    let mut analytic_params = Vec::new();
    layer.visit_params(&mut |name, p| {
        assert_eq!(p.grad.shape(), p.value.shape(), "{name}: gradient shape");
        analytic_params.push((name.to_string(), p.grad.clone()));
    });

    let loss_at = |layer: &mut dyn Layer, x: &ArrayD<f32>| {
        restore(layer, &state);
        objective(&layer.forward(x.clone(), mode), &r)
    };
    let h = f64::from(tol.step);
    let mut bad = Vec::new();
    let mut compare = |tensor: &str, index: usize, analytic: f64, numeric: f64| {
        if (analytic - numeric).abs() > tol.abs + tol.rel * analytic.abs().max(numeric.abs()) {
            bad.push(Mismatch {
                tensor: tensor.to_string(),
                index,
                analytic,
                numeric,
            });
        }
    };

    let mut xp = x.clone();
    for i in entries(x.len(), &tol, &mut pick) {
        let orig = xp.as_slice_memory_order().expect("contiguous input")[i];
        xp.as_slice_memory_order_mut().unwrap()[i] = orig + tol.step;
        let plus = loss_at(layer, &xp);
        xp.as_slice_memory_order_mut().unwrap()[i] = orig - tol.step;
        let minus = loss_at(layer, &xp);
        xp.as_slice_memory_order_mut().unwrap()[i] = orig;
        let a = f64::from(dx.as_slice_memory_order().expect("contiguous gradient")[i]);
        compare("input", i, a, (plus - minus) / (2.0 * h));
    }

    for (k, (name, grad)) in analytic_params.iter().enumerate() {
        for i in entries(grad.len(), &tol, &mut pick) {
            let nudge = |layer: &mut dyn Layer, delta: f32| {
                let mut idx = 0;
                layer.visit_params(&mut |_, p| {
                    if idx == k {
                        p.value
                            .as_slice_memory_order_mut()
                            .expect("contiguous param")[i] += delta;
                    }
                    idx += 1;
                });
            };
            nudge(layer, tol.step);
            let plus = loss_at(layer, x);
            nudge(layer, -2.0 * tol.step);
            let minus = loss_at(layer, x);
            nudge(layer, tol.step);
            let a = f64::from(grad.as_slice_memory_order().expect("contiguous grad")[i]);
            compare(name, i, a, (plus - minus) / (2.0 * h));
        }
    }
    restore(layer, &state);
    bad
}

/// Asserts that `layer`'s input and parameter gradients at `x` (in `Train`
/// mode) match central differences, with the default [`Tolerance`].
///
/// # Panics
/// On any mismatch, listing the first few.
#[track_caller]
pub fn check_layer(layer: &mut dyn Layer, x: &ArrayD<f32>) {
    check_layer_with(layer, x, Mode::Train, Tolerance::default());
}

/// [`check_layer`] with an explicit mode and tolerance.
///
/// # Panics
/// On any mismatch, listing the first few.
#[track_caller]
pub fn check_layer_with(layer: &mut dyn Layer, x: &ArrayD<f32>, mode: Mode, tol: Tolerance) {
    let bad = find_mismatches(layer, x, mode, tol, 0x5eed);
    assert!(
        bad.is_empty(),
        "{} at input {:?}: {} gradient mismatches, first: {:#?}",
        layer.describe(),
        x.shape(),
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// A random input of `shape` with entries N(0, 1), for gradient checks.
pub fn random_input(shape: &[usize], seed: u64) -> ArrayD<f32> {
    tegaki_tensor::Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor(shape, &mut rng::stream(seed, "input"))
}
