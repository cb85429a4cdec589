//! 2-D transposed convolution through GEMM + col2im.

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayViewMut2, Ix4};
use rayon::prelude::*;
use tegaki_tensor::conv::{
    ConvGeometry, col2im_sample_add, conv_transpose_output_size, im2col_sample,
};
use tegaki_tensor::gemm::gemm_serial;
use tegaki_tensor::{Init, Param, SeededRng};

use crate::layer::no_forward;
use crate::layers::conv2d::lane_sum;
use crate::layers::storage::standard;
use crate::{Layer, Mode};

/// Samples per parallel task; fixed so that gradients are bit-identical on
/// any number of threads (see `Conv2d`).
const CHUNK: usize = 4;

/// The adjoint of [`Conv2d`](crate::Conv2d) as a layer (PyTorch's
/// `ConvTranspose2d`, no dilation, no groups): each input pixel scatters a
/// `KH x KW` stamp of its weights, `stride` apart, into the output.
///
/// With `W` seen as `(in_channels, out_channels*KH*KW)`, one sample's forward
/// pass is the input gradient of a convolution: columns `Wᵀ · x_n`, then
/// [`col2im_sample_add`] into the output. The backward pass is a convolution
/// forward: `dx_n = W · im2col(dy_n)` and `dW = Σₙ x_n · im2col(dy_n)ᵀ`.
///
/// # Shapes
/// * input `(N, in_channels, H, W)`, output `(N, out_channels, OH, OW)` with
///   `OH = (H - 1) * stride_h - 2 * pad_h + KH + output_pad_h` (likewise `OW`)
/// * `weight`: `(in_channels, out_channels, KH, KW)` (PyTorch's layout),
///   `bias`: `(out_channels,)`
pub struct ConvTranspose2d {
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    output_padding: (usize, usize),
    weight: Param,
    bias: Option<Param>,
    cache: Option<Cache>,
    /// Per-chunk (weight, bias) gradient partial sums, kept between steps.
    partials: Vec<(Array2<f32>, Vec<f32>)>,
}

struct Cache {
    input: Array4<f32>,
    /// The geometry of the *forward* convolution this layer is the adjoint
    /// of: it maps the output `(out_channels, OH, OW)` to the input's `H x W`.
    geometry: ConvGeometry,
}

impl ConvTranspose2d {
    /// A transposed convolution whose weight is drawn from `init`, with fans
    /// from the weight shape as PyTorch computes them
    /// (`fan_in = out_channels * KH * KW`). The bias (if any) is zero, except
    /// with [`Init::TorchDefault`], which draws it like the weight.
    ///
    /// # Panics
    /// If a channel count, kernel side or stride is zero, or an output padding
    /// is not below its stride.
    // The argument list mirrors PyTorch's constructor.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        output_padding: (usize, usize),
        bias: bool,
        init: Init,
        rng: &mut SeededRng,
    ) -> Self {
        assert!(
            in_channels > 0 && out_channels > 0,
            "ConvTranspose2d: channel counts must be positive, got {in_channels} -> {out_channels}"
        );
        assert!(
            kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0,
            "ConvTranspose2d: kernel {kernel:?} and stride {stride:?} must be positive"
        );
        assert!(
            output_padding.0 < stride.0 && output_padding.1 < stride.1,
            "ConvTranspose2d: output padding {output_padding:?} must be below the stride {stride:?}"
        );
        let shape = [in_channels, out_channels, kernel.0, kernel.1];
        let weight = Param::new(init.tensor(&shape, rng));
        let bias = bias.then(|| {
            let b = match init {
                Init::TorchDefault => {
                    let receptive = kernel.0 * kernel.1;
                    init.tensor_with_fans(
                        &[out_channels],
                        out_channels * receptive,
                        in_channels * receptive,
                        rng,
                    )
                }
                _ => Init::Zeros.tensor(&[out_channels], rng),
            };
            Param::new(b)
        });
        Self {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            output_padding,
            weight,
            bias,
            cache: None,
            partials: Vec::new(),
        }
    }

    /// A transposed convolution with a bias and PyTorch's default
    /// initialisation (weight and bias U(±1/sqrt(out_channels * KH * KW))).
    pub fn torch_default(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        output_padding: (usize, usize),
        rng: &mut SeededRng,
    ) -> Self {
        Self::new(
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            output_padding,
            true,
            Init::TorchDefault,
            rng,
        )
    }

    /// The weight `(in_channels, out_channels, KH, KW)` and its gradient.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `(out_channels,)` and its gradient, if the layer has one.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// The adjoint convolution's geometry for an input of `shape`.
    fn geometry(&self, shape: &[usize]) -> Result<ConvGeometry, String> {
        let expects = || {
            format!(
                "{} expects (N, {}, H, W), got {shape:?}",
                self.describe(),
                self.in_channels
            )
        };
        let [_, c, h, w] = *shape else {
            return Err(expects());
        };
        if c != self.in_channels || h == 0 || w == 0 {
            return Err(expects());
        }
        let size = |input: usize, k: usize, s: usize, p: usize, op: usize| {
            let full = (input - 1) * s + k + op;
            if full <= 2 * p {
                return Err(format!(
                    "{} on input {shape:?}: padding {p} removes the whole output",
                    self.describe()
                ));
            }
            Ok(conv_transpose_output_size(input, k, s, p, op))
        };
        let oh = size(
            h,
            self.kernel.0,
            self.stride.0,
            self.padding.0,
            self.output_padding.0,
        )?;
        let ow = size(
            w,
            self.kernel.1,
            self.stride.1,
            self.padding.1,
            self.output_padding.1,
        )?;
        let g = ConvGeometry::new(
            (self.out_channels, oh, ow),
            self.kernel,
            self.stride,
            self.padding,
        );
        debug_assert_eq!((g.out_h, g.out_w), (h, w), "adjoint geometry");
        Ok(g)
    }

    /// Assigns dW and db; with `want_dx`, also returns dx.
    fn backward_impl(&mut self, dy: ArrayD<f32>, want_dx: bool) -> Option<ArrayD<f32>> {
        let Cache {
            mut input,
            geometry: g,
        } = self
            .cache
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("ConvTranspose2d")));
        let n = input.dim().0;
        let (ic, hw, ckk) = (self.in_channels, g.col_cols(), g.col_rows());
        assert_eq!(
            dy.shape(),
            &[n, self.out_channels, g.height, g.width],
            "{}: dy shape vs last output",
            self.describe()
        );
        let dy = standard(dy);
        let dy = dy.as_slice().expect("standard layout");

        let chunks = n.div_ceil(CHUNK);
        self.partials.truncate(chunks);
        while self.partials.len() < chunks {
            self.partials
                .push((Array2::zeros((ic, ckk)), vec![0.0; self.out_channels]));
        }
        let w = self
            .weight
            .value
            .view()
            .into_shape_with_order((ic, ckk))
            .expect("weight is contiguous");
        let plane = g.height * g.width;
        // dx overwrites the cached input sample by sample, once that sample
        // has contributed to dW.
        self.partials
            .par_iter_mut()
            .zip(
                input
                    .as_slice_mut()
                    .expect("cached in standard layout")
                    .par_chunks_mut(CHUNK * ic * hw),
            )
            .zip(dy.par_chunks(CHUNK * g.input_len()))
            .for_each_init(
                || vec![0.0f32; ckk * hw],
                |cols, (((part_w, part_b), x_c), dy_c)| {
                    part_b.fill(0.0);
                    let samples = x_c
                        .chunks_exact_mut(ic * hw)
                        .zip(dy_c.chunks_exact(g.input_len()));
                    for (s, (x_s, dy_s)) in samples.enumerate() {
                        im2col_sample(dy_s, &g, cols);
                        let cols_v =
                            ArrayView2::from_shape((ckk, hw), &cols[..]).expect("cols size");
                        // The first sample of a chunk overwrites last step's partial sum.
                        let beta = if s == 0 { 0.0 } else { 1.0 };
                        {
                            let x_v = ArrayView2::from_shape((ic, hw), &*x_s).expect("x size");
                            gemm_serial(1.0, x_v, cols_v.t(), beta, &mut part_w.view_mut());
                        }
                        for (b, p) in part_b.iter_mut().zip(dy_s.chunks_exact(plane)) {
                            *b += lane_sum(p);
                        }
                        if want_dx {
                            let mut dx_v =
                                ArrayViewMut2::from_shape((ic, hw), x_s).expect("x size");
                            gemm_serial(1.0, w, cols_v, 0.0, &mut dx_v);
                        }
                    }
                },
            );

        let mut dw = self
            .weight
            .grad
            .view_mut()
            .into_shape_with_order((ic, ckk))
            .expect("grad is contiguous");
        dw.assign(&self.partials[0].0);
        for (p, _) in &self.partials[1..] {
            dw += p;
        }
        if let Some(b) = &mut self.bias {
            let db = b.grad.as_slice_memory_order_mut().expect("contiguous grad");
            db.copy_from_slice(&self.partials[0].1);
            for (_, p) in &self.partials[1..] {
                for (d, v) in db.iter_mut().zip(p) {
                    *d += v;
                }
            }
        }
        want_dx.then(|| input.into_dyn())
    }
}

impl Layer for ConvTranspose2d {
    fn describe(&self) -> String {
        let bias = if self.bias.is_some() {
            ""
        } else {
            ", bias=false"
        };
        format!(
            "ConvTranspose2d({}, {}, kernel_size={:?}, stride={:?}, padding={:?}, output_padding={:?}{bias})",
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.stride,
            self.padding,
            self.output_padding
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let g = self.geometry(input)?;
        Ok(vec![input[0], self.out_channels, g.height, g.width])
    }

    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let g = self.geometry(x.shape()).unwrap_or_else(|e| panic!("{e}"));
        let x = standard(x)
            .into_dimensionality::<Ix4>()
            .expect("checked above");
        let n = x.dim().0;
        let (ic, hw, ckk) = (self.in_channels, g.col_cols(), g.col_rows());
        let mut y = Array4::<f32>::zeros((n, self.out_channels, g.height, g.width));
        let w = self
            .weight
            .value
            .view()
            .into_shape_with_order((ic, ckk))
            .expect("weight is contiguous");
        let bias = self
            .bias
            .as_ref()
            .map(|b| b.value.as_slice_memory_order().expect("contiguous bias"));
        let plane = g.height * g.width;
        y.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(CHUNK * g.input_len())
            .zip(
                x.as_slice()
                    .expect("standard layout")
                    .par_chunks(CHUNK * ic * hw),
            )
            .for_each_init(
                || vec![0.0f32; ckk * hw],
                |cols, (y_c, x_c)| {
                    for (y_s, x_s) in y_c
                        .chunks_exact_mut(g.input_len())
                        .zip(x_c.chunks_exact(ic * hw))
                    {
                        let x_v = ArrayView2::from_shape((ic, hw), x_s).expect("x size");
                        let mut cols_v =
                            ArrayViewMut2::from_shape((ckk, hw), &mut cols[..]).expect("cols size");
                        gemm_serial(1.0, w.t(), x_v, 0.0, &mut cols_v);
                        if let Some(bias) = bias {
                            for (p, b) in y_s.chunks_exact_mut(plane).zip(bias) {
                                p.fill(*b);
                            }
                        }
                        col2im_sample_add(&cols[..], &g, y_s);
                    }
                },
            );
        self.cache = Some(Cache {
            input: x,
            geometry: g,
        });
        y.into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        self.backward_impl(dy, true).expect("dx was requested")
    }

    fn backward_params_only(&mut self, dy: ArrayD<f32>) {
        self.backward_impl(dy, false);
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            f("bias", b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv2d;
    use crate::gradcheck::{check_layer, random_input};
    use tegaki_tensor::rng;

    /// The definition: every input pixel scatters its weighted kernel, in f64.
    fn naive(
        x: &Array4<f32>,
        w: &Array4<f32>,
        b: Option<&[f32]>,
        s: (usize, usize),
        p: (usize, usize),
        out: (usize, usize),
    ) -> Array4<f32> {
        let (n, ic, h, wd) = x.dim();
        let (_, oc, kh, kw) = w.dim();
        let mut y = ndarray::Array4::<f64>::zeros((n, oc, out.0, out.1));
        for i in 0..n {
            for o in 0..oc {
                for oy in 0..out.0 {
                    for ox in 0..out.1 {
                        y[[i, o, oy, ox]] = b.map_or(0.0, |b| f64::from(b[o]));
                    }
                }
                for c in 0..ic {
                    for iy in 0..h {
                        for ix in 0..wd {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let oy = (iy * s.0 + ki) as isize - p.0 as isize;
                                    let ox = (ix * s.1 + kj) as isize - p.1 as isize;
                                    if oy >= 0
                                        && ox >= 0
                                        && (oy as usize) < out.0
                                        && (ox as usize) < out.1
                                    {
                                        y[[i, o, oy as usize, ox as usize]] +=
                                            f64::from(x[[i, c, iy, ix]])
                                                * f64::from(w[[c, o, ki, kj]]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        y.mapv(|v| v as f32)
    }

    /// (N, IC, H, W, OC, kernel, stride, padding, output_padding)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
    );

    const CASES: [Case; 7] = [
        (1, 2, 3, 3, 1, (4, 4), (2, 2), (1, 1), (0, 0)),
        (3, 3, 4, 3, 2, (3, 3), (1, 1), (1, 1), (0, 0)),
        (2, 2, 3, 4, 3, (3, 2), (2, 2), (1, 0), (1, 1)),
        (5, 1, 2, 3, 2, (2, 3), (3, 2), (0, 2), (2, 0)),
        (2, 4, 3, 3, 3, (1, 1), (2, 2), (0, 0), (1, 0)),
        (9, 2, 2, 2, 2, (3, 3), (2, 1), (2, 1), (1, 0)),
        (1, 3, 1, 1, 4, (7, 7), (1, 1), (0, 0), (0, 0)),
    ];

    #[test]
    fn matches_naive_scatter() {
        for (i, &(n, ic, h, w, oc, k, s, p, op)) in CASES.iter().enumerate() {
            let mut layer =
                ConvTranspose2d::torch_default(ic, oc, k, s, p, op, &mut rng::seeded(i as u64));
            let x = random_input(&[n, ic, h, w], 30 + i as u64);
            let y = layer.forward(x.clone(), Mode::Eval);
            let out = (
                conv_transpose_output_size(h, k.0, s.0, p.0, op.0),
                conv_transpose_output_size(w, k.1, s.1, p.1, op.1),
            );
            assert_eq!(y.shape(), &[n, oc, out.0, out.1], "case {i}");
            let w4 = layer
                .weight
                .value
                .clone()
                .into_dimensionality::<Ix4>()
                .unwrap();
            let b = layer
                .bias
                .as_ref()
                .unwrap()
                .value
                .as_slice()
                .unwrap()
                .to_vec();
            let expect = naive(&x.into_dimensionality().unwrap(), &w4, Some(&b), s, p, out);
            for (a, e) in y.iter().zip(expect.iter()) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {i}: {a} vs {e}"
                );
            }
        }
    }

    fn dot(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter()
            .zip(b)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum()
    }

    #[test]
    fn is_the_adjoint_of_conv2d() {
        // <conv(x), y> == <x, convT(y)> with one shared weight and no bias.
        for (i, &(n, ic, h, w, oc, k, s, p, op)) in CASES.iter().enumerate() {
            let mut convt = ConvTranspose2d::new(
                ic,
                oc,
                k,
                s,
                p,
                op,
                false,
                Init::XavierNormal,
                &mut rng::seeded(i as u64),
            );
            let y = random_input(&[n, ic, h, w], 40 + i as u64);
            let ty = convt.forward(y.clone(), Mode::Eval);
            let [_, _, oh, ow] = ty.shape().try_into().unwrap();
            let mut conv = Conv2d::new(oc, ic, k, s, p, false, Init::Zeros, &mut rng::seeded(0));
            conv.visit_params(&mut |_, param| param.value.assign(&convt.weight.value));
            let x = random_input(&[n, oc, oh, ow], 50 + i as u64);
            let cx = conv.forward(x.clone(), Mode::Eval);
            let (lhs, rhs) = (dot(&cx, &y), dot(&x, &ty));
            assert!(
                (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
                "case {i}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn gradients_on_many_geometries() {
        for (i, &(n, ic, h, w, oc, k, s, p, op)) in CASES.iter().enumerate() {
            let bias = i % 3 != 1;
            let mut layer = ConvTranspose2d::new(
                ic,
                oc,
                k,
                s,
                p,
                op,
                bias,
                Init::XavierNormal,
                &mut rng::seeded(i as u64),
            );
            if let Some(b) = &mut layer.bias {
                b.value.fill(-0.2);
            }
            check_layer(&mut layer, &random_input(&[n, ic, h, w], 60 + i as u64));
        }
    }

    #[test]
    fn params_only_matches_full_backward_and_threads_do_not_matter() {
        let (n, ic, h, w, oc, k, s, p, op) = CASES[5];
        let x = random_input(&[n, ic, h, w], 2);
        let run = |threads: usize, full: bool| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut l =
                    ConvTranspose2d::torch_default(ic, oc, k, s, p, op, &mut rng::seeded(9));
                let y = l.forward(x.clone(), Mode::Train);
                let dy = random_input(y.shape(), 3);
                if full {
                    l.backward(dy);
                } else {
                    l.backward_params_only(dy);
                }
                (l.weight.grad.clone(), l.bias.unwrap().grad.clone())
            })
        };
        assert_eq!(run(1, true), run(3, true));
        assert_eq!(run(2, true), run(2, false));
    }

    #[test]
    fn output_shapes() {
        let mut r = rng::seeded(0);
        let l = ConvTranspose2d::torch_default(8, 4, (4, 4), (2, 2), (1, 1), (0, 0), &mut r);
        assert_eq!(l.output_shape(&[5, 8, 7, 7]).unwrap(), vec![5, 4, 14, 14]);
        assert!(l.output_shape(&[5, 4, 7, 7]).is_err());
        assert!(l.output_shape(&[5, 8, 7]).is_err());
        let l = ConvTranspose2d::torch_default(1, 1, (1, 1), (1, 1), (1, 1), (0, 0), &mut r);
        assert!(l.output_shape(&[1, 1, 1, 1]).is_err());
    }

    #[test]
    #[should_panic(expected = "output padding")]
    fn output_padding_must_be_below_stride() {
        ConvTranspose2d::torch_default(1, 1, (3, 3), (2, 2), (1, 1), (2, 0), &mut rng::seeded(0));
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        let mut l = ConvTranspose2d::torch_default(
            1,
            1,
            (3, 3),
            (1, 1),
            (1, 1),
            (0, 0),
            &mut rng::seeded(0),
        );
        l.backward(ArrayD::zeros(vec![1, 1, 4, 4]));
    }
}
