//! A chain of layers.

use ndarray::{ArrayD, Axis, Slice};
use tegaki_tensor::{HasParams, Param, SeededRng};

use crate::{Fusable, Layer, Mode};

/// Layers applied one after another; itself a [`Layer`], so chains nest.
///
/// Names are composed as PyTorch's `nn.Sequential` composes them: the
/// parameters of layer `i` are `"{i}.{name}"` (`"0.weight"`, `"2.bias"`,
/// `"1.0.weight"` when nested), and parameterless layers still take an index,
/// so the names of a network match PyTorch's for the same stack of layers.
///
/// # Example
///
/// ```
/// use tegaki_nn::{Layer, Linear, Mode, ReLU, Sequential};
/// use tegaki_tensor::rng;
///
/// let mut init = rng::stream(0, "init");
/// let mut model = Sequential::new()
///     .with(Linear::new(4, 8, &mut init))
///     .with(ReLU::new())
///     .with(Linear::new(8, 3, &mut init));
/// let y = model.forward(ndarray::ArrayD::zeros(vec![2, 4]), Mode::Eval);
/// assert_eq!(y.shape(), &[2, 3]);
///
/// let mut names = Vec::new();
/// model.visit_params(&mut |name, _| names.push(name.to_string()));
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`Sequential::push`].
    #[must_use]
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.push(layer);
        self
    }

    /// Appends `layer` at the end.
    pub fn push(&mut self, layer: impl Layer + 'static) -> &mut Self {
        self.push_boxed(Box::new(layer))
    }

    /// Appends an already boxed layer at the end.
    pub fn push_boxed(&mut self, layer: Box<dyn Layer>) -> &mut Self {
        self.layers.push(layer);
        self
    }

    /// Number of layers (not counting those inside nested chains).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when the chain has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers, in order, mutably.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// Visits every parameter as `"{index}.{name}"`.
    ///
    /// The same as [`Layer::visit_params`] and [`HasParams::visit_params`];
    /// this inherent method spares callers the ambiguity when both traits are
    /// in scope.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_params(&mut |name, p| f(&format!("{i}.{name}"), p));
        }
    }

    /// Forward pass in [`Mode::Eval`]: the network's output for a batch.
    pub fn predict(&mut self, x: ArrayD<f32>) -> ArrayD<f32> {
        self.forward(x, Mode::Eval)
    }
}

impl From<Vec<Box<dyn Layer>>> for Sequential {
    fn from(layers: Vec<Box<dyn Layer>>) -> Self {
        Self { layers }
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Activation values (per layer output) one slice of a large Eval-mode batch
/// may hold: 12 MB of f32, which keeps a slice's activations in L2/L3 between
/// layers. The MNIST CNN (25,088 values per sample after its first
/// convolution) gets slices of 125 samples, the fastest size measured
/// (`cargo xtask bench --workload W3`: 4.6k -> 6.6k images/s on 1 thread,
/// 8.2k -> 11.6k on 2, peak RSS 285 -> 137 MB); MLPs are not sliced at all
/// (their batch-1000 activations are small, and smaller slices would only
/// add fork/join overhead to every layer).
pub const EVAL_SLICE_VALUES: usize = 3 << 20;

impl Sequential {
    /// The Eval-mode chain: each layer is offered the [`Fusable`] operations
    /// of the layers right after it (a convolution applies a following ReLU
    /// and 2x2 max-pool as it writes its output); the layers it absorbs only
    /// drop their Train-mode state.
    fn forward_eval(&mut self, mut x: ArrayD<f32>) -> ArrayD<f32> {
        let mut i = 0;
        while i < self.layers.len() {
            let then: Vec<Fusable> = self.layers[i + 1..]
                .iter()
                .map_while(|l| l.fusable())
                .collect();
            let (y, used) = self.layers[i].forward_fused(x, &then);
            let used = used.min(then.len());
            for layer in &mut self.layers[i + 1..i + 1 + used] {
                layer.fused_away();
            }
            x = y;
            i += 1 + used;
        }
        x
    }

    /// Samples per Eval slice for inputs of `shape`: as many as fit
    /// [`EVAL_SLICE_VALUES`] in the largest per-sample activation (at least
    /// 16); the whole batch when the shapes do not check out (the forward
    /// pass then reports the error).
    fn eval_slice(&self, shape: &[usize]) -> usize {
        let mut s = shape.to_vec();
        if s.is_empty() {
            return usize::MAX;
        }
        s[0] = 1;
        let mut widest: usize = s.iter().product();
        for layer in &self.layers {
            match layer.output_shape(&s) {
                Ok(next) => s = next,
                Err(_) => return usize::MAX,
            }
            widest = widest.max(s.iter().product());
        }
        (EVAL_SLICE_VALUES / widest.max(1)).max(16)
    }
}

impl Layer for Sequential {
    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        format!("Sequential({})", inner.join(", "))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let mut shape = input.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            shape = layer
                .output_shape(&shape)
                .map_err(|e| format!("layer {i}: {e}"))?;
        }
        Ok(shape)
    }

    /// In [`Mode::Eval`], batches whose activations would exceed
    /// [`EVAL_SLICE_VALUES`] go through the whole network one slice at a
    /// time: the activations of a slice stay in cache between layers, and
    /// peak memory no longer grows with the batch (batch-1000 CNN inference
    /// held ~170 MB of activations at once).
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let n = x.shape().first().copied().unwrap_or(0);
        let slice = if mode == Mode::Eval {
            self.eval_slice(x.shape())
        } else {
            usize::MAX
        };
        if mode == Mode::Train {
            return self
                .layers
                .iter_mut()
                .fold(x, |x, layer| layer.forward(x, mode));
        }
        if n <= slice {
            return self.forward_eval(x);
        }
        let mut out: Option<ArrayD<f32>> = None;
        for start in (0..n).step_by(slice) {
            let rows = Slice::from(start..(start + slice).min(n));
            let part = x.slice_axis(Axis(0), rows).to_owned();
            let y = self.forward_eval(part);
            let out = out.get_or_insert_with(|| {
                let mut shape = y.shape().to_vec();
                shape[0] = n;
                ArrayD::zeros(shape)
            });
            out.slice_axis_mut(Axis(0), rows).assign(&y);
        }
        out.expect("n > slice, so at least one slice")
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        self.layers
            .iter_mut()
            .rev()
            .fold(dy, |dy, layer| layer.backward(dy))
    }

    /// Back-propagates as usual down to the first layer that has parameters,
    /// which skips its input gradient (the one nobody reads); parameterless
    /// layers in front of it (a `Flatten`, say) are not back-propagated at
    /// all, so that layer's input-gradient GEMM is never computed.
    fn backward_params_only(&mut self, dy: ArrayD<f32>) {
        let first = self
            .layers
            .iter_mut()
            .position(|l| l.num_params() > 0)
            .unwrap_or(0);
        if let Some((head, rest)) = self.layers[first..].split_first_mut() {
            let dy = rest
                .iter_mut()
                .rev()
                .fold(dy, |dy, layer| layer.backward(dy));
            head.backward_params_only(dy);
        }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        Sequential::visit_params(self, f);
    }

    fn visit_buffers(&mut self, f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_buffers(&mut |name, b| f(&format!("{i}.{name}"), b));
        }
    }

    fn visit_rngs(&mut self, f: &mut dyn FnMut(&str, &mut SeededRng)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_rngs(&mut |name, r| f(&format!("{i}.{name}"), r));
        }
    }
}

impl HasParams for Sequential {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        Sequential::visit_params(self, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};
    use crate::{Dropout, Flatten, LeakyReLU, Linear, Sigmoid, Tanh};
    use tegaki_tensor::{Init, rng};

    #[test]
    fn large_eval_batches_run_in_slices_with_the_same_result() {
        let mut r = rng::seeded(4);
        // 100,000 values per sample after the first layer: slices of 31.
        let mut net = Sequential::new()
            .with(Linear::new(6, 100_000, &mut r))
            .with(Tanh::new())
            .with(Dropout::new(0.5, &mut rng::seeded(1)))
            .with(Linear::new(100_000, 3, &mut r));
        let slice = net.eval_slice(&[1, 6]);
        assert_eq!(slice, EVAL_SLICE_VALUES / 100_000);
        let n = 2 * slice + 17;
        let x = random_input(&[n, 6], 2);
        let y = net.forward(x.clone(), Mode::Eval);
        assert_eq!(y.shape(), &[n, 3]);
        for i in [0, slice - 1, slice, n - 1] {
            let one = net.forward(
                x.slice(ndarray::s![i..=i, ..]).to_owned().into_dyn(),
                Mode::Eval,
            );
            for k in 0..3 {
                let (a, b) = (one[[0, k]], y[[i, k]]);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "row {i}: {a} vs {b}"
                );
            }
        }
    }

    fn names(model: &mut Sequential) -> Vec<String> {
        let mut out = Vec::new();
        Layer::visit_params(model, &mut |n, _| out.push(n.to_string()));
        out
    }

    #[test]
    fn nested_names_and_rngs() {
        let mut init = rng::seeded(0);
        let inner = Sequential::new()
            .with(Linear::new(3, 3, &mut init))
            .with(Dropout::new(0.5, &mut init));
        let mut model = Sequential::new()
            .with(Flatten::new())
            .with(inner)
            .with(Linear::with_init(
                3,
                2,
                Init::XavierUniform,
                false,
                &mut init,
            ));
        assert_eq!(names(&mut model), ["1.0.weight", "1.0.bias", "2.weight"]);
        let mut via_has_params = Vec::new();
        HasParams::visit_params(&mut model, &mut |n, _| via_has_params.push(n.to_string()));
        assert_eq!(names(&mut model), via_has_params);
        let mut rngs = Vec::new();
        model.visit_rngs(&mut |n, _| rngs.push(n.to_string()));
        assert_eq!(rngs, ["1.1.mask"]);
        assert_eq!(model.num_params(), 3 * 3 + 3 + 3 * 2);
        assert_eq!(
            model.describe(),
            "Sequential(Flatten, Sequential(Linear(3, 3), Dropout(p=0.5)), Linear(3, 2, bias=false))"
        );
    }

    #[test]
    fn output_shape_names_the_failing_layer() {
        let mut init = rng::seeded(0);
        let model = Sequential::new()
            .with(Linear::new(4, 5, &mut init))
            .with(Tanh::new())
            .with(Linear::new(6, 2, &mut init));
        let err = model.output_shape(&[1, 4]).unwrap_err();
        assert!(
            err.starts_with("layer 2: Linear(6, 2) expects (N, 6)"),
            "{err}"
        );
        assert_eq!(Sequential::new().output_shape(&[3, 4]).unwrap(), vec![3, 4]);
    }

    #[test]
    fn gradients_through_the_chain() {
        let mut init = rng::seeded(1);
        // The kinked layer comes first, where the input can be kept off its
        // kink; deeper in, a nudged parameter could move a value across 0.
        let mut model = Sequential::new()
            .with(LeakyReLU::new(0.2))
            .with(Linear::new(5, 7, &mut init))
            .with(Sigmoid::new())
            .with(Linear::new(7, 4, &mut init))
            .with(Dropout::new(0.3, &mut init))
            .with(Tanh::new())
            .with(Linear::new(4, 3, &mut init));
        for n in [1, 4] {
            let x = random_input(&[n, 5], n as u64).mapv(|v| if v.abs() < 0.05 { 0.1 } else { v });
            check_layer(&mut model, &x);
        }
    }

    #[test]
    fn params_only_gives_the_same_gradients() {
        let build = || {
            let mut init = rng::seeded(2);
            Sequential::from(vec![
                Box::new(Linear::new(4, 6, &mut init)) as Box<dyn Layer>,
                Box::new(Tanh::new()),
                Box::new(Linear::new(6, 2, &mut init)),
            ])
        };
        let (mut a, mut b) = (build(), build());
        let x = random_input(&[3, 4], 0);
        let dy = random_input(&[3, 2], 1);
        a.forward(x.clone(), Mode::Train);
        b.forward(x, Mode::Train);
        a.backward(dy.clone());
        b.backward_params_only(dy);
        let mut ga = Vec::new();
        a.visit_params(&mut |_, p| ga.push(p.grad.clone()));
        let mut gb = Vec::new();
        b.visit_params(&mut |_, p| gb.push(p.grad.clone()));
        assert_eq!(ga, gb);
    }

    #[test]
    fn empty_chain_is_identity() {
        let mut model = Sequential::new();
        let x = random_input(&[2, 3], 0);
        assert_eq!(model.forward(x.clone(), Mode::Train), x);
        assert_eq!(model.backward(x.clone()), x);
        assert!(model.is_empty());
    }
}
