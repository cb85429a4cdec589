//! The matrix-multiply entry points every layer uses.
//!
//! All GEMMs in tegaki go through [`gemm()`](fn@gemm) (or its conveniences), so the backend
//! can be swapped or tuned in one place. The backend is the `gemm` crate: a
//! BLIS-style kernel with runtime CPU dispatch (AVX2, AVX-512, NEON), which
//! accepts arbitrary strides, so transposed views cost nothing.
//!
//! Threading: [`gemm()`](fn@gemm) splits a product across the rayon pool when it
//! is large enough to pay for the fork ([`PARALLEL_MIN_FLOPS`]); layers that
//! parallelise over the batch call [`gemm_serial`] inside their tasks, so the
//! two never fight.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// Products with fewer multiply-adds than this run on one thread. Measured on
/// 2 cores (`cargo xtask bench`, W1 at 2 threads): splitting the W1 MLP's
/// `100 x 784 x 100` products (7.8 M) across threads cost ~30% of its training
/// speed, while the W2 (`100 x 784 x 1000`, 78 M) and CNN (`100 x 3136 x
/// 128`, 40 M) products gain from it.
pub const PARALLEL_MIN_FLOPS: usize = 256 * 256 * 256;

/// `c <- beta * c + alpha * a · b`.
///
/// `a` is `m x k`, `b` is `k x n`, `c` is `m x n`; any of them may be a
/// transposed or strided view. With `beta == 0` the old contents of `c` are
/// ignored (even NaN).
///
/// # Panics
/// If the inner or outer dimensions disagree.
pub fn gemm(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    gemm_on(alpha, a, b, beta, c, true);
}

/// [`gemm()`](fn@gemm) on the calling thread only: for callers already running
/// as one of several parallel tasks.
pub fn gemm_serial(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    gemm_on(alpha, a, b, beta, c, false);
}

fn gemm_on(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
    may_split: bool,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(
        k, k2,
        "gemm: inner dimensions differ: a is {m}x{k}, b is {k2}x{n}"
    );
    assert_eq!(
        c.dim(),
        (m, n),
        "gemm: c is {:?}, expected ({m}, {n})",
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.mapv_inplace(|v| v * beta);
        }
        return;
    }
    let parallelism =
        if may_split && m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose
    // dimensions were checked above, so every index gemm touches is in
    // bounds; `c` is borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `a · b` as a new standard-layout array.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    gemm(1.0, a, b, 0.0, &mut c.view_mut());
    c
}

/// `c <- a · b`, reusing `c`'s storage (it must already be `m x n`).
pub fn matmul_into(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    gemm(1.0, a, b, 0.0, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, s};

    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                let mut acc = 0.0f64;
                for p in 0..a.ncols() {
                    acc += f64::from(a[[i, p]]) * f64::from(b[[p, j]]);
                }
                c[[i, j]] = acc as f32;
            }
        }
        c
    }

    fn close(x: &Array2<f32>, y: &Array2<f32>) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn matches_naive_with_transposes_and_strides() {
        let a = Array::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f32 * 0.1 - 1.0);
        let b = Array::from_shape_fn((5, 9), |(i, j)| ((i * 9 + j) % 7) as f32 * 0.3 - 0.5);
        close(&matmul(a.view(), b.view()), &naive(a.view(), b.view()));
        let at = a.t().to_owned();
        close(&matmul(at.t(), b.view()), &naive(a.view(), b.view()));
        let big = Array::from_shape_fn((14, 10), |(i, j)| (i + 2 * j) as f32 * 0.01);
        let strided = big.slice(s![..;2, ..;2]);
        close(&matmul(strided, b.view()), &naive(strided, b.view()));
    }

    #[test]
    fn beta_accumulates_and_zero_beta_ignores_nan() {
        let a = Array2::<f32>::ones((2, 3));
        let b = Array2::<f32>::ones((3, 2));
        let mut c = Array2::from_elem((2, 2), f32::NAN);
        gemm(1.0, a.view(), b.view(), 0.0, &mut c.view_mut());
        assert_eq!(c, Array2::from_elem((2, 2), 3.0));
        gemm(2.0, a.view(), b.view(), 1.0, &mut c.view_mut());
        assert_eq!(c, Array2::from_elem((2, 2), 9.0));
    }

    #[test]
    fn large_product_parallel_path_matches() {
        // Above PARALLEL_MIN_FLOPS, so the product is split across threads
        // whenever the pool has more than one.
        let a = Array::from_shape_fn((270, 250), |(i, j)| ((i * 31 + j * 17) % 13) as f32 - 6.0);
        let b = Array::from_shape_fn((250, 260), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        const { assert!(270 * 250 * 260 >= PARALLEL_MIN_FLOPS) };
        close(&matmul(a.view(), b.view()), &naive(a.view(), b.view()));
    }
}
