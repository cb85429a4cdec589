use ndarray::{ArrayD, ShapeBuilder};

/// Zeros of `a`'s shape in `a`'s memory order (standard, or transposed as a
/// `Linear` weight is stored), so that elementwise code walks a parameter,
/// its gradient and optimizer state in one order.
pub fn zeros_like(a: &ArrayD<f32>) -> ArrayD<f32> {
    if !a.is_standard_layout() && a.t().is_standard_layout() {
        ArrayD::zeros(a.raw_dim().f())
    } else {
        ArrayD::zeros(a.raw_dim())
    }
}

/// A trainable tensor and its gradient, kept together so they always have the
/// same shape.
///
/// Layers *assign* `grad` in `backward` (they never accumulate into it), so
/// there is no `zero_grad` step to forget.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The current value.
    pub value: ArrayD<f32>,
    /// d(loss)/d(value) from the most recent backward pass.
    pub grad: ArrayD<f32>,
}

impl Param {
    /// Wraps `value` with a zero gradient of the same shape and memory order.
    pub fn new(value: ArrayD<f32>) -> Self {
        let grad = zeros_like(&value);
        Self { value, grad }
    }

    /// The shape of the value (and of the gradient).
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Number of scalar entries.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True for a zero-sized parameter.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// Anything that owns parameters: a layer, a model, a plain list.
///
/// The visitor walks every trainable [`Param`] in a fixed order with a stable,
/// PyTorch-like name (`"0.weight"`), so an optimizer can keep per-parameter
/// state by position and save it by name without knowing what a layer is.
pub trait HasParams {
    /// Calls `f` on every parameter, always in the same order.
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param));
}

impl HasParams for [Param] {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        for (i, p) in self.iter_mut().enumerate() {
            f(&i.to_string(), p);
        }
    }
}

impl HasParams for Vec<Param> {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.as_mut_slice().visit_params(f);
    }
}
