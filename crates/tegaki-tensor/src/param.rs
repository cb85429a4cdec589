use ndarray::ArrayD;

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
    /// Wraps `value` with a zero gradient of the same shape.
    pub fn new(value: ArrayD<f32>) -> Self {
        let grad = ArrayD::zeros(value.raw_dim());
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
