//! The tegaki training loop as a library.
//!
//! * [`config`]: the experiment TOML (data, augmentation, model, optimizer,
//!   schedule, early stopping, pseudo-labelling), validated with errors that
//!   name the file and key;
//! * [`model`]: a [`tegaki_nn::Sequential`] built from the config, input sizes inferred;
//! * [`trainer`]: the loop, with checkpoints, exact resume, Ctrl-C and NaN handling;
//! * [`evaluate`](mod@evaluate): accuracy, per-class accuracy and the confusion matrix;
//! * [`run`]: the run folder (`config.toml`, `metrics.csv`, `last`/`best` checkpoints);
//! * [`progress`]: a progress bar on a terminal, one plain line per epoch elsewhere;
//! * [`report`]: curves, confusion matrix, wrong-image grid and `report.md` (drawn by `tegaki-plot`).

pub mod config;
pub mod evaluate;
pub mod model;
pub mod progress;
pub mod report;
pub mod run;
pub mod trainer;

pub use config::{ExperimentConfig, Overrides};
pub use evaluate::{Evaluation, evaluate};
pub use progress::{Observer, ProgressObserver, SilentObserver};
pub use run::{EpochMetrics, RunDir};
pub use trainer::{Outcome, Session, TrainOptions, train};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The data could not be loaded.
    #[error("{0}")]
    Data(String),
    /// A checkpoint could not be written or read.
    #[error("{0}")]
    Checkpoint(String),
    /// The run folder is unusable.
    #[error("{0}")]
    Run(String),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the training loss became {loss} at epoch {epoch}, step {step}; stopped. The last good checkpoint is kept; \
         try a lower learning rate (--lr) or gradient clipping (optimizer.clip_norm)"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The loss value.
        loss: f32,
    },
}
