//! Elementwise activations: Sigmoid, ReLU, LeakyReLU, Tanh.
//!
//! Each keeps only what its backward pass needs: Sigmoid and Tanh keep their
//! output (their derivatives are functions of it), ReLU and LeakyReLU keep
//! their input (moved in, so no copy). Backward rewrites `dy` in place and
//! returns it, so it allocates nothing. Tensors of [`PARALLEL_MIN`] elements or
//! more are processed on the rayon pool.

use crate::layer::no_forward;
use crate::{Layer, Mode};
use ndarray::{ArrayD, Zip};

/// Element count from which elementwise work is split across threads; below
/// it the fork/join overhead costs more than it saves.
pub(crate) const PARALLEL_MIN: usize = 1 << 16;

/// A new array `f(x)` of the same shape, in parallel when large.
pub(crate) fn map(x: &ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync + Send) -> ArrayD<f32> {
    if x.len() >= PARALLEL_MIN {
        Zip::from(x).par_map_collect(|&v| f(v))
    } else {
        x.mapv(f)
    }
}

/// `x[i] = f(x[i])` for every element, in parallel when large.
pub(crate) fn map_inplace(x: &mut ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync + Send) {
    if x.len() >= PARALLEL_MIN {
        x.par_mapv_inplace(f);
    } else {
        x.mapv_inplace(f);
    }
}

/// `a[i] = f(a[i], b[i])` for every element, in parallel when large.
pub(crate) fn zip_assign(
    a: &mut ArrayD<f32>,
    b: &ArrayD<f32>,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) {
    let zip = Zip::from(a).and(b);
    if b.len() >= PARALLEL_MIN {
        zip.par_for_each(|a, &b| *a = f(*a, b));
    } else {
        zip.for_each(|a, &b| *a = f(*a, b));
    }
}

/// Takes the cached tensor and checks `dy` against its shape.
fn take_cache(cache: &mut Option<ArrayD<f32>>, layer: &str, dy: &ArrayD<f32>) -> ArrayD<f32> {
    let cached = cache
        .take()
        .unwrap_or_else(|| panic!("{}", no_forward(layer)));
    assert_eq!(
        dy.shape(),
        cached.shape(),
        "{layer}: dy has shape {:?}, the forward output had {:?}",
        dy.shape(),
        cached.shape()
    );
    cached
}

/// The logistic function `σ(x) = 1 / (1 + e^(-x))`, elementwise.
///
/// Backward uses `σ'(x) = y (1 - y)` on the cached output `y`.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug, Default)]
pub struct Sigmoid {
    output: Option<ArrayD<f32>>,
}

impl Sigmoid {
    /// A sigmoid layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// `σ(x)` computed so that neither branch overflows: for very negative `x`,
/// `e^(-x)` would be infinite, so use `e^x / (1 + e^x)` there.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Layer for Sigmoid {
    fn describe(&self) -> String {
        "Sigmoid".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, mut x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        map_inplace(&mut x, sigmoid);
        self.output = Some(x.clone());
        x
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let y = take_cache(&mut self.output, "Sigmoid", &dy);
        zip_assign(&mut dy, &y, |g, y| g * y * (1.0 - y));
        dy
    }
}

/// The hyperbolic tangent, elementwise.
///
/// Backward uses `tanh'(x) = 1 - y²` on the cached output `y`.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug, Default)]
pub struct Tanh {
    output: Option<ArrayD<f32>>,
}

impl Tanh {
    /// A tanh layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Tanh {
    fn describe(&self) -> String {
        "Tanh".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, mut x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        map_inplace(&mut x, f32::tanh);
        self.output = Some(x.clone());
        x
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let y = take_cache(&mut self.output, "Tanh", &dy);
        zip_assign(&mut dy, &y, |g, y| g * (1.0 - y * y));
        dy
    }
}

/// The rectifier `max(x, 0)`, elementwise.
///
/// The derivative is 1 for `x > 0` and **0 for `x <= 0`, including exactly
/// 0**. (The seed's text says 1 at 0 and its code says 0; we follow the code,
/// as PyTorch does. The choice only matters on a set of measure zero.)
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug, Default)]
pub struct ReLU {
    input: Option<ArrayD<f32>>,
}

impl ReLU {
    /// A ReLU layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for ReLU {
    fn describe(&self) -> String {
        "ReLU".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let y = map(&x, |v| v.max(0.0));
        self.input = Some(x);
        y
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let x = take_cache(&mut self.input, "ReLU", &dy);
        zip_assign(&mut dy, &x, |g, x| if x > 0.0 { g } else { 0.0 });
        dy
    }
}

/// `x` for `x > 0`, `negative_slope · x` otherwise, elementwise.
///
/// As with [`ReLU`], the derivative at exactly 0 is the negative side's
/// (`negative_slope`).
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug)]
pub struct LeakyReLU {
    negative_slope: f32,
    input: Option<ArrayD<f32>>,
}

impl LeakyReLU {
    /// PyTorch's default slope for negative inputs.
    pub const DEFAULT_NEGATIVE_SLOPE: f32 = 0.01;

    /// A leaky ReLU with slope `negative_slope` for negative inputs (DCGAN
    /// uses 0.2).
    ///
    /// # Panics
    /// If `negative_slope` is not finite.
    pub fn new(negative_slope: f32) -> Self {
        assert!(
            negative_slope.is_finite(),
            "LeakyReLU: negative_slope must be finite, got {negative_slope}"
        );
        Self {
            negative_slope,
            input: None,
        }
    }

    /// The slope for negative inputs.
    pub fn negative_slope(&self) -> f32 {
        self.negative_slope
    }
}

impl Default for LeakyReLU {
    fn default() -> Self {
        Self::new(Self::DEFAULT_NEGATIVE_SLOPE)
    }
}

impl Layer for LeakyReLU {
    fn describe(&self) -> String {
        format!("LeakyReLU({})", self.negative_slope)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let slope = self.negative_slope;
        let y = map(&x, |v| if v > 0.0 { v } else { slope * v });
        self.input = Some(x);
        y
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let x = take_cache(&mut self.input, "LeakyReLU", &dy);
        let slope = self.negative_slope;
        zip_assign(&mut dy, &x, |g, x| if x > 0.0 { g } else { slope * g });
        dy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};

    /// A random input with every entry at least 0.05 away from the kink at 0.
    fn off_kink(shape: &[usize], seed: u64) -> ArrayD<f32> {
        random_input(shape, seed).mapv(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
    }

    const SHAPES: [&[usize]; 3] = [&[1, 6], &[4, 5], &[2, 3, 4, 4]];

    #[test]
    fn gradients() {
        for (k, shape) in SHAPES.iter().enumerate() {
            let x = off_kink(shape, k as u64);
            check_layer(&mut Sigmoid::new(), &x);
            check_layer(&mut Tanh::new(), &x);
            check_layer(&mut ReLU::new(), &x);
            check_layer(&mut LeakyReLU::default(), &x);
            check_layer(&mut LeakyReLU::new(0.2), &x);
        }
    }

    #[test]
    fn forward_values() {
        let x = ndarray::arr1(&[-2.0f32, -0.0, 0.0, 0.5, 3.0]).into_dyn();
        let relu = ReLU::new().forward(x.clone(), Mode::Eval);
        assert_eq!(relu.as_slice().unwrap(), &[0.0, 0.0, 0.0, 0.5, 3.0]);
        let leaky = LeakyReLU::new(0.2).forward(x.clone(), Mode::Eval);
        assert_eq!(leaky.as_slice().unwrap(), &[-0.4, 0.0, 0.0, 0.5, 3.0]);
        let s = Sigmoid::new().forward(x.clone(), Mode::Eval);
        assert!((s[[2]] - 0.5).abs() < 1e-7);
        assert!((s[[4]] - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-7);
        let t = Tanh::new().forward(x, Mode::Eval);
        assert!((t[[3]] - 0.5f32.tanh()).abs() < 1e-7);
    }

    #[test]
    fn relu_derivative_at_zero_is_zero() {
        let x = ndarray::arr1(&[0.0f32, -0.0, 1.0]).into_dyn();
        let mut relu = ReLU::new();
        relu.forward(x.clone(), Mode::Train);
        let dx = relu.backward(ArrayD::ones(vec![3]));
        assert_eq!(dx.as_slice().unwrap(), &[0.0, 0.0, 1.0]);
        let mut leaky = LeakyReLU::new(0.2);
        leaky.forward(x, Mode::Train);
        let dx = leaky.backward(ArrayD::ones(vec![3]));
        assert_eq!(dx.as_slice().unwrap(), &[0.2, 0.2, 1.0]);
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        let x = ndarray::arr1(&[-1e4f32, -100.0, 100.0, 1e4]).into_dyn();
        let y = Sigmoid::new().forward(x, Mode::Eval);
        // σ(-100) ≈ 3.7e-44 is a subnormal f32, not 0.
        assert_eq!(y[[0]], 0.0);
        assert!(y[[1]] > 0.0 && y[[1]] < 1e-40);
        assert_eq!(&y.as_slice().unwrap()[2..], &[1.0, 1.0]);
    }

    #[test]
    fn large_tensors_take_the_parallel_path_with_equal_results() {
        let x = off_kink(&[2, PARALLEL_MIN], 3);
        let dy = random_input(&[2, PARALLEL_MIN], 4);
        let mut big = LeakyReLU::new(0.2);
        let y = big.forward(x.clone(), Mode::Train);
        let dx = big.backward(dy.clone());
        for i in [0, 1, PARALLEL_MIN - 1] {
            let v = x[[1, i]];
            let expect = if v > 0.0 { v } else { 0.2 * v };
            assert_eq!(y[[1, i]], expect);
            let g = if v > 0.0 {
                dy[[1, i]]
            } else {
                0.2 * dy[[1, i]]
            };
            assert_eq!(dx[[1, i]], g);
        }
        let mut s = Sigmoid::new();
        let y = s.forward(x.clone(), Mode::Train);
        let dx = s.backward(dy.clone());
        let i = PARALLEL_MIN / 2;
        assert_eq!(y[[0, i]], sigmoid(x[[0, i]]));
        assert_eq!(dx[[0, i]], dy[[0, i]] * y[[0, i]] * (1.0 - y[[0, i]]));
    }

    #[test]
    #[should_panic(expected = "ReLU: backward called before forward")]
    fn backward_before_forward_panics() {
        ReLU::new().backward(ArrayD::zeros(vec![1, 2]));
    }

    #[test]
    #[should_panic(expected = "Sigmoid: backward called before forward")]
    fn backward_twice_panics() {
        let mut s = Sigmoid::new();
        s.forward(ArrayD::zeros(vec![1, 2]), Mode::Train);
        s.backward(ArrayD::zeros(vec![1, 2]));
        s.backward(ArrayD::zeros(vec![1, 2]));
    }
}
