//! The GAN's TOML configuration.
//!
//! ```toml
//! name = "cdcgan"
//! seed = 42
//! epochs = 10
//! batch_size = 64
//! latent_dim = 100
//! conditional = true      # the digit joins both networks' inputs
//!
//! [data]
//! dataset = "mnist"       # any 1x28x28 dataset: mnist, fashion-mnist, kmnist
//!
//! [generator]
//! channels = [128, 64]    # feature maps at 7x7 and at 14x14
//!
//! [discriminator]
//! channels = [64, 128]    # feature maps at 14x14 and at 7x7
//! negative_slope = 0.2
//!
//! [optimizer]             # Adam for both networks (the DCGAN paper's values)
//! lr_g = 2e-4
//! lr_d = 2e-4
//! beta1 = 0.5
//! ```
//!
//! Unknown keys are errors; every error names the file and the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tegaki_data::DatasetKind;

use crate::GanError;

/// A whole GAN experiment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    /// A free-form label.
    #[serde(default)]
    pub name: Option<String>,
    /// Seed of the weights, the epoch order and every noise batch.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Passes over the training set.
    pub epochs: usize,
    /// Real images per step (the discriminator sees as many fakes beside them).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Size of the N(0, 1) latent vector.
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    /// Class-conditional: the one-hot label is concatenated to the latent
    /// vector and given to the discriminator as constant image planes.
    #[serde(default)]
    pub conditional: bool,
    /// The training images.
    pub data: GanData,
    /// Generator widths.
    #[serde(default)]
    pub generator: GeneratorConfig,
    /// Discriminator widths.
    #[serde(default)]
    pub discriminator: DiscriminatorConfig,
    /// Adam settings of both networks.
    #[serde(default)]
    pub optimizer: GanOptimizer,
}

fn default_seed() -> u64 {
    42
}
fn default_batch_size() -> usize {
    64
}
fn default_latent_dim() -> usize {
    100
}

/// Which images to imitate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GanData {
    /// A 1x28x28 dataset: `mnist`, `fashion-mnist` or `kmnist`.
    pub dataset: DatasetKind,
    /// Use only the first N training images (smoke runs, tests).
    #[serde(default)]
    pub limit_train: Option<usize>,
}

/// `latent -> Linear -> (c0, 7, 7) -> ConvT -> (c1, 14, 14) -> ConvT -> (1, 28, 28)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Channels of the 7x7 and 14x14 feature maps.
    #[serde(default = "default_g_channels")]
    pub channels: [usize; 2],
}

fn default_g_channels() -> [usize; 2] {
    [128, 64]
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            channels: default_g_channels(),
        }
    }
}

/// `(1, 28, 28) -> Conv -> (c0, 14, 14) -> Conv -> (c1, 7, 7) -> Linear -> logit`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscriminatorConfig {
    /// Channels of the 14x14 and 7x7 feature maps.
    #[serde(default = "default_d_channels")]
    pub channels: [usize; 2],
    /// LeakyReLU slope for negative inputs.
    #[serde(default = "default_slope")]
    pub negative_slope: f32,
}

fn default_d_channels() -> [usize; 2] {
    [64, 128]
}
fn default_slope() -> f32 {
    0.2
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            channels: default_d_channels(),
            negative_slope: default_slope(),
        }
    }
}

/// Adam for both networks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GanOptimizer {
    /// Generator learning rate.
    #[serde(default = "default_lr")]
    pub lr_g: f32,
    /// Discriminator learning rate.
    #[serde(default = "default_lr")]
    pub lr_d: f32,
    /// First-moment decay (0.5 in the DCGAN paper, not Adam's usual 0.9).
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    /// Second-moment decay.
    #[serde(default = "default_beta2")]
    pub beta2: f32,
}

fn default_lr() -> f32 {
    2e-4
}
fn default_beta1() -> f32 {
    0.5
}
fn default_beta2() -> f32 {
    0.999
}

impl Default for GanOptimizer {
    fn default() -> Self {
        Self {
            lr_g: default_lr(),
            lr_d: default_lr(),
            beta1: default_beta1(),
            beta2: default_beta2(),
        }
    }
}

/// Command-line values that replace the file's.
#[derive(Clone, Debug, Default)]
pub struct GanOverrides {
    /// `--epochs`.
    pub epochs: Option<usize>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--limit-train`.
    pub limit_train: Option<usize>,
}

impl GanConfig {
    /// Parses and validates `text`; `path` labels errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, GanError> {
        let cfg: GanConfig = toml::from_str(text).map_err(|e| GanError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, GanError> {
        let text = std::fs::read_to_string(path).map_err(|e| GanError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Applies command-line overrides, then re-validates.
    pub fn apply(&mut self, o: &GanOverrides, path: &Path) -> Result<(), GanError> {
        if let Some(v) = o.epochs {
            self.epochs = v;
        }
        if let Some(v) = o.seed {
            self.seed = v;
        }
        if let Some(v) = o.limit_train {
            self.data.limit_train = Some(v);
        }
        self.validate(path)
    }

    /// The resolved configuration as TOML (written into every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config types serialise")
    }

    /// Number of classes the conditional networks see (10 for every
    /// supported dataset), or 0 for an unconditional GAN.
    pub fn condition_classes(&self) -> usize {
        if self.conditional {
            self.data.dataset.num_classes()
        } else {
            0
        }
    }

    /// Checks every value that parses but is not allowed.
    pub fn validate(&self, path: &Path) -> Result<(), GanError> {
        let bad = |key: &str, value: String, expected: &str| GanError::Config {
            path: path.to_path_buf(),
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        };
        if self.epochs == 0 {
            return Err(bad("epochs", "0".into(), "at least 1"));
        }
        if self.batch_size < 2 {
            return Err(bad(
                "batch_size",
                self.batch_size.to_string(),
                "at least 2 (BatchNorm needs a batch)",
            ));
        }
        if self.latent_dim == 0 {
            return Err(bad("latent_dim", "0".into(), "at least 1"));
        }
        if self.data.dataset.shape() != (1, 28, 28) {
            return Err(bad(
                "data.dataset",
                format!("\"{}\"", self.data.dataset.name()),
                "a 1x28x28 dataset (mnist, fashion-mnist, kmnist)",
            ));
        }
        if let Some(limit) = self.data.limit_train
            && limit < self.batch_size
        {
            return Err(bad(
                "data.limit_train",
                limit.to_string(),
                &format!("at least batch_size = {}", self.batch_size),
            ));
        }
        for (key, ch) in [
            ("generator.channels", self.generator.channels),
            ("discriminator.channels", self.discriminator.channels),
        ] {
            if ch.contains(&0) {
                return Err(bad(key, format!("{ch:?}"), "two positive channel counts"));
            }
        }
        let slope = self.discriminator.negative_slope;
        if !(0.0..1.0).contains(&slope) {
            return Err(bad(
                "discriminator.negative_slope",
                slope.to_string(),
                "a value in [0, 1)",
            ));
        }
        let o = &self.optimizer;
        for (key, lr) in [("optimizer.lr_g", o.lr_g), ("optimizer.lr_d", o.lr_d)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(bad(key, lr.to_string(), "a positive learning rate"));
            }
        }
        for (key, beta) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(bad(key, beta.to_string(), "a value in [0, 1)"));
            }
        }
        Ok(())
    }
}

/// The config file of a run folder.
pub fn run_config_path(run: &Path) -> PathBuf {
    run.join("config.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "epochs = 3\n[data]\ndataset = \"mnist\"\n";

    fn parse(text: &str) -> Result<GanConfig, GanError> {
        GanConfig::from_toml_str(text, Path::new("gan.toml"))
    }

    #[test]
    fn defaults_are_the_papers() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.latent_dim, 100);
        assert_eq!(cfg.generator.channels, [128, 64]);
        assert_eq!(cfg.discriminator.channels, [64, 128]);
        assert_eq!(cfg.discriminator.negative_slope, 0.2);
        assert_eq!(cfg.optimizer.lr_g, 2e-4);
        assert_eq!(cfg.optimizer.beta1, 0.5);
        assert!(!cfg.conditional);
        assert_eq!(cfg.condition_classes(), 0);
        let again = parse(&cfg.to_toml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let err = parse(&format!("{MINIMAL}[generator]\nwidth = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("gan.toml:") && err.contains("width"),
            "{err}"
        );
        let err = parse("epochs = 1\nbatchsize = 3\n[data]\ndataset = \"mnist\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batchsize"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("epochs = 0\n[data]\ndataset = \"mnist\"\n", "`epochs` = 0"),
            (
                "epochs = 1\n[data]\ndataset = \"cifar10\"\n",
                "`data.dataset` = \"cifar10\"",
            ),
            (
                &format!("{MINIMAL}[optimizer]\nbeta1 = 1.5\n"),
                "`optimizer.beta1` = 1.5",
            ),
            (
                &format!("{MINIMAL}[optimizer]\nlr_d = -1\n"),
                "`optimizer.lr_d` = -1",
            ),
            (
                &format!("{MINIMAL}[discriminator]\nchannels = [0, 4]\n"),
                "`discriminator.channels` = [0, 4]",
            ),
            (
                "epochs = 1\nbatch_size = 1\n[data]\ndataset = \"mnist\"\n",
                "`batch_size` = 1",
            ),
        ];
        for (text, expect) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("gan.toml: ") && err.contains(expect),
                "{err} (expected {expect})"
            );
        }
    }

    #[test]
    fn overrides_are_validated() {
        let mut cfg = parse(MINIMAL).unwrap();
        let o = GanOverrides {
            epochs: Some(7),
            seed: Some(3),
            limit_train: Some(10),
        };
        let err = cfg.apply(&o, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("`data.limit_train` = 10"), "{err}");
        let o = GanOverrides {
            limit_train: Some(640),
            ..o
        };
        cfg.apply(&o, Path::new("x.toml")).unwrap();
        assert_eq!((cfg.epochs, cfg.seed), (7, 3));
    }
}
