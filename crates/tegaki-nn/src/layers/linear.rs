//! Fully connected layer.

use ndarray::{Array2, ArrayD, Axis, Ix2, ShapeBuilder};
use tegaki_tensor::gemm::gemm;
use tegaki_tensor::recycle;
use tegaki_tensor::sparse::{self, Csr, csr_matmul};

use crate::layers::storage::recycle_input;
use tegaki_tensor::{Init, Param, SeededRng};

use crate::layer::no_forward;
use crate::{Layer, Mode};

/// `y = x · Wᵀ + b`.
///
/// When at most [`sparse::MAX_DENSITY`] of the input is non-zero (raw
/// MNIST-family pixels are ~80% background zeros), the forward product and the
/// weight gradient skip the zeros (see [`tegaki_tensor::sparse`]); otherwise
/// both are dense GEMMs.
///
/// # Shapes
/// * input `(N, in_features)`, output `(N, out_features)`
/// * `weight`: `(out_features, in_features)` (PyTorch's layout), `bias`: `(out_features,)`
pub struct Linear {
    in_features: usize,
    out_features: usize,
    weight: Param,
    bias: Option<Param>,
    /// The last Train-mode input (Eval mode keeps nothing); its storage
    /// becomes the input gradient.
    input: Option<Array2<f32>>,
    /// The storage of the last `dy`, reused for the next output.
    spare: Option<Array2<f32>>,
    /// The last input compressed, when it was sparse enough (`sparse`).
    csr: Csr,
    sparse: bool,
    /// Scratch for the sparse weight gradient: the input's transpose.
    csr_t: Csr,
}

/// Eval batches from this size compress their input block by block in
/// parallel (`sparse::dense_sparse_matmul`); smaller ones, and Train mode,
/// which keeps the compressed input for backward, use one `Csr`.
const EVAL_BLOCKWISE_MIN: usize = 256;
/// ...if the product is big enough to pay for a fork/join: a 1000 x 100 x 10
/// output layer (1M multiply-adds, ~20 us) is faster on one thread.
const EVAL_BLOCKWISE_MIN_MACS: usize = 1 << 22;

/// `a` (2-D) with the same values stored transposed (column-major): the
/// weight `(out, in)` then lies in memory as `Wᵀ`, `in` rows of `out`
/// contiguous values, which the sparse path reads and writes row by row.
/// GEMMs take either layout at no cost, and elementwise code (optimizers,
/// checkpoints) does not care.
fn transposed_storage(a: ArrayD<f32>) -> ArrayD<f32> {
    let a = a.into_dimensionality::<Ix2>().expect("weight is 2-D");
    let mut out = Array2::zeros(a.raw_dim().f());
    out.assign(&a);
    out.into_dyn()
}

impl Linear {
    /// A layer with PyTorch's default initialisation (weight and bias
    /// U(±1/sqrt(in_features))).
    pub fn new(in_features: usize, out_features: usize, rng: &mut SeededRng) -> Self {
        Self::with_init(in_features, out_features, Init::TorchDefault, true, rng)
    }

    /// A layer whose weight is drawn from `init`; the bias (if any) is zero,
    /// except with [`Init::TorchDefault`], which draws it like the weight.
    pub fn with_init(
        in_features: usize,
        out_features: usize,
        init: Init,
        bias: bool,
        rng: &mut SeededRng,
    ) -> Self {
        let weight = Param::new(transposed_storage(
            init.tensor(&[out_features, in_features], rng),
        ));
        let bias = bias.then(|| {
            let b = match init {
                Init::TorchDefault => {
                    init.tensor_with_fans(&[out_features], in_features, out_features, rng)
                }
                _ => Init::Zeros.tensor(&[out_features], rng),
            };
            Param::new(b)
        });
        Self {
            in_features,
            out_features,
            weight,
            bias,
            input: None,
            spare: None,
            csr: Csr::default(),
            sparse: false,
            csr_t: Csr::default(),
        }
    }

    fn weight2(&self) -> ndarray::ArrayView2<'_, f32> {
        self.weight
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("weight is 2-D")
    }

    /// Restores the transposed storage if a caller replaced the weight or
    /// its gradient with a standard-layout array.
    fn ensure_layout(&mut self) {
        let w = &mut self.weight;
        if !w.value.t().is_standard_layout() {
            w.value = transposed_storage(std::mem::take(&mut w.value));
        }
        if !w.grad.t().is_standard_layout() {
            w.grad = transposed_storage(std::mem::take(&mut w.grad));
        }
    }

    fn check_input(&self, shape: &[usize]) -> Result<(), String> {
        match shape {
            [_, d] if *d == self.in_features => Ok(()),
            _ => Err(format!(
                "{} expects (N, {}), got {shape:?}",
                self.describe(),
                self.in_features
            )),
        }
    }
}

impl Layer for Linear {
    fn describe(&self) -> String {
        let bias = if self.bias.is_some() {
            ""
        } else {
            ", bias=false"
        };
        format!("Linear({}, {}{bias})", self.in_features, self.out_features)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        self.check_input(input)?;
        Ok(vec![input[0], self.out_features])
    }

    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if let Err(e) = self.check_input(x.shape()) {
            panic!("{e}");
        }
        let x = x.into_dimensionality::<Ix2>().expect("checked above");
        let n = x.nrows();
        let shape = (n, self.out_features);
        let mut y = match self.spare.take_if(|s| s.dim() == shape) {
            Some(s) => s,
            None => match recycle::take(shape.0 * shape.1) {
                // Stale values: the bias rows or the GEMM (beta = 0)
                // overwrite every element.
                Some(v) => Array2::from_shape_vec(shape, v).expect("length checked"),
                None => Array2::zeros(shape),
            },
        };
        let beta = match &self.bias {
            Some(b) => {
                let b = b.value.as_slice_memory_order().expect("contiguous bias");
                for mut row in y.rows_mut() {
                    row.as_slice_mut()
                        .expect("standard layout")
                        .copy_from_slice(b);
                }
                1.0
            }
            None => 0.0,
        };
        // Inference on a large batch: row blocks in parallel, each sparse or
        // dense by its own density, keeping nothing.
        if mode == Mode::Eval
            && n >= EVAL_BLOCKWISE_MIN
            && n * self.in_features * self.out_features >= EVAL_BLOCKWISE_MIN_MACS
            && sparse::enabled()
        {
            self.sparse = false;
            self.ensure_layout();
            let wt = self.weight2().reversed_axes();
            let ok = sparse::dense_sparse_matmul(
                x.view(),
                wt,
                beta != 0.0,
                &mut y.view_mut(),
                sparse::MAX_DENSITY,
            );
            if ok {
                self.input = None;
                recycle_input(x);
                return y.into_dyn();
            }
        }
        self.sparse = sparse::enabled() && self.csr.compress(x.view(), sparse::MAX_DENSITY);
        if self.sparse {
            self.ensure_layout();
            let wt = self.weight2().reversed_axes();
            csr_matmul(&self.csr, wt, beta != 0.0, &mut y.view_mut());
        } else {
            gemm(1.0, x.view(), self.weight2().t(), beta, &mut y.view_mut());
        }
        if mode == Mode::Train {
            self.input = Some(x);
        } else {
            self.input = None;
            recycle_input(x);
        }
        y.into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let (dy, x) = self.param_grads(dy);
        // dx overwrites the cached input, which backward no longer needs.
        let mut dx = if x.is_standard_layout() {
            x
        } else {
            Array2::zeros(x.dim())
        };
        gemm(1.0, dy.view(), self.weight2(), 0.0, &mut dx.view_mut());
        self.keep_spare(dy);
        dx.into_dyn()
    }

    fn backward_params_only(&mut self, dy: ArrayD<f32>) {
        let (dy, _) = self.param_grads(dy);
        self.keep_spare(dy);
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            f("bias", b);
        }
    }
}

impl Linear {
    /// Keeps `dy`'s storage for the next output if it is in standard layout.
    fn keep_spare(&mut self, dy: Array2<f32>) {
        self.spare = dy.is_standard_layout().then_some(dy);
    }

    /// Assigns dW = dyᵀ · x and db = Σₙ dy; returns dy as a matrix and the
    /// cached input.
    fn param_grads(&mut self, dy: ArrayD<f32>) -> (Array2<f32>, Array2<f32>) {
        let x = self
            .input
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("Linear")));
        let dy = dy
            .into_dimensionality::<Ix2>()
            .expect("Linear: dy must be (N, out_features)");
        assert_eq!(dy.dim(), (x.nrows(), self.out_features), "Linear: dy shape");
        let mut dw = self
            .weight
            .grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("weight is 2-D");
        if self.sparse && dy.is_standard_layout() && dw.t().is_standard_layout() {
            // dWᵀ = xᵀ · dy with xᵀ sparse, straight into dW's storage.
            self.csr.transpose_into(&mut self.csr_t);
            csr_matmul(&self.csr_t, dy.view(), false, &mut dw.reversed_axes());
        } else {
            gemm(1.0, dy.t(), x.view(), 0.0, &mut dw);
        }
        if let Some(b) = &mut self.bias {
            b.grad.assign(&dy.sum_axis(Axis(0)));
        }
        (dy, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};
    use tegaki_tensor::rng;

    #[test]
    fn forward_matches_formula() {
        let mut l = Linear::new(3, 2, &mut rng::seeded(0));
        let x = random_input(&[4, 3], 1);
        let y = l.forward(x.clone(), Mode::Eval);
        let w = l.weight.value.clone().into_dimensionality::<Ix2>().unwrap();
        let b = l.bias.as_ref().unwrap().value.clone();
        for n in 0..4 {
            for o in 0..2 {
                let expect: f32 = (0..3).map(|i| x[[n, i]] * w[[o, i]]).sum::<f32>() + b[[o]];
                assert!((y[[n, o]] - expect).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gradients() {
        for (n, i, o, bias) in [(1, 5, 3, true), (4, 7, 2, true), (3, 4, 6, false)] {
            let mut l =
                Linear::with_init(i, o, Init::XavierNormal, bias, &mut rng::seeded(n as u64));
            if let Some(b) = &mut l.bias {
                b.value.fill(0.3);
            }
            check_layer(&mut l, &random_input(&[n, i], 7));
        }
    }

    /// An input with ~80% exact zeros, like raw MNIST pixels.
    fn sparse_input(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let mut x = random_input(shape, seed);
        for (i, v) in x.iter_mut().enumerate() {
            if !(i * 7 + seed as usize).is_multiple_of(5) {
                *v = 0.0;
            }
        }
        x
    }

    #[test]
    fn gradients_on_sparse_input() {
        for (n, i, o) in [(3, 40, 5), (5, 30, 70)] {
            let mut l = Linear::new(i, o, &mut rng::seeded(n as u64));
            let x = sparse_input(&[n, i], 4);
            l.forward(x.clone(), Mode::Eval);
            assert!(l.sparse, "the test input must take the sparse path");
            check_layer(&mut l, &x);
        }
    }

    #[test]
    fn sparse_path_matches_reference_product() {
        let x = sparse_input(&[37, 150], 1);
        let dy = random_input(&[37, 90], 2);
        let mut l = Linear::new(150, 90, &mut rng::seeded(3));
        let w = l.weight2().to_owned();
        let b = l.bias.as_ref().unwrap().value.clone();
        let y = l.forward(x.clone(), Mode::Train);
        assert!(l.sparse);
        l.backward_params_only(dy.clone());
        let x2 = x.into_dimensionality::<Ix2>().unwrap();
        let dy2 = dy.into_dimensionality::<Ix2>().unwrap();
        let expect_y = x2.dot(&w.t()) + &b;
        let expect_dw = dy2.t().dot(&x2);
        for (a, b) in y.iter().zip(&expect_y) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        for (a, b) in l.weight.grad.iter().zip(&expect_dw) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // Large Eval batches take the blockwise path, with the same result.
        let rows = (EVAL_BLOCKWISE_MIN_MACS / (150 * 90) + 1).max(EVAL_BLOCKWISE_MIN);
        let big = sparse_input(&[rows, 150], 6);
        let y_big = l.forward(big.clone(), Mode::Eval);
        let expect_big = big.into_dimensionality::<Ix2>().unwrap().dot(&w.t()) + &b;
        for (a, b) in y_big.iter().zip(&expect_big) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // A dense input takes the GEMM path.
        l.forward(random_input(&[37, 150], 5), Mode::Train);
        assert!(!l.sparse);
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        let mut l = Linear::new(2, 2, &mut rng::seeded(0));
        l.backward(ArrayD::zeros(vec![1, 2]));
    }

    #[test]
    fn params_only_matches_full_backward() {
        let x = random_input(&[3, 4], 2);
        let dy = random_input(&[3, 5], 3);
        let mut a = Linear::new(4, 5, &mut rng::seeded(9));
        let mut b = Linear::new(4, 5, &mut rng::seeded(9));
        a.forward(x.clone(), Mode::Train);
        b.forward(x, Mode::Train);
        a.backward(dy.clone());
        b.backward_params_only(dy);
        assert_eq!(a.weight.grad, b.weight.grad);
    }
}
