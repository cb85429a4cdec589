//! The layer contract.

use ndarray::ArrayD;
use tegaki_tensor::{HasParams, Param, SeededRng};

/// Whether a forward pass is for training or for evaluation.
///
/// Only layers whose behaviour differs read it: Dropout (drops only in
/// `Train`) and BatchNorm (batch statistics in `Train`, running statistics
/// in `Eval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Training: stochastic layers are active, BatchNorm uses and updates batch statistics.
    Train,
    /// Evaluation: deterministic; BatchNorm uses its running statistics.
    /// Every sample's output depends on that sample alone, which lets
    /// [`Sequential`](crate::Sequential) run large batches in slices.
    Eval,
}

/// A differentiable layer with a hand-written backward pass.
///
/// Shapes are batch first: dense activations `(N, D)`, images `(N, C, H, W)`.
///
/// * `forward` takes its input by value and keeps only what `backward` needs.
/// * `backward` takes d(loss)/d(output), **assigns** the gradient of every
///   parameter (never accumulates) and returns d(loss)/d(input). Calling it
///   without a preceding `forward` in the same mode panics with a clear message.
/// * Parameters, buffers (e.g. BatchNorm running statistics) and RNGs are
///   reached through the `visit_*` methods, in a fixed order, with stable
///   PyTorch-like local names (`"weight"`, `"bias"`, `"running_mean"`).
///
/// Layers never own optimizers.
pub trait Layer: Send {
    /// A one-line description with the layer's configuration, e.g. `Linear(784, 100)`.
    fn describe(&self) -> String;

    /// The output shape (batch axis included) for an input of `input` shape,
    /// or why that input does not fit this layer.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String>;

    /// Computes the output for a batch.
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32>;

    /// Back-propagates `dy` (same shape as the last output): assigns parameter
    /// gradients and returns the gradient with respect to the last input.
    ///
    /// # Panics
    /// If no forward pass preceded it.
    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32>;

    /// Like [`Layer::backward`] when the caller has no use for the input
    /// gradient (the first layer of a network): layers that can skip that work
    /// override this.
    fn backward_params_only(&mut self, dy: ArrayD<f32>) {
        let _ = self.backward(dy);
    }

    /// Visits every trainable parameter.
    fn visit_params(&mut self, _f: &mut dyn FnMut(&str, &mut Param)) {}

    /// Visits every non-trainable tensor that belongs in a checkpoint
    /// (BatchNorm's running mean and variance).
    fn visit_buffers(&mut self, _f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {}

    /// Visits every random-number generator the layer draws from (Dropout's
    /// mask stream), so checkpoints and gradient checks can capture and
    /// restore them.
    fn visit_rngs(&mut self, _f: &mut dyn FnMut(&str, &mut SeededRng)) {}

    /// In [`Mode::Eval`], the operation this layer performs if it is one
    /// the layer before it may apply itself (see [`Layer::forward_fused`]).
    fn fusable(&self) -> Option<Fusable> {
        None
    }

    /// Drops what the last Train-mode forward kept, as an Eval-mode forward
    /// does; called instead of `forward` on a layer whose work the layer
    /// before it did.
    fn fused_away(&mut self) {}

    /// An Eval-mode forward that also applies a prefix of `then` (the
    /// [`Fusable`] operations of the layers that follow, in order). Returns
    /// the output and the length of the prefix applied; the default applies
    /// none. Fusing saves a pass over the activations per operation, and the
    /// full-size activation itself when a pooling is absorbed.
    fn forward_fused(&mut self, x: ArrayD<f32>, then: &[Fusable]) -> (ArrayD<f32>, usize) {
        let _ = then;
        (self.forward(x, Mode::Eval), 0)
    }

    /// Number of trainable scalars.
    fn num_params(&mut self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |_, p| n += p.len());
        n
    }
}

impl HasParams for dyn Layer + '_ {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        Layer::visit_params(self, f);
    }
}

/// An Eval-mode operation a layer may apply to its predecessor's output as
/// that predecessor writes it ([`Layer::forward_fused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusable {
    /// `max(0, x)`, as [`ReLU`](crate::ReLU).
    Relu,
    /// A 2x2, stride-2 max-pool, as `MaxPool2d::new((2, 2), (2, 2))`.
    MaxPool2x2,
}

/// The message every layer panics with when `backward` comes before `forward`.
pub(crate) fn no_forward(layer: &str) -> String {
    format!("{layer}: backward called before forward (or twice for one forward)")
}
