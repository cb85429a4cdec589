//! 2-D max pooling.

use ndarray::ArrayD;
use rayon::prelude::*;
use tegaki_tensor::conv::try_conv_output_size;

use crate::layer::no_forward;
use crate::layers::storage::{recycle_input, reuse_storage, standard};
use crate::{Fusable, Layer, Mode};

/// Planes (one channel of one sample) per parallel task, so that small planes
/// do not drown in scheduling overhead.
const MIN_PLANES_PER_TASK: usize = 16;

/// Maximum over `KH x KW` windows moved by `stride` over every channel of an
/// NCHW batch (no padding). Output sizes use floor division, so trailing rows
/// and columns that do not fill a window are ignored.
///
/// Ties go to the first maximum in row-major window order, and a NaN wins
/// over any number (as in PyTorch), so NaNs are never hidden. The position of each window's maximum is
/// kept as a `u32` index into its input plane; the backward pass routes each
/// output gradient to that position only, adding up where overlapping windows
/// chose the same pixel.
///
/// # Shapes
/// input `(N, C, H, W)`, output `(N, C, OH, OW)` with
/// `OH = floor((H - KH) / stride_h) + 1` (likewise `OW`).
pub struct MaxPool2d {
    kernel: (usize, usize),
    stride: (usize, usize),
    /// Argmax of every output, kept (and its storage reused) between steps.
    argmax: Vec<u32>,
    /// The last Train-mode input, taken by `backward`, whose storage becomes
    /// the input gradient (so backward never page-faults a fresh buffer).
    /// Eval mode keeps nothing.
    cache: Option<ArrayD<f32>>,
    /// The storage of the last `dy`, reused for the next output.
    spare: Option<ArrayD<f32>>,
}

impl MaxPool2d {
    /// A pooling layer with the given window and stride (PyTorch's
    /// `MaxPool2d(kernel, stride)` with padding 0).
    ///
    /// # Panics
    /// If a kernel side or a stride is zero.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        assert!(
            kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0,
            "MaxPool2d: kernel {kernel:?} and stride {stride:?} must be positive"
        );
        Self {
            kernel,
            stride,
            argmax: Vec::new(),
            cache: None,
            spare: None,
        }
    }

    fn out_hw(&self, shape: &[usize]) -> Result<(usize, usize), String> {
        let [_, _, h, w] = *shape else {
            return Err(format!(
                "{} expects (N, C, H, W), got {shape:?}",
                self.describe()
            ));
        };
        let fit = |input, k, s| {
            try_conv_output_size(input, k, s, 0)
                .map_err(|e| format!("{} on input {shape:?}: {e}", self.describe()))
        };
        if h * w > u32::MAX as usize {
            return Err(format!(
                "{}: planes of {h}x{w} are too large for u32 argmax indices",
                self.describe()
            ));
        }
        Ok((
            fit(h, self.kernel.0, self.stride.0)?,
            fit(w, self.kernel.1, self.stride.1)?,
        ))
    }
}

/// Whether tap value `c` replaces the running maximum `b`: strictly greater
/// (so the first of equal maxima stays) or NaN (so a NaN anywhere in the
/// window reaches the output; with several, the last one's index is kept).
#[inline(always)]
fn takes(c: f32, b: f32) -> bool {
    (c > b) | c.is_nan()
}

/// Pools one plane of width `w` into `y` (`oh x ow`), recording argmax indices.
fn pool_plane(
    x: &[f32],
    w: usize,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    ow: usize,
    y: &mut [f32],
    idx: &mut [u32],
) {
    if (kh, kw, sh, sw) == (2, 2, 2, 2) {
        pool_plane_2x2(x, w, ow, y, idx);
        return;
    }
    let rows = y.chunks_exact_mut(ow).zip(idx.chunks_exact_mut(ow));
    for (oy, (y_row, idx_row)) in rows.enumerate() {
        let top = oy * sh * w;
        for (ox, (y_o, i_o)) in y_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
            let first = top + ox * sw;
            let (mut best, mut best_i) = (x[first], first);
            for ki in 0..kh {
                let row = first + ki * w;
                for (kj, &c) in x[row..row + kw].iter().enumerate() {
                    let take = takes(c, best);
                    best = if take { c } else { best };
                    best_i = if take { row + kj } else { best_i };
                }
            }
            *y_o = best;
            *i_o = best_i as u32;
        }
    }
}

/// The 2x2, stride-2 case (every pooling layer of the MNIST CNN): AVX-512
/// when available, else the four taps unrolled (about 4x faster than the
/// general loop). Both pick the same element under the same rules.
fn pool_plane_2x2(x: &[f32], w: usize, ow: usize, y: &mut [f32], idx: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if tegaki_tensor::simd::level() == 2 {
        // SAFETY: AVX-512F is present (level 2).
        unsafe { avx512::pool_plane_2x2(x, w, ow, y, idx) };
        return;
    }
    pool_plane_2x2_portable(x, w, ow, y, idx);
}

tegaki_tensor::simd_dispatch! {
    fn pool_plane_2x2_portable(x: &[f32], w: usize, ow: usize, y: &mut [f32], idx: &mut [u32]) {
        let rows = x
            .chunks_exact(2 * w)
            .zip(y.chunks_exact_mut(ow).zip(idx.chunks_exact_mut(ow)));
        for (oy, (pair, (y_row, idx_row))) in rows.enumerate() {
            let base = oy * 2 * w;
            for (ox, (y_o, i_o)) in y_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
                let j = 2 * ox;
                let (mut best, mut best_i) = (pair[j], j);
                for t in [j + 1, w + j, w + j + 1] {
                    let c = pair[t];
                    let take = takes(c, best);
                    best = if take { c } else { best };
                    best_i = if take { t } else { best_i };
                }
                *y_o = best;
                *i_o = (base + best_i) as u32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// 16 outputs at a time: each row pair's 32 inputs are split into even
    /// and odd columns, and the four taps compared in row-major order with
    /// the scalar rule (strictly greater, or NaN, replaces the maximum).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_plane_2x2(
        x: &[f32],
        w: usize,
        ow: usize,
        y: &mut [f32],
        idx: &mut [u32],
    ) {
        let oh = y.len() / ow;
        assert!(x.len() >= 2 * oh * w && 2 * ow <= w && idx.len() == y.len());
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let (one, wv, w1) = (
            _mm512_set1_epi32(1),
            _mm512_set1_epi32(w as i32),
            _mm512_set1_epi32(w as i32 + 1),
        );
        let take = |c: __m512, best: __m512| -> __mmask16 {
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c, best) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(c, c)
        };
        for oy in 0..oh {
            let base = oy * 2 * w;
            let mut ox = 0;
            while ox < ow {
                let k = (ow - ox).min(16);
                let out_mask: __mmask16 = if k == 16 { !0 } else { (1u16 << k) - 1 };
                let lo_n = (2 * k).min(16);
                let hi_n = 2 * k - lo_n;
                let lo_mask: __mmask16 = if lo_n == 16 { !0 } else { (1u16 << lo_n) - 1 };
                let hi_mask: __mmask16 = if hi_n == 16 { !0 } else { (1u16 << hi_n) - 1 };
                // SAFETY: masked loads read columns 2*ox .. 2*ox + 2k <= w of
                // rows 2*oy and 2*oy + 1 (asserted in bounds); masked stores
                // write outputs ox .. ox + k of row oy.
                unsafe {
                    let pa = x.as_ptr().add(base + 2 * ox);
                    let pb = pa.add(w);
                    let a_lo = _mm512_maskz_loadu_ps(lo_mask, pa);
                    let a_hi = _mm512_maskz_loadu_ps(hi_mask, pa.add(16));
                    let b_lo = _mm512_maskz_loadu_ps(lo_mask, pb);
                    let b_hi = _mm512_maskz_loadu_ps(hi_mask, pb.add(16));
                    let mut best = _mm512_permutex2var_ps(a_lo, even, a_hi);
                    let start = _mm512_add_epi32(_mm512_set1_epi32((base + 2 * ox) as i32), lane2);
                    let mut at = start;
                    for (c, off) in [
                        (_mm512_permutex2var_ps(a_lo, odd, a_hi), one),
                        (_mm512_permutex2var_ps(b_lo, even, b_hi), wv),
                        (_mm512_permutex2var_ps(b_lo, odd, b_hi), w1),
                    ] {
                        let m = take(c, best);
                        best = _mm512_mask_blend_ps(m, best, c);
                        at = _mm512_mask_blend_epi32(m, at, _mm512_add_epi32(start, off));
                    }
                    let row = oy * ow + ox;
                    _mm512_mask_storeu_ps(y.as_mut_ptr().add(row), out_mask, best);
                    _mm512_mask_storeu_epi32(idx.as_mut_ptr().add(row).cast(), out_mask, at);
                }
                ox += k;
            }
        }
    }
}

impl Layer for MaxPool2d {
    fn describe(&self) -> String {
        format!(
            "MaxPool2d(kernel_size={:?}, stride={:?})",
            self.kernel, self.stride
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let (oh, ow) = self.out_hw(input)?;
        Ok(vec![input[0], input[1], oh, ow])
    }

    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let (oh, ow) = self.out_hw(x.shape()).unwrap_or_else(|e| panic!("{e}"));
        let [n, c, h, w] = x.shape().try_into().expect("checked above");
        let x = standard(x);
        let mut y = reuse_storage(&mut self.spare, (n, c, oh, ow));
        self.argmax.resize(n * c * oh * ow, 0);
        let (kernel, stride) = (self.kernel, self.stride);
        y.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(oh * ow)
            .zip(self.argmax.par_chunks_mut(oh * ow))
            .zip(x.as_slice().expect("standard layout").par_chunks(h * w))
            .with_min_len(MIN_PLANES_PER_TASK)
            .for_each(|((y_p, idx_p), x_p)| pool_plane(x_p, w, kernel, stride, ow, y_p, idx_p));
        if mode == Mode::Train {
            self.cache = Some(x);
        } else {
            self.cache = None;
            recycle_input(x);
        }
        y.into_dyn()
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let mut dx = self
            .cache
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("MaxPool2d")));
        let [n, c, h, w] = dx.shape().try_into().expect("checked in forward");
        let (oh, ow) = self.out_hw(dx.shape()).expect("checked in forward");
        assert_eq!(
            dy.shape(),
            &[n, c, oh, ow],
            "{}: dy shape vs last output",
            self.describe()
        );
        let dy = standard(dy);
        dx.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(h * w)
            .zip(self.argmax.par_chunks(oh * ow))
            .zip(dy.as_slice().expect("standard layout").par_chunks(oh * ow))
            .with_min_len(MIN_PLANES_PER_TASK)
            .for_each(|((dx_p, idx_p), dy_p)| {
                dx_p.fill(0.0);
                for (&i, &g) in idx_p.iter().zip(dy_p) {
                    dx_p[i as usize] += g;
                }
            });
        self.spare = Some(dy);
        dx
    }

    fn fusable(&self) -> Option<Fusable> {
        (self.kernel == (2, 2) && self.stride == (2, 2)).then_some(Fusable::MaxPool2x2)
    }

    fn fused_away(&mut self) {
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};
    use ndarray::Array;

    #[test]
    fn vector_2x2_kernel_matches_portable_with_ties_and_nans() {
        for (h, w) in [(28, 28), (14, 14), (7, 7), (5, 9), (4, 40), (2, 66)] {
            let (oh, ow) = (h / 2, w / 2);
            // Few distinct values, so windows have ties; a few NaNs.
            let x: Vec<f32> = (0..h * w)
                .map(|i| match (i * 7919) % 23 {
                    0 => f32::NAN,
                    r => (r % 5) as f32,
                })
                .collect();
            let (mut y1, mut i1) = (vec![0.0; oh * ow], vec![0u32; oh * ow]);
            let (mut y2, mut i2) = (vec![0.0; oh * ow], vec![0u32; oh * ow]);
            pool_plane_2x2(&x, w, ow, &mut y1, &mut i1);
            pool_plane_2x2_portable(&x, w, ow, &mut y2, &mut i2);
            assert_eq!(i1, i2, "{h}x{w}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y1), bits(&y2), "{h}x{w}");
        }
    }

    #[test]
    fn forward_picks_window_maxima() {
        // One 4x5 plane; 2x2 windows, stride 2: the last column is dropped.
        #[rustfmt::skip]
        let x = Array::from_shape_vec((1, 1, 4, 5), vec![
            1., 5., 2., 0., 99.,
            3., 4., 8., 1., 99.,
            0., 0., 7., 7., 99.,
            6., 0., 7., 2., 99.,
        ]).unwrap().into_dyn();
        let mut pool = MaxPool2d::new((2, 2), (2, 2));
        let y = pool.forward(x, Mode::Train);
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.as_slice().unwrap(), &[5., 8., 6., 7.]);
    }

    #[test]
    fn gradient_goes_to_the_argmax_only_and_ties_to_the_first() {
        // Window (1,1) holds a tie: 7 at (2,2), (2,3) and (3,2); the first in
        // row-major order, (2,2), takes the gradient.
        #[rustfmt::skip]
        let x = Array::from_shape_vec((1, 1, 4, 4), vec![
            1., 5., 2., 0.,
            3., 4., 8., 1.,
            0., 0., 7., 7.,
            6., 0., 7., 2.,
        ]).unwrap().into_dyn();
        let mut pool = MaxPool2d::new((2, 2), (2, 2));
        pool.forward(x, Mode::Train);
        let dy = Array::from_shape_vec((1, 1, 2, 2), vec![10., 20., 30., 40.])
            .unwrap()
            .into_dyn();
        let dx = pool.backward(dy);
        #[rustfmt::skip]
        let expect = [
            0., 10., 0., 0.,
            0., 0., 20., 0.,
            0., 0., 40., 0.,
            30., 0., 0., 0.,
        ];
        assert_eq!(dx.as_slice().unwrap(), &expect);
    }

    #[test]
    fn overlapping_windows_accumulate() {
        // 3x3 windows, stride 1, on a 4x4 plane whose maximum (9 at (1,1)) lies
        // in all four windows.
        #[rustfmt::skip]
        let x = Array::from_shape_vec((1, 1, 4, 4), vec![
            0., 1., 2., 0.,
            1., 9., 3., 1.,
            2., 3., 4., 8.,
            0., 1., 2., 0.,
        ]).unwrap().into_dyn();
        let mut pool = MaxPool2d::new((3, 3), (1, 1));
        let y = pool.forward(x, Mode::Train);
        assert_eq!(y.as_slice().unwrap(), &[9., 9., 9., 9.]);
        let dx = pool.backward(Array::from_elem((1, 1, 2, 2), 1.5).into_dyn());
        let mut expect = [0.0f32; 16];
        expect[5] = 6.0;
        assert_eq!(dx.as_slice().unwrap(), &expect);
    }

    #[test]
    fn gradients_on_random_inputs() {
        // Random N(0,1) inputs have no ties, so the max is smooth around them.
        for (i, (shape, k, s)) in [
            ([1, 1, 4, 4], (2, 2), (2, 2)),
            ([3, 2, 7, 5], (2, 2), (2, 2)),
            ([2, 3, 6, 7], (3, 2), (1, 2)),
            ([2, 2, 5, 6], (2, 3), (2, 1)),
            ([4, 1, 5, 5], (3, 3), (2, 2)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut pool = MaxPool2d::new(k, s);
            check_layer(&mut pool, &random_input(&shape, i as u64));
        }
    }

    #[test]
    fn nan_reaches_the_output_on_both_paths() {
        for (k, s) in [((2, 2), (2, 2)), ((2, 2), (1, 1))] {
            let mut x = random_input(&[1, 1, 4, 4], 3);
            x[[0, 0, 1, 1]] = f32::NAN;
            let mut pool = MaxPool2d::new(k, s);
            let y = pool.forward(x, Mode::Train);
            assert!(y[[0, 0, 0, 0]].is_nan(), "{k:?}");
            let dx = pool.backward(ArrayD::ones(y.shape()));
            assert_eq!(dx[[0, 0, 1, 1]], if s.0 == 2 { 1.0 } else { 4.0 });
        }
    }

    #[test]
    fn output_shapes_use_floor_division() {
        let pool = MaxPool2d::new((2, 2), (2, 2));
        assert_eq!(pool.output_shape(&[3, 4, 7, 9]).unwrap(), vec![3, 4, 3, 4]);
        assert_eq!(
            pool.output_shape(&[1, 1, 28, 28]).unwrap(),
            vec![1, 1, 14, 14]
        );
        assert!(pool.output_shape(&[1, 1, 1, 5]).is_err());
        assert!(pool.output_shape(&[1, 5]).is_err());
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        let mut pool = MaxPool2d::new((2, 2), (2, 2));
        pool.backward(ArrayD::zeros(vec![1, 1, 2, 2]));
    }
}
