//! The run folder: everything one training run leaves behind.
//!
//! ```text
//! runs/NAME/
//!   config.toml        the resolved configuration (file + command-line overrides)
//!   metrics.csv        one row per epoch
//!   last.safetensors   model + optimizer state + RNG/epoch metadata, for --resume
//!   best.safetensors   the model with the best validation metric so far
//! ```
//! Every file is written atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tegaki_nn::Layer;
use tegaki_nn::checkpoint::{load_tensors, model_tensors};
use tegaki_optim::OptimizerState;
use tegaki_tensor::io::{TensorFile, read_safetensors, write_atomic, write_safetensors};

use crate::TrainError;

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (on augmented images, with dropout on).
    pub train_acc: f64,
    /// Validation loss (NaN without a validation split).
    pub val_loss: f64,
    /// Validation accuracy (NaN without a validation split).
    pub val_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds";

/// Formats rows as `metrics.csv`.
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut out = String::from(METRICS_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.3}",
            r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr, r.seconds
        );
    }
    out
}

/// Parses `metrics.csv`; errors name the line.
pub fn parse_metrics_csv(text: &str, path: &Path) -> Result<Vec<EpochMetrics>, TrainError> {
    let bad =
        |line: usize, why: &str| TrainError::Run(format!("{}: line {line}: {why}", path.display()));
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim() == METRICS_HEADER => {}
        _ => return Err(bad(1, &format!("expected the header `{METRICS_HEADER}`"))),
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 7 {
            return Err(bad(i + 2, &format!("expected 7 fields, found {}", f.len())));
        }
        let num = |j: usize| {
            f[j].trim()
                .parse::<f64>()
                .map_err(|_| bad(i + 2, &format!("field {} is not a number", j + 1)))
        };
        rows.push(EpochMetrics {
            epoch: f[0]
                .trim()
                .parse()
                .map_err(|_| bad(i + 2, "epoch is not an integer"))?,
            train_loss: num(1)?,
            train_acc: num(2)?,
            val_loss: num(3)?,
            val_acc: num(4)?,
            lr: num(5)?,
            seconds: num(6)?,
        });
    }
    Ok(rows)
}

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

/// Prefix of optimizer tensors and metadata inside `last.safetensors`.
pub const OPTIM_PREFIX: &str = "optim.";

impl RunDir {
    /// A run folder at `path` (created if missing).
    pub fn create(path: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(path).map_err(|e| {
            TrainError::Run(format!("cannot create run folder {}: {e}", path.display()))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// An existing run folder.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        if !path.join("config.toml").is_file() {
            return Err(TrainError::Run(format!(
                "{} is not a tegaki run folder (no config.toml); train one with `tegaki train --config FILE --out {}`",
                path.display(),
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }
    /// `last.safetensors`.
    pub fn last_path(&self) -> PathBuf {
        self.path.join("last.safetensors")
    }
    /// `best.safetensors`.
    pub fn best_path(&self) -> PathBuf {
        self.path.join("best.safetensors")
    }

    /// Writes a text file in the run folder atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<(), TrainError> {
        let p = self.path.join(name);
        write_atomic(&p, text.as_bytes())
            .map_err(|e| TrainError::Run(format!("{}: {e}", p.display())))
    }

    /// Reads the metrics written so far (empty if none).
    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>, TrainError> {
        let p = self.metrics_path();
        match std::fs::read_to_string(&p) {
            Ok(text) => parse_metrics_csv(&text, &p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(TrainError::Run(format!("{}: {e}", p.display()))),
        }
    }

    /// Saves the model (and optionally optimizer state) with metadata.
    pub fn save_checkpoint(
        &self,
        path: &Path,
        model: &mut dyn Layer,
        optim: Option<&OptimizerState>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), TrainError> {
        let mut tensors = model_tensors(model);
        let mut meta = metadata.clone();
        if let Some(state) = optim {
            for (name, t) in &state.tensors {
                tensors.insert(
                    format!(
                        "{OPTIM_PREFIX}{}",
                        name.strip_prefix(OPTIM_PREFIX).unwrap_or(name)
                    ),
                    t.clone(),
                );
            }
            for (k, v) in &state.metadata {
                meta.insert(format!("{OPTIM_PREFIX}{k}"), v.clone());
            }
        }
        write_safetensors(
            path,
            tensors.iter().map(|(k, v)| (k.clone(), v.view())),
            &meta,
        )
        .map_err(|e| TrainError::Checkpoint(e.to_string()))
    }

    /// Loads a checkpoint into `model`; returns the file (for optimizer state
    /// and metadata).
    pub fn load_checkpoint(path: &Path, model: &mut dyn Layer) -> Result<TensorFile, TrainError> {
        let file = read_safetensors(path).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        load_tensors(model, &file, path, &[OPTIM_PREFIX])
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        Ok(file)
    }

    /// The optimizer state stored in a checkpoint file.
    pub fn optimizer_state(file: &TensorFile) -> OptimizerState {
        let tensors = file
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with(OPTIM_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metadata = file
            .metadata
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(OPTIM_PREFIX)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        OptimizerState { tensors, metadata }
    }
}
