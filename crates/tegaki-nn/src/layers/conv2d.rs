//! 2-D convolution through im2col + GEMM.

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayViewMut2, Ix4};
use rayon::prelude::*;
use tegaki_tensor::conv::{
    ConvGeometry, col2im_sample_add_strided, im2col_sample_strided, try_conv_output_size,
};
use tegaki_tensor::gemm::gemm_serial;
use tegaki_tensor::sparse::{self, Csr};
use tegaki_tensor::winograd::{self, Epilogue, TILE_VALUES, TileGrid};
use tegaki_tensor::{Init, Param, SeededRng};

use crate::layer::no_forward;
use crate::layers::storage::{recycle_input, reuse_storage, standard};
use crate::{Fusable, Layer, Mode};

/// Samples per parallel task. Fixed (not derived from the thread count) so
/// that the per-chunk weight-gradient partial sums, reduced in chunk order,
/// give bit-identical gradients on any number of threads.
const CHUNK: usize = 4;

/// Output planes of at least this many positions are computed one sample at
/// a time, straight into the output; smaller ones (14x14 = 196) batch
/// `CHUNK` samples per GEMM, whose product is then copied out.
const DIRECT_MIN_POSITIONS: usize = 512;

/// Input channels from which the Winograd products run as GEMMs; below it
/// (a first layer on 1-channel images) the sum over channels is done in
/// registers, where a GEMM with so short an inner dimension would mostly pack.
const WINOGRAD_GEMM_CHANNELS: usize = 8;

/// Tiles per Winograd GEMM: enough columns to amortise the product's
/// packing, few enough that its inputs and outputs (`16 * (C + OC)` values
/// per tile) stay near L2. 100 to 400 measured within 3% of each other for
/// 32 -> 64 channels on 14x14 (49 tiles a sample); 49 was 12% slower.
const WINOGRAD_TILES: usize = 200;

/// How a batch of `n` samples is split: `CHUNK`-sample chunks (the unit of
/// GEMM and of the weight-gradient partial sums) in contiguous runs of
/// `chunks_per_group`, one parallel task and one scratch buffer per run.
struct Plan {
    chunks_per_group: usize,
}

impl Plan {
    /// A few tasks per thread, so that a thread held up by other load does
    /// not hold up the whole pass; never fewer than the buffers `scratch`
    /// already holds (so they are reused, not dropped), and `scratch` grown
    /// to one buffer per group.
    fn new(n: usize, scratch: &mut Vec<Vec<f32>>) -> Self {
        let chunks = n.div_ceil(CHUNK).max(1);
        let wanted = (4 * rayon::current_num_threads())
            .max(scratch.len())
            .clamp(1, chunks);
        let chunks_per_group = chunks.div_ceil(wanted);
        let groups = chunks.div_ceil(chunks_per_group);
        if scratch.len() < groups {
            scratch.resize_with(groups, Vec::new);
        }
        Self { chunks_per_group }
    }
}

/// Cross-correlation of an NCHW batch with `out_channels` filters, as
/// PyTorch's `Conv2d` (no dilation, no groups).
///
/// Each sample's columns `(C*KH*KW, OH*OW)` come from
/// [`im2col_sample`](tegaki_tensor::conv::im2col_sample); `W · cols` (with `W` seen as `(OC, C*KH*KW)`) is
/// written straight into that sample's slice of the NCHW output. The backward
/// pass recomputes the columns instead of caching them from the forward pass:
/// im2col costs a few percent of the GEMMs, while a cache would hold
/// `KH*KW` times the input (22.6 MB for batch 100, 32 -> 64 channels at 14x14).
///
/// # Shapes
/// * input `(N, in_channels, H, W)`, output `(N, out_channels, OH, OW)` with
///   `OH = floor((H + 2*pad_h - KH) / stride_h) + 1` (likewise `OW`)
/// * `weight`: `(out_channels, in_channels, KH, KW)`, `bias`: `(out_channels,)`
pub struct Conv2d {
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    weight: Param,
    bias: Option<Param>,
    /// The last Train-mode input (Eval mode keeps nothing).
    cache: Option<Cache>,
    /// The storage of the last `dy`, reused for the next output.
    spare: Option<ArrayD<f32>>,
    /// Column and product buffers, one per parallel task, kept between steps.
    scratch: Vec<Vec<f32>>,
    /// Per-chunk (weight, bias) gradient partial sums, kept between steps.
    partials: Vec<(Array2<f32>, Vec<f32>)>,
    /// Tests pin the backward path (sparse or im2col); `None` decides by
    /// the density of `dy`.
    force_sparse: Option<bool>,
    /// The Winograd-transformed weight `[16][OC][C]`, recomputed each forward.
    winograd_u: Vec<f32>,
    /// Tests pin the forward path (Winograd or im2col); `None` uses Winograd
    /// wherever [`Conv2d::winograd_grid`] allows it.
    force_winograd: Option<bool>,
}

struct Cache {
    input: Array4<f32>,
    geometry: ConvGeometry,
}

impl Conv2d {
    /// A convolution whose weight is drawn from `init` (fans from the weight
    /// shape: `fan_in = in_channels * KH * KW`). The bias (if any) is zero,
    /// except with [`Init::TorchDefault`], which draws it like the weight.
    ///
    /// # Panics
    /// If a channel count, kernel side or stride is zero.
    // The argument list mirrors PyTorch's constructor; a config struct would
    // only rename the same eight values.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        bias: bool,
        init: Init,
        rng: &mut SeededRng,
    ) -> Self {
        assert!(
            in_channels > 0 && out_channels > 0,
            "Conv2d: channel counts must be positive, got {in_channels} -> {out_channels}"
        );
        assert!(
            kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0,
            "Conv2d: kernel {kernel:?} and stride {stride:?} must be positive"
        );
        let shape = [out_channels, in_channels, kernel.0, kernel.1];
        let weight = Param::new(init.tensor(&shape, rng));
        let bias = bias.then(|| {
            let b = match init {
                Init::TorchDefault => {
                    let receptive = kernel.0 * kernel.1;
                    init.tensor_with_fans(
                        &[out_channels],
                        in_channels * receptive,
                        out_channels * receptive,
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
            weight,
            bias,
            cache: None,
            spare: None,
            scratch: Vec::new(),
            partials: Vec::new(),
            force_sparse: None,
            winograd_u: Vec::new(),
            force_winograd: None,
        }
    }

    /// A convolution with a bias and PyTorch's default initialisation
    /// (weight and bias U(±1/sqrt(in_channels * KH * KW))).
    pub fn torch_default(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        rng: &mut SeededRng,
    ) -> Self {
        Self::new(
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            true,
            Init::TorchDefault,
            rng,
        )
    }

    /// The weight `(out_channels, in_channels, KH, KW)` and its gradient.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `(out_channels,)` and its gradient, if the layer has one.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    fn geometry(&self, shape: &[usize]) -> Result<ConvGeometry, String> {
        let [_, c, h, w] = *shape else {
            return Err(format!(
                "{} expects (N, {}, H, W), got {shape:?}",
                self.describe(),
                self.in_channels
            ));
        };
        if c != self.in_channels {
            return Err(format!(
                "{} expects (N, {}, H, W), got {shape:?}",
                self.describe(),
                self.in_channels
            ));
        }
        let fit = |input, k, s, p| {
            try_conv_output_size(input, k, s, p)
                .map_err(|e| format!("{} on input {shape:?}: {e}", self.describe()))
        };
        fit(h, self.kernel.0, self.stride.0, self.padding.0)?;
        fit(w, self.kernel.1, self.stride.1, self.padding.1)?;
        Ok(ConvGeometry::new(
            (c, h, w),
            self.kernel,
            self.stride,
            self.padding,
        ))
    }

    /// The Winograd tile grid, when this forward can use it: a 3x3, stride-1
    /// kernel, with [`winograd::enabled`] (unless a test pinned the path).
    fn winograd_grid(&self, g: &ConvGeometry) -> Option<TileGrid> {
        let fits = self.kernel == (3, 3) && self.stride == (1, 1);
        if !fits || !self.force_winograd.unwrap_or_else(winograd::enabled) {
            return None;
        }
        TileGrid::new((g.channels, g.height, g.width), self.padding)
    }

    /// The forward pass through Winograd F(2x2, 3x3) into `y` (NCHW, every
    /// element written, shaped by `epilogue`). Samples are split over the
    /// pool as in the im2col path. With enough input channels, each task
    /// transforms `WINOGRAD_TILES`' worth of samples at a time, runs the 16
    /// products as GEMMs and transforms them back; with few, it sums over
    /// channels in registers, one sample at a time.
    fn forward_winograd(&mut self, x: &[f32], grid: &TileGrid, y: &mut [f32], epilogue: Epilogue) {
        let (c, oc) = (self.in_channels, self.out_channels);
        let n = x.len() / grid.input_len();
        let (h, w) = epilogue.out_dims(grid);
        let out_len = oc * h * w;
        self.winograd_u.resize(TILE_VALUES * oc * c, 0.0);
        winograd::transform_weights(
            self.weight.value.as_slice().expect("contiguous weight"),
            oc,
            c,
            &mut self.winograd_u,
        );
        let u = &self.winograd_u[..];
        let bias = bias_values(&self.bias);
        let plan = Plan::new(n, &mut self.scratch);
        let group = plan.chunks_per_group * CHUNK;
        let use_gemm = c >= WINOGRAD_GEMM_CHANNELS;
        let per = if use_gemm {
            (WINOGRAD_TILES / grid.tiles()).max(1)
        } else {
            1
        };
        let ld_max = per * grid.tiles();
        let v_len = TILE_VALUES * c * ld_max;
        let m_len = if use_gemm {
            TILE_VALUES * oc * ld_max
        } else {
            0
        };
        let need = v_len + m_len + grid.scratch_len();
        y.par_chunks_mut(group * out_len)
            .zip(x.par_chunks(group * grid.input_len()))
            .zip(self.scratch.par_iter_mut())
            .for_each(|((y_g, x_g), scratch)| {
                scratch.resize(need, 0.0);
                let (v, rest) = scratch.split_at_mut(v_len);
                let (m, pad) = rest.split_at_mut(m_len);
                for (y_c, x_c) in y_g
                    .chunks_mut(per * out_len)
                    .zip(x_g.chunks(per * grid.input_len()))
                {
                    let samples = x_c.len() / grid.input_len();
                    let ld = samples * grid.tiles();
                    let v = &mut v[..TILE_VALUES * c * ld];
                    for (s, x_s) in x_c.chunks_exact(grid.input_len()).enumerate() {
                        winograd::transform_input(x_s, grid, v, ld, s * grid.tiles(), pad);
                    }
                    if !use_gemm {
                        winograd::multiply_transform(u, v, grid, bias, epilogue, y_c);
                        continue;
                    }
                    let m = &mut m[..TILE_VALUES * oc * ld];
                    for xi in 0..TILE_VALUES {
                        let u_xi = ArrayView2::from_shape((oc, c), &u[xi * oc * c..][..oc * c])
                            .expect("U size");
                        let v_xi = ArrayView2::from_shape((c, ld), &v[xi * c * ld..][..c * ld])
                            .expect("V size");
                        let mut m_xi =
                            ArrayViewMut2::from_shape((oc, ld), &mut m[xi * oc * ld..][..oc * ld])
                                .expect("M size");
                        gemm_serial(1.0, u_xi, v_xi, 0.0, &mut m_xi);
                    }
                    for (s, y_s) in y_c.chunks_exact_mut(out_len).enumerate() {
                        winograd::transform_output(
                            m,
                            grid,
                            ld,
                            s * grid.tiles(),
                            bias,
                            epilogue,
                            y_s,
                        );
                    }
                }
            });
    }

    /// Assigns dW and db; with `want_dx`, also returns dx.
    fn backward_impl(&mut self, dy: ArrayD<f32>, want_dx: bool) -> Option<ArrayD<f32>> {
        let Cache {
            mut input,
            geometry: g,
        } = self
            .cache
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("Conv2d")));
        let n = input.dim().0;
        let (oc, ohw, ckk) = (self.out_channels, g.col_cols(), g.col_rows());
        assert_eq!(
            dy.shape(),
            &[n, oc, g.out_h, g.out_w],
            "{}: dy shape vs last output",
            self.describe()
        );
        let dy_owned = standard(dy);
        let dy = dy_owned.as_slice().expect("standard layout");
        let sparse = match self.force_sparse {
            Some(forced) => forced,
            // Runs of fewer than 16 values (e.g. a 1-channel first layer)
            // leave the direct kernel's vector loops idle: im2col wins there.
            None => {
                sparse::enabled()
                    && self.in_channels * self.kernel.1 >= 16
                    && density(dy) <= MAX_SPARSE_DY_DENSITY
            }
        };

        let chunks = n.div_ceil(CHUNK);
        self.partials.truncate(chunks);
        while self.partials.len() < chunks {
            self.partials
                .push((Array2::zeros((oc, ckk)), vec![0.0; oc]));
        }
        let w = self
            .weight
            .value
            .view()
            .into_shape_with_order((oc, ckk))
            .expect("weight is contiguous");
        let plan = Plan::new(n, &mut self.scratch);
        if sparse {
            self.sparse_partials(&mut input, dy, &g, plan, want_dx);
            self.reduce_partials(true);
            self.spare = Some(dy_owned);
            return want_dx.then(|| input.into_dyn());
        }
        let need = ckk * CHUNK * ohw + oc * CHUNK * ohw;
        // dx overwrites the cached input chunk by chunk, right after that
        // chunk's columns are built: no fresh (page-faulting) allocation.
        self.partials
            .par_chunks_mut(plan.chunks_per_group)
            .zip(
                input
                    .as_slice_mut()
                    .expect("cached in standard layout")
                    .par_chunks_mut(plan.chunks_per_group * CHUNK * g.input_len()),
            )
            .zip(dy.par_chunks(plan.chunks_per_group * CHUNK * oc * ohw))
            .zip(self.scratch.par_iter_mut())
            .for_each(|(((parts, x_g), dy_g), scratch)| {
                scratch.resize(need, 0.0);
                let (cols, dyc) = scratch.split_at_mut(ckk * CHUNK * ohw);
                let chunks = x_g
                    .chunks_mut(CHUNK * g.input_len())
                    .zip(dy_g.chunks(CHUNK * oc * ohw));
                for ((part_w, part_b), (x_c, dy_c)) in parts.iter_mut().zip(chunks) {
                    let ld = dy_c.len() / oc;
                    for (s, x_s) in x_c.chunks_exact(g.input_len()).enumerate() {
                        im2col_sample_strided(x_s, &g, &mut cols[s * ohw..], ld);
                    }
                    // dy of the chunk's samples side by side: (OC, S*OH*OW).
                    part_b.fill(0.0);
                    for (s, dy_s) in dy_c.chunks_exact(oc * ohw).enumerate() {
                        for (o, plane) in dy_s.chunks_exact(ohw).enumerate() {
                            dyc[o * ld + s * ohw..][..ohw].copy_from_slice(plane);
                            part_b[o] += lane_sum(plane);
                        }
                    }
                    let cols_v =
                        ArrayView2::from_shape((ckk, ld), &cols[..ckk * ld]).expect("cols size");
                    let dyc_v = ArrayView2::from_shape((oc, ld), &dyc[..oc * ld]).expect("dy size");
                    gemm_serial(1.0, dyc_v, cols_v.t(), 0.0, &mut part_w.view_mut());
                    if want_dx {
                        let mut dcols = ArrayViewMut2::from_shape((ckk, ld), &mut cols[..ckk * ld])
                            .expect("cols size");
                        gemm_serial(1.0, w.t(), dyc_v, 0.0, &mut dcols);
                        for (s, x_s) in x_c.chunks_exact_mut(g.input_len()).enumerate() {
                            x_s.fill(0.0);
                            col2im_sample_add_strided(&cols[s * ohw..], &g, x_s, ld);
                        }
                    }
                }
            });

        self.reduce_partials(false);
        self.spare = Some(dy_owned);
        want_dx.then(|| input.into_dyn())
    }

    /// Sums the per-chunk partial gradients, in chunk order, into the
    /// parameters' gradients. `hwc`: the weight partials are in the sparse
    /// path's `(OC, KH, KW, C)` order rather than `(OC, C, KH, KW)`.
    fn reduce_partials(&mut self, hwc: bool) {
        let (oc, ckk) = (self.out_channels, self.partials[0].0.ncols());
        let mut sum = std::mem::replace(&mut self.partials[0].0, Array2::zeros((0, 0)));
        for (p, _) in &self.partials[1..] {
            sum += p;
        }
        let mut dw = self
            .weight
            .grad
            .view_mut()
            .into_shape_with_order((oc, ckk))
            .expect("grad is contiguous");
        if hwc {
            let (c, kk) = (self.in_channels, self.kernel.0 * self.kernel.1);
            for (mut dst, src) in dw.rows_mut().into_iter().zip(sum.rows()) {
                for (t, v) in src.iter().enumerate() {
                    // src index t = tap * C + channel; dst = channel * KK + tap.
                    dst[(t % c) * kk + t / c] = *v;
                }
            }
        } else {
            dw.assign(&sum);
        }
        self.partials[0].0 = sum;
        if let Some(b) = &mut self.bias {
            let db = b.grad.as_slice_memory_order_mut().expect("contiguous grad");
            db.copy_from_slice(&self.partials[0].1);
            for (_, p) in &self.partials[1..] {
                for (d, v) in db.iter_mut().zip(p) {
                    *d += v;
                }
            }
        }
    }

    /// The backward pass for a mostly-zero `dy` (behind ReLU and max-pool,
    /// at most a quarter of it is non-zero): a direct convolution over the
    /// non-zeros only. Each sample's input is laid out channels-last with
    /// its padding, so the window under one output position is `KH` runs of
    /// `KW * C` contiguous values; every non-zero `g` at output channel `o`
    /// adds `g * window` to dW[o] and, with `want_dx`, `g * W[o]` onto the
    /// window of dx. Weight partials come out in `(OC, KH, KW, C)` order.
    fn sparse_partials(
        &mut self,
        input: &mut Array4<f32>,
        dy: &[f32],
        g: &ConvGeometry,
        plan: Plan,
        want_dx: bool,
    ) {
        let (c, oc, ohw) = (self.in_channels, self.out_channels, g.col_cols());
        let (kh, kw) = self.kernel;
        let (hp, wp) = (g.height + 2 * g.pad_h, g.width + 2 * g.pad_w);
        let taps = kh * kw * c;
        // W reordered to (OC, KH, KW, C).
        let w = self
            .weight
            .value
            .as_slice_memory_order()
            .expect("contiguous weight");
        let mut wr = vec![0.0f32; oc * taps];
        for o in 0..oc {
            for ci in 0..c {
                for t in 0..kh * kw {
                    wr[o * taps + t * c + ci] = w[(o * c + ci) * kh * kw + t];
                }
            }
        }
        let geo = [g.out_w, g.stride_h, g.stride_w, wp, c, kh, kw];
        let pad = (g.pad_h, g.pad_w);
        let (h, wd) = (g.height, g.width);
        let sample_len = g.input_len();
        let need = 2 * hp * wp * c;
        self.partials
            .par_chunks_mut(plan.chunks_per_group)
            .zip(
                input
                    .as_slice_mut()
                    .expect("cached in standard layout")
                    .par_chunks_mut(plan.chunks_per_group * CHUNK * sample_len),
            )
            .zip(dy.par_chunks(plan.chunks_per_group * CHUNK * oc * ohw))
            .zip(self.scratch.par_iter_mut())
            .for_each(|(((parts, x_g), dy_g), scratch)| {
                scratch.resize(need, 0.0);
                let (xpad, dxpad) = scratch.split_at_mut(hp * wp * c);
                let mut csr = Csr::default();
                let chunks = x_g
                    .chunks_mut(CHUNK * sample_len)
                    .zip(dy_g.chunks(CHUNK * oc * ohw));
                for ((part_w, part_b), (x_c, dy_c)) in parts.iter_mut().zip(chunks) {
                    let dwr = part_w.as_slice_mut().expect("standard layout");
                    dwr.fill(0.0);
                    part_b.fill(0.0);
                    for (x_s, dy_s) in x_c
                        .chunks_exact_mut(sample_len)
                        .zip(dy_c.chunks_exact(oc * ohw))
                    {
                        for (o, plane) in dy_s.chunks_exact(ohw).enumerate() {
                            part_b[o] += lane_sum(plane);
                        }
                        let dys = ArrayView2::from_shape((oc, ohw), dy_s).expect("dy size");
                        csr.compress(dys, 1.0);
                        to_padded_hwc(x_s, (c, h, wd), pad, xpad);
                        if want_dx {
                            dxpad.fill(0.0);
                        }
                        let (indptr, indices, values) = csr.parts();
                        let dx_buf: &mut [f32] = if want_dx { dxpad } else { &mut [] };
                        sparse_sample(xpad, dx_buf, &wr, dwr, indptr, indices, values, &geo);
                        if want_dx {
                            from_padded_hwc(dxpad, (c, h, wd), pad, x_s);
                        }
                    }
                }
            });
    }
}

/// `dy` densities up to this take the sparse backward. ReLU + 2x2 max-pool
/// leave at most 25% (about 15-20% in the MNIST CNN); the direct kernel's
/// cost grows with the non-zeros while im2col + GEMM's does not, and they
/// break even near 45% (measured on the CNN's second convolution).
const MAX_SPARSE_DY_DENSITY: f64 = 0.35;

/// Fraction of non-zero entries.
/// The bias's values, if there is a bias.
fn bias_values(bias: &Option<Param>) -> Option<&[f32]> {
    bias.as_ref()
        .map(|b| b.value.as_slice_memory_order().expect("contiguous bias"))
}

fn density(xs: &[f32]) -> f64 {
    let nnz = sparse::count_nonzero(xs);
    nnz as f64 / xs.len().max(1) as f64
}

/// One sample NCHW `(c, h, w)` -> zero-padded channels-last `(h+2ph, w+2pw, c)`.
fn to_padded_hwc(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (ph, pw): (usize, usize),
    out: &mut [f32],
) {
    let wp = w + 2 * pw;
    out.fill(0.0);
    for ci in 0..c {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for (y, row) in plane.chunks_exact(w).enumerate() {
            let base = ((y + ph) * wp + pw) * c + ci;
            for (xx, &v) in row.iter().enumerate() {
                out[base + xx * c] = v;
            }
        }
    }
}

/// The inverse of [`to_padded_hwc`] (padding dropped), overwriting `x`.
fn from_padded_hwc(
    p: &[f32],
    (c, h, w): (usize, usize, usize),
    (ph, pw): (usize, usize),
    x: &mut [f32],
) {
    let wp = w + 2 * pw;
    for ci in 0..c {
        let plane = &mut x[ci * h * w..(ci + 1) * h * w];
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            let base = ((y + ph) * wp + pw) * c + ci;
            for (xx, v) in row.iter_mut().enumerate() {
                *v = p[base + xx * c];
            }
        }
    }
}

tegaki_tensor::simd_dispatch! {
    /// One sample of the sparse backward (see `Conv2d::sparse_partials`):
    /// `dy` as CSR rows per output channel; `geo` is
    /// `[out_w, stride_h, stride_w, padded width, C, KH, KW]`; `dxpad` is
    /// empty when dx is not wanted.
    #[allow(clippy::too_many_arguments)]
    fn sparse_sample(
        xpad: &[f32],
        dxpad: &mut [f32],
        wr: &[f32],
        dwr: &mut [f32],
        indptr: &[usize],
        indices: &[u32],
        values: &[f32],
        geo: &[usize],
    ) {
        let [ow, sh, sw, wp, c, kh, kw] = geo.try_into().expect("seven geometry values");
        let seg = kw * c;
        let taps = kh * seg;
        let row_len = wp * c;
        let want_dx = !dxpad.is_empty();
        for o in 0..indptr.len() - 1 {
            let dw_o = &mut dwr[o * taps..(o + 1) * taps];
            let w_o = &wr[o * taps..(o + 1) * taps];
            for q in indptr[o]..indptr[o + 1] {
                let p = indices[q] as usize;
                let gv = values[q];
                let base = (p / ow) * sh * row_len + (p % ow) * sw * c;
                for ki in 0..kh {
                    let at = base + ki * row_len;
                    let xs = &xpad[at..at + seg];
                    for (a, &x) in dw_o[ki * seg..(ki + 1) * seg].iter_mut().zip(xs) {
                        *a += gv * x;
                    }
                    if want_dx {
                        let ws = &w_o[ki * seg..(ki + 1) * seg];
                        for (d, &wv) in dxpad[at..at + seg].iter_mut().zip(ws) {
                            *d += gv * wv;
                        }
                    }
                }
            }
        }
    }
}

/// Sum of `xs` in a fixed order that the compiler can vectorise: eight
/// running partial sums (one per SIMD lane) instead of one serial chain.
pub(crate) fn lane_sum(xs: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for v in tail {
        total += v;
    }
    total
}

impl Layer for Conv2d {
    fn describe(&self) -> String {
        let bias = if self.bias.is_some() {
            ""
        } else {
            ", bias=false"
        };
        format!(
            "Conv2d({}, {}, kernel_size={:?}, stride={:?}, padding={:?}{bias})",
            self.in_channels, self.out_channels, self.kernel, self.stride, self.padding
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let g = self.geometry(input)?;
        Ok(vec![input[0], self.out_channels, g.out_h, g.out_w])
    }

    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.forward_with(x, mode, &[]).0
    }

    fn forward_fused(&mut self, x: ArrayD<f32>, then: &[Fusable]) -> (ArrayD<f32>, usize) {
        self.forward_with(x, Mode::Eval, then)
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

impl Conv2d {
    /// The forward pass; in Eval mode it may also apply a prefix of `then`
    /// (ReLU, or ReLU and 2x2 max-pool, on the Winograd path) and returns
    /// that prefix's length.
    fn forward_with(
        &mut self,
        x: ArrayD<f32>,
        mode: Mode,
        then: &[Fusable],
    ) -> (ArrayD<f32>, usize) {
        let g = self.geometry(x.shape()).unwrap_or_else(|e| panic!("{e}"));
        let x = standard(x)
            .into_dimensionality::<Ix4>()
            .expect("checked above");
        let n = x.dim().0;
        let (oc, ohw, ckk) = (self.out_channels, g.col_cols(), g.col_rows());
        if let Some((grid, epilogue, used)) = self.winograd_plan(&g, mode, then) {
            let (h, w) = epilogue.out_dims(&grid);
            let mut y = reuse_storage(&mut self.spare, (n, oc, h, w));
            self.forward_winograd(
                x.as_slice().expect("standard layout"),
                &grid,
                y.as_slice_mut().expect("standard layout"),
                epilogue,
            );
            self.keep_input(x, g, mode);
            return (y.into_dyn(), used);
        }
        let mut y = reuse_storage(&mut self.spare, (n, oc, g.out_h, g.out_w));
        let w = self
            .weight
            .value
            .view()
            .into_shape_with_order((oc, ckk))
            .expect("weight is contiguous");
        let bias = bias_values(&self.bias);
        let plan = Plan::new(n, &mut self.scratch);
        let need = ckk * CHUNK * ohw + oc * CHUNK * ohw;
        y.as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(plan.chunks_per_group * CHUNK * oc * ohw)
            .zip(
                x.as_slice()
                    .expect("standard layout")
                    .par_chunks(plan.chunks_per_group * CHUNK * g.input_len()),
            )
            .zip(self.scratch.par_iter_mut())
            .for_each(|((y_g, x_g), scratch)| {
                scratch.resize(need, 0.0);
                let (cols, prod) = scratch.split_at_mut(ckk * CHUNK * ohw);
                let chunks = y_g
                    .chunks_mut(CHUNK * oc * ohw)
                    .zip(x_g.chunks(CHUNK * g.input_len()));
                for (y_c, x_c) in chunks {
                    if ohw >= DIRECT_MIN_POSITIONS {
                        // Wide planes: one GEMM per sample straight into y,
                        // on top of the bias (no product buffer to copy).
                        for (y_s, x_s) in y_c
                            .chunks_exact_mut(oc * ohw)
                            .zip(x_c.chunks_exact(g.input_len()))
                        {
                            im2col_sample_strided(x_s, &g, cols, ohw);
                            for (o, plane) in y_s.chunks_exact_mut(ohw).enumerate() {
                                plane.fill(bias.map_or(0.0, |b| b[o]));
                            }
                            let cols_v = ArrayView2::from_shape((ckk, ohw), &cols[..ckk * ohw])
                                .expect("cols size");
                            let mut y_v =
                                ArrayViewMut2::from_shape((oc, ohw), y_s).expect("output size");
                            gemm_serial(1.0, w, cols_v, 1.0, &mut y_v);
                        }
                        continue;
                    }
                    // The chunk's columns side by side, (C*KH*KW, S*OH*OW):
                    // one GEMM for S samples runs faster than S small ones.
                    let ld = y_c.len() / oc;
                    for (s, x_s) in x_c.chunks_exact(g.input_len()).enumerate() {
                        im2col_sample_strided(x_s, &g, &mut cols[s * ohw..], ld);
                    }
                    let cols_v =
                        ArrayView2::from_shape((ckk, ld), &cols[..ckk * ld]).expect("cols size");
                    let mut prod_v = ArrayViewMut2::from_shape((oc, ld), &mut prod[..oc * ld])
                        .expect("product size");
                    gemm_serial(1.0, w, cols_v, 0.0, &mut prod_v);
                    for (s, y_s) in y_c.chunks_exact_mut(oc * ohw).enumerate() {
                        for (o, plane) in y_s.chunks_exact_mut(ohw).enumerate() {
                            let src = &prod[o * ld + s * ohw..][..ohw];
                            let b = bias.map_or(0.0, |b| b[o]);
                            for (d, v) in plane.iter_mut().zip(src) {
                                *d = v + b;
                            }
                        }
                    }
                }
            });
        self.keep_input(x, g, mode);
        (y.into_dyn(), 0)
    }

    /// Caches the input for backward in Train mode; recycles it in Eval.
    fn keep_input(&mut self, x: Array4<f32>, geometry: ConvGeometry, mode: Mode) {
        if mode == Mode::Train {
            self.cache = Some(Cache { input: x, geometry });
        } else {
            self.cache = None;
            recycle_input(x);
        }
    }

    /// Whether this forward goes through Winograd, with which epilogue (a
    /// prefix of `then`, in Eval mode) and that prefix's length.
    fn winograd_plan(
        &self,
        g: &ConvGeometry,
        mode: Mode,
        then: &[Fusable],
    ) -> Option<(TileGrid, Epilogue, usize)> {
        let grid = self.winograd_grid(g)?;
        let (epilogue, used) = match (mode, then) {
            (Mode::Eval, [Fusable::Relu, Fusable::MaxPool2x2, ..])
                if g.out_h >= 2 && g.out_w >= 2 =>
            {
                (Epilogue::ReluPool, 2)
            }
            (Mode::Eval, [Fusable::Relu, ..]) => (Epilogue::Relu, 1),
            _ => (Epilogue::Bias, 0),
        };
        // With few input channels (summed in registers) Winograd only pays
        // when it pools: writing the full-size output, it measured slower
        // than im2col + GEMM (16 vs 11 ms for 1000 28x28 samples, 1 -> 32).
        let worth = self.in_channels >= WINOGRAD_GEMM_CHANNELS || epilogue == Epilogue::ReluPool;
        (worth || self.force_winograd == Some(true)).then_some((grid, epilogue, used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};
    use tegaki_tensor::rng;

    /// The definition, one multiply-add at a time, in f64.
    fn naive(
        x: &Array4<f32>,
        w: &Array4<f32>,
        b: Option<&[f32]>,
        s: (usize, usize),
        p: (usize, usize),
    ) -> Array4<f32> {
        let (n, c, h, wd) = x.dim();
        let (oc, _, kh, kw) = w.dim();
        let oh = (h + 2 * p.0 - kh) / s.0 + 1;
        let ow = (wd + 2 * p.1 - kw) / s.1 + 1;
        let mut y = Array4::zeros((n, oc, oh, ow));
        for i in 0..n {
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(0.0, |b| f64::from(b[o]));
                        for ci in 0..c {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * s.0 + ki) as isize - p.0 as isize;
                                    let ix = (ox * s.1 + kj) as isize - p.1 as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        acc += f64::from(x[[i, ci, iy as usize, ix as usize]])
                                            * f64::from(w[[o, ci, ki, kj]]);
                                    }
                                }
                            }
                        }
                        y[[i, o, oy, ox]] = acc as f32;
                    }
                }
            }
        }
        y
    }

    /// (N, C, H, W, OC, kernel, stride, padding)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
    );

    const CASES: [Case; 8] = [
        (1, 1, 5, 5, 2, (3, 3), (1, 1), (0, 0)),
        (3, 2, 6, 7, 3, (3, 3), (1, 1), (1, 1)),
        (2, 3, 7, 6, 4, (3, 2), (2, 2), (1, 0)),
        (5, 2, 6, 6, 2, (2, 3), (2, 1), (2, 2)),
        (1, 4, 5, 4, 3, (1, 1), (2, 2), (0, 0)),
        (2, 1, 8, 8, 5, (5, 5), (1, 2), (2, 1)),
        (9, 2, 4, 5, 3, (3, 3), (2, 2), (1, 2)),
        (2, 3, 3, 3, 2, (3, 3), (1, 1), (2, 2)),
    ];

    #[test]
    fn winograd_and_im2col_forwards_agree() {
        // 3x3 stride-1 geometries: 1 and 3 input channels (channels summed
        // in registers), 8 and 12 (GEMMs, batches spanning several GEMMs);
        // odd and even planes, padding 0, 1 and 2.
        for (i, &(n, c, h, w, oc, p)) in [
            (3, 1, 28, 28, 4, (1, 1)),
            (2, 3, 7, 9, 5, (0, 1)),
            (9, 8, 14, 14, 16, (1, 1)),
            (5, 12, 5, 6, 3, (2, 0)),
            (2, 8, 3, 3, 8, (0, 0)),
        ]
        .iter()
        .enumerate()
        {
            let mut conv =
                Conv2d::torch_default(c, oc, (3, 3), (1, 1), p, &mut rng::seeded(i as u64));
            let x = random_input(&[n, c, h, w], 20 + i as u64);
            conv.force_winograd = Some(false);
            let direct = conv.forward(x.clone(), Mode::Eval);
            conv.force_winograd = Some(true);
            let wino = conv.forward(x, Mode::Eval);
            assert_eq!(wino.shape(), direct.shape(), "case {i}");
            for (a, e) in wino.iter().zip(&direct) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {i}: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn fused_relu_and_pool_match_the_separate_layers() {
        use crate::{MaxPool2d, ReLU, Sequential};
        // (C, H, W): 1-channel and GEMM-sized, with an odd plane whose last
        // row and column the pool drops.
        for (i, &(c, h, w)) in [(1, 28, 28), (8, 14, 14), (9, 7, 9)].iter().enumerate() {
            let make = || {
                // Winograd in the separate layers too (with one channel it
                // would otherwise take im2col there), so the values compare
                // exactly.
                let mut conv =
                    Conv2d::torch_default(c, 6, (3, 3), (1, 1), (1, 1), &mut rng::seeded(7));
                conv.force_winograd = Some(true);
                Sequential::new()
                    .with(conv)
                    .with(ReLU::new())
                    .with(MaxPool2d::new((2, 2), (2, 2)))
                    .with(ReLU::new())
            };
            let x = random_input(&[3, c, h, w], 30 + i as u64);
            let fused = make().forward(x.clone(), Mode::Eval);
            let mut parts = make();
            let separate = parts
                .layers_mut()
                .iter_mut()
                .fold(x, |x, l| l.forward(x, Mode::Eval));
            assert_eq!(fused, separate, "case {i}");
            assert_eq!(fused.shape(), &[3, 6, h / 2, w / 2]);
        }
    }

    #[test]
    fn layers_fused_in_eval_keep_no_training_state() {
        use crate::{MaxPool2d, ReLU, Sequential};
        let mut net = Sequential::new()
            .with(Conv2d::torch_default(
                2,
                4,
                (3, 3),
                (1, 1),
                (1, 1),
                &mut rng::seeded(1),
            ))
            .with(ReLU::new())
            .with(MaxPool2d::new((2, 2), (2, 2)));
        let x = random_input(&[2, 2, 6, 6], 3);
        net.forward(x.clone(), Mode::Train);
        net.forward(x, Mode::Eval);
        for layer in &mut net.layers_mut()[1..] {
            let dy = ArrayD::zeros(vec![2, 4, 6, 6]);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| layer.backward(dy)));
            assert!(
                out.is_err(),
                "{} kept its Train-mode state",
                layer.describe()
            );
        }
    }

    #[test]
    fn matches_naive_convolution() {
        // Plus a plane of 26x24 = 624 positions (the one-GEMM-per-sample path).
        let wide: Case = (5, 2, 26, 24, 3, (3, 3), (1, 1), (1, 1));
        for (i, &(n, c, h, w, oc, k, s, p)) in CASES.iter().chain([&wide]).enumerate() {
            let mut r = rng::seeded(i as u64);
            let mut conv = Conv2d::torch_default(c, oc, k, s, p, &mut r);
            let x = random_input(&[n, c, h, w], 10 + i as u64);
            let y = conv.forward(x.clone(), Mode::Eval);
            let w4 = conv
                .weight
                .value
                .clone()
                .into_dimensionality::<Ix4>()
                .unwrap();
            let b = conv
                .bias
                .as_ref()
                .unwrap()
                .value
                .as_slice()
                .unwrap()
                .to_vec();
            let x4 = x.into_dimensionality::<Ix4>().unwrap();
            let expect = naive(&x4, &w4, Some(&b), s, p);
            assert_eq!(y.shape(), expect.shape(), "case {i}");
            for (a, e) in y.iter().zip(expect.iter()) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "case {i}: {a} vs {e}"
                );
            }
            assert_eq!(conv.output_shape(x4.shape()).unwrap(), y.shape());
        }
    }

    #[test]
    fn gradients_on_many_geometries() {
        for (i, &(n, c, h, w, oc, k, s, p)) in CASES.iter().enumerate() {
            let bias = i % 3 != 2;
            let mut conv = Conv2d::new(
                c,
                oc,
                k,
                s,
                p,
                bias,
                Init::XavierNormal,
                &mut rng::seeded(i as u64),
            );
            if let Some(b) = &mut conv.bias {
                b.value.fill(0.1);
            }
            check_layer(&mut conv, &random_input(&[n, c, h, w], 20 + i as u64));
        }
    }

    #[test]
    fn winograd_forward_passes_gradient_checks() {
        // Train mode with 8+ input channels runs Winograd forward and the
        // im2col backward; forced for a 2-channel layer too.
        for (i, &(n, c, h, w, oc, p)) in [(2, 8, 6, 5, 3, (1, 1)), (3, 2, 5, 5, 2, (0, 1))]
            .iter()
            .enumerate()
        {
            let mut conv =
                Conv2d::torch_default(c, oc, (3, 3), (1, 1), p, &mut rng::seeded(i as u64));
            conv.force_winograd = Some(true);
            let x = random_input(&[n, c, h, w], 40 + i as u64);
            assert!(
                conv.winograd_plan(&conv.geometry(x.shape()).unwrap(), Mode::Train, &[])
                    .is_some()
            );
            check_layer(&mut conv, &x);
        }
    }

    #[test]
    fn sparse_backward_passes_gradient_checks() {
        for (i, &(n, c, h, w, oc, k, s, p)) in CASES.iter().enumerate() {
            let mut conv = Conv2d::new(
                c,
                oc,
                k,
                s,
                p,
                i % 2 == 0,
                Init::XavierNormal,
                &mut rng::seeded(i as u64),
            );
            conv.force_sparse = Some(true);
            check_layer(&mut conv, &random_input(&[n, c, h, w], 30 + i as u64));
        }
    }

    /// `dy` as ReLU + max-pool leave it: about 80% exact zeros.
    fn sparse_dy(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let mut dy = random_input(shape, seed);
        for (i, v) in dy.iter_mut().enumerate() {
            if (i * 2654435761) % 10 < 8 {
                *v = 0.0;
            }
        }
        dy
    }

    #[test]
    fn sparse_and_im2col_backward_agree() {
        // Beyond CASES: geometries whose window runs (C * KW) reach 16, which
        // take the sparse path unforced.
        let wide: [Case; 2] = [
            (3, 8, 6, 6, 5, (3, 3), (1, 1), (1, 1)),
            (2, 16, 5, 7, 3, (2, 3), (2, 1), (1, 0)),
        ];
        for (i, &(n, c, h, w, oc, k, s, p)) in CASES.iter().chain(&wide).enumerate() {
            let x = random_input(&[n, c, h, w], 40 + i as u64);
            let run = |sparse: Option<bool>, dy: Option<ArrayD<f32>>| {
                let mut conv = Conv2d::torch_default(c, oc, k, s, p, &mut rng::seeded(7));
                conv.force_sparse = sparse;
                let y = conv.forward(x.clone(), Mode::Train);
                let dy = dy.unwrap_or_else(|| sparse_dy(y.shape(), 50 + i as u64));
                let dx = conv.backward(dy.clone());
                (dx, conv.weight.grad.clone(), conv.bias.unwrap().grad, dy)
            };
            let (dx_d, dw_d, db_d, dy) = run(Some(false), None);
            let (dx_s, dw_s, db_s, _) = run(Some(true), Some(dy.clone()));
            // Left to itself, a dy this sparse takes the sparse path where
            // windows have runs of 16 or more values.
            let (dx_a, dw_a, _, _) = run(None, Some(dy));
            if c * k.1 >= 16 {
                assert_eq!((&dx_a, &dw_a), (&dx_s, &dw_s), "case {i}");
            } else {
                assert_eq!((&dx_a, &dw_a), (&dx_d, &dw_d), "case {i}");
            }
            for (a, b) in dx_d.iter().zip(&dx_s).chain(dw_d.iter().zip(&dw_s)) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "case {i}: {a} vs {b}"
                );
            }
            assert_eq!(db_d, db_s);
        }
    }

    #[test]
    fn params_only_matches_full_backward() {
        let (n, c, h, w, oc, k, s, p) = CASES[6];
        let x = random_input(&[n, c, h, w], 2);
        let mut a = Conv2d::torch_default(c, oc, k, s, p, &mut rng::seeded(9));
        let mut b = Conv2d::torch_default(c, oc, k, s, p, &mut rng::seeded(9));
        let y = a.forward(x.clone(), Mode::Train);
        b.forward(x, Mode::Train);
        let dy = random_input(y.shape(), 3);
        a.backward(dy.clone());
        b.backward_params_only(dy);
        assert_eq!(a.weight.grad, b.weight.grad);
        assert_eq!(a.bias.unwrap().grad, b.bias.unwrap().grad);
    }

    #[test]
    fn gradients_do_not_depend_on_thread_count() {
        let x = random_input(&[11, 3, 6, 6], 4);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut conv =
                    Conv2d::torch_default(3, 4, (3, 3), (1, 1), (1, 1), &mut rng::seeded(5));
                let y = conv.forward(x.clone(), Mode::Train);
                let dx = conv.backward(random_input(y.shape(), 6));
                (
                    y,
                    dx,
                    conv.weight.grad.clone(),
                    conv.bias.unwrap().grad.clone(),
                )
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn lane_sum_adds_everything() {
        for len in [0, 1, 7, 8, 9, 17, 100] {
            let xs: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let expect: f32 = xs.iter().sum();
            assert!((lane_sum(&xs) - expect).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn rejects_wrong_input_shapes() {
        let conv = Conv2d::torch_default(2, 3, (3, 3), (1, 1), (0, 0), &mut rng::seeded(0));
        assert!(conv.output_shape(&[1, 3, 5, 5]).is_err());
        assert!(conv.output_shape(&[1, 2, 2, 5]).is_err());
        assert!(conv.output_shape(&[2, 5]).is_err());
        assert_eq!(conv.output_shape(&[4, 2, 5, 6]).unwrap(), vec![4, 3, 3, 4]);
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        let mut conv = Conv2d::torch_default(1, 1, (3, 3), (1, 1), (1, 1), &mut rng::seeded(0));
        conv.backward(ArrayD::zeros(vec![1, 1, 4, 4]));
    }

    /// A few SGD steps of a small CNN on a pool of `threads` threads; returns
    /// every parameter's bits.
    fn train_cnn(threads: usize) -> Vec<u32> {
        use crate::{Flatten, Linear, MaxPool2d, ReLU, Sequential, Targets, softmax_cross_entropy};
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut init = rng::seeded(5);
            let mut net = Sequential::new()
                .with(Conv2d::torch_default(
                    1,
                    4,
                    (3, 3),
                    (1, 1),
                    (1, 1),
                    &mut init,
                ))
                .with(ReLU::new())
                .with(MaxPool2d::new((2, 2), (2, 2)))
                .with(Conv2d::torch_default(
                    4,
                    6,
                    (3, 3),
                    (1, 1),
                    (1, 1),
                    &mut init,
                ))
                .with(ReLU::new())
                .with(Flatten::new())
                .with(Linear::new(6 * 4 * 4, 3, &mut init));
            // 13 samples: three full chunks and a partial one.
            for step in 0..4u64 {
                let x = random_input(&[13, 1, 8, 8], 100 + step);
                let labels: Vec<usize> = (0..13).map(|i| (i + step as usize) % 3).collect();
                let logits = net.forward(x, Mode::Train);
                let (_, dy) = softmax_cross_entropy(&logits, &Targets::Classes(labels));
                net.backward(dy);
                net.visit_params(&mut |_, p| {
                    let g = p.grad.clone();
                    p.value.scaled_add(-0.1, &g);
                });
            }
            let mut bits = Vec::new();
            net.visit_params(&mut |_, p| bits.extend(p.value.iter().map(|v| v.to_bits())));
            bits
        })
    }

    #[test]
    fn training_is_bit_identical_for_a_fixed_seed_and_thread_count() {
        let a = train_cnn(2);
        assert_eq!(a, train_cnn(2), "two identical 2-thread runs differ");
        // The weight-gradient partial sums are per fixed-size chunk, reduced in
        // chunk order, so the thread count does not change the result either.
        assert_eq!(a, train_cnn(1), "1 and 2 threads differ");
    }
}
