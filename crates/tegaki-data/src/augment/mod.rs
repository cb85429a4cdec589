//! On-the-fly data augmentation, configured from a TOML `[augment]` table.
//!
//! [`AugmentConfig`] is the serde form; [`Pipeline::from_config`] validates
//! it and runs it on f32 NCHW batches in [0, 1] (as [`crate::Dataset::batch_f32`]
//! makes them), before any normalisation. Everything is deterministic given
//! the caller's [`tegaki_tensor::rng::SeededRng`], whatever the thread count.

mod config;
mod ops;
mod pipeline;

pub use config::{
    AffineConfig, AugmentConfig, CropConfig, CutoutConfig, ElasticConfig, ErasingConfig,
    MixupConfig, MorphConfig, NoiseConfig,
};
pub use ops::{Scratch, Shape};
pub use pipeline::Pipeline;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;
    use proptest::prelude::*;
    use tegaki_tensor::rng;

    fn digit_like(n: usize) -> Array4<f32> {
        // a ring plus a bar, different per image
        Array4::from_shape_fn((n, 1, 28, 28), |(i, _, y, x)| {
            let (dy, dx) = (y as f32 - 13.5, x as f32 - 13.5 + i as f32 % 3.0);
            let r = (dy * dy + dx * dx).sqrt();
            if (6.0..9.0).contains(&r) || (x == 14 && y > 4) {
                1.0
            } else {
                0.0
            }
        })
    }

    fn full_config() -> AugmentConfig {
        AugmentConfig::from_toml(
            r#"
            [augment]
            affine = { rotate_deg = 15, scale = [0.9, 1.1], translate = 0.1, shear_deg = 10 }
            noise = { sigma = 0.1, p = 0.5 }
            thicken = { kernel = 2, p = 0.5 }
            thin = { kernel = 2, p = 0.3 }
            elastic = { alpha = 8, sigma = 3, p = 0.5 }
            crop = { padding = 2 }
            erasing = { p = 0.5 }
            cutout = { size = 6, p = 0.5 }
            mixup = { alpha = 0.4 }
            label_smoothing = 0.1
            "#,
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    #[test]
    fn identity_parameters_give_identity_output() {
        let config = AugmentConfig {
            affine: Some(AffineConfig::default()),
            thicken: Some(MorphConfig { kernel: 1, p: 1.0 }),
            thin: Some(MorphConfig { kernel: 1, p: 1.0 }),
            noise: Some(NoiseConfig { sigma: 0.0, p: 1.0 }),
            crop: Some(CropConfig { padding: 0, p: 1.0 }),
            elastic: Some(ElasticConfig {
                alpha: 0.0,
                sigma: 2.0,
                p: 1.0,
            }),
            ..AugmentConfig::default()
        };
        let pipeline = Pipeline::from_config(&config).unwrap();
        let orig = digit_like(4);
        let mut imgs = orig.clone();
        pipeline.apply_batch(&mut imgs, &mut rng::seeded(1));
        assert_eq!(imgs, orig);
        assert!(
            pipeline
                .soft_targets(&mut imgs, &[0, 1, 2, 3], 10, &mut rng::seeded(1))
                .is_none()
        );
        let mut again = orig.clone();
        Pipeline::identity().apply_batch(&mut again, &mut rng::seeded(2));
        assert_eq!(again, orig);
    }

    #[test]
    fn deterministic_and_independent_of_thread_count() {
        let pipeline = Pipeline::from_config(&full_config()).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut imgs = digit_like(16);
                let mut r = rng::seeded(9);
                let t = pipeline.augment(
                    &mut imgs,
                    &(0..16).map(|i| i % 10).collect::<Vec<_>>(),
                    10,
                    &mut r,
                );
                (imgs, t)
            })
        };
        let (a, ta) = run(1);
        let (b, tb) = run(3);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_ne!(a, digit_like(16));
    }

    #[test]
    fn mixup_and_smoothing_rows_sum_to_one() {
        let config = AugmentConfig {
            mixup: Some(MixupConfig { alpha: 1.0, p: 1.0 }),
            label_smoothing: 0.2,
            ..AugmentConfig::default()
        };
        let pipeline = Pipeline::from_config(&config).unwrap();
        let mut imgs = digit_like(8);
        let labels = [0, 1, 2, 3, 4, 5, 6, 7];
        let t = pipeline
            .soft_targets(&mut imgs, &labels, 10, &mut rng::seeded(3))
            .unwrap();
        assert_eq!(t.dim(), (8, 10));
        for row in t.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5, "{row}");
            assert!(row.iter().all(|&v| v >= 0.02 - 1e-6));
        }
        // mixing really happened: some row has two classes above the smoothing floor
        assert!(
            t.rows()
                .into_iter()
                .any(|r| r.iter().filter(|&&v| v > 0.05).count() == 2)
        );

        let smooth_only = Pipeline::from_config(&AugmentConfig {
            label_smoothing: 0.1,
            ..Default::default()
        })
        .unwrap();
        let t = smooth_only
            .soft_targets(&mut digit_like(2), &[3, 0], 5, &mut rng::seeded(1))
            .unwrap();
        assert!((t[[0, 3]] - 0.92).abs() < 1e-6 && (t[[0, 0]] - 0.02).abs() < 1e-6);
    }

    fn ascii(img: &[f32], w: usize) -> String {
        const LEVELS: &[u8] = b" .:-=+*#%@";
        img.chunks(w)
            .map(|row| {
                row.iter()
                    .map(|&v| LEVELS[((v * 9.0).round() as usize).min(9)] as char)
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn snapshot_of_an_augmented_image() {
        let config = AugmentConfig::from_toml(
            "[augment]\naffine = { rotate_deg = 30, scale = [0.8, 1.2], shear_deg = 10, translate_px = 2 }\nthicken = { kernel = 2 }\n",
            std::path::Path::new("snap.toml"),
        )
        .unwrap();
        let pipeline = Pipeline::from_config(&config).unwrap();
        let mut imgs = digit_like(1);
        pipeline.apply_batch(&mut imgs, &mut rng::seeded(2024));
        let img = imgs.as_slice().unwrap();
        insta::assert_snapshot!(ascii(img, 28));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn outputs_stay_in_unit_range_and_keep_shape(
            seed in any::<u64>(),
            pixels in proptest::collection::vec(0.0f32..=1.0, 3 * 9 * 7),
            rot in 0.0f32..180.0,
            smin in 0.2f32..1.0,
            sigma in 0.0f32..2.0,
            kernel in 1usize..5,
            alpha in 0.0f32..30.0,
        ) {
            let config = AugmentConfig {
                affine: Some(AffineConfig { rotate_deg: rot, scale: [smin, smin * 2.0], translate: 0.3, shear_deg: 20.0, ..Default::default() }),
                noise: Some(NoiseConfig { sigma, p: 1.0 }),
                thicken: Some(MorphConfig { kernel, p: 0.5 }),
                thin: Some(MorphConfig { kernel, p: 0.5 }),
                elastic: Some(ElasticConfig { alpha, sigma: 2.0, p: 0.5 }),
                crop: Some(CropConfig { padding: 3, p: 1.0 }),
                erasing: Some(ErasingConfig { p: 0.5, value: 0.7, ..Default::default() }),
                cutout: Some(CutoutConfig { size: 4, p: 0.5 }),
                mixup: Some(MixupConfig { alpha: 0.5, p: 1.0 }),
                label_smoothing: 0.05,
            };
            let pipeline = Pipeline::from_config(&config).unwrap();
            let mut imgs = Array4::from_shape_vec((1, 3, 9, 7), pixels).unwrap();
            let mut batch = ndarray::concatenate(ndarray::Axis(0), &[imgs.view(), imgs.view()]).unwrap();
            let t = pipeline.augment(&mut batch, &[1, 2], 3, &mut rng::seeded(seed)).unwrap();
            pipeline.apply_batch(&mut imgs, &mut rng::seeded(seed));
            prop_assert_eq!(imgs.dim(), (1, 3, 9, 7));
            prop_assert_eq!(batch.dim(), (2, 3, 9, 7));
            prop_assert!(imgs.iter().chain(batch.iter()).all(|&v| (0.0..=1.0).contains(&v)));
            for row in t.rows() {
                prop_assert!((row.sum() - 1.0).abs() < 1e-5);
            }
        }
    }
}
