//! The training loop.
//!
//! All randomness in a run is a function of the seed and a position: weights
//! come from the `init` stream, the order of epoch `e` from
//! `(seed, "shuffle", e)`, the augmentation of step `s` of epoch `e` from
//! `(seed, "augment/e/s")`, and Dropout masks from each layer's own stream,
//! whose state is saved in every checkpoint. Resuming from any checkpoint
//! therefore continues exactly as an uninterrupted run would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array2, ArrayD, Axis, Ix2};
use tegaki_data::{Dataset, Pipeline};
use tegaki_nn::loss::softmax_cross_entropy;
use tegaki_nn::{Layer, Mode, Sequential, Targets};
use tegaki_optim::{Optimizer, Trainable};
use tegaki_tensor::{HasParams, Param, RngState, rng};

use crate::config::{ExperimentConfig, Monitor};
use crate::evaluate::{argmax, evaluate, predict_proba};
use crate::model::build_model;
use crate::run::{EpochMetrics, RunDir, metrics_csv};
use crate::{Observer, TrainError};

/// Options that are not part of the experiment (they do not change results).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from `last.safetensors` in the run folder.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to stop after the current step, saving `last`.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every epoch ran (or early stopping ended the run).
    Finished {
        /// Epochs completed.
        epochs: usize,
        /// Whether early stopping cut the run short.
        stopped_early: bool,
    },
    /// Interrupted; `last.safetensors` holds the position to resume from.
    Interrupted {
        /// 1-based epoch that was running.
        epoch: usize,
        /// Steps of that epoch already done.
        step: usize,
    },
}

/// The model bound to one batch, as the optimizer sees it.
struct Step<'a> {
    model: &'a mut Sequential,
    x: &'a ArrayD<f32>,
    targets: &'a Targets,
    labels: &'a [usize],
    correct: Option<usize>,
}

impl HasParams for Step<'_> {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        HasParams::visit_params(self.model, f);
    }
}

impl Trainable for Step<'_> {
    fn forward_backward(&mut self) -> f32 {
        let logits = self.model.forward(self.x.clone(), Mode::Train);
        if self.correct.is_none() {
            let l = logits
                .view()
                .into_dimensionality::<Ix2>()
                .expect("classifier output is (N, K)");
            let correct = l
                .axis_iter(Axis(0))
                .zip(self.labels)
                .filter(|(row, label)| argmax(row.as_slice().expect("contiguous")).0 == **label)
                .count();
            self.correct = Some(correct);
        }
        let (loss, dlogits) = softmax_cross_entropy(&logits, self.targets);
        self.model.backward_params_only(dlogits);
        loss
    }
}

/// Everything a run needs, loaded and built.
pub struct Session {
    /// The resolved configuration.
    pub config: ExperimentConfig,
    /// The network.
    pub model: Sequential,
    /// The training images (after the validation split and limits).
    pub train: Dataset,
    /// The held-out validation images (None when `validation = 0`).
    pub val: Option<Dataset>,
}

impl Session {
    /// Loads the data and builds the model for `config`.
    pub fn new(config: ExperimentConfig, data_dir: &Path) -> Result<Self, TrainError> {
        let full = tegaki_data::load(config.data.dataset, tegaki_data::Split::Train, data_dir)
            .map_err(|e| TrainError::Data(e.to_string()))?;
        let (mut train, val) = if config.data.validation > 0 {
            if config.data.validation >= full.len() {
                return Err(TrainError::Config(format!(
                    "data.validation = {}: expected fewer than the {} training images",
                    config.data.validation,
                    full.len()
                )));
            }
            let (t, v) = full.split_validation(config.data.validation, config.seed);
            (t, Some(v))
        } else {
            (full, None)
        };
        if let Some(limit) = config.data.limit_train
            && limit < train.len()
        {
            train = train.subset(&(0..limit).collect::<Vec<_>>());
        }
        let model = build_for(&config, &train)?;
        Ok(Self {
            config,
            model,
            train,
            val,
        })
    }
}

/// Builds the model of `config` for images shaped like `data`'s, from the
/// config's seed.
pub fn build_for(config: &ExperimentConfig, data: &Dataset) -> Result<Sequential, TrainError> {
    let mut init_rng = rng::stream(config.seed, "init");
    build_model(&config.model, &sample_shape(data), &mut init_rng).map_err(TrainError::Config)
}

struct Position<'a> {
    epochs_done: usize,
    step: usize,
    sums: (f64, usize, usize),
    tracker: &'a BestTracker,
    pseudo: Option<&'a [(usize, usize)]>,
}

fn checkpoint_metadata(
    config: &ExperimentConfig,
    model: &mut Sequential,
    pos: Position,
) -> BTreeMap<String, String> {
    let Position {
        epochs_done: epoch_done,
        step,
        sums,
        tracker,
        pseudo,
    } = pos;
    let mut meta = BTreeMap::new();
    if let Some(p) = pseudo {
        meta.insert("tegaki.pseudo".into(), encode_pairs(p));
    }
    meta.insert("tegaki.format".into(), "1".into());
    meta.insert("tegaki.config".into(), config.to_toml());
    meta.insert("tegaki.epochs_done".into(), epoch_done.to_string());
    meta.insert("tegaki.step_in_epoch".into(), step.to_string());
    meta.insert("tegaki.partial_loss_sum".into(), format!("{:e}", sums.0));
    meta.insert("tegaki.partial_correct".into(), sums.1.to_string());
    meta.insert("tegaki.partial_seen".into(), sums.2.to_string());
    meta.insert("tegaki.best".into(), format!("{:e}", tracker.best));
    meta.insert("tegaki.bad_epochs".into(), tracker.bad_epochs.to_string());
    model.visit_rngs(&mut |name, r| {
        meta.insert(format!("tegaki.rng.{name}"), RngState::capture(r).encode());
    });
    meta
}

struct BestTracker {
    monitor: Monitor,
    best: f64,
    bad_epochs: usize,
}

impl BestTracker {
    fn new(monitor: Monitor) -> Self {
        let best = match monitor {
            Monitor::ValLoss => f64::INFINITY,
            Monitor::ValAcc => f64::NEG_INFINITY,
        };
        Self {
            monitor,
            best,
            bad_epochs: 0,
        }
    }

    /// Records `m`; true when it is the best so far (by more than `min_delta`).
    fn update(&mut self, m: &EpochMetrics, min_delta: f64) -> bool {
        let (value, better) = match self.monitor {
            Monitor::ValLoss => (m.val_loss, m.val_loss < self.best - min_delta),
            Monitor::ValAcc => (m.val_acc, m.val_acc > self.best + min_delta),
        };
        if better || (self.best.is_infinite() && value.is_finite()) {
            self.best = value;
            self.bad_epochs = 0;
            true
        } else {
            self.bad_epochs += 1;
            false
        }
    }
}

fn meta_num<T: std::str::FromStr>(
    meta: &BTreeMap<String, String>,
    key: &str,
    path: &Path,
) -> Result<T, TrainError> {
    meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
        TrainError::Checkpoint(format!(
            "{}: metadata `{key}` is missing or malformed",
            path.display()
        ))
    })
}

/// Trains `session` into `run`, reporting progress to `observer`.
pub fn train(
    session: &mut Session,
    run: &RunDir,
    options: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome, TrainError> {
    let cfg = session.config.clone();
    let pipeline =
        Pipeline::from_config(&cfg.augment).map_err(|e| TrainError::Config(e.to_string()))?;
    let num_classes = session.train.num_classes();

    // Pseudo-labelling appends images after the main phase; both phases share
    // one optimizer and schedule, sized for the main phase's step count.
    let steps_per_epoch = session.train.len().div_ceil(cfg.batch_size);
    let extra_epochs = cfg.pseudo_label.as_ref().map_or(0, |p| p.epochs);
    let total_epochs = cfg.epochs + extra_epochs;
    let mut optimizer: Box<dyn Optimizer> = tegaki_optim::build_for_epochs(
        &cfg.optimizer,
        &cfg.schedule,
        total_epochs as u64,
        steps_per_epoch as u64,
    )
    .map_err(|e| TrainError::Config(e.to_string()))?;

    let monitor = cfg
        .early_stopping
        .as_ref()
        .map_or(Monitor::ValLoss, |e| e.monitor);
    let min_delta = cfg.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
    let mut tracker = BestTracker::new(monitor);
    let mut rows: Vec<EpochMetrics> = Vec::new();
    let mut start_epoch = 0;
    let mut start_step = 0;
    let mut partial = (0.0f64, 0usize, 0usize);
    // (image index in the unlabeled file, label) pairs, fixed once chosen so
    // that a resumed pseudo-labelling phase trains on the same set.
    let mut pseudo: Option<Vec<(usize, usize)>> = None;

    if options.resume {
        let last = run.last_path();
        let file = RunDir::load_checkpoint(&last, &mut session.model)?;
        optimizer
            .load_state(&RunDir::optimizer_state(&file))
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", last.display())))?;
        let meta = &file.metadata;
        let mut missing = None;
        session.model.visit_rngs(&mut |name, r| match meta
            .get(&format!("tegaki.rng.{name}"))
            .and_then(|s| RngState::decode(s))
        {
            Some(state) => *r = state.restore(),
            None => missing = Some(name.to_string()),
        });
        if let Some(name) = missing {
            return Err(TrainError::Checkpoint(format!(
                "{}: metadata has no state for the RNG `{name}`",
                last.display()
            )));
        }
        start_epoch = meta_num(meta, "tegaki.epochs_done", &last)?;
        start_step = meta_num(meta, "tegaki.step_in_epoch", &last)?;
        partial = (
            meta_num(meta, "tegaki.partial_loss_sum", &last)?,
            meta_num(meta, "tegaki.partial_correct", &last)?,
            meta_num(meta, "tegaki.partial_seen", &last)?,
        );
        tracker.best = meta_num(meta, "tegaki.best", &last)?;
        tracker.bad_epochs = meta_num(meta, "tegaki.bad_epochs", &last)?;
        pseudo = meta
            .get("tegaki.pseudo")
            .map(|s| decode_pairs(s))
            .transpose()
            .map_err(|e| {
                TrainError::Checkpoint(format!("{}: metadata `tegaki.pseudo`: {e}", last.display()))
            })?;
        rows = run.read_metrics()?;
        rows.truncate(start_epoch);
        observer.message(&format!(
            "resuming {} at epoch {}, step {}",
            run.path().display(),
            start_epoch + 1,
            start_step
        ));
    }
    run.write_text("config.toml", &cfg.to_toml())?;

    let mut train_set = session.train.clone();
    if let Some(picks) = &pseudo {
        let unlabeled = read_pseudo_file(session, &cfg)?;
        train_set = with_pseudo_labels(&session.train, &unlabeled, picks);
    }
    let mut stopped_early = false;
    let mut epoch = start_epoch;
    while epoch < total_epochs {
        if epoch == cfg.epochs && pseudo.is_none() {
            let unlabeled = read_pseudo_file(session, &cfg)?;
            let picks = choose_pseudo_labels(session, &cfg, &unlabeled, observer);
            train_set = with_pseudo_labels(&session.train, &unlabeled, &picks);
            pseudo = Some(picks);
        }
        let t0 = Instant::now();
        let order = tegaki_data::epoch_order(train_set.len(), cfg.seed, epoch as u64);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        observer.epoch_start(epoch + 1, total_epochs, batches.len());
        let (mut loss_sum, mut correct, mut seen) = if epoch == start_epoch {
            partial
        } else {
            (0.0, 0, 0)
        };
        let first = if epoch == start_epoch { start_step } else { 0 };
        for (s, idx) in batches.iter().enumerate().skip(first) {
            if let Some(flag) = &options.interrupt
                && flag.load(Ordering::SeqCst)
            {
                let pos = Position {
                    epochs_done: epoch,
                    step: s,
                    sums: (loss_sum, correct, seen),
                    tracker: &tracker,
                    pseudo: pseudo.as_deref(),
                };
                let meta = checkpoint_metadata(&cfg, &mut session.model, pos);
                run.save_checkpoint(
                    &run.last_path(),
                    &mut session.model,
                    Some(&optimizer.state()),
                    &meta,
                )?;
                observer.message(&format!(
                    "interrupted: saved {} at epoch {}, step {s}; continue with --resume",
                    run.last_path().display(),
                    epoch + 1
                ));
                return Ok(Outcome::Interrupted {
                    epoch: epoch + 1,
                    step: s,
                });
            }
            let mut x = train_set.batch_f32(idx);
            let labels = train_set.labels_of(idx);
            let mut aug_rng = rng::stream(cfg.seed, &format!("augment/{epoch}/{s}"));
            let targets = match pipeline.augment(&mut x, &labels, num_classes, &mut aug_rng) {
                Some(soft) => Targets::Probabilities(soft),
                None => Targets::Classes(labels.clone()),
            };
            let x = x.into_dyn();
            let mut step = Step {
                model: &mut session.model,
                x: &x,
                targets: &targets,
                labels: &labels,
                correct: None,
            };
            let loss = optimizer.step(&mut step);
            if !loss.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch: epoch + 1,
                    step: s + 1,
                    loss,
                });
            }
            loss_sum += f64::from(loss) * idx.len() as f64;
            correct += step.correct.unwrap_or(0);
            seen += idx.len();
            let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
            observer.step(
                s + 1,
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                (seen as f64) / elapsed,
                optimizer.lr(),
            );
        }
        let (val_loss, val_acc) = match &session.val {
            Some(v) => {
                let e = evaluate(&mut session.model, v);
                (e.loss, e.accuracy)
            }
            None => (f64::NAN, f64::NAN),
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            lr: f64::from(optimizer.lr()),
            seconds: t0.elapsed().as_secs_f64(),
        };
        let improved = if session.val.is_some() {
            tracker.update(&m, min_delta)
        } else {
            true
        };
        rows.push(m.clone());
        epoch += 1;
        let pos = Position {
            epochs_done: epoch,
            step: 0,
            sums: (0.0, 0, 0),
            tracker: &tracker,
            pseudo: pseudo.as_deref(),
        };
        let meta = checkpoint_metadata(&cfg, &mut session.model, pos);
        if improved {
            run.save_checkpoint(&run.best_path(), &mut session.model, None, &meta)?;
        }
        run.save_checkpoint(
            &run.last_path(),
            &mut session.model,
            Some(&optimizer.state()),
            &meta,
        )?;
        run.write_text("metrics.csv", &metrics_csv(&rows))?;
        observer.epoch_end(&m, improved);
        if let Some(es) = &cfg.early_stopping
            && tracker.bad_epochs >= es.patience
            && epoch < cfg.epochs
        {
            observer.message(&format!(
                "early stopping: no improvement in {:?} for {} epochs",
                monitor, es.patience
            ));
            stopped_early = true;
            break;
        }
    }
    Ok(Outcome::Finished {
        epochs: epoch,
        stopped_early,
    })
}

fn encode_pairs(pairs: &[(usize, usize)]) -> String {
    pairs
        .iter()
        .map(|(i, k)| format!("{i}:{k}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_pairs(text: &str) -> Result<Vec<(usize, usize)>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (i, k) = pair
                .split_once(':')
                .ok_or_else(|| format!("`{pair}` is not index:label"))?;
            Ok((
                i.parse().map_err(|_| format!("bad index `{i}`"))?,
                k.parse().map_err(|_| format!("bad label `{k}`"))?,
            ))
        })
        .collect()
}

/// The pseudo-label file as an (unlabelled) dataset shaped like the training set.
fn read_pseudo_file(session: &Session, cfg: &ExperimentConfig) -> Result<Dataset, TrainError> {
    let pl = cfg
        .pseudo_label
        .as_ref()
        .expect("called only with pseudo-labelling on");
    read_unlabeled(&pl.file, session.train.shape(), session.train.classes())
}

/// Confident predictions of the current model on `unlabeled`, as
/// (image index, predicted class) pairs.
fn choose_pseudo_labels(
    session: &mut Session,
    cfg: &ExperimentConfig,
    unlabeled: &Dataset,
    observer: &mut dyn Observer,
) -> Vec<(usize, usize)> {
    let pl = cfg
        .pseudo_label
        .as_ref()
        .expect("called only with pseudo-labelling on");
    let mut picks = Vec::new();
    let all: Vec<usize> = (0..unlabeled.len()).collect();
    for chunk in all.chunks(crate::evaluate::EVAL_BATCH) {
        let probs: Array2<f32> =
            predict_proba(&mut session.model, unlabeled.batch_f32(chunk).into_dyn());
        for (row, &i) in probs.axis_iter(Axis(0)).zip(chunk) {
            let (k, p) = argmax(row.as_slice().expect("contiguous"));
            if p >= pl.threshold {
                picks.push((i, k));
            }
        }
    }
    observer.message(&format!(
        "pseudo-labelling: {} of {} images from {} reach p >= {}",
        picks.len(),
        unlabeled.len(),
        pl.file.display(),
        pl.threshold
    ));
    picks
}

/// The training set plus the chosen pseudo-labelled images.
fn with_pseudo_labels(train: &Dataset, unlabeled: &Dataset, picks: &[(usize, usize)]) -> Dataset {
    let idx: Vec<usize> = picks.iter().map(|p| p.0).collect();
    let labels: Vec<u8> = picks.iter().map(|p| p.1 as u8).collect();
    let extra = Dataset::from_u8(
        "pseudo-labels",
        unlabeled.images().select(Axis(0), &idx),
        labels,
        train.shape(),
        train.classes().to_vec(),
    );
    train.concat(&extra)
}

/// A contest-format file as a dataset of `(c, h, w)` images whose labels are
/// all 0 (unknown).
pub fn read_unlabeled(
    path: &Path,
    (c, h, w): (usize, usize, usize),
    classes: &[String],
) -> Result<Dataset, TrainError> {
    let images = tegaki_data::read_contest(path).map_err(|e| TrainError::Data(e.to_string()))?;
    if images.ncols() != c * h * w {
        return Err(TrainError::Data(format!(
            "{}: images have {} pixels, the model expects {c}x{h}x{w}",
            path.display(),
            images.ncols()
        )));
    }
    let n = images.nrows();
    Ok(Dataset::from_u8(
        path.display().to_string(),
        images,
        vec![0; n],
        (c, h, w),
        classes.to_vec(),
    ))
}

/// `[C, H, W]` of one sample of `data`.
pub fn sample_shape(data: &Dataset) -> Vec<usize> {
    let (c, h, w) = data.shape();
    vec![c, h, w]
}
