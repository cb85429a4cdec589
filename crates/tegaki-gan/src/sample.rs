//! A trained GAN: loading it from a run folder, generating images, drawing grids.

use std::path::Path;

use ndarray::{Array4, ArrayD, Axis, Ix4, concatenate};
use tegaki_nn::{Layer, Mode, Sequential};
use tegaki_plot::{Tile, image_grid_png};
use tegaki_tensor::rng;

use crate::nets::{build_discriminator, build_generator, generator_input, latent};
use crate::train::{
    DISCRIMINATOR, GENERATOR, config_path, last_path, load_network, read_checkpoint,
};
use crate::{GanConfig, GanError};

/// Images generated per forward pass.
const CHUNK: usize = 500;

/// Both networks of a GAN and the configuration they were built from.
pub struct Gan {
    /// The configuration.
    pub config: GanConfig,
    /// `(N, latent_dim + classes)` to `(N, 1, 28, 28)` in [-1, 1].
    pub generator: Sequential,
    /// `(N, 1 + classes, 28, 28)` to `(N, 1)` logits.
    pub discriminator: Sequential,
}

impl Gan {
    /// Fresh networks with weights from the config's seed (streams
    /// `init/generator` and `init/discriminator`).
    pub fn new(config: GanConfig) -> Self {
        let generator = build_generator(&config, &mut rng::stream(config.seed, "init/generator"));
        let discriminator =
            build_discriminator(&config, &mut rng::stream(config.seed, "init/discriminator"));
        Self {
            config,
            generator,
            discriminator,
        }
    }

    /// The GAN of a run folder: its `config.toml` and `last.safetensors`.
    pub fn open(run: &Path) -> Result<Self, GanError> {
        let cp = config_path(run);
        if !cp.is_file() {
            return Err(GanError::Usage(format!(
                "{} is not a GAN run folder (no config.toml); train one with `tegaki gan train --config FILE --out {}`",
                run.display(),
                run.display()
            )));
        }
        let mut gan = Self::new(GanConfig::load(&cp)?);
        let last = last_path(run);
        let file = read_checkpoint(&last)?;
        load_network(&file, &last, GENERATOR, &mut gan.generator)?;
        load_network(&file, &last, DISCRIMINATOR, &mut gan.discriminator)?;
        Ok(gan)
    }

    /// Whether the networks take a class label.
    pub fn is_conditional(&self) -> bool {
        self.config.conditional
    }

    /// The labels of `n` samples: all `digit`, or (conditional runs without a
    /// digit) `0, 1, ..., 9, 0, 1, ...` so every class is equally represented;
    /// empty for an unconditional run.
    ///
    /// # Errors
    /// [`GanError::Usage`] for a digit with an unconditional run, or a digit
    /// out of range.
    pub fn labels(&self, n: usize, digit: Option<usize>) -> Result<Vec<usize>, GanError> {
        let k = self.config.condition_classes();
        match (k, digit) {
            (0, Some(_)) => Err(GanError::Usage(
                "--digit needs a class-conditional run (`conditional = true` in the GAN config); \
                 this run is unconditional"
                    .into(),
            )),
            (0, None) => Ok(Vec::new()),
            (k, Some(d)) if d >= k => Err(GanError::Usage(format!(
                "--digit {d}: expected a class below {k}"
            ))),
            (_, Some(d)) => Ok(vec![d; n]),
            (k, None) => Ok((0..n).map(|i| i % k).collect()),
        }
    }

    /// `n` images `(n, 1, 28, 28)` in [-1, 1] from noise of the stream
    /// `(seed, "sample")`, with `labels` (see [`Gan::labels`]); the generator
    /// runs in eval mode (BatchNorm's running statistics).
    pub fn generate(&mut self, n: usize, labels: &[usize], seed: u64) -> Array4<f32> {
        let k = self.config.condition_classes();
        let mut r = rng::stream(seed, "sample");
        let mut parts: Vec<ArrayD<f32>> = Vec::new();
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            let z = latent(m, self.config.latent_dim, &mut r);
            let l = if k > 0 {
                &labels[start..start + m]
            } else {
                &[][..]
            };
            parts.push(
                self.generator
                    .forward(generator_input(&z, l, k), Mode::Eval),
            );
        }
        if parts.is_empty() {
            return Array4::zeros((0, 1, 28, 28));
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        concatenate(Axis(0), &views)
            .expect("same sample shape")
            .into_dimensionality::<Ix4>()
            .expect("generator output is NCHW")
    }
}

/// Maps generator output from [-1, 1] to [0, 1] (MNIST's pixel scale).
pub fn to_unit(images: &ArrayD<f32>) -> ArrayD<f32> {
    images.mapv(|v| ((v + 1.0) * 0.5).clamp(0.0, 1.0))
}

/// Writes images in [-1, 1] `(N, 1, H, W)` as a PNG grid, `columns` per row.
pub fn grid_png(
    images: &ArrayD<f32>,
    columns: usize,
    scale: u32,
    title: Option<&str>,
    path: &Path,
) -> Result<(), GanError> {
    let unit = to_unit(images);
    let (h, w) = (unit.shape()[2], unit.shape()[3]);
    let tiles: Vec<Tile> = unit
        .axis_iter(Axis(0))
        .map(|img| Tile {
            pixels: img.iter().copied().collect(),
            height: h,
            width: w,
            caption: None,
        })
        .collect();
    image_grid_png(&tiles, columns, scale, title, path).map_err(|e| GanError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gan(conditional: bool) -> Gan {
        let text = format!(
            "epochs = 1\nconditional = {conditional}\nlatent_dim = 4\n[data]\ndataset = \"mnist\"\n\
             [generator]\nchannels = [3, 2]\n[discriminator]\nchannels = [2, 3]\n"
        );
        Gan::new(GanConfig::from_toml_str(&text, Path::new("t.toml")).unwrap())
    }

    #[test]
    fn labels_for_conditional_and_unconditional_runs() {
        let c = gan(true);
        assert_eq!(c.labels(3, Some(7)).unwrap(), [7, 7, 7]);
        assert_eq!(c.labels(12, None).unwrap()[9..], [9, 0, 1]);
        assert!(
            c.labels(1, Some(10))
                .unwrap_err()
                .to_string()
                .contains("below 10")
        );
        let u = gan(false);
        assert!(u.labels(4, None).unwrap().is_empty());
        let err = u.labels(4, Some(7)).unwrap_err().to_string();
        assert!(err.contains("needs a class-conditional run"), "{err}");
    }

    #[test]
    fn generation_is_seeded_and_chunked() {
        let mut c = gan(true);
        let labels = c.labels(CHUNK + 3, None).unwrap();
        let a = c.generate(CHUNK + 3, &labels, 5);
        assert_eq!(a.shape(), &[CHUNK + 3, 1, 28, 28]);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
        let b = c.generate(CHUNK + 3, &labels, 5);
        assert_eq!(a, b);
        let other = c.generate(2, &labels[..2], 6);
        assert_ne!(other.index_axis(Axis(0), 0), a.index_axis(Axis(0), 0));
        let u = to_unit(&a.into_dyn());
        assert!(u.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
