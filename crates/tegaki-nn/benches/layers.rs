//! Layer benchmarks at the MNIST CNN's shapes (batch 100):
//! `conv3x3(1->32) @28x28 - pool - conv3x3(32->64) @14x14 - pool - 3136->128 - 10`.
//!
//! Throughput is in FLOP/s (criterion's `Gelem/s` = GFLOP/s) for the layers
//! with a GEMM, counted as below (forward + backward = 3x forward, or 2x when
//! the input gradient is skipped), and images per second for the others.
//! Multiply-adds per batch (2 FLOPs each; a backward pass with the input
//! gradient costs twice its forward):
//! * conv 1->32 @28x28: forward 22.6 M (45.2 MFLOP); the first layer of a
//!   network skips the input gradient, so its backward is one more forward's worth
//! * conv 32->64 @14x14: forward 361 M (722.5 MFLOP), backward 1445 MFLOP
//! * Linear 3136->128: forward 40.1 M (80.3 MFLOP), backward 160.6 MFLOP
//! * ConvTranspose2d 64->32, 7x7 -> 14x14 (kernel 4, stride 2, padding 1, a
//!   DCGAN generator step): forward 160.6 M (321.1 MFLOP), backward 642.3 MFLOP
//!
//! * Linear 784->1000 (the W2 MLP's first layer): forward 78.4 M (156.8
//!   MFLOP); its input gradient is skipped
//!
//! The `_sparse_` cases feed what the networks really see: MNIST-like input
//! (~2 in 10 non-zero) to Linear, and a ReLU + max-pool gradient (~2 in 10
//! non-zero) to the 32->64 convolution's backward. Their throughput still
//! counts dense FLOPs, i.e. it is a dense-equivalent rate.
//!
//! The `conv_relu_pool_*` cases time Eval-mode inference of a convolution
//! with the ReLU and 2x2 max-pool it absorbs (Winograd, fused), in the
//! convolution's dense FLOPs; the 32->64 convolution's `forward` is Winograd
//! too (dense-equivalent FLOPs).
//!
//! Also BatchNorm2d over 32 channels at 28x28 and BatchNorm1d over 1000
//! features (the W2 MLP's), both in Train mode.
//!
//! The `kernels` group times the pieces of the 32->64 convolution separately
//! (im2col, the forward GEMMs, col2im) to show where its time goes.
//!
//! Run: `cargo bench -p tegaki-nn` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quick look).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Ix4};
use rayon::prelude::*;
use std::hint::black_box;
use tegaki_nn::gradcheck::random_input;
use tegaki_nn::{
    BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Layer, Linear, MaxPool2d, Mode, ReLU,
    Sequential,
};
use tegaki_tensor::conv::{ConvGeometry, col2im, im2col};
use tegaki_tensor::gemm::gemm;
use tegaki_tensor::rng;

const BATCH: usize = 100;

/// Times `forward` alone and `forward` + `backward` (or `backward_params_only`).
fn layer_case(
    c: &mut Criterion,
    name: &str,
    layer: &mut dyn Layer,
    input: &[usize],
    params_only: bool,
) {
    flop_case(c, name, layer, input, params_only, None);
}

/// [`layer_case`] with throughput in FLOPs when `forward_flops` (per batch) is
/// given.
fn flop_case(
    c: &mut Criterion,
    name: &str,
    layer: &mut dyn Layer,
    input: &[usize],
    params_only: bool,
    forward_flops: Option<u64>,
) {
    let x = random_input(input, 1);
    let out = layer.output_shape(input).expect("bench shapes fit");
    let dy = random_input(&out, 2);
    flop_case_with(c, name, layer, x, dy, params_only, forward_flops);
}

/// `x` with `keep` of every 10 entries kept and the rest exact zeros: raw
/// MNIST pixels (~2 in 10 non-zero), or a gradient behind ReLU + max-pool.
fn mostly_zero(shape: &[usize], seed: u64, keep: usize) -> ArrayD<f32> {
    let mut x = random_input(shape, seed);
    for (i, v) in x.iter_mut().enumerate() {
        if (i * 2654435761) % 10 >= keep {
            *v = 0.0;
        }
    }
    x
}

/// [`flop_case`] with given input and output gradient. Throughput counts
/// the dense FLOPs, so a sparse path shows as a higher dense-equivalent rate.
fn flop_case_with(
    c: &mut Criterion,
    name: &str,
    layer: &mut dyn Layer,
    x: ArrayD<f32>,
    dy: ArrayD<f32>,
    params_only: bool,
    forward_flops: Option<u64>,
) {
    let mut group = c.benchmark_group(name);
    let per_pass = |passes: u64| match forward_flops {
        Some(f) => Throughput::Elements(f * passes),
        None => Throughput::Elements(BATCH as u64),
    };
    group.throughput(per_pass(1));
    group.bench_function("forward", |b| {
        b.iter_batched(
            || x.clone(),
            |x| black_box(layer.forward(x, Mode::Train)),
            BatchSize::LargeInput,
        )
    });
    group.throughput(per_pass(if params_only { 2 } else { 3 }));
    group.bench_function("forward+backward", |b| {
        b.iter_batched(
            || (x.clone(), dy.clone()),
            |(x, dy)| {
                layer.forward(x, Mode::Train);
                if params_only {
                    layer.backward_params_only(dy);
                } else {
                    black_box(layer.backward(dy));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Eval-mode forward of `conv3x3(c -> oc)`, ReLU and 2x2 max-pool as one
/// `Sequential` (the convolution applies the other two on its Winograd path),
/// with throughput in the convolution's dense FLOPs.
fn eval_conv_block(c: &mut Criterion, name: &str, channels: (usize, usize), side: usize) {
    let r = &mut rng::seeded(5);
    let (ci, co) = channels;
    let mut net = Sequential::new()
        .with(Conv2d::torch_default(ci, co, (3, 3), (1, 1), (1, 1), r))
        .with(ReLU::new())
        .with(MaxPool2d::new((2, 2), (2, 2)));
    let x = random_input(&[BATCH, ci, side, side], 1);
    let flops = 2 * (BATCH * co * side * side * ci * 9) as u64;
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(flops));
    group.bench_function("eval_forward", |b| {
        b.iter_batched(
            || x.clone(),
            |x| black_box(net.forward(x, Mode::Eval)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn layers(c: &mut Criterion) {
    eval_conv_block(c, "conv_relu_pool_1x32_28x28", (1, 32), 28);
    eval_conv_block(c, "conv_relu_pool_32x64_14x14", (32, 64), 14);
    let r = &mut rng::seeded(0);
    flop_case(
        c,
        "conv2d_1x32_28x28_params_only",
        &mut Conv2d::torch_default(1, 32, (3, 3), (1, 1), (1, 1), r),
        &[BATCH, 1, 28, 28],
        true,
        Some(45_158_400),
    );
    flop_case(
        c,
        "conv2d_1x32_28x28",
        &mut Conv2d::torch_default(1, 32, (3, 3), (1, 1), (1, 1), r),
        &[BATCH, 1, 28, 28],
        false,
        Some(45_158_400),
    );
    flop_case(
        c,
        "conv2d_32x64_14x14",
        &mut Conv2d::torch_default(32, 64, (3, 3), (1, 1), (1, 1), r),
        &[BATCH, 32, 14, 14],
        false,
        Some(722_534_400),
    );
    // The CNN's real backward: dy behind ReLU + max-pool (~2 in 10 non-zero)
    // takes the direct sparse path.
    let mut conv = Conv2d::torch_default(32, 64, (3, 3), (1, 1), (1, 1), r);
    flop_case_with(
        c,
        "conv2d_32x64_14x14_sparse_dy",
        &mut conv,
        random_input(&[BATCH, 32, 14, 14], 1),
        mostly_zero(&[BATCH, 64, 14, 14], 2, 2),
        false,
        Some(722_534_400),
    );
    // The W2 MLP's first layer on MNIST-like input (~2 in 10 pixels
    // non-zero): forward and weight gradient over the non-zeros.
    let mut fc = Linear::new(784, 1000, r);
    flop_case_with(
        c,
        "linear_784x1000_sparse_input_params_only",
        &mut fc,
        mostly_zero(&[BATCH, 784], 1, 2),
        random_input(&[BATCH, 1000], 2),
        true,
        Some(156_800_000),
    );
    flop_case(
        c,
        "linear_784x1000_dense_input_params_only",
        &mut Linear::new(784, 1000, r),
        &[BATCH, 784],
        true,
        Some(156_800_000),
    );
    layer_case(
        c,
        "maxpool2d_2x2_32x28x28",
        &mut MaxPool2d::new((2, 2), (2, 2)),
        &[BATCH, 32, 28, 28],
        false,
    );
    layer_case(
        c,
        "maxpool2d_2x2_64x14x14",
        &mut MaxPool2d::new((2, 2), (2, 2)),
        &[BATCH, 64, 14, 14],
        false,
    );
    layer_case(
        c,
        "batchnorm2d_32x28x28",
        &mut BatchNorm2d::new(32),
        &[BATCH, 32, 28, 28],
        false,
    );
    layer_case(
        c,
        "batchnorm1d_1000",
        &mut BatchNorm1d::new(1000),
        &[BATCH, 1000],
        false,
    );
    flop_case(
        c,
        "convtranspose2d_64x32_7x7_to_14x14",
        &mut ConvTranspose2d::torch_default(64, 32, (4, 4), (2, 2), (1, 1), (0, 0), r),
        &[BATCH, 64, 7, 7],
        false,
        Some(321_126_400),
    );
    flop_case(
        c,
        "linear_3136x128",
        &mut Linear::new(3136, 128, r),
        &[BATCH, 3136],
        false,
        Some(80_281_600),
    );
}

/// The 32->64 convolution's pieces, each over the whole batch, samples in
/// parallel as in the layer.
fn kernels(c: &mut Criterion) {
    let g = ConvGeometry::new((32, 14, 14), (3, 3), (1, 1), (1, 1));
    let x = random_input(&[BATCH, 32, 14, 14], 3)
        .into_dimensionality::<Ix4>()
        .expect("4-D");
    let cols = im2col(x.view(), &g);
    let w = random_input(&[64, g.col_rows()], 4)
        .into_dimensionality()
        .expect("2-D");
    let w: Array2<f32> = w;
    let mut y = ArrayD::<f32>::zeros(vec![BATCH, 64, g.col_cols()]);
    let mut group = c.benchmark_group("conv2d_32x64_14x14_kernels");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("im2col", |b| b.iter(|| black_box(im2col(x.view(), &g))));
    group.bench_function("gemm_forward", |b| {
        b.iter(|| {
            let ys = y.as_slice_mut().expect("standard layout");
            let cs = cols.as_slice().expect("standard layout");
            ys.par_chunks_mut(64 * g.col_cols())
                .zip(cs.par_chunks(g.col_rows() * g.col_cols()))
                .for_each(|(y_s, c_s)| {
                    let cv = ArrayView2::from_shape((g.col_rows(), g.col_cols()), c_s).unwrap();
                    let mut yv = ArrayViewMut2::from_shape((64, g.col_cols()), y_s).unwrap();
                    gemm(1.0, w.view(), cv, 0.0, &mut yv);
                });
        })
    });
    group.bench_function("col2im", |b| b.iter(|| black_box(col2im(cols.view(), &g))));
    group.finish();
}

criterion_group!(benches, layers, kernels);
criterion_main!(benches);
