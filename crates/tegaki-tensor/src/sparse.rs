//! Products with a mostly-zero left operand.
//!
//! MNIST-family images are about 80% exact zeros (background pixels), so a
//! first `Linear` layer spends most of a dense GEMM multiplying by zero. Here
//! the zeros are skipped: the input is compressed to [`Csr`] rows and each
//! output row is a sum of the weight rows its non-zero inputs select (the
//! scheme chess engines use for their sparse first layer). It is the same sum
//! as the dense product minus terms that are exactly `0 * w`; the rounding
//! differs only in summation order. (A non-finite weight times a zero input
//! gives NaN in a dense product and is skipped here.)
//!
//! [`set_enabled`] switches the sparse paths off process-wide, to measure the
//! dense ones (`tegaki-bench --dense`).

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Inputs with at most this fraction of non-zeros take the sparse path. The
/// sparse kernel runs at roughly half the dense GEMM's FLOP rate and pays for
/// compression (and, for the weight gradient, a CSR transpose), so it wins
/// clearly only below ~40%.
pub const MAX_DENSITY: f64 = 0.4;

/// Parallel split threshold in multiply-adds (as `gemm::PARALLEL_MIN_FLOPS`).
const PARALLEL_MIN_MACS: usize = 1 << 21;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the sparse paths on or off for the whole process (on by default).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the sparse paths are on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A row-compressed (CSR) matrix: row `r`'s non-zeros are
/// `values[indptr[r]..indptr[r + 1]]` at columns `indices[..]` (ascending).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// `(rows, cols)` of the matrix this represents.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The raw arrays `(indptr, indices, values)`.
    pub fn parts(&self) -> (&[usize], &[u32], &[f32]) {
        (&self.indptr, &self.indices, &self.values)
    }

    /// Number of stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Compresses `x` into `self` (reusing its storage) if at most
    /// `max_density` of its entries are non-zero; returns whether it did. A
    /// dense `x` is abandoned as soon as the budget is exceeded, so the check
    /// costs a fraction of one pass over it.
    ///
    /// # Panics
    /// If `x` has more than `u32::MAX` columns.
    pub fn compress(&mut self, x: ArrayView2<f32>, max_density: f64) -> bool {
        let (rows, cols) = x.dim();
        assert!(u32::try_from(cols).is_ok(), "Csr: too many columns");
        let budget = (max_density * (rows * cols) as f64) as usize;
        self.rows = rows;
        self.cols = cols;
        self.indptr.clear();
        self.indices.clear();
        self.values.clear();
        self.indptr.push(0);
        for row in x.rows() {
            match row.as_slice() {
                Some(r) => push_nonzeros(r, &mut self.indices, &mut self.values),
                None => {
                    for (j, &v) in row.iter().enumerate() {
                        if v != 0.0 {
                            self.indices.push(j as u32);
                            self.values.push(v);
                        }
                    }
                }
            }
            if self.values.len() > budget {
                self.rows = 0;
                self.indptr.clear();
                return false;
            }
            self.indptr.push(self.values.len());
        }
        true
    }

    /// The transpose of `self`, written into `out` (storage reused); its rows
    /// keep ascending column order, so results do not depend on how `self`
    /// was built.
    pub fn transpose_into(&self, out: &mut Csr) {
        out.rows = self.cols;
        out.cols = self.rows;
        out.indptr.clear();
        out.indptr.resize(self.cols + 1, 0);
        for &j in &self.indices {
            out.indptr[j as usize + 1] += 1;
        }
        for j in 0..self.cols {
            out.indptr[j + 1] += out.indptr[j];
        }
        out.indices.resize(self.nnz(), 0);
        out.values.resize(self.nnz(), 0.0);
        let mut next = out.indptr[..self.cols].to_vec();
        for r in 0..self.rows {
            for p in self.indptr[r]..self.indptr[r + 1] {
                let j = self.indices[p] as usize;
                out.indices[next[j]] = r as u32;
                out.values[next[j]] = self.values[p];
                next[j] += 1;
            }
        }
    }
}

/// Appends `row`'s non-zeros (column index, value) to `indices`/`values`.
fn push_nonzeros(row: &[f32], indices: &mut Vec<u32>, values: &mut Vec<f32>) {
    let start = values.len();
    // Room for the whole row plus a vector of slack (the AVX-512 path stores
    // full vectors); only the first `len` slots are kept.
    indices.reserve(row.len() + 16);
    values.reserve(row.len() + 16);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == 2 {
        // SAFETY: AVX-512F is present; both vectors have row.len() + 16
        // slots of capacity from `start`, and `compress` initialises the
        // first `len` of them.
        unsafe {
            let len = avx512::compress(
                row,
                indices.as_mut_ptr().add(start),
                values.as_mut_ptr().add(start),
            );
            indices.set_len(start + len);
            values.set_len(start + len);
        }
        return;
    }
    // Branch-free: write every entry, advance only past the non-zeros
    // (a data-dependent branch mispredicts on every stroke edge).
    let (ispare, vspare) = (indices.spare_capacity_mut(), values.spare_capacity_mut());
    let mut len = 0;
    for (j, &v) in row.iter().enumerate() {
        ispare[len].write(j as u32);
        vspare[len].write(v);
        len += usize::from(v != 0.0);
    }
    // SAFETY: slots start..start + len were written above.
    unsafe {
        indices.set_len(start + len);
        values.set_len(start + len);
    }
}

/// `c <- a · b`, or `c <- c + a · b` with `accumulate`, where `a` is sparse.
///
/// `b` (`k x n`) and `c` (`m x n`) must be in standard layout. Each row of `c`
/// sums its terms in `a`'s column order whatever the thread count, so results
/// are bit-identical on any number of threads.
///
/// # Panics
/// If the shapes disagree or `b`/`c` are not in standard layout.
pub fn csr_matmul(a: &Csr, b: ArrayView2<f32>, accumulate: bool, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "csr_matmul: a is {m}x{k}, b is {k2}x{n}");
    assert_eq!(
        c.dim(),
        (m, n),
        "csr_matmul: c is {:?}, expected ({m}, {n})",
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    let b = b
        .as_slice()
        .expect("csr_matmul: b must be in standard layout");
    let c = c
        .as_slice_mut()
        .expect("csr_matmul: c must be in standard layout");
    let threads = rayon::current_num_threads();
    if a.nnz() * n < PARALLEL_MIN_MACS || threads == 1 || rayon::current_thread_index().is_some() {
        rows_kernel(&a.indptr, &a.indices, &a.values, k, b, n, c, accumulate);
        return;
    }
    // Contiguous row blocks with about equal numbers of non-zeros.
    let parts = 4 * threads;
    let target = a.nnz().div_ceil(parts).max(1);
    let mut bounds = vec![0];
    for r in 1..m {
        if a.indptr[r] >= target * bounds.len() {
            bounds.push(r);
        }
    }
    bounds.push(m);
    let mut blocks = Vec::with_capacity(bounds.len());
    let mut rest = c;
    for w in bounds.windows(2) {
        let (head, tail) = rest.split_at_mut((w[1] - w[0]) * n);
        blocks.push((w[0], w[1], head));
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(r0, r1, c_block)| {
        rows_kernel(
            &a.indptr[r0..=r1],
            &a.indices,
            &a.values,
            k,
            b,
            n,
            c_block,
            accumulate,
        );
    });
}

crate::simd_dispatch! {
    /// Number of entries that are not exactly zero (NaN counts).
    pub fn count_nonzero(xs: &[f32]) -> usize {
        let mut n = 0usize;
        for &x in xs {
            n += usize::from(x != 0.0);
        }
        n
    }
}

/// `c <- x · b` (or `c + x · b`) when `x` is not needed compressed
/// afterwards (inference): row blocks are handled in parallel, one fork/join
/// in all, each block compressed and multiplied sparsely when at most
/// `max_density` of it is non-zero, else multiplied by a dense GEMM. Rows
/// sum in a fixed order either way, so results do not depend on the thread
/// count. Returns `false`, with `c` untouched, when `x` is not in standard
/// layout.
///
/// # Panics
/// As [`csr_matmul`].
pub fn dense_sparse_matmul(
    x: ArrayView2<f32>,
    b: ArrayView2<f32>,
    accumulate: bool,
    c: &mut ArrayViewMut2<f32>,
    max_density: f64,
) -> bool {
    let (m, k) = x.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "dense_sparse_matmul: x is {m}x{k}, b is {k2}x{n}");
    assert_eq!(c.dim(), (m, n), "dense_sparse_matmul: c is {:?}", c.dim());
    let Some(xs) = x.as_slice() else {
        return false;
    };
    if m == 0 || n == 0 {
        return true;
    }
    let bs = b
        .as_slice()
        .expect("dense_sparse_matmul: b must be in standard layout");
    let cs = c
        .as_slice_mut()
        .expect("dense_sparse_matmul: c must be in standard layout");
    if k == 0 {
        if !accumulate {
            cs.fill(0.0);
        }
        return true;
    }
    let block = m.div_ceil(4 * rayon::current_num_threads()).max(16);
    xs.par_chunks(block * k)
        .zip(cs.par_chunks_mut(block * n))
        .for_each(|(x_b, c_b)| {
            let rows = x_b.len() / k;
            let view = ArrayView2::from_shape((rows, k), x_b).expect("block shape");
            BLOCK_CSR.with_borrow_mut(|csr| {
                if csr.compress(view, max_density) {
                    rows_kernel(
                        &csr.indptr,
                        &csr.indices,
                        &csr.values,
                        k,
                        bs,
                        n,
                        c_b,
                        accumulate,
                    );
                } else {
                    let mut out = ArrayViewMut2::from_shape((rows, n), c_b).expect("block shape");
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    crate::gemm::gemm_serial(1.0, view, b, beta, &mut out);
                }
            });
        });
    true
}

thread_local! {
    /// Each worker's compressed block, kept so its storage is reused.
    static BLOCK_CSR: std::cell::RefCell<Csr> = std::cell::RefCell::new(Csr::default());
}

/// Output columns per register tile: 64 f32 are four AVX-512 registers of
/// accumulators, loaded and stored once per row instead of once per term.
const WIDE: usize = 64;
const NARROW: usize = 16;

/// `indptr`/`indices`/`values` are rows of a [`Csr`] with `k` columns, so
/// every index is below `k` (an invariant of how `Csr`s are built); `b` must
/// hold `k` rows of `n`.
#[allow(clippy::too_many_arguments)]
fn rows_kernel(
    indptr: &[usize],
    indices: &[u32],
    values: &[f32],
    k: usize,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    let rows = indptr.len() - 1;
    assert!(c.len() >= rows * n, "csr_matmul: c block too short");
    assert!(b.len() >= k * n, "csr_matmul: b holds fewer than {k} rows");
    debug_assert!(
        indices[indptr[0]..indptr[rows]]
            .iter()
            .all(|&j| (j as usize) < k),
        "csr_matmul: column index out of range"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == 2 {
        // SAFETY: the CPU has AVX-512F (checked by level()); indices are
        // below k (the Csr invariant), b holds k rows and c all rows
        // (asserted above), and the tiles stay inside the rows' n columns.
        unsafe { avx512::rows(indptr, indices, values, b, n, c, accumulate) };
        return;
    }
    rows_portable(indptr, indices, values, b, n, c, accumulate);
}

crate::simd_dispatch! {
    fn rows_portable(
        indptr: &[usize],
        indices: &[u32],
        values: &[f32],
        b: &[f32],
        n: usize,
        c: &mut [f32],
        accumulate: bool,
    ) {
        let mut c0 = 0;
        while c0 + WIDE <= n {
            tile::<WIDE>(indptr, indices, values, b, n, c, c0, accumulate);
            c0 += WIDE;
        }
        while c0 + NARROW <= n {
            tile::<NARROW>(indptr, indices, values, b, n, c, c0, accumulate);
            c0 += NARROW;
        }
        if c0 < n {
            let w = n - c0;
            for r in 0..indptr.len() - 1 {
                let out = &mut c[r * n + c0..r * n + n];
                if !accumulate {
                    out.fill(0.0);
                }
                for p in indptr[r]..indptr[r + 1] {
                    let v = values[p];
                    let row = &b[indices[p] as usize * n + c0..][..w];
                    for (o, &x) in out.iter_mut().zip(row) {
                        *o += v * x;
                    }
                }
            }
        }
    }
}

/// The AVX-512 kernel: blocks of up to 128 columns, as one to eight
/// registers of accumulators (the last one masked). Measured
/// single-threaded: ~35-40 GFLOP/s (bound by reading `b`'s rows from L2),
/// i.e. a dense-equivalent ~170 GFLOP/s at MNIST's ~20% density. Multiply
/// and add stay separate instructions (not FMA), so the sums round exactly as
/// the portable kernel's do.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F; for every row `r < indptr.len() - 1` and
    /// term `p` of it, `indices[p] * n + n <= b.len()` and `c.len() >= rows * n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(
        indptr: &[usize],
        indices: &[u32],
        values: &[f32],
        b: &[f32],
        n: usize,
        c: &mut [f32],
        accumulate: bool,
    ) {
        let rows = indptr.len() - 1;
        let (bp, cp) = (b.as_ptr(), c.as_mut_ptr());
        let mut c0 = 0;
        while c0 < n {
            let width = (n - c0).min(128);
            let regs = width.div_ceil(16);
            let tail = width - 16 * (regs - 1);
            let mask: __mmask16 = if tail == 16 { !0 } else { (1u16 << tail) - 1 };
            // SAFETY: the block covers columns c0..c0+width <= n of rows the
            // caller guaranteed to be in bounds; the last register is masked.
            unsafe {
                macro_rules! by_regs {
                    ($($r:literal)*) => {
                        match regs {
                            $($r => block::<$r>(
                                indptr, indices, values, bp, n, cp, rows, accumulate, c0, mask,
                            ),)*
                            _ => unreachable!("1 to 8 registers"),
                        }
                    };
                }
                by_regs!(1 2 3 4 5 6 7 8)
            }
            c0 += width;
        }
    }

    /// Writes `row`'s non-zeros to the fronts of `indices`/`values`, 16
    /// columns at a time (compressed in registers, stored at full width),
    /// and returns how many there were.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; both outputs must be valid for writes of
    /// `row.len() + 16` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn compress(row: &[f32], indices: *mut u32, values: *mut f32) -> usize {
        let zero = _mm512_setzero_ps();
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut len = 0;
        let mut j = 0;
        while j < row.len() {
            let width = (row.len() - j).min(16);
            let valid: __mmask16 = if width == 16 { !0 } else { (1u16 << width) - 1 };
            // SAFETY: masked load of `width` in-bounds lanes; the stores
            // write 16 lanes at `len <= j`, within the row.len() + 16 slots.
            unsafe {
                let v = _mm512_maskz_loadu_ps(valid, row.as_ptr().add(j));
                let keep = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(valid, v, zero);
                let idx = _mm512_add_epi32(lane, _mm512_set1_epi32(j as i32));
                _mm512_storeu_ps(values.add(len), _mm512_maskz_compress_ps(keep, v));
                _mm512_storeu_si512(
                    indices.add(len).cast(),
                    _mm512_maskz_compress_epi32(keep, idx),
                );
                len += keep.count_ones() as usize;
            }
            j += 16;
        }
        len
    }

    /// One block of `R` registers (`16 * R` columns, the last register
    /// limited to `mask`) for every row: accumulators stay in registers
    /// across a row's terms.
    ///
    /// # Safety
    /// As [`rows`], for columns `c0..c0 + 16 * (R - 1) + popcount(mask)`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize>(
        indptr: &[usize],
        indices: &[u32],
        values: &[f32],
        bp: *const f32,
        n: usize,
        cp: *mut f32,
        rows: usize,
        accumulate: bool,
        c0: usize,
        mask: __mmask16,
    ) {
        let last = R - 1;
        for r in 0..rows {
            // SAFETY: in-bounds by the caller's contract; the last register
            // is read and written under `mask`.
            unsafe {
                let out = cp.add(r * n + c0);
                let mut acc = [_mm512_setzero_ps(); R];
                if accumulate {
                    for (l, a) in acc[..last].iter_mut().enumerate() {
                        *a = _mm512_loadu_ps(out.add(16 * l));
                    }
                    acc[last] = _mm512_maskz_loadu_ps(mask, out.add(16 * last));
                }
                for p in indptr[r]..indptr[r + 1] {
                    let v = _mm512_set1_ps(*values.get_unchecked(p));
                    let row = bp.add(*indices.get_unchecked(p) as usize * n + c0);
                    for (l, a) in acc[..last].iter_mut().enumerate() {
                        let x = _mm512_loadu_ps(row.add(16 * l));
                        *a = _mm512_add_ps(*a, _mm512_mul_ps(v, x));
                    }
                    let x = _mm512_maskz_loadu_ps(mask, row.add(16 * last));
                    acc[last] = _mm512_add_ps(acc[last], _mm512_mul_ps(v, x));
                }
                for (l, a) in acc[..last].iter().enumerate() {
                    _mm512_storeu_ps(out.add(16 * l), *a);
                }
                _mm512_mask_storeu_ps(out.add(16 * last), mask, acc[last]);
            }
        }
    }
}

/// One `T`-column tile of every row: the accumulators stay in registers
/// across the row's terms, and the tile of `b` stays in cache across rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const T: usize>(
    indptr: &[usize],
    indices: &[u32],
    values: &[f32],
    b: &[f32],
    n: usize,
    c: &mut [f32],
    c0: usize,
    accumulate: bool,
) {
    let rows = indptr.len() - 1;
    for r in 0..rows {
        let out: &mut [f32; T] = (&mut c[r * n + c0..][..T]).try_into().expect("tile");
        let mut acc = if accumulate { *out } else { [0.0; T] };
        for p in indptr[r]..indptr[r + 1] {
            let v = values[p];
            let row: &[f32; T] = b[indices[p] as usize * n + c0..][..T]
                .try_into()
                .expect("tile");
            for l in 0..T {
                acc[l] += v * row[l];
            }
        }
        *out = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::matmul;
    use ndarray::Array2;

    fn sparse_matrix(m: usize, k: usize, density: f64, seed: u64) -> Array2<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        Array2::from_shape_fn((m, k), |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 33) as f64 / (1u64 << 31) as f64;
            if u < density {
                (u * 7.0 - 1.3) as f32
            } else {
                0.0
            }
        })
    }

    fn dense(m: usize, n: usize, seed: u64) -> Array2<f32> {
        sparse_matrix(m, n, 1.1, seed)
    }

    fn close(x: &Array2<f32>, y: &Array2<f32>) {
        assert_eq!(x.dim(), y.dim());
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn compress_respects_budget_and_round_trips() {
        // 37 columns: two full 16-lane groups and a partial one.
        let x = sparse_matrix(9, 37, 0.2, 1);
        let mut csr = Csr::default();
        assert!(csr.compress(x.view(), 0.5));
        let nnz = x.iter().filter(|v| **v != 0.0).count();
        assert_eq!(csr.nnz(), nnz);
        assert!(!csr.compress(x.view(), nnz as f64 / (9.0 * 37.0) - 0.01));
        assert!(csr.compress(x.view(), 0.5));
        let eye = Array2::from_shape_fn((37, 37), |(i, j)| f32::from(u8::from(i == j)));
        let mut back = Array2::zeros((9, 37));
        csr_matmul(&csr, eye.view(), false, &mut back.view_mut());
        assert_eq!(back, x);
        // Non-contiguous rows (a transposed view) compress the same way.
        let xt = x.t().to_owned();
        let mut from_view = Csr::default();
        assert!(from_view.compress(xt.t(), 0.5));
        assert_eq!(from_view, csr);
    }

    #[test]
    fn nan_is_kept_as_a_nonzero() {
        let x = Array2::from_shape_vec((1, 3), vec![0.0, f32::NAN, 0.0]).unwrap();
        let mut csr = Csr::default();
        assert!(csr.compress(x.view(), 0.5));
        assert_eq!(csr.nnz(), 1);
    }

    #[test]
    fn matmul_matches_dense_for_every_tile_width() {
        // n covers full, partial and several blocks of every register count.
        for (m, k, n) in [
            (5, 13, 1),
            (7, 20, 16),
            (3, 40, 100),
            (11, 9, 147),
            (4, 5, 64),
            (6, 30, 256),
            (2, 17, 1000),
        ] {
            for accumulate in [false, true] {
                let a = sparse_matrix(m, k, 0.3, (m * k) as u64);
                let b = dense(k, n, 3);
                let mut csr = Csr::default();
                assert!(csr.compress(a.view(), 1.0));
                let mut c = dense(m, n, 5);
                let mut expect = matmul(a.view(), b.view());
                if accumulate {
                    expect += &c;
                }
                csr_matmul(&csr, b.view(), accumulate, &mut c.view_mut());
                close(&c, &expect);
            }
        }
    }

    #[test]
    fn blockwise_product_matches_for_sparse_and_dense_blocks() {
        let a = sparse_matrix(700, 90, 0.2, 6);
        let b = dense(90, 33, 7);
        let mut c = dense(700, 33, 8);
        let mut expect = matmul(a.view(), b.view());
        expect += &c;
        assert!(dense_sparse_matmul(
            a.view(),
            b.view(),
            true,
            &mut c.view_mut(),
            0.4
        ));
        close(&c, &expect);
        // Dense blocks go through the GEMM.
        let full = dense(700, 90, 9);
        assert!(dense_sparse_matmul(
            full.view(),
            b.view(),
            false,
            &mut c.view_mut(),
            0.4
        ));
        close(&c, &matmul(full.view(), b.view()));
        // Not in standard layout: refused, c untouched.
        let before = c.clone();
        let ft = full.t().as_standard_layout().into_owned();
        assert!(!dense_sparse_matmul(
            ft.t(),
            b.view(),
            false,
            &mut c.view_mut(),
            0.4
        ));
        assert_eq!(c, before);
        assert_eq!(count_nonzero(&[0.0, 1.0, f32::NAN, -0.0, 2.0]), 3);
    }

    #[test]
    fn transpose_product_gives_weight_gradient() {
        let x = sparse_matrix(12, 30, 0.25, 8);
        let dy = dense(12, 70, 9);
        let mut csr = Csr::default();
        assert!(csr.compress(x.view(), 1.0));
        let mut t = Csr::default();
        csr.transpose_into(&mut t);
        assert_eq!(t.dim(), (30, 12));
        let mut dwt = Array2::zeros((30, 70));
        csr_matmul(&t, dy.view(), false, &mut dwt.view_mut());
        close(&dwt, &matmul(x.t(), dy.view()));
    }

    #[test]
    fn parallel_split_is_bit_identical() {
        let a = sparse_matrix(600, 300, 0.2, 4);
        let b = dense(300, 200, 5);
        let mut csr = Csr::default();
        assert!(csr.compress(a.view(), 1.0));
        let run = |threads| {
            let mut c = Array2::zeros((600, 200));
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| csr_matmul(&csr, b.view(), false, &mut c.view_mut()));
            c
        };
        let one = run(1);
        assert_eq!(one, run(3));
        close(&one, &matmul(a.view(), b.view()));
    }
}
