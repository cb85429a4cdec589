//! The adversarial training loop, its run folder and checkpoints.
//!
//! ```text
//! runs/NAME/
//!   config.toml                the resolved configuration
//!   metrics.csv                epoch,d_loss,g_loss,d_real,d_fake,seconds
//!   last.safetensors           generator.*, discriminator.*, optim_g.*, optim_d.*
//!                              + metadata (position, partial sums, RNG states)
//!   samples-epoch-001.png ...  10x10 samples of a fixed noise batch
//! ```
//!
//! One step on a batch of `B` real images `x` (scaled to [-1, 1]):
//!
//! 1. `fake = G(z)` (train mode), `z` from the stream `(seed, "noise/e/s")`;
//! 2. D step: logits of `D([x; fake])` in one pass, BCE against `[1; 0]`
//!    (the DCGAN paper's labels), `D.backward`, Adam on D;
//! 3. G step: logits of the *updated* `D(fake)`, BCE against 1 (the
//!    non-saturating loss), `D.backward` gives d/d(fake), `G.backward` from it,
//!    Adam on G. D's gradients from this pass are never applied.
//!
//! Every draw is a function of the seed and a position (weights from the
//! `init/...` streams, the epoch order from `(seed, "shuffle", e)`, the noise
//! of step `s` of epoch `e` from its own stream), and layer RNGs are saved in
//! the checkpoint, so a resumed run continues bit for bit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{ArrayD, Axis, IxDyn, concatenate};
use tegaki_data::Dataset;
use tegaki_nn::checkpoint::{load_tensors, model_tensors};
use tegaki_nn::{Layer, Mode, Sequential, bce_with_logits};
use tegaki_optim::rules::Adam;
use tegaki_optim::{Optimizer, OptimizerConfig, OptimizerKind, OptimizerState, ScheduleConfig};
use tegaki_tensor::io::{TensorFile, read_safetensors, write_atomic, write_safetensors};
use tegaki_tensor::{RngState, rng};

use crate::nets::{discriminator_input, generator_input, image_gradient, latent};
use crate::sample::{Gan, grid_png};
use crate::{GanConfig, GanError};

/// Options that do not change results.
#[derive(Clone, Debug, Default)]
pub struct GanOptions {
    /// Continue from `last.safetensors` in the run folder.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to save `last` before the next step and stop.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Skip the per-epoch sample grids (tests).
    pub no_grids: bool,
}

/// How [`train_gan`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GanOutcome {
    /// Every epoch ran.
    Finished {
        /// Epochs completed in total.
        epochs: usize,
    },
    /// Interrupted; `last.safetensors` holds the position.
    Interrupted {
        /// 1-based epoch that was running.
        epoch: usize,
        /// Steps of it already done.
        step: usize,
    },
}

/// One row of `metrics.csv`: means over the epoch's steps.
#[derive(Clone, Debug, PartialEq)]
pub struct GanMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Discriminator loss `BCE(D(x), 1) + BCE(D(G(z)), 0)`.
    pub d_loss: f64,
    /// Generator loss `BCE(D(G(z)), 1)` (after the D step).
    pub g_loss: f64,
    /// Mean `sigmoid(D(x))` on real images.
    pub d_real: f64,
    /// Mean `sigmoid(D(G(z)))` before the D step.
    pub d_fake: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,d_loss,g_loss,d_real,d_fake,seconds";

/// Formats rows as `metrics.csv`.
pub fn metrics_csv(rows: &[GanMetrics]) -> String {
    let mut out = format!("{METRICS_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.6},{:.6},{:.6},{:.6},{:.3}",
            r.epoch, r.d_loss, r.g_loss, r.d_real, r.d_fake, r.seconds
        );
    }
    out
}

/// Parses `metrics.csv`; errors name the file and line.
pub fn parse_metrics_csv(text: &str, path: &Path) -> Result<Vec<GanMetrics>, GanError> {
    let bad = |line: usize, why: &str| GanError::Io {
        path: path.to_path_buf(),
        message: format!("line {line}: {why}"),
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(METRICS_HEADER) {
        return Err(bad(1, &format!("expected the header `{METRICS_HEADER}`")));
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad(i + 2, "a field is not a number"))?;
        let [epoch, d_loss, g_loss, d_real, d_fake, seconds] = f[..] else {
            return Err(bad(i + 2, &format!("expected 6 fields, found {}", f.len())));
        };
        rows.push(GanMetrics {
            epoch: epoch as usize,
            d_loss,
            g_loss,
            d_real,
            d_fake,
            seconds,
        });
    }
    Ok(rows)
}

/// Receives progress events from [`train_gan`].
pub trait GanObserver {
    /// Epoch `epoch` (1-based) of `total` begins, with `steps` steps.
    fn epoch_start(&mut self, epoch: usize, total: usize, steps: usize);
    /// A step finished; `m` holds running means over the epoch so far.
    fn step(&mut self, step: usize, m: &GanMetrics, images_per_s: f64);
    /// An epoch finished.
    fn epoch_end(&mut self, m: &GanMetrics);
    /// A one-off message.
    fn message(&mut self, text: &str);
}

/// Reports nothing.
#[derive(Default)]
pub struct SilentGanObserver;

impl GanObserver for SilentGanObserver {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: &GanMetrics, _: f64) {}
    fn epoch_end(&mut self, _: &GanMetrics) {}
    fn message(&mut self, _: &str) {}
}

/// A progress bar on a terminal, one plain line per epoch otherwise.
pub struct GanProgress {
    bar: Option<ProgressBar>,
    tty: bool,
    total: usize,
}

impl Default for GanProgress {
    fn default() -> Self {
        Self {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            total: 0,
        }
    }
}

/// One epoch as a plain line.
pub fn epoch_line(m: &GanMetrics, total: usize) -> String {
    format!(
        "epoch {}/{total}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {:.1}s",
        m.epoch, m.d_loss, m.g_loss, m.d_real, m.d_fake, m.seconds
    )
}

impl GanObserver for GanProgress {
    fn epoch_start(&mut self, epoch: usize, total: usize, steps: usize) {
        self.total = total;
        if self.tty {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{total}"));
            self.bar = Some(bar);
        }
    }

    fn step(&mut self, step: usize, m: &GanMetrics, images_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!(
                "D {:.3} G {:.3} D(x) {:.2} D(G(z)) {:.2} {images_per_s:.0} img/s",
                m.d_loss, m.g_loss, m.d_real, m.d_fake
            ));
        }
    }

    fn epoch_end(&mut self, m: &GanMetrics) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("{}", epoch_line(m, self.total));
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

/// `config.toml` of a run folder.
pub fn config_path(run: &Path) -> PathBuf {
    run.join("config.toml")
}
/// `last.safetensors` of a run folder.
pub fn last_path(run: &Path) -> PathBuf {
    run.join("last.safetensors")
}
/// `metrics.csv` of a run folder.
pub fn metrics_path(run: &Path) -> PathBuf {
    run.join("metrics.csv")
}
/// The sample grid written after `epoch` (1-based).
pub fn samples_path(run: &Path, epoch: usize) -> PathBuf {
    run.join(format!("samples-epoch-{epoch:03}.png"))
}

/// Tensor and metadata prefix of the generator in `last.safetensors`.
pub const GENERATOR: &str = "generator.";
/// Tensor and metadata prefix of the discriminator.
pub const DISCRIMINATOR: &str = "discriminator.";
/// Prefix of the generator's optimizer state.
pub const OPTIM_G: &str = "optim_g.";
/// Prefix of the discriminator's optimizer state.
pub const OPTIM_D: &str = "optim_d.";
/// The optimizer crate's own prefix, replaced by [`OPTIM_G`] / [`OPTIM_D`].
const OPTIM: &str = "optim.";

/// Adam with the config's settings for a run of `total_steps` updates.
fn adam(cfg: &GanConfig, lr: f32, total_steps: u64) -> Result<Box<dyn Optimizer>, GanError> {
    let mut o = OptimizerConfig::new(OptimizerKind::Adam(Adam {
        beta1: cfg.optimizer.beta1,
        beta2: cfg.optimizer.beta2,
        ..Adam::default()
    }));
    o.lr = lr;
    o.weight_decay = 0.0;
    tegaki_optim::build(&o, &ScheduleConfig::default(), total_steps)
        .map_err(|e| GanError::Usage(format!("optimizer: {e}")))
}

fn add_prefixed(
    tensors: &mut BTreeMap<String, ArrayD<f32>>,
    prefix: &str,
    from: BTreeMap<String, ArrayD<f32>>,
) {
    for (k, v) in from {
        tensors.insert(format!("{prefix}{k}"), v);
    }
}

/// The entries of `map` whose keys start with `prefix`, without it.
fn strip<T: Clone>(map: &BTreeMap<String, T>, prefix: &str) -> BTreeMap<String, T> {
    map.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
        .collect()
}

/// Writes both networks, both optimizer states and `metadata` to `path`
/// (atomically), with the layers' RNG states added to the metadata.
pub fn save_checkpoint(
    path: &Path,
    g: &mut Sequential,
    d: &mut Sequential,
    opt_g: &dyn Optimizer,
    opt_d: &dyn Optimizer,
    metadata: &BTreeMap<String, String>,
) -> Result<(), GanError> {
    let mut tensors = BTreeMap::new();
    add_prefixed(&mut tensors, GENERATOR, model_tensors(g));
    add_prefixed(&mut tensors, DISCRIMINATOR, model_tensors(d));
    let mut meta = metadata.clone();
    for (prefix, state) in [(OPTIM_G, opt_g.state()), (OPTIM_D, opt_d.state())] {
        add_prefixed(&mut tensors, prefix, strip(&state.tensors, OPTIM));
        for (k, v) in strip(&state.metadata, OPTIM) {
            meta.insert(format!("{prefix}{k}"), v);
        }
    }
    for (prefix, net) in [(GENERATOR, g), (DISCRIMINATOR, d)] {
        net.visit_rngs(&mut |name, r| {
            meta.insert(
                format!("tegaki.rng.{prefix}{name}"),
                RngState::capture(r).encode(),
            );
        });
    }
    write_safetensors(
        path,
        tensors.iter().map(|(k, v)| (k.clone(), v.view())),
        &meta,
    )
    .map_err(|e| GanError::Checkpoint(e.to_string()))
}

/// Reads a checkpoint file, with an error that says how to get one.
pub fn read_checkpoint(path: &Path) -> Result<TensorFile, GanError> {
    if !path.is_file() {
        return Err(GanError::Checkpoint(format!(
            "{} does not exist (train with `tegaki gan train --config FILE --out DIR`)",
            path.display()
        )));
    }
    read_safetensors(path).map_err(|e| GanError::Checkpoint(e.to_string()))
}

/// Loads the network stored under `prefix` of `file` (read from `path`) into `net`.
pub fn load_network(
    file: &TensorFile,
    path: &Path,
    prefix: &str,
    net: &mut Sequential,
) -> Result<(), GanError> {
    let sub = TensorFile {
        tensors: strip(&file.tensors, prefix),
        metadata: BTreeMap::new(),
    };
    load_tensors(net, &sub, path, &[]).map_err(|e| {
        GanError::Checkpoint(format!(
            "{e} (tensor names are under `{prefix}` in the file)"
        ))
    })?;
    let mut missing = None;
    net.visit_rngs(&mut |name, r| match file
        .metadata
        .get(&format!("tegaki.rng.{prefix}{name}"))
        .and_then(|s| RngState::decode(s))
    {
        Some(state) => *r = state.restore(),
        None => missing = Some(name.to_string()),
    });
    match missing {
        Some(name) => Err(GanError::Checkpoint(format!(
            "{}: metadata has no state for the RNG `{prefix}{name}`",
            path.display()
        ))),
        None => Ok(()),
    }
}

fn load_optimizer(
    file: &TensorFile,
    path: &Path,
    prefix: &str,
    opt: &mut dyn Optimizer,
    net: &mut Sequential,
) -> Result<(), GanError> {
    fn add<T>(m: BTreeMap<String, T>) -> BTreeMap<String, T> {
        m.into_iter()
            .map(|(k, v)| (format!("{OPTIM}{k}"), v))
            .collect()
    }
    let state = OptimizerState {
        tensors: add(strip(&file.tensors, prefix)),
        metadata: add(strip(&file.metadata, prefix)),
    };
    opt.bind(net);
    opt.load_state(&state)
        .map_err(|e| GanError::Checkpoint(format!("{}: `{prefix}*`: {e}", path.display())))
}

fn meta_num<T: std::str::FromStr>(
    file: &TensorFile,
    key: &str,
    path: &Path,
) -> Result<T, GanError> {
    file.metadata
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            GanError::Checkpoint(format!(
                "{}: metadata `{key}` is missing or malformed",
                path.display()
            ))
        })
}

/// Running sums over an epoch's steps.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    d_loss: f64,
    g_loss: f64,
    d_real: f64,
    d_fake: f64,
    steps: usize,
}

impl Sums {
    const KEYS: [&'static str; 5] = ["d_loss", "g_loss", "d_real", "d_fake", "steps"];

    fn metrics(&self, epoch: usize, seconds: f64) -> GanMetrics {
        let n = self.steps.max(1) as f64;
        GanMetrics {
            epoch,
            d_loss: self.d_loss / n,
            g_loss: self.g_loss / n,
            d_real: self.d_real / n,
            d_fake: self.d_fake / n,
            seconds,
        }
    }

    fn encode(&self, meta: &mut BTreeMap<String, String>) {
        let values = [self.d_loss, self.g_loss, self.d_real, self.d_fake];
        for (k, v) in Self::KEYS.iter().zip(values) {
            meta.insert(format!("tegaki.partial.{k}"), format!("{v:e}"));
        }
        meta.insert("tegaki.partial.steps".into(), self.steps.to_string());
    }

    fn decode(file: &TensorFile, path: &Path) -> Result<Self, GanError> {
        let f = |k: &str| meta_num::<f64>(file, &format!("tegaki.partial.{k}"), path);
        Ok(Self {
            d_loss: f("d_loss")?,
            g_loss: f("g_loss")?,
            d_real: f("d_real")?,
            d_fake: f("d_fake")?,
            steps: meta_num(file, "tegaki.partial.steps", path)?,
        })
    }
}

fn mean_sigmoid(logits: ndarray::ArrayViewD<'_, f32>) -> f64 {
    let n = logits.len().max(1) as f64;
    logits
        .iter()
        .map(|&x| 1.0 / (1.0 + (-f64::from(x)).exp()))
        .sum::<f64>()
        / n
}

/// The training images of `cfg` (its `limit_train` applied).
pub fn load_training_data(cfg: &GanConfig, data_dir: &Path) -> Result<Dataset, GanError> {
    let data = tegaki_data::load(cfg.data.dataset, tegaki_data::Split::Train, data_dir)
        .map_err(|e| GanError::Data(e.to_string()))?;
    Ok(match cfg.data.limit_train {
        Some(limit) if limit < data.len() => data.subset(&(0..limit).collect::<Vec<_>>()),
        _ => data,
    })
}

/// The fixed noise batch of the per-epoch grids: 100 latents, or for a
/// conditional GAN one latent per column repeated down the rows, with row =
/// digit. Returns the generator input and the labels.
pub fn fixed_grid_input(cfg: &GanConfig) -> ArrayD<f32> {
    let k = cfg.condition_classes();
    let mut r = rng::stream(cfg.seed, "fixed-noise");
    if k == 0 {
        let z = latent(100, cfg.latent_dim, &mut r);
        return generator_input(&z, &[], 0);
    }
    let cols = latent(10, cfg.latent_dim, &mut r);
    let rows: Vec<usize> = (0..100).map(|i| i / 10 % k).collect();
    let idx: Vec<usize> = (0..100).map(|i| i % 10).collect();
    generator_input(&cols.select(Axis(0), &idx), &rows, k)
}

/// The generator half of a step: `fake` is `g`'s last (train-mode) output
/// for the conditioning `labels`; runs `d` on it, takes the non-saturating
/// loss `BCE(D(fake), 1)`, back-propagates through `d` (whose parameter
/// gradients are left for the caller to ignore) and into `g`, assigning `g`'s
/// gradients. Returns the loss.
pub fn generator_backward(
    g: &mut Sequential,
    d: &mut Sequential,
    fake: ArrayD<f32>,
    labels: &[usize],
    classes: usize,
) -> f32 {
    let n = fake.shape()[0];
    let logits = d.forward(discriminator_input(fake, labels, classes), Mode::Train);
    let (loss, dlogits) = bce_with_logits(&logits, &ArrayD::from_elem(IxDyn(&[n, 1]), 1.0));
    let dfake = image_gradient(d.backward(dlogits), classes);
    g.backward_params_only(dfake);
    loss
}

/// Trains a GAN on `data` into the run folder `run`.
///
/// A fresh run needs an empty folder (or none); `options.resume` continues
/// from `last.safetensors` with the networks built from `cfg`.
///
/// # Errors
/// Unusable run folder or checkpoint, or a loss that becomes non-finite.
pub fn train_gan(
    cfg: &GanConfig,
    data: &Dataset,
    run: &Path,
    options: &GanOptions,
    observer: &mut dyn GanObserver,
) -> Result<GanOutcome, GanError> {
    if data.shape() != (1, 28, 28) {
        return Err(GanError::Data(format!(
            "{}: images are {:?}, the GAN makes 1x28x28",
            data.name(),
            data.shape()
        )));
    }
    let b = cfg.batch_size;
    let steps_per_epoch = data.len() / b;
    if steps_per_epoch == 0 {
        return Err(GanError::Data(format!(
            "{}: {} images, fewer than batch_size = {b}",
            data.name(),
            data.len()
        )));
    }
    std::fs::create_dir_all(run).map_err(|e| GanError::Io {
        path: run.to_path_buf(),
        message: e.to_string(),
    })?;
    let Gan {
        generator: mut g,
        discriminator: mut d,
        ..
    } = Gan::new(cfg.clone());
    let total_steps = (cfg.epochs * steps_per_epoch) as u64;
    let mut opt_g = adam(cfg, cfg.optimizer.lr_g, total_steps)?;
    let mut opt_d = adam(cfg, cfg.optimizer.lr_d, total_steps)?;
    let k = cfg.condition_classes();

    let mut rows = Vec::new();
    let (mut start_epoch, mut start_step, mut partial) = (0, 0, Sums::default());
    let last = last_path(run);
    if options.resume {
        let file = read_checkpoint(&last)?;
        load_network(&file, &last, GENERATOR, &mut g)?;
        load_network(&file, &last, DISCRIMINATOR, &mut d)?;
        load_optimizer(&file, &last, OPTIM_G, opt_g.as_mut(), &mut g)?;
        load_optimizer(&file, &last, OPTIM_D, opt_d.as_mut(), &mut d)?;
        start_epoch = meta_num(&file, "tegaki.epochs_done", &last)?;
        start_step = meta_num(&file, "tegaki.step_in_epoch", &last)?;
        partial = Sums::decode(&file, &last)?;
        if start_step > steps_per_epoch {
            return Err(GanError::Checkpoint(format!(
                "{}: saved at step {start_step} of an epoch of {steps_per_epoch} steps (was the batch size or data changed?)",
                last.display()
            )));
        }
        let mp = metrics_path(run);
        rows = match std::fs::read_to_string(&mp) {
            Ok(text) => parse_metrics_csv(&text, &mp)?,
            Err(_) => Vec::new(),
        };
        rows.truncate(start_epoch);
        if start_epoch >= cfg.epochs {
            observer.message(&format!(
                "{} already has {start_epoch} epochs (the config asks for {}); pass --epochs N to train longer",
                run.display(),
                cfg.epochs
            ));
            return Ok(GanOutcome::Finished {
                epochs: start_epoch,
            });
        }
        observer.message(&format!(
            "resuming {} at epoch {}, step {start_step}",
            run.display(),
            start_epoch + 1
        ));
    } else if last.exists() {
        return Err(GanError::Usage(format!(
            "{} already holds a run; continue it with --resume, or choose another folder",
            run.display()
        )));
    }
    write_text(&config_path(run), &cfg.to_toml())?;
    let grid_input = fixed_grid_input(cfg);

    let position = |epochs_done: usize, step: usize, sums: &Sums| {
        let mut meta = BTreeMap::new();
        meta.insert("tegaki.format".to_string(), "gan-1".to_string());
        meta.insert("tegaki.config".to_string(), cfg.to_toml());
        meta.insert("tegaki.epochs_done".to_string(), epochs_done.to_string());
        meta.insert("tegaki.step_in_epoch".to_string(), step.to_string());
        sums.encode(&mut meta);
        meta
    };
    let d_targets = concatenate(
        Axis(0),
        &[
            ArrayD::from_elem(IxDyn(&[b, 1]), 1.0f32).view(),
            ArrayD::zeros(IxDyn(&[b, 1])).view(),
        ],
    )
    .expect("same shapes");

    for epoch in start_epoch..cfg.epochs {
        let t0 = Instant::now();
        let order = tegaki_data::epoch_order(data.len(), cfg.seed, epoch as u64);
        observer.epoch_start(epoch + 1, cfg.epochs, steps_per_epoch);
        let (first, mut sums) = if epoch == start_epoch {
            (start_step, partial)
        } else {
            (0, Sums::default())
        };
        for s in first..steps_per_epoch {
            if options
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
            {
                let meta = position(epoch, s, &sums);
                save_checkpoint(&last, &mut g, &mut d, opt_g.as_ref(), opt_d.as_ref(), &meta)?;
                observer.message(&format!(
                    "interrupted: saved {} at epoch {}, step {s}; continue with --resume",
                    last.display(),
                    epoch + 1
                ));
                return Ok(GanOutcome::Interrupted {
                    epoch: epoch + 1,
                    step: s,
                });
            }
            let idx = &order[s * b..(s + 1) * b];
            let real = data.batch_f32(idx).mapv(|v| 2.0 * v - 1.0).into_dyn();
            let labels = if k > 0 {
                data.labels_of(idx)
            } else {
                Vec::new()
            };
            let z = latent(
                b,
                cfg.latent_dim,
                &mut rng::stream(cfg.seed, &format!("noise/{epoch}/{s}")),
            );
            let fake = g.forward(generator_input(&z, &labels, k), Mode::Train);

            // Discriminator: real and fake in one pass (D has no BatchNorm).
            let both = concatenate(Axis(0), &[real.view(), fake.view()]).expect("same shapes");
            let both_labels: Vec<usize> = labels.iter().chain(&labels).copied().collect();
            let logits = d.forward(discriminator_input(both, &both_labels, k), Mode::Train);
            let (loss_d, dlogits) = bce_with_logits(&logits, &d_targets);
            d.backward_params_only(dlogits);
            opt_d.apply(&mut d);

            // Generator: non-saturating loss through the updated D.
            let loss_g = generator_backward(&mut g, &mut d, fake, &labels, k);
            opt_g.apply(&mut g);

            for (which, loss) in [("discriminator", loss_d), ("generator", loss_g)] {
                if !loss.is_finite() {
                    return Err(GanError::NonFinite {
                        which,
                        epoch: epoch + 1,
                        step: s + 1,
                        loss,
                    });
                }
            }
            // The joint mean over 2B equals (BCE_real + BCE_fake) / 2.
            sums.d_loss += 2.0 * f64::from(loss_d);
            sums.g_loss += f64::from(loss_g);
            sums.d_real += mean_sigmoid(logits.slice_axis(Axis(0), (0..b).into()));
            sums.d_fake += mean_sigmoid(logits.slice_axis(Axis(0), (b..2 * b).into()));
            sums.steps += 1;
            let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
            observer.step(
                s + 1,
                &sums.metrics(epoch + 1, elapsed),
                ((s + 1 - first) * b) as f64 / elapsed,
            );
        }
        if !options.no_grids {
            let images = g.forward(grid_input.clone(), Mode::Eval);
            let title = format!(
                "{} epoch {}",
                cfg.name.as_deref().unwrap_or("gan"),
                epoch + 1
            );
            grid_png(&images, 10, 1, Some(&title), &samples_path(run, epoch + 1))?;
        }
        let m = sums.metrics(epoch + 1, t0.elapsed().as_secs_f64());
        rows.push(m.clone());
        let meta = position(epoch + 1, 0, &Sums::default());
        save_checkpoint(&last, &mut g, &mut d, opt_g.as_ref(), opt_d.as_ref(), &meta)?;
        write_text(&metrics_path(run), &metrics_csv(&rows))?;
        observer.epoch_end(&m);
    }
    Ok(GanOutcome::Finished { epochs: cfg.epochs })
}

fn write_text(path: &Path, text: &str) -> Result<(), GanError> {
    write_atomic(path, text.as_bytes()).map_err(|e| GanError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::nets::latent;
    use tegaki_tensor::rng;

    /// `generator_backward` against central differences of
    /// `BCE(D([G(z); labels]), 1)` in G's parameters. ReLU and LeakyReLU kinks
    /// make a few entries of a nudged network jump, so a small share of
    /// mismatches is tolerated; a plumbing bug (wrong channel, wrong sign,
    /// D's gradient not reaching G) breaks nearly all of them.
    #[test]
    fn generator_gradients_flow_through_the_discriminator() {
        let text = "epochs = 1\nconditional = true\nlatent_dim = 5\n[data]\ndataset = \"mnist\"\n\
                    [generator]\nchannels = [3, 2]\n[discriminator]\nchannels = [2, 3]\n";
        let cfg = GanConfig::from_toml_str(text, Path::new("t.toml")).unwrap();
        let Gan {
            generator: mut g,
            discriminator: mut d,
            ..
        } = Gan::new(cfg.clone());
        // Larger discriminator weights give the generator a gradient well
        // above the checker's absolute tolerance.
        d.visit_params(&mut |_, p| p.value.mapv_inplace(|v| v * 10.0));
        let labels = [1, 4, 9];
        let input = generator_input(&latent(3, 5, &mut rng::seeded(1)), &labels, 10);
        let loss_at = |g: &mut Sequential, d: &mut Sequential| {
            let fake = g.forward(input.clone(), Mode::Train);
            let logits = d.forward(discriminator_input(fake, &labels, 10), Mode::Train);
            let ones = ArrayD::from_elem(IxDyn(&[3, 1]), 1.0);
            f64::from(bce_with_logits(&logits, &ones).0)
        };
        let fake = g.forward(input.clone(), Mode::Train);
        let loss = generator_backward(&mut g, &mut d, fake, &labels, 10);
        assert!((f64::from(loss) - loss_at(&mut g, &mut d)).abs() < 1e-6);
        let mut grads = Vec::new();
        g.visit_params(&mut |name, p| grads.push((name.to_string(), p.grad.clone())));
        // Small enough that few nudges carry a ReLU across its kink, large
        // enough for f32 losses (mismatches: 8 of 51 at 3e-3, 1 at 1e-3).
        let h = 1e-3f32;
        let (mut checked, mut bad, mut nonzero) = (0, Vec::new(), 0);
        for (k, (name, grad)) in grads.iter().enumerate() {
            let len = grad.len();
            for i in (0..len).step_by(len.div_ceil(15)) {
                let nudge = |g: &mut Sequential, delta: f32| {
                    let mut j = 0;
                    g.visit_params(&mut |_, p| {
                        if j == k {
                            p.value.as_slice_memory_order_mut().unwrap()[i] += delta;
                        }
                        j += 1;
                    });
                };
                nudge(&mut g, h);
                let plus = loss_at(&mut g, &mut d);
                nudge(&mut g, -2.0 * h);
                let minus = loss_at(&mut g, &mut d);
                nudge(&mut g, h);
                let numeric = (plus - minus) / (2.0 * f64::from(h));
                let analytic = f64::from(grad.as_slice_memory_order().unwrap()[i]);
                checked += 1;
                nonzero += usize::from(analytic.abs() > 1e-4);
                if (analytic - numeric).abs() > 1e-3 + 0.05 * analytic.abs().max(numeric.abs()) {
                    bad.push((name.clone(), i, analytic, numeric));
                }
            }
        }
        assert!(
            nonzero > checked / 2,
            "{nonzero} of {checked} gradients are non-zero"
        );
        assert!(
            bad.len() * 20 <= checked,
            "{} of {checked} mismatch: {bad:?}",
            bad.len()
        );
    }

    #[test]
    fn metrics_round_trip_and_errors() {
        let rows = vec![GanMetrics {
            epoch: 2,
            d_loss: 1.25,
            g_loss: 0.75,
            d_real: 0.6,
            d_fake: 0.4,
            seconds: 3.5,
        }];
        let text = metrics_csv(&rows);
        assert!(text.starts_with("epoch,d_loss,g_loss,d_real,d_fake,seconds\n2,1.25"));
        assert_eq!(parse_metrics_csv(&text, Path::new("m.csv")).unwrap(), rows);
        let err = parse_metrics_csv(
            "epoch,d_loss,g_loss,d_real,d_fake,seconds\n1,2,x,4,5,6\n",
            Path::new("m.csv"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "m.csv: line 2: a field is not a number");
        let err = parse_metrics_csv("nope\n", Path::new("m.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1: expected the header"), "{err}");
    }

    #[test]
    fn conditional_grid_rows_are_digits_and_columns_share_noise() {
        let text = "epochs = 1\nconditional = true\nlatent_dim = 5\n[data]\ndataset = \"mnist\"\n";
        let cfg = GanConfig::from_toml_str(text, Path::new("t.toml")).unwrap();
        let x = fixed_grid_input(&cfg)
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        assert_eq!(x.shape(), &[100, 15]);
        // Row 3, column 4 and row 8, column 4: the same noise, digits 3 and 8.
        assert_eq!(
            x.row(34).slice(ndarray::s![..5]),
            x.row(84).slice(ndarray::s![..5])
        );
        assert_ne!(
            x.row(34).slice(ndarray::s![..5]),
            x.row(35).slice(ndarray::s![..5])
        );
        assert_eq!(x[[34, 5 + 3]], 1.0);
        assert_eq!(x[[84, 5 + 8]], 1.0);
        assert_eq!(
            x.row(84).sum(),
            x.row(84).slice(ndarray::s![..5]).sum() + 1.0
        );
    }
}
