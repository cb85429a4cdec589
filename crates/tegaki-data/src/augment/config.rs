//! Augmentation settings, as they appear in a TOML `[augment]` table.
//!
//! Every section is optional; an absent section is off. Inside a section,
//! omitted fields take the defaults documented on each field (and `p`, the
//! probability of applying the op to an image, defaults to 1). Unknown fields
//! are rejected, so a typo is an error rather than silently ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The `[augment]` table: per-image ops and batch-level target ops.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random rotation, scale, translation and shear (bilinear, zero fill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affine: Option<AffineConfig>,
    /// Additive Gaussian noise, clamped to [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseConfig>,
    /// Stroke thickening: grey-level dilation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thicken: Option<MorphConfig>,
    /// Stroke thinning: grey-level erosion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thin: Option<MorphConfig>,
    /// Elastic distortion (Simard et al. 2003).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elastic: Option<ElasticConfig>,
    /// Zero-pad then crop back at a random offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<CropConfig>,
    /// Random erasing (Zhong et al. 2017): a random rectangle set to a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasing: Option<ErasingConfig>,
    /// Cutout (DeVries and Taylor 2017): a square at a random centre set to 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutout: Option<CutoutConfig>,
    /// Mixup (Zhang et al. 2018): blends pairs of images and their targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixup: Option<MixupConfig>,
    /// Label smoothing epsilon in [0, 1): targets become
    /// `(1 - eps) * one_hot + eps / classes`. 0 (the default) is off.
    pub label_smoothing: f32,
}

/// Random affine transform about the image centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AffineConfig {
    /// Rotation drawn from `[-rotate_deg, rotate_deg]` degrees. Default 0.
    pub rotate_deg: f32,
    /// Scale factor drawn from `[min, max]`. Default `[1, 1]`.
    pub scale: [f32; 2],
    /// Shift in each axis drawn from `[-t, t]` times the image size. Default 0.
    pub translate: f32,
    /// Shift in each axis drawn from `[-t, t]` pixels (instead of `translate`). Default 0.
    pub translate_px: f32,
    /// Horizontal shear angle drawn from `[-shear_deg, shear_deg]` degrees. Default 0.
    pub shear_deg: f32,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for AffineConfig {
    fn default() -> Self {
        Self {
            rotate_deg: 0.0,
            scale: [1.0, 1.0],
            translate: 0.0,
            translate_px: 0.0,
            shear_deg: 0.0,
            p: 1.0,
        }
    }
}

/// Additive Gaussian noise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Standard deviation on the [0, 1] pixel scale. Default 0.1.
    pub sigma: f32,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self { sigma: 0.1, p: 1.0 }
    }
}

/// Grey-level dilation (thicken) or erosion (thin) with a square element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MorphConfig {
    /// Side of the square structuring element, 1..=9 (1 is the identity).
    /// Even sizes reach one pixel further right/down than left/up. Default 2.
    pub kernel: usize,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for MorphConfig {
    fn default() -> Self {
        Self { kernel: 2, p: 1.0 }
    }
}

/// Elastic distortion: a uniform random displacement field, smoothed by a
/// Gaussian of `sigma` pixels and scaled by `alpha` pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticConfig {
    /// Displacement scale in pixels. Default 34 (Simard et al. for MNIST).
    pub alpha: f32,
    /// Smoothing standard deviation in pixels, in (0, 16]. Default 4.
    pub sigma: f32,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for ElasticConfig {
    fn default() -> Self {
        Self {
            alpha: 34.0,
            sigma: 4.0,
            p: 1.0,
        }
    }
}

/// Pad with zeros by `padding` pixels on every side, then crop the original
/// size at a random position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CropConfig {
    /// Padding in pixels. Default 2.
    pub padding: usize,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self { padding: 2, p: 1.0 }
    }
}

/// Random erasing: a rectangle of random area and aspect ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErasingConfig {
    /// Probability of applying. Default 0.5.
    pub p: f32,
    /// Area as a fraction of the image, drawn from `[min, max]`. Default `[0.02, 0.33]`.
    pub area: [f32; 2],
    /// Aspect ratio h/w, drawn log-uniformly from `[min, max]`. Default `[0.3, 3.3]`.
    pub aspect: [f32; 2],
    /// The value written, in [0, 1]. Default 0.
    pub value: f32,
}

impl Default for ErasingConfig {
    fn default() -> Self {
        Self {
            p: 0.5,
            area: [0.02, 0.33],
            aspect: [0.3, 3.3],
            value: 0.0,
        }
    }
}

/// Cutout: a `size` x `size` square (clipped at the border) set to 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CutoutConfig {
    /// Side in pixels. Default 8.
    pub size: usize,
    /// Probability of applying. Default 1.
    pub p: f32,
}

impl Default for CutoutConfig {
    fn default() -> Self {
        Self { size: 8, p: 1.0 }
    }
}

/// Mixup: `x = lam * x_i + (1 - lam) * x_j` with `lam ~ Beta(alpha, alpha)`
/// and the same blend of the targets; `j` is a random permutation of the batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixupConfig {
    /// Beta distribution parameter, > 0. Default 0.2.
    pub alpha: f32,
    /// Probability of mixing a given batch. Default 1.
    pub p: f32,
}

impl Default for MixupConfig {
    fn default() -> Self {
        Self { alpha: 0.2, p: 1.0 }
    }
}

fn check(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<(), DataError> {
    if ok {
        Ok(())
    } else {
        Err(DataError::config(format!("augment.{field}"), message()))
    }
}

fn check_p(p: f32, field: &str) -> Result<(), DataError> {
    check((0.0..=1.0).contains(&p), field, || {
        format!("probability {p} is not in [0, 1]")
    })
}

fn check_range(r: [f32; 2], lo: f32, hi: f32, field: &str) -> Result<(), DataError> {
    check(
        r[0].is_finite() && r[1].is_finite() && lo <= r[0] && r[0] <= r[1] && r[1] <= hi,
        field,
        || {
            format!(
                "[{}, {}] must satisfy {lo} <= min <= max <= {hi}",
                r[0], r[1]
            )
        },
    )
}

fn check_nonneg(v: f32, max: f32, field: &str) -> Result<(), DataError> {
    check((0.0..=max).contains(&v), field, || {
        format!("{v} is not in [0, {max}]")
    })
}

impl AugmentConfig {
    /// Checks every value; the error names the field (`augment.affine.scale`)
    /// and the allowed range.
    pub fn validate(&self) -> Result<(), DataError> {
        if let Some(a) = &self.affine {
            check_nonneg(a.rotate_deg, 180.0, "affine.rotate_deg")?;
            check_range(a.scale, 0.05, 20.0, "affine.scale")?;
            check_nonneg(a.translate, 1.0, "affine.translate")?;
            check_nonneg(a.translate_px, 1.0e4, "affine.translate_px")?;
            check(
                a.translate == 0.0 || a.translate_px == 0.0,
                "affine.translate_px",
                || "set either translate (a fraction of the size) or translate_px, not both".into(),
            )?;
            check_nonneg(a.shear_deg, 60.0, "affine.shear_deg")?;
            check_p(a.p, "affine.p")?;
        }
        if let Some(n) = &self.noise {
            check_nonneg(n.sigma, 10.0, "noise.sigma")?;
            check_p(n.p, "noise.p")?;
        }
        for (m, name) in [(&self.thicken, "thicken"), (&self.thin, "thin")] {
            if let Some(m) = m {
                check(
                    (1..=9).contains(&m.kernel),
                    &format!("{name}.kernel"),
                    || format!("{} is not in 1..=9", m.kernel),
                )?;
                check_p(m.p, &format!("{name}.p"))?;
            }
        }
        if let Some(e) = &self.elastic {
            check_nonneg(e.alpha, 1000.0, "elastic.alpha")?;
            check(e.sigma > 0.0 && e.sigma <= 16.0, "elastic.sigma", || {
                format!("{} is not in (0, 16]", e.sigma)
            })?;
            check_p(e.p, "elastic.p")?;
        }
        if let Some(c) = &self.crop {
            check(c.padding <= 64, "crop.padding", || {
                format!("{} is more than 64", c.padding)
            })?;
            check_p(c.p, "crop.p")?;
        }
        if let Some(e) = &self.erasing {
            check_p(e.p, "erasing.p")?;
            check_range(e.area, 0.0, 1.0, "erasing.area")?;
            check(e.area[1] > 0.0, "erasing.area", || {
                "max must be positive".into()
            })?;
            check_range(e.aspect, 1e-3, 1e3, "erasing.aspect")?;
            check_nonneg(e.value, 1.0, "erasing.value")?;
        }
        if let Some(c) = &self.cutout {
            check(c.size >= 1, "cutout.size", || "must be at least 1".into())?;
            check_p(c.p, "cutout.p")?;
        }
        if let Some(m) = &self.mixup {
            check(m.alpha > 0.0 && m.alpha <= 100.0, "mixup.alpha", || {
                format!("{} is not in (0, 100]", m.alpha)
            })?;
            check_p(m.p, "mixup.p")?;
        }
        check(
            (0.0..1.0).contains(&self.label_smoothing),
            "label_smoothing",
            || format!("{} is not in [0, 1)", self.label_smoothing),
        )?;
        Ok(())
    }

    /// Parses the `[augment]` table of a TOML document (other tables are
    /// ignored, so a training config works as is) and validates it. `path`
    /// names the source in errors. A document without `[augment]` is an error.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, DataError> {
        #[derive(Deserialize)]
        struct Outer {
            augment: Option<AugmentConfig>,
        }
        let outer: Outer = toml::from_str(text)
            .map_err(|e| DataError::config(path.display().to_string(), e.to_string()))?;
        let config = outer.augment.ok_or_else(|| {
            DataError::config(
                path.display().to_string(),
                "no [augment] table in this file",
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file and returns its validated `[augment]` table.
    pub fn from_toml_file(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// True if nothing is configured (the pipeline is the identity).
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AugmentConfig, DataError> {
        AugmentConfig::from_toml(text, Path::new("t.toml"))
    }

    #[test]
    fn parses_augment_table_and_ignores_others() {
        let c = parse(
            r#"
            [train]
            epochs = 3
            [augment]
            label_smoothing = 0.1
            affine = { rotate_deg = 10, scale = [0.9, 1.1] }
            [augment.noise]
            sigma = 0.05
            "#,
        )
        .unwrap();
        let a = c.affine.as_ref().unwrap();
        assert_eq!((a.rotate_deg, a.scale, a.p), (10.0, [0.9, 1.1], 1.0));
        assert_eq!(c.noise.as_ref().unwrap().sigma, 0.05);
        assert_eq!(c.label_smoothing, 0.1);
        assert!(c.thicken.is_none());
        // serialising and parsing again gives the same config
        let mut outer = toml::Table::new();
        outer.insert("augment".into(), toml::Value::try_from(&c).unwrap());
        let text = toml::to_string(&outer).unwrap();
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "[augment]\naffine = { rotat_deg = 1 }",
                "unknown field `rotat_deg`",
            ),
            ("[augment]\nblur = 1", "unknown field `blur`"),
            (
                "[augment]\naffine = { scale = [1.2, 1.1] }",
                "augment.affine.scale: [1.2, 1.1]",
            ),
            (
                "[augment]\nnoise = { p = 1.5 }",
                "augment.noise.p: probability 1.5",
            ),
            (
                "[augment]\nthin = { kernel = 0 }",
                "augment.thin.kernel: 0 is not in 1..=9",
            ),
            ("[augment]\nmixup = { alpha = 0 }", "augment.mixup.alpha"),
            (
                "[augment]\nlabel_smoothing = 1.0",
                "augment.label_smoothing",
            ),
            (
                "[augment]\naffine = { translate = 0.1, translate_px = 2 }",
                "augment.affine.translate_px",
            ),
            (
                "[augment]\nerasing = { area = [0.0, 0.0] }",
                "augment.erasing.area",
            ),
            ("[train]\nx = 1", "t.toml: no [augment] table"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "got {e:?}, want {want:?}");
        }
    }
}
