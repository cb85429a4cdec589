//! `cargo xtask bench-optimizers`: the same MNIST network trained with every
//! optimizer at its usual learning rate, over several seeds; writes
//! `reports/bench-optimizers/{results.md, losses.csv, losses.png, losses.svg}`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{ArrayD, Ix2};
use tegaki_data::{Batches, Dataset, DatasetKind, Split, epoch_order, load, resolve_data_dir};
use tegaki_nn::loss::argmax_rows;
use tegaki_nn::{
    Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, ReLU, Sequential, Targets,
    softmax_cross_entropy,
};
use tegaki_optim::{OptimizerConfig, OptimizerKind, ScheduleConfig, Trainable, build};
use tegaki_plot::{LineChart, Series, line_chart_png, line_chart_svg};
use tegaki_tensor::{HasParams, Init, Param, rng};

/// The network every optimizer trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Model {
    /// 784-100 ReLU-10.
    Mlp,
    /// conv3x3(16) ReLU pool2, conv3x3(32) ReLU pool2, linear 1568-10.
    Cnn,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::Mlp => "mlp",
            Model::Cnn => "cnn",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Model::Mlp => "784-100 ReLU-10",
            Model::Cnn => "conv3x3(16) ReLU maxpool2, conv3x3(32) ReLU maxpool2, linear 1568-10",
        }
    }

    fn build(self, seed: u64) -> Sequential {
        let mut init = rng::stream(seed, "init");
        match self {
            Model::Mlp => Sequential::new()
                .with(Flatten::new())
                .with(Linear::new(784, 100, &mut init))
                .with(ReLU::new())
                .with(Linear::new(100, 10, &mut init)),
            Model::Cnn => {
                let conv = |c_in, c_out, init: &mut _| {
                    Conv2d::new(
                        c_in,
                        c_out,
                        (3, 3),
                        (1, 1),
                        (1, 1),
                        true,
                        Init::TorchDefault,
                        init,
                    )
                };
                Sequential::new()
                    .with(conv(1, 16, &mut init))
                    .with(ReLU::new())
                    .with(MaxPool2d::new((2, 2), (2, 2)))
                    .with(conv(16, 32, &mut init))
                    .with(ReLU::new())
                    .with(MaxPool2d::new((2, 2), (2, 2)))
                    .with(Flatten::new())
                    .with(Linear::new(32 * 7 * 7, 10, &mut init))
            }
        }
    }
}

/// Options of `cargo xtask bench-optimizers`.
#[derive(clap::Args)]
pub struct Args {
    /// The network: mlp (784-100 ReLU-10) or cnn (two conv/pool blocks and a linear layer).
    #[arg(long, value_enum, default_value_t = Model::Mlp)]
    model: Model,
    /// Comma-separated optimizers [default: all]: sgd, momentum, nesterov,
    /// adagrad, rmsprop, adadelta, adam, adamw.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    optimizers: Option<Vec<String>>,
    /// Runs (seeds 0..N) per optimizer.
    #[arg(long, default_value_t = 3, value_name = "N")]
    seeds: u64,
    /// Epochs per run [default: 5, or 1 with --quick].
    #[arg(long, value_name = "N")]
    epochs: Option<u64>,
    /// Minibatch size.
    #[arg(long, default_value_t = 100, value_name = "N")]
    batch_size: usize,
    /// The loss curve records the mean training loss of every N steps.
    #[arg(long, default_value_t = 20, value_name = "N")]
    log_every: usize,
    /// Where datasets live (default: env TEGAKI_DATA, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// One epoch on the first 20,000 (mlp) or 3,000 (cnn) training images,
    /// tested on the first 2,000 test images: well under a minute on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Output folder [default: <repo>/reports/bench-optimizers].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// A network bound to one minibatch, as the optimizers step it.
struct Bound<'a> {
    net: &'a mut Sequential,
    x: &'a ArrayD<f32>,
    y: &'a Targets,
}

impl HasParams for Bound<'_> {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.net.visit_params(f);
    }
}

impl Trainable for Bound<'_> {
    fn forward_backward(&mut self) -> f32 {
        let logits = self.net.forward(self.x.clone(), Mode::Train);
        let (loss, dlogits) = softmax_cross_entropy(&logits, self.y);
        self.net.backward_params_only(dlogits);
        loss
    }
}

/// One epoch's summary.
struct EpochStat {
    train_loss: f64,
    test_accuracy: f64,
    seconds: f64,
}

/// One optimizer and seed.
struct Run {
    optimizer: String,
    lr: f32,
    seed: u64,
    /// `(step after the window, mean loss of the window)`.
    losses: Vec<(u64, f64)>,
    epochs: Vec<EpochStat>,
    diverged: bool,
}

fn accuracy(net: &mut Sequential, test: &Dataset) -> f64 {
    let order: Vec<usize> = (0..test.len()).collect();
    let mut correct = 0usize;
    for idx in Batches::new(&order, 1000, false) {
        let logits = net.forward(test.batch_f32(idx).into_dyn(), Mode::Eval);
        let logits = logits
            .into_dimensionality::<Ix2>()
            .expect("the network outputs (N, 10) logits");
        let labels = test.labels_of(idx);
        correct += argmax_rows(logits.view())
            .iter()
            .zip(&labels)
            .filter(|(p, y)| p == y)
            .count();
    }
    correct as f64 / test.len().max(1) as f64
}

struct Plan<'a> {
    model: Model,
    train: &'a Dataset,
    test: &'a Dataset,
    epochs: u64,
    batch_size: usize,
    log_every: usize,
}

fn train_one(
    plan: &Plan,
    kind: OptimizerKind,
    seed: u64,
    bar: &ProgressBar,
) -> anyhow::Result<Run> {
    let cfg = OptimizerConfig::new(kind);
    let steps_per_epoch = Batches::count_total(plan.train.len(), plan.batch_size, false) as u64;
    let mut opt = build(
        &cfg,
        &ScheduleConfig::default(),
        steps_per_epoch * plan.epochs,
    )?;
    let mut net = plan.model.build(seed);
    let mut run = Run {
        optimizer: kind.name().to_string(),
        lr: cfg.lr,
        seed,
        losses: Vec::new(),
        epochs: Vec::new(),
        diverged: false,
    };
    let (mut window_sum, mut window_len) = (0.0f64, 0usize);
    for epoch in 0..plan.epochs {
        let start = Instant::now();
        let order = epoch_order(plan.train.len(), seed, epoch);
        let (mut epoch_sum, mut epoch_len) = (0.0f64, 0usize);
        for idx in Batches::new(&order, plan.batch_size, false) {
            let x = plan.train.batch_f32(idx).into_dyn();
            let y = Targets::Classes(plan.train.labels_of(idx));
            let loss = opt.step(&mut Bound {
                net: &mut net,
                x: &x,
                y: &y,
            });
            bar.inc(1);
            if !loss.is_finite() {
                run.diverged = true;
                break;
            }
            epoch_sum += f64::from(loss);
            epoch_len += 1;
            window_sum += f64::from(loss);
            window_len += 1;
            if window_len == plan.log_every {
                run.losses
                    .push((opt.steps(), window_sum / window_len as f64));
                (window_sum, window_len) = (0.0, 0);
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        if run.diverged {
            break;
        }
        run.epochs.push(EpochStat {
            train_loss: epoch_sum / epoch_len.max(1) as f64,
            test_accuracy: accuracy(&mut net, plan.test),
            seconds,
        });
        bar.set_message(format!(
            "{} seed {seed}: epoch {}/{} loss {:.4}",
            run.optimizer,
            epoch + 1,
            plan.epochs,
            epoch_sum / epoch_len.max(1) as f64
        ));
    }
    Ok(run)
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn write_csv(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let mut csv = String::from("kind,optimizer,lr,seed,epoch,step,train_loss,test_accuracy\n");
    for r in runs {
        for &(step, loss) in &r.losses {
            writeln!(
                csv,
                "step,{},{},{},,{step},{loss:.6},",
                r.optimizer, r.lr, r.seed
            )?;
        }
        for (e, stat) in r.epochs.iter().enumerate() {
            writeln!(
                csv,
                "epoch,{},{},{},{},,{:.6},{:.4}",
                r.optimizer,
                r.lr,
                r.seed,
                e + 1,
                stat.train_loss,
                stat.test_accuracy
            )?;
        }
    }
    tegaki_tensor::io::write_atomic(path, csv.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Mean over seeds with a min-max band, per logged step (up to the shortest run).
fn loss_series(name: &str, runs: &[&Run]) -> Series {
    let len = runs.iter().map(|r| r.losses.len()).min().unwrap_or(0);
    let mut points = Vec::with_capacity(len);
    let mut band = Vec::with_capacity(len);
    for i in 0..len {
        let step = runs[0].losses[i].0 as f64;
        let ys: Vec<f64> = runs.iter().map(|r| r.losses[i].1).collect();
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        points.push((step, ys.iter().sum::<f64>() / ys.len() as f64));
        band.push((step, lo, hi));
    }
    Series {
        name: name.to_string(),
        points,
        band: (runs.len() > 1).then_some(band),
    }
}

/// Runs the benchmark and writes the report.
pub fn run(args: Args) -> anyhow::Result<()> {
    let kinds: Vec<OptimizerKind> = match &args.optimizers {
        None => OptimizerKind::NAMES
            .iter()
            .map(|n| OptimizerKind::from_name(n).expect("listed names parse"))
            .collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                OptimizerKind::from_name(n.trim()).with_context(|| {
                    format!(
                        "--optimizers: unknown optimizer `{n}` (expected {})",
                        OptimizerKind::NAMES.join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    if args.seeds == 0 || args.batch_size == 0 || args.log_every == 0 {
        bail!("--seeds, --batch-size and --log-every must be at least 1");
    }
    let epochs = args.epochs.unwrap_or(if args.quick { 1 } else { 5 });
    let data_dir = resolve_data_dir(args.data_dir.as_deref());
    let mut train = load(DatasetKind::Mnist, Split::Train, &data_dir)?;
    let mut test = load(DatasetKind::Mnist, Split::Test, &data_dir)?;
    if args.quick {
        // About a minute on 2 cores for all 24 runs: the cnn costs ~15x the mlp per image.
        let n_train = match args.model {
            Model::Mlp => 20_000,
            Model::Cnn => 3_000,
        };
        train = train.subset(&(0..n_train.min(train.len())).collect::<Vec<_>>());
        test = test.subset(&(0..2_000.min(test.len())).collect::<Vec<_>>());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives inside the repository")
            .join("reports/bench-optimizers")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let plan = Plan {
        model: args.model,
        train: &train,
        test: &test,
        epochs,
        batch_size: args.batch_size,
        log_every: args.log_every,
    };
    let steps_per_epoch = Batches::count_total(train.len(), args.batch_size, false) as u64;
    let total = kinds.len() as u64 * args.seeds * epochs * steps_per_epoch;
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] [{bar:30}] {pos}/{len} steps, eta {eta}  {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    eprintln!(
        "bench-optimizers: {} on MNIST ({} train / {} test images), {} optimizers x {} seeds x {epochs} epochs, batch {}",
        args.model.name(),
        train.len(),
        test.len(),
        kinds.len(),
        args.seeds,
        args.batch_size
    );
    let mut runs = Vec::new();
    for &kind in &kinds {
        for seed in 0..args.seeds {
            let r = train_one(&plan, kind, seed, &bar)?;
            let line = match r.epochs.last() {
                Some(last) if !r.diverged => format!(
                    "{} lr {} seed {seed}: train loss {:.4}, test accuracy {:.2}%, {:.2} s/epoch",
                    r.optimizer,
                    r.lr,
                    last.train_loss,
                    100.0 * last.test_accuracy,
                    r.epochs.iter().map(|e| e.seconds).sum::<f64>() / r.epochs.len() as f64
                ),
                _ => format!(
                    "{} lr {} seed {seed}: diverged (non-finite loss)",
                    r.optimizer, r.lr
                ),
            };
            if tty {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
            runs.push(r);
        }
    }
    bar.finish_and_clear();

    write_csv(&out.join("losses.csv"), &runs)?;

    let mut series = Vec::new();
    let mut table = String::new();
    for &kind in &kinds {
        let group: Vec<&Run> = runs.iter().filter(|r| r.optimizer == kind.name()).collect();
        let finished: Vec<&Run> = group.iter().copied().filter(|r| !r.diverged).collect();
        let last = |f: fn(&EpochStat) -> f64| -> Vec<f64> {
            finished
                .iter()
                .filter_map(|r| r.epochs.last().map(f))
                .collect()
        };
        let (loss, loss_sd) = mean_std(&last(|e| e.train_loss));
        let (acc, acc_sd) = mean_std(&last(|e| 100.0 * e.test_accuracy));
        let secs: Vec<f64> = finished
            .iter()
            .flat_map(|r| r.epochs.iter().map(|e| e.seconds))
            .collect();
        let (secs, _) = mean_std(&secs);
        let diverged = group.len() - finished.len();
        let note = if diverged > 0 {
            format!(" ({diverged} of {} diverged)", group.len())
        } else {
            String::new()
        };
        writeln!(
            table,
            "| {}{note} | {} | {loss:.4} ± {loss_sd:.4} | {acc:.2} ± {acc_sd:.2} | {secs:.2} |",
            kind.name(),
            group[0].lr
        )?;
        series.push(loss_series(kind.name(), &group));
    }

    let chart = LineChart {
        title: format!(
            "MNIST {}: training loss, mean of {} seeds (band: min-max)",
            args.model.name(),
            args.seeds
        ),
        x_label: "step".to_string(),
        y_label: format!("training loss (mean of {} steps)", args.log_every),
        series,
        log_y: true,
    };
    line_chart_png(&chart, &out.join("losses.png"), (1000, 620))?;
    line_chart_svg(&chart, &out.join("losses.svg"), (1000, 620))?;

    let command: Vec<String> = std::env::args().skip(1).collect();
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let mut md = String::new();
    writeln!(md, "# Optimizers on MNIST ({})\n", args.model.name())?;
    writeln!(
        md,
        "Network {}; {} training / {} test images; {epochs} epoch(s) of batch {} \
         ({steps_per_epoch} steps each); {} seed(s) per optimizer; every optimizer at its usual \
         learning rate, constant, no weight decay. Produced by `cargo xtask {}` \
         ({profile} build, {} threads).\n",
        args.model.describe(),
        train.len(),
        test.len(),
        args.batch_size,
        args.seeds,
        command.join(" "),
        rayon_threads()
    )?;
    writeln!(
        md,
        "| optimizer | lr | final training loss | test accuracy (%) | s/epoch |\n|---|---:|---:|---:|---:|"
    )?;
    md.push_str(&table);
    writeln!(
        md,
        "\nFinal training loss: the mean loss over the last epoch. Loss and accuracy are \
         mean ± sample standard deviation over seeds; s/epoch is training time only \
         (no evaluation). Per-step losses and per-epoch accuracies are in `losses.csv`.\n\n\
         ![training loss per optimizer](losses.png)"
    )?;
    tegaki_tensor::io::write_atomic(&out.join("results.md"), md.as_bytes())
        .with_context(|| format!("writing {}", out.join("results.md").display()))?;
    eprintln!("wrote {}", out.display());
    print!("{md}");
    Ok(())
}

fn rayon_threads() -> usize {
    tegaki_tensor::parallel::num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(losses: &[f64]) -> Run {
        Run {
            optimizer: "adam".into(),
            lr: 1e-3,
            seed: 0,
            losses: losses
                .iter()
                .enumerate()
                .map(|(i, &l)| (10 * (i as u64 + 1), l))
                .collect(),
            epochs: Vec::new(),
            diverged: false,
        }
    }

    #[test]
    fn mean_and_sample_std() {
        // mean of (1, 2, 6) = 3; squared deviations 4 + 1 + 9 = 14; / (3 - 1) = 7.
        let (m, s) = mean_std(&[1.0, 2.0, 6.0]);
        assert_eq!(m, 3.0);
        assert!((s - 7f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[2.5]), (2.5, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn loss_series_averages_seeds_and_bands_min_max_up_to_the_shortest_run() {
        let a = run_with(&[2.0, 1.0, 0.5]);
        let b = run_with(&[4.0, 3.0]);
        let s = loss_series("adam", &[&a, &b]);
        assert_eq!(s.points, vec![(10.0, 3.0), (20.0, 2.0)]);
        assert_eq!(s.band, Some(vec![(10.0, 2.0, 4.0), (20.0, 1.0, 3.0)]));
        assert_eq!(loss_series("adam", &[&a]).band, None);
    }
}
