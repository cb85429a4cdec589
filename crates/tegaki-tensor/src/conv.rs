//! Convolution geometry, im2col and col2im.
//!
//! Layout: an input batch is NCHW. `im2col` turns it into one column matrix
//! per sample, `(N, C*KH*KW, OH*OW)`: row `(c*KH + ki)*KW + kj` holds input
//! channel `c` shifted by kernel offset `(ki, kj)`, column `oy*OW + ox` is the
//! output position. With weights `(OC, C, KH, KW)` seen as `(OC, C*KH*KW)`,
//! one sample's convolution is `W · cols[n]`, which is already that sample's
//! `(OC, OH*OW)` slice of the NCHW output, so no transpose is ever needed.
//!
//! `col2im` is the exact adjoint of `im2col`: it scatter-adds every column entry
//! back to the input pixel it was copied from (padding entries are dropped).

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, Zip};

/// Output length of a convolution or pooling window sliding over `input`
/// cells with `padding` cells of zeros on each side:
/// `floor((input + 2*padding - kernel) / stride) + 1`.
///
/// This is the only place in tegaki that computes it.
///
/// # Panics
/// If `stride` is 0 or the window does not fit (`kernel > input + 2*padding`);
/// use [`try_conv_output_size`] to validate user input instead.
pub fn conv_output_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    try_conv_output_size(input, kernel, stride, padding).unwrap_or_else(|e| panic!("{e}"))
}

/// [`conv_output_size`], returning a description of the problem instead of
/// panicking.
pub fn try_conv_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<usize, String> {
    if stride == 0 {
        return Err("stride must be at least 1".into());
    }
    if kernel == 0 {
        return Err("kernel size must be at least 1".into());
    }
    let padded = input + 2 * padding;
    if kernel > padded {
        return Err(format!(
            "kernel {kernel} does not fit an input of {input} with padding {padding}"
        ));
    }
    Ok((padded - kernel) / stride + 1)
}

/// Output length of a transposed convolution (the adjoint of a convolution
/// with these `kernel`, `stride` and `padding`) over `input` cells:
/// `(input - 1) * stride - 2*padding + kernel + output_padding`.
///
/// `output_padding` picks which of the `stride` input sizes that the forward
/// convolution maps to `input` is produced, so it must be below `stride`.
///
/// # Panics
/// If `input`, `kernel` or `stride` is 0, `output_padding >= stride`, or the
/// padding removes the whole output.
pub fn conv_transpose_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> usize {
    assert!(
        input > 0 && kernel > 0 && stride > 0,
        "transposed convolution: input {input}, kernel {kernel} and stride {stride} must be positive"
    );
    assert!(
        output_padding < stride,
        "transposed convolution: output padding {output_padding} must be below the stride {stride}"
    );
    let full = (input - 1) * stride + kernel + output_padding;
    assert!(
        full > 2 * padding,
        "transposed convolution: padding {padding} removes the whole output of {full} cells"
    );
    full - 2 * padding
}

/// Everything that fixes the shape of one convolution (or pooling) of a
/// `C x H x W` sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above and below.
    pub pad_h: usize,
    /// Zero columns added left and right.
    pub pad_w: usize,
    /// Output height (from [`conv_output_size`]).
    pub out_h: usize,
    /// Output width (from [`conv_output_size`]).
    pub out_w: usize,
}

impl ConvGeometry {
    /// Geometry for a `channels x height x width` input.
    ///
    /// # Panics
    /// If the kernel does not fit or a stride is 0 (see [`conv_output_size`]).
    pub fn new(
        (channels, height, width): (usize, usize, usize),
        (kernel_h, kernel_w): (usize, usize),
        (stride_h, stride_w): (usize, usize),
        (pad_h, pad_w): (usize, usize),
    ) -> Self {
        Self {
            channels,
            height,
            width,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            pad_h,
            pad_w,
            out_h: conv_output_size(height, kernel_h, stride_h, pad_h),
            out_w: conv_output_size(width, kernel_w, stride_w, pad_w),
        }
    }

    /// Rows of one sample's column matrix: `C * KH * KW`.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// Columns of one sample's column matrix: `OH * OW`.
    pub fn col_cols(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Scalars in one input sample: `C * H * W`.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The output columns `ox` whose input column `ox*stride + kj - pad` lies
    /// inside the image, as a half-open range.
    fn valid_ox(&self, kj: usize) -> (usize, usize) {
        valid_range(self.width, self.out_w, self.stride_w, self.pad_w, kj)
    }

    fn valid_oy(&self, ki: usize) -> (usize, usize) {
        valid_range(self.height, self.out_h, self.stride_h, self.pad_h, ki)
    }
}

/// Half-open range of output indices `o` with `0 <= o*stride + k - pad < input`.
fn valid_range(input: usize, out: usize, stride: usize, pad: usize, k: usize) -> (usize, usize) {
    let lo = if pad > k {
        (pad - k).div_ceil(stride)
    } else {
        0
    };
    let hi = if input + pad > k {
        ((input + pad - k - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Writes one sample's column matrix (`g.col_rows() x g.col_cols()`, row-major)
/// from its `C x H x W` pixels (row-major).
///
/// # Panics
/// If a slice length disagrees with `g`.
pub fn im2col_sample(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    assert_eq!(
        cols.len(),
        g.col_rows() * g.col_cols(),
        "im2col: column slice length"
    );
    im2col_sample_strided(x, g, cols, g.col_cols());
}

/// [`im2col_sample`] into a wider matrix: row `r` of the sample's columns
/// goes to `cols[r * row_stride..][..g.col_cols()]`, so the columns of several
/// samples can sit side by side in one `(C*KH*KW, S*OH*OW)` matrix (one GEMM
/// for the lot). Entries outside those ranges are left alone.
///
/// # Panics
/// If `x`'s length disagrees with `g`, `row_stride < g.col_cols()`, or `cols`
/// is too short.
pub fn im2col_sample_strided(x: &[f32], g: &ConvGeometry, cols: &mut [f32], row_stride: usize) {
    assert_eq!(x.len(), g.input_len(), "im2col: input slice length");
    let ohw = g.col_cols();
    assert!(
        row_stride >= ohw && cols.len() >= (g.col_rows() - 1) * row_stride + ohw,
        "im2col: {} columns with row stride {row_stride} for {} x {ohw}",
        cols.len(),
        g.col_rows()
    );
    if g.stride_h == 1 && g.stride_w == 1 && g.out_w == g.width {
        im2col_same_unit_stride(x, g, cols, row_stride);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if g.stride_w == 1 && crate::simd::level() == 2 {
        // SAFETY: AVX-512F is present; the lengths were checked above.
        unsafe { avx512::im2col_unit_stride(x, g, cols, row_stride) };
        return;
    }
    let (ow, hw) = (g.out_w, g.height * g.width);
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &x[c * hw..(c + 1) * hw];
        for ki in 0..g.kernel_h {
            let (oy_lo, oy_hi) = g.valid_oy(ki);
            for kj in 0..g.kernel_w {
                let (ox_lo, ox_hi) = g.valid_ox(kj);
                let dst = &mut cols[row * row_stride..row * row_stride + ohw];
                row += 1;
                dst[..oy_lo * ow].fill(0.0);
                dst[oy_hi * ow..].fill(0.0);
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride_h + ki - g.pad_h;
                    let src = &plane[iy * g.width..(iy + 1) * g.width];
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    d[..ox_lo].fill(0.0);
                    d[ox_hi..].fill(0.0);
                    if ox_lo < ox_hi {
                        let ix0 = ox_lo * g.stride_w + kj - g.pad_w;
                        if g.stride_w == 1 {
                            d[ox_lo..ox_hi].copy_from_slice(&src[ix0..ix0 + (ox_hi - ox_lo)]);
                        } else {
                            for (o, v) in d[ox_lo..ox_hi].iter_mut().enumerate() {
                                *v = src[ix0 + o * g.stride_w];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// im2col for unit strides when output rows are as wide as input rows (a
/// "same" convolution, as in the MNIST CNN): each column-matrix row is then
/// the input plane shifted by a constant offset, so it is one long copy,
/// plus zeros where the window hangs over the top, bottom and side edges.
fn im2col_same_unit_stride(x: &[f32], g: &ConvGeometry, cols: &mut [f32], row_stride: usize) {
    let (oh, ow, hw) = (g.out_h, g.out_w, g.height * g.width);
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &x[c * hw..(c + 1) * hw];
        for ki in 0..g.kernel_h {
            let (oy_lo, oy_hi) = g.valid_oy(ki);
            for kj in 0..g.kernel_w {
                let (ox_lo, ox_hi) = g.valid_ox(kj);
                let dst = &mut cols[row * row_stride..row * row_stride + oh * ow];
                row += 1;
                // dst[q] = plane[q + off] wherever the window is inside.
                let off = (ki as isize - g.pad_h as isize) * g.width as isize + kj as isize
                    - g.pad_w as isize;
                let len = (oh * ow) as isize;
                let start = ((oy_lo * ow) as isize).max(-off).clamp(0, len);
                let end = ((oy_hi * ow) as isize)
                    .min(hw as isize - off)
                    .clamp(start, len);
                let (start, end) = (start as usize, end as usize);
                zero(&mut dst[..start]);
                zero(&mut dst[end..]);
                if end > start {
                    // start + off >= 0 and end + off <= hw by the clamps.
                    let from = (start as isize + off) as usize;
                    dst[start..end].copy_from_slice(&plane[from..from + (end - start)]);
                }
                if ox_lo > 0 || ox_hi < ow {
                    for oy in oy_lo..oy_hi {
                        let r = &mut dst[oy * ow..(oy + 1) * ow];
                        zero(&mut r[..ox_lo]);
                        zero(&mut r[ox_hi..]);
                    }
                }
            }
        }
    }
}

/// Zeroes a slice that is usually one or two values long (a padding
/// border) without a `memset` call, which costs more than the stores.
#[inline(always)]
fn zero(r: &mut [f32]) {
    match r {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        _ => r.fill(0.0),
    }
}

/// im2col for unit horizontal stride with AVX-512: MNIST rows are 14 or 28
/// values, so the portable version spent most of its time in `memcpy` and
/// `memset` calls for each short run; here each 16-column piece of an output
/// row is one masked load (lanes outside the image read nothing and give 0)
/// and one masked store.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::ConvGeometry;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F; `x` holds one sample and `cols` has
    /// `(g.col_rows() - 1) * row_stride + g.col_cols()` values (as checked
    /// by the caller); `g.stride_w == 1`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn im2col_unit_stride(
        x: &[f32],
        g: &ConvGeometry,
        cols: &mut [f32],
        row_stride: usize,
    ) {
        let (oh, ow, w, hw) = (g.out_h, g.out_w, g.width, g.height * g.width);
        let mut row = 0;
        for c in 0..g.channels {
            for ki in 0..g.kernel_h {
                let (oy_lo, oy_hi) = g.valid_oy(ki);
                for kj in 0..g.kernel_w {
                    let (ox_lo, ox_hi) = g.valid_ox(kj);
                    let shift = kj as isize - g.pad_w as isize;
                    let dst = &mut cols[row * row_stride..row * row_stride + oh * ow];
                    row += 1;
                    for oy in 0..oh {
                        let d = &mut dst[oy * ow..(oy + 1) * ow];
                        let live = oy >= oy_lo && oy < oy_hi;
                        let src = if live {
                            let iy = oy * g.stride_h + ki - g.pad_h;
                            x[c * hw + iy * w..].as_ptr()
                        } else {
                            x.as_ptr()
                        };
                        let mut ox = 0;
                        while ox < ow {
                            let k = (ow - ox).min(16);
                            let (lo, hi) = if live {
                                (
                                    ox_lo.saturating_sub(ox).min(k),
                                    ox_hi.saturating_sub(ox).min(k),
                                )
                            } else {
                                (0, 0)
                            };
                            let valid = lanes(hi) & !lanes(lo);
                            // SAFETY: only `valid` lanes are read, and those
                            // are columns ox + l + shift in [0, w) of the row;
                            // the store writes the k lanes left in `d`.
                            unsafe {
                                let p = src.wrapping_offset(ox as isize + shift);
                                let v = _mm512_maskz_loadu_ps(valid, p);
                                _mm512_mask_storeu_ps(d.as_mut_ptr().add(ox), lanes(k), v);
                            }
                            ox += k;
                        }
                    }
                }
            }
        }
    }

    /// A mask of the first `n` (at most 16) lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 { !0 } else { (1u16 << n) - 1 }
    }
}

/// Adds one sample's column matrix back onto its `C x H x W` pixels: the
/// adjoint of [`im2col_sample`]. `x` is accumulated into, not overwritten.
///
/// # Panics
/// If a slice length disagrees with `g`.
pub fn col2im_sample_add(cols: &[f32], g: &ConvGeometry, x: &mut [f32]) {
    assert_eq!(
        cols.len(),
        g.col_rows() * g.col_cols(),
        "col2im: column slice length"
    );
    col2im_sample_add_strided(cols, g, x, g.col_cols());
}

/// [`col2im_sample_add`] from a wider matrix laid out as for
/// [`im2col_sample_strided`] (row `r` at `cols[r * row_stride..]`).
///
/// # Panics
/// If `x`'s length disagrees with `g`, `row_stride < g.col_cols()`, or `cols`
/// is too short.
pub fn col2im_sample_add_strided(cols: &[f32], g: &ConvGeometry, x: &mut [f32], row_stride: usize) {
    assert_eq!(x.len(), g.input_len(), "col2im: image slice length");
    let ohw = g.col_cols();
    assert!(
        row_stride >= ohw && cols.len() >= (g.col_rows() - 1) * row_stride + ohw,
        "col2im: {} columns with row stride {row_stride} for {} x {ohw}",
        cols.len(),
        g.col_rows()
    );
    let (ow, hw) = (g.out_w, g.height * g.width);
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &mut x[c * hw..(c + 1) * hw];
        for ki in 0..g.kernel_h {
            let (oy_lo, oy_hi) = g.valid_oy(ki);
            for kj in 0..g.kernel_w {
                let (ox_lo, ox_hi) = g.valid_ox(kj);
                let src_row = &cols[row * row_stride..row * row_stride + ohw];
                row += 1;
                if ox_lo >= ox_hi {
                    continue;
                }
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride_h + ki - g.pad_h;
                    let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                    let s = &src_row[oy * ow + ox_lo..oy * ow + ox_hi];
                    let ix0 = ox_lo * g.stride_w + kj - g.pad_w;
                    if g.stride_w == 1 {
                        for (d, v) in dst[ix0..ix0 + s.len()].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (o, v) in s.iter().enumerate() {
                            dst[ix0 + o * g.stride_w] += v;
                        }
                    }
                }
            }
        }
    }
}

/// im2col for an NCHW batch: returns `(N, C*KH*KW, OH*OW)`, samples in parallel.
///
/// # Panics
/// If `x`'s `C, H, W` disagree with `g`.
pub fn im2col(x: ArrayView4<f32>, g: &ConvGeometry) -> Array3<f32> {
    let (n, c, h, w) = x.dim();
    assert_eq!(
        (c, h, w),
        (g.channels, g.height, g.width),
        "im2col: input shape vs geometry"
    );
    let x = x.as_standard_layout();
    let mut cols = Array3::zeros((n, g.col_rows(), g.col_cols()));
    Zip::from(cols.axis_iter_mut(Axis(0)))
        .and(x.axis_iter(Axis(0)))
        .par_for_each(|mut dst, src| {
            im2col_sample(
                src.as_slice().expect("standard layout"),
                g,
                dst.as_slice_mut().expect("fresh array"),
            );
        });
    cols
}

/// col2im for a batch of column matrices `(N, C*KH*KW, OH*OW)`: returns the
/// NCHW gradient image, samples in parallel. The adjoint of [`im2col`].
///
/// # Panics
/// If `cols`' shape disagrees with `g`.
pub fn col2im(cols: ArrayView3<f32>, g: &ConvGeometry) -> Array4<f32> {
    let (n, rows, ohw) = cols.dim();
    assert_eq!(
        (rows, ohw),
        (g.col_rows(), g.col_cols()),
        "col2im: columns shape vs geometry"
    );
    let cols = cols.as_standard_layout();
    let mut x = Array4::zeros((n, g.channels, g.height, g.width));
    Zip::from(x.axis_iter_mut(Axis(0)))
        .and(cols.axis_iter(Axis(0)))
        .par_for_each(|mut dst, src| {
            col2im_sample_add(
                src.as_slice().expect("standard layout"),
                g,
                dst.as_slice_mut().expect("fresh array"),
            );
        });
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Init, rng};
    use ndarray::Array;

    #[test]
    fn output_size_formula() {
        assert_eq!(conv_output_size(28, 3, 1, 1), 28);
        assert_eq!(conv_output_size(28, 2, 2, 0), 14);
        assert_eq!(conv_output_size(7, 2, 2, 0), 3);
        assert_eq!(conv_output_size(5, 3, 2, 1), 3);
        assert!(try_conv_output_size(2, 5, 1, 1).is_err());
        assert!(try_conv_output_size(2, 1, 0, 0).is_err());
    }

    #[test]
    fn transpose_output_size_inverts_conv_output_size() {
        // DCGAN's generator: 7 -> 14 -> 28 with kernel 4, stride 2, padding 1.
        assert_eq!(conv_transpose_output_size(7, 4, 2, 1, 0), 14);
        assert_eq!(conv_transpose_output_size(14, 4, 2, 1, 0), 28);
        assert_eq!(conv_transpose_output_size(3, 3, 2, 1, 1), 6);
        assert_eq!(conv_transpose_output_size(1, 7, 1, 0, 0), 7);
        // Every size a strided convolution maps to `o` comes back with the
        // matching output padding.
        for (k, s, p) in [(3, 2, 1), (4, 2, 1), (3, 3, 0), (2, 3, 2), (5, 1, 2)] {
            for input in 1..20usize {
                let Ok(o) = try_conv_output_size(input, k, s, p) else {
                    continue;
                };
                let op = (input + 2 * p - k) % s;
                assert_eq!(conv_transpose_output_size(o, k, s, p, op), input);
            }
        }
        let bad = |op| std::panic::catch_unwind(|| conv_transpose_output_size(5, 3, 2, 1, op));
        assert!(bad(2).is_err());
        assert!(bad(1).is_ok());
        assert!(std::panic::catch_unwind(|| conv_transpose_output_size(1, 1, 1, 1, 0)).is_err());
    }

    /// Golden values from numpy:
    /// x = np.arange(1, 10).reshape(1, 1, 3, 3); 2x2 kernel, stride 1, no padding:
    /// rows are the (0,0), (0,1), (1,0), (1,1) offsets over the 4 output positions.
    #[test]
    fn im2col_golden() {
        let x = Array::from_shape_vec((1, 1, 3, 3), (1..=9).map(|v| v as f32).collect()).unwrap();
        let g = ConvGeometry::new((1, 3, 3), (2, 2), (1, 1), (0, 0));
        let cols = im2col(x.view(), &g);
        let expected = [
            [1., 2., 4., 5.],
            [2., 3., 5., 6.],
            [4., 5., 7., 8.],
            [5., 6., 8., 9.],
        ];
        for (r, row) in expected.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert_eq!(cols[[0, r, c]], *v);
            }
        }
        // padding 1, stride 2, 3x3: the centre tap (row 4) samples pixels 1, 3, 7, 9.
        let g = ConvGeometry::new((1, 3, 3), (3, 3), (2, 2), (1, 1));
        let cols = im2col(x.view(), &g);
        assert_eq!(cols.shape(), &[1, 9, 4]);
        assert_eq!(
            cols.slice(ndarray::s![0, 4, ..]).to_vec(),
            vec![1., 3., 7., 9.]
        );
        assert_eq!(
            cols.slice(ndarray::s![0, 0, ..]).to_vec(),
            vec![0., 0., 0., 5.]
        );
    }

    fn adjoint_case(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
    ) {
        let mut r = rng::seeded((n * 1000 + c * 100 + h * 10 + w) as u64);
        let g = ConvGeometry::new((c, h, w), k, s, p);
        let x = Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .tensor(&[n, c, h, w], &mut r)
        .into_dimensionality()
        .unwrap();
        let y = Init::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .tensor(&[n, g.col_rows(), g.col_cols()], &mut r)
        .into_dimensionality()
        .unwrap();
        let lhs: f64 = im2col(x.view(), &g)
            .iter()
            .zip(y.iter())
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(col2im(y.view(), &g).iter())
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!(
            (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
            "{g:?}: {lhs} vs {rhs}"
        );
    }

    #[test]
    fn col2im_is_adjoint_of_im2col() {
        adjoint_case(2, 3, 7, 6, (3, 3), (1, 1), (1, 1));
        adjoint_case(1, 1, 5, 5, (2, 3), (2, 1), (0, 2));
        adjoint_case(3, 2, 9, 8, (3, 2), (2, 2), (2, 1));
        adjoint_case(2, 4, 6, 6, (5, 5), (1, 2), (2, 2));
        adjoint_case(1, 2, 4, 5, (1, 1), (3, 2), (0, 0));
    }

    #[test]
    fn same_convolutions_match_the_definition() {
        // Unit strides with output rows as wide as input rows: the
        // shifted-copy path, including windows over every edge.
        for (c, h, w, k, p) in [
            (2, 5, 4, (3, 3), (1, 1)),
            (1, 6, 5, (1, 3), (0, 1)),
            (3, 4, 7, (3, 5), (0, 2)),
            (2, 6, 6, (5, 5), (2, 2)),
            (1, 1, 1, (3, 3), (1, 1)),
        ] {
            let g = ConvGeometry::new((c, h, w), k, (1, 1), p);
            assert_eq!(g.out_w, w);
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let mut cols = vec![f32::NAN; g.col_rows() * g.col_cols()];
            im2col_sample_strided(&x, &g, &mut cols, g.col_cols());
            let mut r = 0;
            for ci in 0..c {
                for ki in 0..k.0 {
                    for kj in 0..k.1 {
                        for oy in 0..g.out_h {
                            for ox in 0..g.out_w {
                                let iy = (oy + ki) as isize - p.0 as isize;
                                let ix = (ox + kj) as isize - p.1 as isize;
                                let inside =
                                    (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                let want = if inside {
                                    x[ci * h * w + iy as usize * w + ix as usize]
                                } else {
                                    0.0
                                };
                                assert_eq!(cols[r * g.col_cols() + oy * g.out_w + ox], want);
                            }
                        }
                        r += 1;
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn adjoint_on_random_shapes(
            n in 1usize..3, c in 1usize..4, h in 1usize..9, w in 1usize..9,
            kh in 1usize..4, kw in 1usize..4, sh in 1usize..3, sw in 1usize..3,
            ph in 0usize..3, pw in 0usize..3,
        ) {
            proptest::prop_assume!(kh <= h + 2 * ph && kw <= w + 2 * pw);
            adjoint_case(n, c, h, w, (kh, kw), (sh, sw), (ph, pw));
        }
    }
}
