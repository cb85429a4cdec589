//! Experiment configuration: one TOML file describes a whole training run.
//!
//! ```toml
//! seed = 42
//! epochs = 10
//! batch_size = 100
//!
//! [data]
//! dataset = "mnist"
//! validation = 5000
//!
//! [model]
//! layers = [
//!   { type = "conv2d", out_channels = 32, kernel = 3, padding = 1 },
//!   { type = "relu" },
//!   { type = "maxpool2d", kernel = 2 },
//!   { type = "flatten" },
//!   { type = "linear", out_features = 10 },
//! ]
//!
//! [optimizer]
//! name = "adam"
//! lr = 1e-3
//! ```
//!
//! Input sizes are inferred: each layer's input shape is the previous layer's
//! output, starting from the dataset's image shape. Unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tegaki_data::{AugmentConfig, DatasetKind};
use tegaki_optim::{OptimizerConfig, ScheduleConfig};

/// A configuration problem, naming the file, the key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key, e.g. `model.layers[2].p`.
        key: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// A whole experiment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A free-form label shown in reports.
    #[serde(default)]
    pub name: Option<String>,
    /// The seed for initialisation, shuffling, dropout and augmentation.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per optimisation step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// What to train on.
    pub data: DataConfig,
    /// On-the-fly augmentation (none by default).
    #[serde(default)]
    pub augment: AugmentConfig,
    /// The network.
    pub model: ModelConfig,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule (constant by default).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Stop when the monitored metric stops improving.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Pseudo-labelling phase after the main training.
    #[serde(default)]
    pub pseudo_label: Option<PseudoLabel>,
}

fn default_seed() -> u64 {
    42
}
fn default_batch_size() -> usize {
    100
}

/// Which data, and how much of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `mnist`, `fashion-mnist`, `kmnist` or `cifar10`.
    pub dataset: DatasetKind,
    /// Training images held out for validation (taken after a seeded shuffle).
    #[serde(default = "default_validation")]
    pub validation: usize,
    /// Use only the first N training images (after the validation split): for smoke runs.
    #[serde(default)]
    pub limit_train: Option<usize>,
    /// Evaluate on only the first N test images.
    #[serde(default)]
    pub limit_test: Option<usize>,
}

fn default_validation() -> usize {
    5000
}

/// The network as a list of layers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Layers in order; input sizes are inferred.
    pub layers: Vec<LayerSpec>,
}

/// A size given as one number (square) or as `[height, width]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Size2 {
    /// The same in both directions.
    Square(usize),
    /// `[height, width]`.
    Pair([usize; 2]),
}

impl Size2 {
    /// `(height, width)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::Square(s) => (s, s),
            Size2::Pair([h, w]) => (h, w),
        }
    }
}

/// Weight initialisation schemes, by name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InitName {
    /// PyTorch's default: U(±1/sqrt(fan_in)).
    Torch,
    /// N(0, 1/fan_in), the course's choice.
    Course,
    /// He normal, for ReLU networks.
    He,
    /// He uniform.
    HeUniform,
    /// Glorot normal.
    Xavier,
    /// Glorot uniform.
    XavierUniform,
}

impl InitName {
    /// The initialiser this name stands for.
    pub fn init(self) -> tegaki_tensor::Init {
        use tegaki_tensor::Init;
        match self {
            InitName::Torch => Init::TorchDefault,
            InitName::Course => Init::CourseNormal,
            InitName::He => Init::HeNormal,
            InitName::HeUniform => Init::HeUniform,
            InitName::Xavier => Init::XavierNormal,
            InitName::XavierUniform => Init::XavierUniform,
        }
    }
}

/// How Dropout compensates for dropped units.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DropoutScalingName {
    /// Scale kept units by 1/(1-p) while training (the default).
    #[default]
    Inverted,
    /// The seed's form: multiply by (1-p) at test time.
    TestTime,
}

/// One layer of [`ModelConfig`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    /// Fully connected; `in_features` is inferred.
    Linear {
        /// Output features.
        out_features: usize,
        /// Whether to add a bias.
        #[serde(default = "yes")]
        bias: bool,
        /// Weight initialisation (default `torch`).
        #[serde(default)]
        init: Option<InitName>,
    },
    /// 2-D convolution; `in_channels` is inferred.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel size.
        kernel: Size2,
        /// Stride (default 1).
        #[serde(default = "one2")]
        stride: Size2,
        /// Zero padding on each side (default 0).
        #[serde(default = "zero2")]
        padding: Size2,
        /// Whether to add a bias.
        #[serde(default = "yes")]
        bias: bool,
        /// Weight initialisation (default `torch`).
        #[serde(default)]
        init: Option<InitName>,
    },
    /// Max pooling; the stride defaults to the kernel size.
    Maxpool2d {
        /// Window size.
        kernel: Size2,
        /// Stride (default: the window size).
        #[serde(default)]
        stride: Option<Size2>,
    },
    /// Batch normalisation over features of `(N, D)` input.
    Batchnorm1d {
        /// Running-statistics momentum (default 0.1).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Added to the variance (default 1e-5).
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// Batch normalisation per channel of NCHW input.
    Batchnorm2d {
        /// Running-statistics momentum (default 0.1).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Added to the variance (default 1e-5).
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// x for x >= 0, slope * x otherwise.
    Leakyrelu {
        /// Slope for negative inputs (default 0.01).
        #[serde(default = "leaky_slope")]
        negative_slope: f32,
    },
    /// Randomly zeroes activations while training.
    Dropout {
        /// Drop probability, in [0, 1).
        p: f32,
        /// `inverted` (default) or `test-time`.
        #[serde(default)]
        scaling: DropoutScalingName,
    },
    /// (N, C, H, W) -> (N, C*H*W).
    Flatten,
}

fn yes() -> bool {
    true
}
fn one2() -> Size2 {
    Size2::Square(1)
}
fn zero2() -> Size2 {
    Size2::Square(0)
}
fn bn_momentum() -> f32 {
    0.1
}
fn bn_eps() -> f32 {
    1e-5
}
fn leaky_slope() -> f32 {
    0.01
}

/// Early stopping on a validation metric.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// `val_loss` (default) or `val_acc`.
    #[serde(default)]
    pub monitor: Monitor,
    /// The smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// The validation metric that decides "best" and early stopping.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAcc,
}

/// Pseudo-labelling: after the main phase, confident predictions on an
/// unlabeled file join the training set for a few more epochs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PseudoLabel {
    /// A contest-format file (one image per line, 784 integers 0..255),
    /// relative to the config file's folder unless absolute.
    pub file: PathBuf,
    /// Minimum softmax probability for a prediction to be used.
    #[serde(default = "pseudo_threshold")]
    pub threshold: f32,
    /// Extra epochs on the enlarged training set.
    #[serde(default = "pseudo_epochs")]
    pub epochs: usize,
}

fn pseudo_threshold() -> f32 {
    0.99
}
fn pseudo_epochs() -> usize {
    2
}

/// Command-line values that replace the file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--epochs`.
    pub epochs: Option<usize>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--batch-size`.
    pub batch_size: Option<usize>,
    /// `--lr`.
    pub lr: Option<f32>,
    /// `--limit-train` (smoke runs).
    pub limit_train: Option<usize>,
    /// `--limit-test` (smoke runs).
    pub limit_test: Option<usize>,
}

impl ExperimentConfig {
    /// Parses and validates `text`; `path` labels errors and anchors relative paths.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ExperimentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(pl) = &mut cfg.pseudo_label
            && pl.file.is_relative()
            && let Some(dir) = path.parent()
        {
            pl.file = dir.join(&pl.file);
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Applies command-line overrides, then re-validates.
    pub fn apply(&mut self, o: &Overrides, path: &Path) -> Result<(), ConfigError> {
        if let Some(v) = o.epochs {
            self.epochs = v;
        }
        if let Some(v) = o.seed {
            self.seed = v;
        }
        if let Some(v) = o.batch_size {
            self.batch_size = v;
        }
        if let Some(v) = o.lr {
            self.optimizer.lr = v;
        }
        if let Some(v) = o.limit_train {
            self.data.limit_train = Some(v);
        }
        if let Some(v) = o.limit_test {
            self.data.limit_test = Some(v);
        }
        self.validate(path)
    }

    /// The resolved configuration as TOML (written into every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config types serialise")
    }

    /// Checks every value that parses but is not allowed.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, expected: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        };
        if self.epochs == 0 {
            return Err(bad("epochs", "0".into(), "at least 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "0".into(), "at least 1"));
        }
        if self.model.layers.is_empty() {
            return Err(bad("model.layers", "[]".into(), "at least one layer"));
        }
        for (i, layer) in self.model.layers.iter().enumerate() {
            let key = |field: &str| format!("model.layers[{i}].{field}");
            match layer {
                LayerSpec::Dropout { p, .. } if !(0.0..1.0).contains(p) => {
                    return Err(bad(&key("p"), p.to_string(), "a probability in [0, 1)"));
                }
                LayerSpec::Linear {
                    out_features: 0, ..
                } => {
                    return Err(bad(&key("out_features"), "0".into(), "at least 1"));
                }
                LayerSpec::Conv2d {
                    out_channels: 0, ..
                } => {
                    return Err(bad(&key("out_channels"), "0".into(), "at least 1"));
                }
                LayerSpec::Batchnorm1d { momentum, eps }
                | LayerSpec::Batchnorm2d { momentum, eps } => {
                    if !(0.0..=1.0).contains(momentum) {
                        return Err(bad(
                            &key("momentum"),
                            momentum.to_string(),
                            "a value in [0, 1]",
                        ));
                    }
                    if eps.is_nan() || *eps <= 0.0 {
                        return Err(bad(&key("eps"), eps.to_string(), "a positive number"));
                    }
                }
                _ => {}
            }
        }
        if let Some(es) = &self.early_stopping
            && es.patience == 0
        {
            return Err(bad("early_stopping.patience", "0".into(), "at least 1"));
        }
        if let Some(pl) = &self.pseudo_label
            && !(0.0..=1.0).contains(&pl.threshold)
        {
            return Err(bad(
                "pseudo_label.threshold",
                pl.threshold.to_string(),
                "a probability in [0, 1]",
            ));
        }
        self.optimizer.validate().map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        self.augment.validate().map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(())
    }
}
