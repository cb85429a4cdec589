//! A validated [`AugmentConfig`] turned into something that runs on batches.

use ndarray::{Array2, Array4};
use rand::{Rng, RngExt, SeedableRng};
use rand_distr::{Beta, Distribution};
use rayon::prelude::*;

use tegaki_tensor::rng::SeededRng;

use super::config::AugmentConfig;
use super::ops::{self, Scratch, Shape, coin, uniform};
use crate::error::DataError;

/// Runs the configured augmentations. Per-image ops run in this fixed order:
/// thicken, thin, affine, elastic, crop, erasing, cutout, noise; then the
/// batch-level mixup and label smoothing produce soft targets.
#[derive(Clone, Debug)]
pub struct Pipeline {
    config: AugmentConfig,
    elastic_kernel: Vec<f32>,
}

/// The RNG of image `index` in a batch whose draw from the caller's RNG was
/// `base`: independent of which thread processes the image.
fn image_rng(base: u64, index: usize) -> SeededRng {
    let mut rng = SeededRng::seed_from_u64(base);
    rng.set_stream(index as u64);
    rng
}

impl Pipeline {
    /// Validates `config` and prepares the pipeline.
    pub fn from_config(config: &AugmentConfig) -> Result<Self, DataError> {
        config.validate()?;
        let elastic_kernel = config
            .elastic
            .as_ref()
            .map(|e| ops::gaussian_kernel(e.sigma))
            .unwrap_or_default();
        Ok(Self {
            config: config.clone(),
            elastic_kernel,
        })
    }

    /// The pipeline that changes nothing.
    pub fn identity() -> Self {
        Self::from_config(&AugmentConfig::default()).expect("the default config is valid")
    }

    /// The configuration this pipeline runs.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// True if mixup or label smoothing is configured, i.e. training needs
    /// soft targets from [`Pipeline::soft_targets`].
    pub fn has_soft_targets(&self) -> bool {
        self.config.mixup.is_some() || self.config.label_smoothing > 0.0
    }

    /// Applies the per-image ops to every image of an NCHW batch with values in
    /// [0, 1], in parallel; the output stays in [0, 1]. Takes exactly one draw
    /// from `rng`; image `i` uses its own RNG derived from that draw and `i`,
    /// so the result does not depend on the number of threads.
    ///
    /// # Panics
    /// If `images` is not in standard (C-contiguous) layout.
    pub fn apply_batch(&self, images: &mut Array4<f32>, rng: &mut SeededRng) {
        let base = rng.next_u64();
        let (_, c, h, w) = images.dim();
        let len = c * h * w;
        if len == 0 || self.per_image_identity() {
            return;
        }
        let flat = images
            .as_slice_mut()
            .expect("Pipeline::apply_batch: images must be in standard layout");
        flat.par_chunks_mut(len).enumerate().for_each_init(
            Scratch::default,
            |scratch, (i, img)| {
                self.apply_image(img, (c, h, w), &mut image_rng(base, i), scratch);
            },
        );
    }

    fn per_image_identity(&self) -> bool {
        let c = &self.config;
        c.affine.is_none()
            && c.noise.is_none()
            && c.thicken.is_none()
            && c.thin.is_none()
            && c.elastic.is_none()
            && c.crop.is_none()
            && c.erasing.is_none()
            && c.cutout.is_none()
    }

    /// Applies the per-image ops to one CHW image.
    pub fn apply_image(&self, img: &mut [f32], shape: Shape, rng: &mut SeededRng, s: &mut Scratch) {
        let (c, h, w) = shape;
        assert_eq!(
            img.len(),
            c * h * w,
            "Pipeline::apply_image: image length vs shape {shape:?}"
        );
        let cfg = &self.config;
        if let Some(m) = &cfg.thicken
            && coin(rng, m.p)
        {
            ops::morph(img, shape, m.kernel, true, &mut s.tmp);
        }
        if let Some(m) = &cfg.thin
            && coin(rng, m.p)
        {
            ops::morph(img, shape, m.kernel, false, &mut s.tmp);
        }
        if let Some(a) = &cfg.affine {
            let apply = coin(rng, a.p);
            let theta = uniform(rng, -a.rotate_deg, a.rotate_deg).to_radians();
            let scale = uniform(rng, a.scale[0], a.scale[1]);
            let shear = uniform(rng, -a.shear_deg, a.shear_deg).to_radians();
            let (tx_max, ty_max) = if a.translate_px > 0.0 {
                (a.translate_px, a.translate_px)
            } else {
                (a.translate * w as f32, a.translate * h as f32)
            };
            let tx = uniform(rng, -tx_max, tx_max);
            let ty = uniform(rng, -ty_max, ty_max);
            if apply {
                let m = ops::inverse_affine(theta, shear, scale);
                ops::affine(img, shape, m, tx, ty, &mut s.image);
            }
        }
        if let Some(e) = &cfg.elastic
            && coin(rng, e.p)
        {
            ops::elastic(img, shape, e.alpha, &self.elastic_kernel, rng, s);
        }
        if let Some(cr) = &cfg.crop
            && coin(rng, cr.p)
        {
            let p = cr.padding as i64;
            let dx = rng.random_range(-p..=p);
            let dy = rng.random_range(-p..=p);
            ops::shift(img, shape, dx as isize, dy as isize, &mut s.tmp);
        }
        if let Some(e) = &cfg.erasing
            && coin(rng, e.p)
        {
            let area = (h * w) as f32;
            // Zhong et al.: retry until the rectangle fits, at most 10 times.
            for _ in 0..10 {
                let target = area * uniform(rng, e.area[0], e.area[1]);
                let aspect = uniform(rng, e.aspect[0].ln(), e.aspect[1].ln()).exp();
                let eh = (target * aspect).sqrt().round() as usize;
                let ew = (target / aspect).sqrt().round() as usize;
                if eh >= 1 && ew >= 1 && eh <= h && ew <= w {
                    let y0 = rng.random_range(0..=h - eh);
                    let x0 = rng.random_range(0..=w - ew);
                    ops::fill_rect(img, shape, (y0, y0 + eh), (x0, x0 + ew), e.value);
                    break;
                }
            }
        }
        if let Some(cu) = &cfg.cutout
            && coin(rng, cu.p)
        {
            let cy = rng.random_range(0..h);
            let cx = rng.random_range(0..w);
            let half = cu.size / 2;
            let (y0, x0) = (cy.saturating_sub(half), cx.saturating_sub(half));
            let (y1, x1) = (cy + (cu.size - half), cx + (cu.size - half));
            ops::fill_rect(img, shape, (y0, y1), (x0, x1), 0.0);
        }
        if let Some(n) = &cfg.noise
            && coin(rng, n.p)
        {
            ops::noise(img, n.sigma, rng);
        }
        // Bilinear weights can sum to 1 + ulp; keep the [0, 1] promise exactly.
        for v in img.iter_mut() {
            *v = v.clamp(0.0, 1.0);
        }
    }

    /// Mixup and label smoothing for a batch: returns soft targets
    /// `(N, num_classes)` whose rows sum to 1 (blending `images` in place when
    /// mixup fires), or `None` when neither is configured, in which case the
    /// loss should use the hard `labels`.
    ///
    /// # Panics
    /// If `labels.len()` differs from the batch size or a label is not below
    /// `num_classes`.
    pub fn soft_targets(
        &self,
        images: &mut Array4<f32>,
        labels: &[usize],
        num_classes: usize,
        rng: &mut SeededRng,
    ) -> Option<Array2<f32>> {
        if !self.has_soft_targets() {
            return None;
        }
        let n = images.dim().0;
        assert_eq!(
            labels.len(),
            n,
            "Pipeline::soft_targets: {} labels for {n} images",
            labels.len()
        );
        let eps = self.config.label_smoothing;
        let off = eps / num_classes as f32;
        let mut targets = Array2::from_elem((n, num_classes), off);
        for (i, &l) in labels.iter().enumerate() {
            assert!(
                l < num_classes,
                "Pipeline::soft_targets: label {l} >= {num_classes} classes"
            );
            targets[[i, l]] += 1.0 - eps;
        }
        if let Some(m) = &self.config.mixup
            && coin(rng, m.p)
            && n > 1
        {
            let beta =
                Beta::new(f64::from(m.alpha), f64::from(m.alpha)).expect("alpha validated > 0");
            let lam = beta.sample(rng) as f32;
            let partner = crate::batches::shuffled(n, rng);
            let original = images.clone();
            let original_targets = targets.clone();
            for (i, &j) in partner.iter().enumerate() {
                let mut dst = images.index_axis_mut(ndarray::Axis(0), i);
                dst.zip_mut_with(&original.index_axis(ndarray::Axis(0), j), |a, &b| {
                    // b + lam (a - b), clamped so rounding never leaves [min, max]
                    *a = (b + lam * (*a - b)).clamp(a.min(b), a.max(b));
                });
                let mut t = targets.row_mut(i);
                t.zip_mut_with(&original_targets.row(j), |a, &b| {
                    *a = lam * *a + (1.0 - lam) * b
                });
            }
        }
        Some(targets)
    }

    /// [`Pipeline::apply_batch`] then [`Pipeline::soft_targets`]: the whole
    /// augmentation of a training batch.
    pub fn augment(
        &self,
        images: &mut Array4<f32>,
        labels: &[usize],
        num_classes: usize,
        rng: &mut SeededRng,
    ) -> Option<Array2<f32>> {
        self.apply_batch(images, rng);
        self.soft_targets(images, labels, num_classes, rng)
    }
}
