//! `tegaki-bench`: one of the anchors' MNIST throughput workloads, trained
//! and evaluated with tegaki's real layers, `Sequential`, the fused softmax
//! cross-entropy and an optimizer from `tegaki_optim::build`; prints one JSON
//! line in the format of `anchors/python/bench.py`.
//!
//! Run it through `cargo xtask bench`, which builds it in release mode and
//! starts one process per workload (so each peak RSS is that workload's own).
//!
//! Protocol (as the anchors'): batch 100, `warmup` untimed steps, then
//! `windows` timed windows of `steps / windows` steps each; the training rate
//! is the median window rate. Inference: Eval mode, batch 1000 over the 10k
//! test images (converted to f32 outside the timer, as the anchors' `prep_eval`
//! does), forward + arg-max, one untimed pass, then the median of 3.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ndarray::{Array4, Ix2};
use tegaki_data::{Dataset, DatasetKind, Split, epoch_order, load, resolve_data_dir};
use tegaki_nn::loss::argmax_rows;
use tegaki_nn::{
    BatchNorm1d, Conv2d, Dropout, Flatten, Layer, Linear, MaxPool2d, Mode, ReLU, Sequential,
    Sigmoid, Targets, softmax_cross_entropy,
};
use tegaki_optim::{OptimizerConfig, OptimizerKind, ScheduleConfig, Trainable, build};
use tegaki_tensor::{HasParams, Param, parallel, rng};

// The allocator of the `tegaki` binary, so the benchmark measures what
// users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Images per training step (every anchor uses 100).
const BATCH: usize = 100;

/// The anchors' workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// 784-100 sigmoid-10, SGD lr 0.01.
    #[value(name = "W1", alias = "w1")]
    W1,
    /// 784-1000 BatchNorm1d ReLU Dropout(0.5)-10, Adam lr 1e-3.
    #[value(name = "W2", alias = "w2")]
    W2,
    /// conv3x3(32) ReLU pool2, conv3x3(64) ReLU pool2, 3136-128 ReLU-10, Adam lr 1e-3.
    #[value(name = "W3", alias = "w3")]
    W3,
}

impl Workload {
    fn id(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "mlp-sigmoid",
            Workload::W2 => "mlp-relu-bn-dropout",
            Workload::W3 => "cnn",
        }
    }

    /// `(inference, training = 3 x forward, training exact)` FLOPs per image,
    /// counted as `anchors/python/common.py` does (multiply-add = 2, Linear
    /// and Conv only).
    fn flops(self) -> (u64, u64, u64) {
        match self {
            Workload::W1 => (158_800, 476_400, 319_600),
            Workload::W2 => (1_588_000, 4_764_000, 3_196_000),
            Workload::W3 => (8_482_304, 25_446_912, 24_995_328),
        }
    }

    fn model(self, seed: u64) -> Sequential {
        let mut init = rng::stream(seed, "init");
        match self {
            Workload::W1 => Sequential::new()
                .with(Flatten::new())
                .with(Linear::new(784, 100, &mut init))
                .with(Sigmoid::new())
                .with(Linear::new(100, 10, &mut init)),
            Workload::W2 => {
                let mut drop = rng::stream(seed, "dropout");
                Sequential::new()
                    .with(Flatten::new())
                    .with(Linear::new(784, 1000, &mut init))
                    .with(BatchNorm1d::new(1000))
                    .with(ReLU::new())
                    .with(Dropout::new(0.5, &mut drop))
                    .with(Linear::new(1000, 10, &mut init))
            }
            Workload::W3 => Sequential::new()
                .with(Conv2d::torch_default(
                    1,
                    32,
                    (3, 3),
                    (1, 1),
                    (1, 1),
                    &mut init,
                ))
                .with(ReLU::new())
                .with(MaxPool2d::new((2, 2), (2, 2)))
                .with(Conv2d::torch_default(
                    32,
                    64,
                    (3, 3),
                    (1, 1),
                    (1, 1),
                    &mut init,
                ))
                .with(ReLU::new())
                .with(MaxPool2d::new((2, 2), (2, 2)))
                .with(Flatten::new())
                .with(Linear::new(3136, 128, &mut init))
                .with(ReLU::new())
                .with(Linear::new(128, 10, &mut init)),
        }
    }

    fn optimizer(self) -> OptimizerConfig {
        let kind = match self {
            Workload::W1 => "sgd",
            Workload::W2 | Workload::W3 => "adam",
        };
        let mut cfg =
            OptimizerConfig::new(OptimizerKind::from_name(kind).expect("a known optimizer"));
        cfg.lr = match self {
            Workload::W1 => 0.01,
            Workload::W2 | Workload::W3 => 1e-3,
        };
        cfg.weight_decay = 0.0;
        cfg
    }
}

/// Options (the anchors' `bench.py` names where they exist).
#[derive(Parser)]
#[command(name = "tegaki-bench", about, long_about = None)]
struct Args {
    /// Which workload.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Threads in the rayon pool (GEMM and batch parallelism).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed training steps (split into `--windows` windows).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Timed windows; the training rate is their median.
    #[arg(long, default_value_t = 5)]
    windows: usize,
    /// Untimed warm-up steps [default: max(5, steps / 10)].
    #[arg(long)]
    warmup: Option<usize>,
    /// Timed inference passes over the test set; the rate is their median.
    #[arg(long, default_value_t = 3)]
    infer_reps: usize,
    /// Inference batch size.
    #[arg(long, default_value_t = 1000)]
    infer_batch: usize,
    /// Seed of the weights, the batch order and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Instead of the benchmark, print per-layer forward/backward times
    /// (milliseconds per step, median over this many steps) to stderr.
    #[arg(long)]
    profile: Option<usize>,
    /// Data folder holding `mnist/` [default: $TEGAKI_DATA, else ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Turn off the sparse paths (Linear on mostly-zero inputs, Conv2d
    /// backward on mostly-zero gradients), to measure the dense kernels alone.
    #[arg(long)]
    dense: bool,
    /// Turn off Winograd convolution (im2col + GEMM everywhere).
    #[arg(long)]
    no_winograd: bool,
}

/// A network bound to one minibatch, as the optimizers step it.
struct Bound<'a> {
    net: &'a mut Sequential,
    x: &'a Array4<f32>,
    y: &'a Targets,
}

impl HasParams for Bound<'_> {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.net.visit_params(f);
    }
}

impl Trainable for Bound<'_> {
    fn forward_backward(&mut self) -> f32 {
        let logits = self.net.forward(self.x.clone().into_dyn(), Mode::Train);
        let (loss, dlogits) = softmax_cross_entropy(&logits, self.y);
        self.net.backward_params_only(dlogits);
        loss
    }
}

/// A named line of `/proc/self/status` in MB (e.g. `VmHWM`, the peak RSS).
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The 1-minute load average.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn json_num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "null".into(),
    }
}

fn load_mnist(data_dir: &Path) -> anyhow::Result<(Dataset, Dataset)> {
    let train = load(DatasetKind::Mnist, Split::Train, data_dir)
        .with_context(|| format!("loading MNIST from {}", data_dir.display()))?;
    let test = load(DatasetKind::Mnist, Split::Test, data_dir)
        .with_context(|| format!("loading MNIST from {}", data_dir.display()))?;
    Ok((train, test))
}

/// One timed pass of batch-`batch` Eval-mode inference (forward + arg-max)
/// over `test`; each f32 batch is built before its clock starts (as the
/// anchors convert the test set before timing). Returns `(seconds, accuracy)`.
fn infer_pass(net: &mut Sequential, test: &Dataset, batch: usize) -> (f64, f64) {
    let order: Vec<usize> = (0..test.len()).collect();
    let (mut correct, mut seconds) = (0usize, 0.0f64);
    for idx in order.chunks(batch) {
        let x = test.batch_f32(idx).into_dyn();
        let labels = test.labels_of(idx);
        let start = Instant::now();
        let logits = net.forward(x, Mode::Eval);
        let logits = logits
            .into_dimensionality::<Ix2>()
            .expect("the network outputs (N, 10) logits");
        let predictions = argmax_rows(logits.view());
        seconds += start.elapsed().as_secs_f64();
        correct += predictions
            .iter()
            .zip(&labels)
            .filter(|(p, y)| p == y)
            .count();
    }
    (seconds, correct as f64 / test.len().max(1) as f64)
}

/// Per-layer timing of training steps and of batch-1000 inference, layer by
/// layer through `layers_mut` (the same calls `Sequential` makes).
fn profile(
    net: &mut Sequential,
    train: &Dataset,
    test: &Dataset,
    steps: usize,
    opt: &mut dyn tegaki_optim::Optimizer,
) {
    let names: Vec<String> = net.layers().iter().map(|l| l.describe()).collect();
    let k = names.len();
    let mut fwd = vec![Vec::new(); k];
    let mut bwd = vec![Vec::new(); k];
    let mut ev = vec![Vec::new(); k];
    let (mut loss_t, mut opt_t) = (Vec::new(), Vec::new());
    let order = epoch_order(train.len(), 0, 0);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for s in 0..steps {
        let idx = &order[(s % 600) * BATCH..(s % 600 + 1) * BATCH];
        let mut x = train.batch_f32(idx).into_dyn();
        let y = Targets::Classes(train.labels_of(idx));
        for (i, l) in net.layers_mut().iter_mut().enumerate() {
            let t = Instant::now();
            x = l.forward(x, Mode::Train);
            fwd[i].push(ms(t));
        }
        let t = Instant::now();
        let (_, mut dy) = softmax_cross_entropy(&x, &y);
        loss_t.push(ms(t));
        for (i, l) in net.layers_mut().iter_mut().enumerate().rev() {
            let t = Instant::now();
            if i == 0 {
                l.backward_params_only(dy.clone());
            } else {
                dy = l.backward(dy);
            }
            bwd[i].push(ms(t));
        }
        let t = Instant::now();
        opt.apply(net);
        opt_t.push(ms(t));
        let idx: Vec<usize> = (0..1000).collect();
        let mut x = test.batch_f32(&idx).into_dyn();
        for (i, l) in net.layers_mut().iter_mut().enumerate() {
            let t = Instant::now();
            x = l.forward(x, Mode::Eval);
            ev[i].push(ms(t));
        }
    }
    eprintln!(
        "{:<60} {:>9} {:>9} {:>11}",
        "layer (ms)", "fwd", "bwd", "eval b1000"
    );
    for i in 0..k {
        eprintln!(
            "{:<60} {:>9.3} {:>9.3} {:>11.3}",
            names[i],
            median(&fwd[i]),
            median(&bwd[i]),
            median(&ev[i])
        );
    }
    eprintln!("{:<60} {:>9.3}", "softmax_cross_entropy", median(&loss_t));
    eprintln!("{:<60} {:>9.3}", "optimizer apply", median(&opt_t));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.windows == 0 || args.steps < args.windows {
        bail!(
            "--steps {} must be at least --windows {}",
            args.steps,
            args.windows
        );
    }
    parallel::set_num_threads(args.threads).map_err(anyhow::Error::msg)?;
    tegaki_tensor::sparse::set_enabled(!args.dense);
    if args.no_winograd {
        tegaki_tensor::winograd::set_enabled(false);
    }
    let load_start = loadavg();
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let (train, test) = load_mnist(&data_dir)?;
    let rss_baseline = status_mb("VmRSS");

    let w = args.workload;
    let mut net = w.model(args.seed);
    let mut opt = build(
        &w.optimizer(),
        &ScheduleConfig::default(),
        1_000_000, // the default schedule is constant; the total only bounds it
    )?;

    if let Some(steps) = args.profile {
        profile(&mut net, &train, &test, steps, opt.as_mut());
        return Ok(());
    }
    let steps_per_epoch = train.len() / BATCH;
    let mut epoch = 0u64;
    let mut order = epoch_order(train.len(), args.seed, epoch);
    let mut in_epoch = 0usize;
    let mut x = Array4::<f32>::zeros((BATCH, 1, 28, 28));
    let mut last_loss = f32::NAN;
    let mut step = |net: &mut Sequential, x: &mut Array4<f32>| {
        if in_epoch == steps_per_epoch {
            epoch += 1;
            order = epoch_order(train.len(), args.seed, epoch);
            in_epoch = 0;
        }
        let idx = &order[in_epoch * BATCH..(in_epoch + 1) * BATCH];
        in_epoch += 1;
        train.batch_f32_into(idx, x);
        let y = Targets::Classes(train.labels_of(idx));
        opt.step(&mut Bound { net, x: &*x, y: &y })
    };

    let warmup = args.warmup.unwrap_or((args.steps / 10).max(5));
    for _ in 0..warmup {
        last_loss = step(&mut net, &mut x);
    }
    let per = args.steps / args.windows;
    let mut rates = Vec::with_capacity(args.windows);
    for _ in 0..args.windows {
        let start = Instant::now();
        for _ in 0..per {
            last_loss = step(&mut net, &mut x);
        }
        rates.push((per * BATCH) as f64 / start.elapsed().as_secs_f64());
    }
    if !last_loss.is_finite() {
        bail!("{}: the loss is {last_loss}", w.id());
    }
    let train_rate = median(&rates);
    let train_peak_rss = status_mb("VmHWM");

    let (_, accuracy) = infer_pass(&mut net, &test, args.infer_batch);
    let times: Vec<f64> = (0..args.infer_reps.max(1))
        .map(|_| infer_pass(&mut net, &test, args.infer_batch).0)
        .collect();
    let infer_rate = test.len() as f64 / median(&times);

    let (infer_flops, train_flops, train_exact) = w.flops();
    let rates_json: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        concat!(
            "{{\"impl\": \"tegaki\", \"workload\": \"{}\", \"workload_name\": \"{}\", ",
            "\"threads\": {}, \"sparse_paths\": {}, \"winograd\": {}, \"versions\": {{\"tegaki\": \"{}\"}}, \"data\": \"mnist\", ",
            "\"train_images_per_s\": {:.1}, \"train_window_rates\": [{}], ",
            "\"infer_images_per_s\": {:.1}, \"infer_batch\": {}, ",
            "\"peak_rss_mb\": {}, \"train_peak_rss_mb\": {}, \"rss_baseline_mb\": {}, ",
            "\"train_gflop_per_s\": {:.2}, \"infer_gflop_per_s\": {:.2}, ",
            "\"loss_final\": {:.5}, \"test_accuracy_after_bench\": {:.4}, ",
            "\"infer_flops_per_image\": {}, \"train_flops_per_image\": {}, ",
            "\"train_flops_per_image_exact\": {}, \"mode\": \"steps\", ",
            "\"warmup_steps\": {}, \"timed_steps\": {}, \"loadavg_1m\": [{}, {}]}}"
        ),
        w.id(),
        w.name(),
        args.threads,
        !args.dense,
        tegaki_tensor::winograd::enabled(),
        env!("CARGO_PKG_VERSION"),
        train_rate,
        rates_json.join(", "),
        infer_rate,
        args.infer_batch,
        json_num(status_mb("VmHWM"), 1),
        json_num(train_peak_rss, 1),
        json_num(rss_baseline, 1),
        train_rate * train_flops as f64 / 1e9,
        infer_rate * infer_flops as f64 / 1e9,
        last_loss,
        accuracy,
        infer_flops,
        train_flops,
        train_exact,
        warmup,
        per * args.windows,
        json_num(load_start, 2),
        json_num(loadavg(), 2),
    );
    Ok(())
}
