//! A DCGAN (Radford et al. 2016) built from tegaki's own layers, trained on the
//! CPU, optionally class-conditional, and scored by a tegaki classifier.
//!
//! * [`config`]: the TOML experiment ([`GanConfig`]), errors naming file and key;
//! * [`nets`]: the generator and discriminator ([`build_generator`],
//!   [`build_discriminator`]), N(0, 0.02) initialisation, conditioning inputs;
//! * [`Unflatten`]: `(N, C·H·W) -> (N, C, H, W)`, the generator's reshape;
//! * [`train`](mod@train): the adversarial loop with sample grids, metrics,
//!   atomic checkpoints and bit-exact resume;
//! * [`sample`]: generating images from a trained run;
//! * [`score`]: the classifier-based Inception Score and class histogram.
//!
//! Gradients are assigned, never accumulated: the discriminator step runs the
//! discriminator once on `[real; fake]`, the generator step runs
//! `z -> G -> D -> BCE(target 1)` and back-propagates D's input gradient into G
//! (D's parameter gradients from that pass are discarded).

pub mod config;
pub mod nets;
pub mod sample;
pub mod score;
pub mod train;
mod unflatten;

use std::path::PathBuf;

pub use config::{GanConfig, GanOverrides};
pub use nets::{build_discriminator, build_generator};
pub use sample::Gan;
pub use score::{class_histogram, inception_score};
pub use train::{GanMetrics, GanOptions, GanOutcome, train_gan};
pub use unflatten::Unflatten;

/// Why a GAN run could not go on; every variant names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum GanError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The TOML does not parse or does not match the schema (unknown key,
    /// wrong type); the parser's message gives line, column and key.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's explanation.
        message: String,
    },
    /// A value parses but is not allowed.
    #[error("{path}: `{key}` = {value}: expected {expected}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Dotted key, e.g. `optimizer.beta1`.
        key: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// The training data could not be loaded.
    #[error("{0}")]
    Data(String),
    /// A checkpoint is missing, unreadable or does not fit the networks.
    #[error("{0}")]
    Checkpoint(String),
    /// A request does not fit the run (e.g. `--digit` for an unconditional GAN).
    #[error("{0}")]
    Usage(String),
    /// A loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the {which} loss became {loss} at epoch {epoch}, step {step}; stopped (the last good checkpoint is kept)"
    )]
    NonFinite {
        /// `"discriminator"` or `"generator"`.
        which: &'static str,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step.
        step: usize,
        /// The value.
        loss: f32,
    },
}
