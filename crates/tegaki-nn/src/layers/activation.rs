//! Elementwise activations: Sigmoid, ReLU, LeakyReLU, Tanh.
//!
//! Every activation works in place on the tensor it is given. In
//! [`Mode::Train`] each keeps only what its backward pass needs, in storage
//! reused between steps: Sigmoid and Tanh a copy of their output (their
//! derivatives are functions of it), ReLU and LeakyReLU one byte per element
//! saying whether the input was positive. [`Mode::Eval`] keeps nothing (a
//! backward pass after it panics). Backward rewrites `dy` in place and returns
//! it, so it allocates nothing. Tensors of [`PARALLEL_MIN`] elements or more
//! are processed on the rayon pool.

use crate::layer::no_forward;
use crate::{Fusable, Layer, Mode};
use ndarray::{ArrayD, Zip};
use rayon::prelude::*;
use tegaki_tensor::math;

/// Element count from which elementwise work is split across threads; below
/// it the fork/join overhead costs more than it saves.
pub(crate) const PARALLEL_MIN: usize = 1 << 16;

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

/// A copy of the last Train-mode output, in storage reused between steps
/// (Eval mode keeps nothing).
#[derive(Debug, Default)]
struct KeptOutput {
    buf: Option<ArrayD<f32>>,
    valid: bool,
}

impl KeptOutput {
    fn keep(&mut self, y: &ArrayD<f32>, mode: Mode) {
        self.valid = mode == Mode::Train;
        if !self.valid {
            return;
        }
        match &mut self.buf {
            Some(b) if b.shape() == y.shape() => zip_assign(b, y, |_, v| v),
            _ => self.buf = Some(y.as_standard_layout().into_owned()),
        }
    }

    /// The kept output, after checking `dy` against its shape.
    fn get(&mut self, layer: &str, dy: &ArrayD<f32>) -> &ArrayD<f32> {
        assert!(std::mem::take(&mut self.valid), "{}", no_forward(layer));
        let kept = self.buf.as_ref().expect("valid implies a buffer");
        assert_eq!(
            dy.shape(),
            kept.shape(),
            "{layer}: dy has shape {:?}, the forward output had {:?}",
            dy.shape(),
            kept.shape()
        );
        kept
    }
}

/// The logistic function `σ(x) = 1 / (1 + e^(-x))`, elementwise.
///
/// Backward uses `σ'(x) = y (1 - y)` on the cached output `y`.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug, Default)]
pub struct Sigmoid {
    output: KeptOutput,
}

impl Sigmoid {
    /// A sigmoid layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Applies a slice kernel to every element, in parallel chunks when large;
/// `scalar` serves tensors that are not contiguous.
fn slices_inplace(x: &mut ArrayD<f32>, kernel: fn(&mut [f32]), scalar: fn(f32) -> f32) {
    match x.as_slice_memory_order_mut() {
        Some(s) if s.len() >= PARALLEL_MIN => s.par_chunks_mut(TASK).for_each(kernel),
        Some(s) => kernel(s),
        None => map_inplace(x, scalar),
    }
}

impl Layer for Sigmoid {
    fn describe(&self) -> String {
        "Sigmoid".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        // Vectorised exp (tegaki_tensor::math): libm's expf is ~10x slower.
        slices_inplace(&mut x, math::sigmoid_inplace, math::sigmoid);
        self.output.keep(&x, mode);
        x
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let y = self.output.get("Sigmoid", &dy);
        zip_assign(&mut dy, y, |g, y| g * y * (1.0 - y));
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
    output: KeptOutput,
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

    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        map_inplace(&mut x, f32::tanh);
        self.output.keep(&x, mode);
        x
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let y = self.output.get("Tanh", &dy);
        zip_assign(&mut dy, y, |g, y| g * (1.0 - y * y));
        dy
    }
}

/// The rectifier `max(x, 0)`, elementwise.
///
/// The derivative is 1 for `x > 0` and **0 for `x <= 0`, including exactly
/// 0**. (The seed's text says 1 at 0 and its code says 0; we follow the code,
/// as PyTorch does. The choice only matters on a set of measure zero.)
///
/// The input is rectified in place (no new tensor); in [`Mode::Train`] the
/// layer keeps one byte per element, whether `x > 0`, in a buffer reused
/// between steps, and in [`Mode::Eval`] nothing.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug, Default)]
pub struct ReLU {
    mask: PositiveMask,
}

impl ReLU {
    /// A ReLU layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Which inputs of the last Train-mode forward pass were positive, with the
/// input's shape (the storage is kept between steps).
#[derive(Debug, Default)]
struct PositiveMask {
    shape: Option<Vec<usize>>,
    bits: Vec<u8>,
}

/// Elements per parallel task of the in-place elementwise kernels.
const TASK: usize = 1 << 15;

/// Slice kernels, compiled per instruction set (`simd_dispatch!`): the
/// generic closures they replace ran at SSE2 speed.
mod kernels {
    tegaki_tensor::simd_dispatch! {
        pub(super) fn relu_train(c: &mut [f32], m: &mut [u8]) {
            for (v, m) in c.iter_mut().zip(m) {
                *m = u8::from(*v > 0.0);
                *v = v.max(0.0);
            }
        }
    }
    tegaki_tensor::simd_dispatch! {
        pub(super) fn relu_eval(c: &mut [f32]) {
            for v in c.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
    tegaki_tensor::simd_dispatch! {
        pub(super) fn relu_backward(c: &mut [f32], m: &[u8]) {
            for (g, &m) in c.iter_mut().zip(m) {
                *g = if m != 0 { *g } else { 0.0 };
            }
        }
    }
    tegaki_tensor::simd_dispatch! {
        pub(super) fn leaky_train(c: &mut [f32], m: &mut [u8], slope: f32) {
            for (v, m) in c.iter_mut().zip(m) {
                let pos = *v > 0.0;
                *m = u8::from(pos);
                *v = if pos { *v } else { slope * *v };
            }
        }
    }
    tegaki_tensor::simd_dispatch! {
        pub(super) fn leaky_eval(c: &mut [f32], slope: f32) {
            for v in c.iter_mut() {
                *v = if *v > 0.0 { *v } else { slope * *v };
            }
        }
    }
    tegaki_tensor::simd_dispatch! {
        pub(super) fn leaky_backward(c: &mut [f32], m: &[u8], slope: f32) {
            for (g, &m) in c.iter_mut().zip(m) {
                *g = if m != 0 { *g } else { slope * *g };
            }
        }
    }
}

type TrainKernel<'a> = &'a (dyn Fn(&mut [f32], &mut [u8]) + Sync);
type EvalKernel<'a> = &'a (dyn Fn(&mut [f32]) + Sync);
type BackwardKernel<'a> = &'a (dyn Fn(&mut [f32], &[u8]) + Sync);

impl PositiveMask {
    /// Applies the activation in place; in Train mode `train` also records
    /// `x[i] > 0` in the mask.
    fn forward(&mut self, x: &mut ArrayD<f32>, mode: Mode, train: TrainKernel, eval: EvalKernel) {
        let mut owned;
        let data = match x.as_slice_memory_order_mut() {
            Some(d) => d,
            None => {
                owned = x.as_standard_layout().into_owned();
                std::mem::swap(x, &mut owned);
                x.as_slice_mut().expect("standard layout")
            }
        };
        if mode == Mode::Eval {
            self.shape = None;
            if data.len() >= PARALLEL_MIN {
                data.par_chunks_mut(TASK).for_each(eval);
            } else {
                eval(data);
            }
            return;
        }
        self.bits.resize(data.len(), 0);
        if data.len() >= PARALLEL_MIN {
            data.par_chunks_mut(TASK)
                .zip(self.bits.par_chunks_mut(TASK))
                .for_each(|(c, m)| train(c, m));
        } else {
            train(data, &mut self.bits);
        }
        self.shape = Some(x.shape().to_vec());
    }

    /// Rewrites `dy` in place with `kernel(dy, mask)`.
    fn backward(
        &mut self,
        layer: &str,
        mut dy: ArrayD<f32>,
        kernel: BackwardKernel,
    ) -> ArrayD<f32> {
        let shape = self
            .shape
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward(layer)));
        assert_eq!(
            dy.shape(),
            &shape[..],
            "{layer}: dy has shape {:?}, the forward output had {:?}",
            dy.shape(),
            shape
        );
        if !dy.is_standard_layout() {
            dy = dy.as_standard_layout().into_owned();
        }
        let data = dy.as_slice_mut().expect("standard layout");
        if data.len() >= PARALLEL_MIN {
            data.par_chunks_mut(TASK)
                .zip(self.bits.par_chunks(TASK))
                .for_each(|(c, m)| kernel(c, m));
        } else {
            kernel(data, &self.bits);
        }
        dy
    }
}

impl Layer for ReLU {
    fn describe(&self) -> String {
        "ReLU".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.mask
            .forward(&mut x, mode, &kernels::relu_train, &kernels::relu_eval);
        x
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        self.mask.backward("ReLU", dy, &kernels::relu_backward)
    }

    fn fusable(&self) -> Option<Fusable> {
        Some(Fusable::Relu)
    }

    fn fused_away(&mut self) {
        self.mask.shape = None;
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
    mask: PositiveMask,
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
            mask: PositiveMask::default(),
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

    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let slope = self.negative_slope;
        self.mask.forward(
            &mut x,
            mode,
            &|c, m| kernels::leaky_train(c, m, slope),
            &|c| kernels::leaky_eval(c, slope),
        );
        x
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let slope = self.negative_slope;
        self.mask.backward("LeakyReLU", dy, &|c, m| {
            kernels::leaky_backward(c, m, slope)
        })
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
        // σ(-100) ≈ 3.7e-44 (subnormal): the vectorised exp flushes
        // results below e^-87 ≈ 1.6e-38 to 0.
        assert_eq!(y[[0]], 0.0);
        assert_eq!(y[[1]], 0.0);
        let tiny = Sigmoid::new().forward(ndarray::arr1(&[-80.0f32]).into_dyn(), Mode::Eval);
        assert!(tiny[[0]] > 0.0 && tiny[[0]] < 1e-34);
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
        assert_eq!(y[[0, i]], math::sigmoid(x[[0, i]]));
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
