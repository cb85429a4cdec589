//! The kernels the MNIST workloads spend their time in, with throughput in
//! FLOP (criterion's "elem/s" reads as FLOP/s, so `Gelem/s` = GFLOP/s):
//!
//! * `gemm/*`: single-threaded (`PARALLEL_MIN_FLOPS` permitting) products at
//!   the layer shapes of W1 (784-100-10), W2 (784-1000-10) and W3 (the CNN),
//!   named `m x k x n`; `conv2_*` compare one sample's convolution GEMM with
//!   a chunk of 4 samples side by side and the whole batch of 100.
//! * `conv_pieces/*`: im2col and col2im of the 32->64 convolution at 14x14
//!   over a batch of 100 (throughput in elements of the column matrix).
//!
//! * `sparse/*`: the CSR product at the W1/W2 first-layer shapes on input
//!   with ~2 in 10 non-zeros (as MNIST pixels), compression included;
//!   throughput counts the *dense* FLOPs (a dense-equivalent rate), next to
//!   the same product as a dense GEMM.
//!
//! Compare the GEMM figures with the machine's peak from
//! `anchors/python/gemm_peak.py` (2048^3, MKL/OpenBLAS).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Array4};
use std::hint::black_box;
use tegaki_tensor::conv::{ConvGeometry, col2im, im2col};
use tegaki_tensor::gemm::gemm;
use tegaki_tensor::sparse::{Csr, csr_matmul};

fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 17 + seed * 7) % 23) as f32 / 23.0 - 0.5
    })
}

/// `(name, m, k, n, a transposed, b transposed)` as the layers call them.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 11] = [
    ("w1_fc1_fwd", 100, 784, 100, false, true),
    ("w1_fc1_dw", 100, 100, 784, true, false),
    ("w2_fc1_fwd", 100, 784, 1000, false, true),
    ("w2_fc1_dw", 1000, 100, 784, true, false),
    ("w2_fc2_dx", 100, 10, 1000, false, false),
    ("w3_conv2_fwd_1_sample", 64, 288, 196, false, false),
    ("w3_conv2_fwd_4_samples", 64, 288, 784, false, false),
    ("w3_conv2_fwd_100_samples", 64, 288, 19600, false, false),
    ("w3_conv2_dw_1_sample", 64, 196, 288, false, true),
    ("w3_conv2_dcols_1_sample", 288, 64, 196, true, false),
    ("w3_fc1_fwd", 100, 3136, 128, false, true),
];

fn gemms(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    for (name, m, k, n, at, bt) in SHAPES {
        let a = if at { filled(k, m, 1) } else { filled(m, k, 1) };
        let b = if bt { filled(n, k, 2) } else { filled(k, n, 2) };
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{name}_{m}x{k}x{n}"), |bench| {
            bench.iter(|| {
                let av = if at { a.t() } else { a.view() };
                let bv = if bt { b.t() } else { b.view() };
                gemm(1.0, av, bv, 0.0, &mut out.view_mut());
                black_box(&out);
            })
        });
    }
    let big = filled(1024, 1024, 3);
    let mut out = Array2::<f32>::zeros((1024, 1024));
    group.throughput(Throughput::Elements(2 * 1024u64.pow(3)));
    group.bench_function("square_1024", |bench| {
        bench.iter(|| gemm(1.0, big.view(), big.view(), 0.0, &mut out.view_mut()))
    });
    group.finish();
}

fn conv_pieces(c: &mut Criterion) {
    let g = ConvGeometry::new((32, 14, 14), (3, 3), (1, 1), (1, 1));
    let x = Array4::from_shape_fn((100, 32, 14, 14), |(n, c, i, j)| {
        ((n + 3 * c + 5 * i + 7 * j) % 11) as f32
    });
    let cols = im2col(x.view(), &g);
    let mut group = c.benchmark_group("conv_pieces");
    group.throughput(Throughput::Elements(cols.len() as u64));
    group.bench_function("im2col_32x14x14_k3_batch100", |b| {
        b.iter(|| black_box(im2col(x.view(), &g)))
    });
    group.bench_function("col2im_32x14x14_k3_batch100", |b| {
        b.iter(|| black_box(col2im(cols.view(), &g)))
    });
    group.finish();
}

fn sparse(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparse");
    for (name, m, k, n) in [("w1_fc1", 100, 784, 100), ("w2_fc1", 100, 784, 1000)] {
        // ~20% non-zeros, in MNIST's central block of columns.
        let x = Array2::from_shape_fn((m, k), |(i, j)| {
            let keep = (i * 7 + j * 13) % 5 == 0 && (150..650).contains(&j);
            if keep {
                0.5 + (j % 7) as f32 * 0.1
            } else {
                0.0
            }
        });
        let wt = filled(k, n, 4);
        let mut out = Array2::<f32>::zeros((m, n));
        let mut csr = Csr::default();
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{name}_csr_{m}x{k}x{n}"), |bench| {
            bench.iter(|| {
                assert!(csr.compress(x.view(), 0.4));
                csr_matmul(&csr, wt.view(), false, &mut out.view_mut());
                black_box(&out);
            })
        });
        group.bench_function(format!("{name}_dense_{m}x{k}x{n}"), |bench| {
            bench.iter(|| {
                gemm(1.0, x.view(), wt.view(), 0.0, &mut out.view_mut());
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(20);
    targets = gemms, conv_pieces, sparse
}
criterion_main!(benches);
