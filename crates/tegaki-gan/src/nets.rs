//! The generator and the discriminator, and the inputs they take.
//!
//! Generator (DCGAN for 28x28):
//! `[z; onehot] -> Linear -> Unflatten(c0, 7, 7) -> BatchNorm2d -> ReLU
//!  -> ConvT(c0 -> c1, k4 s2 p1) -> BatchNorm2d -> ReLU -> ConvT(c1 -> 1, k4 s2 p1) -> Tanh`.
//!
//! Discriminator: `[image; label planes] -> Conv(k4 s2 p1) -> LeakyReLU
//!  -> Conv(k4 s2 p1) -> LeakyReLU -> Flatten -> Linear -> logit`, without
//! BatchNorm, so real and fake images can share one batch.
//!
//! Convolution and linear weights are drawn from N(0, 0.02) and BatchNorm
//! scales from N(1, 0.02), as in the DCGAN paper and PyTorch's example;
//! biases start at zero. Layers that BatchNorm follows have no bias (it would
//! be cancelled by the mean subtraction).

use ndarray::{Array2, Array4, ArrayD, Axis, Ix4, s};
use tegaki_nn::{
    BatchNorm2d, Conv2d, ConvTranspose2d, Flatten, Layer, LeakyReLU, Linear, ReLU, Sequential, Tanh,
};
use tegaki_tensor::{Init, SeededRng};

use crate::{GanConfig, Unflatten};

/// Side of the generated images.
pub const SIDE: usize = 28;
/// Side of the generator's first feature map.
const BASE: usize = SIDE / 4;

fn dcgan_init() -> Init {
    Init::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

fn batchnorm(channels: usize, rng: &mut SeededRng) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(channels);
    Layer::visit_params(&mut bn, &mut |name, p| {
        if name == "weight" {
            p.value = Init::Normal {
                mean: 1.0,
                std: 0.02,
            }
            .tensor(p.shape(), rng);
        }
    });
    bn
}

/// The generator of `cfg`: `(N, latent_dim + classes)` to `(N, 1, 28, 28)`
/// in `[-1, 1]`, with weights from `rng`.
pub fn build_generator(cfg: &GanConfig, rng: &mut SeededRng) -> Sequential {
    let [c0, c1] = cfg.generator.channels;
    let input = cfg.latent_dim + cfg.condition_classes();
    let init = dcgan_init();
    let up = |cin, cout, bias, rng: &mut SeededRng| {
        ConvTranspose2d::new(cin, cout, (4, 4), (2, 2), (1, 1), (0, 0), bias, init, rng)
    };
    let linear = Linear::with_init(input, c0 * BASE * BASE, init, false, rng);
    let bn0 = batchnorm(c0, rng);
    let up1 = up(c0, c1, false, rng);
    let bn1 = batchnorm(c1, rng);
    let up2 = up(c1, 1, true, rng);
    Sequential::new()
        .with(linear)
        .with(Unflatten::new(&[c0, BASE, BASE]))
        .with(bn0)
        .with(ReLU::new())
        .with(up1)
        .with(bn1)
        .with(ReLU::new())
        .with(up2)
        .with(Tanh::new())
}

/// The discriminator of `cfg`: `(N, 1 + classes, 28, 28)` to `(N, 1)` logits,
/// with weights from `rng`.
pub fn build_discriminator(cfg: &GanConfig, rng: &mut SeededRng) -> Sequential {
    let [c0, c1] = cfg.discriminator.channels;
    let slope = cfg.discriminator.negative_slope;
    let init = dcgan_init();
    let input = 1 + cfg.condition_classes();
    let down = |cin, cout, rng: &mut SeededRng| {
        Conv2d::new(cin, cout, (4, 4), (2, 2), (1, 1), true, init, rng)
    };
    let conv0 = down(input, c0, rng);
    let conv1 = down(c0, c1, rng);
    let head = Linear::with_init(c1 * BASE * BASE, 1, init, true, rng);
    Sequential::new()
        .with(conv0)
        .with(LeakyReLU::new(slope))
        .with(conv1)
        .with(LeakyReLU::new(slope))
        .with(Flatten::new())
        .with(head)
}

/// `n` latent vectors of size `dim`, each entry N(0, 1).
pub fn latent(n: usize, dim: usize, rng: &mut SeededRng) -> Array2<f32> {
    Init::Normal {
        mean: 0.0,
        std: 1.0,
    }
    .tensor(&[n, dim], rng)
    .into_dimensionality()
    .expect("2-D by construction")
}

/// The generator's input: `z` alone, or `[z; onehot(label)]` when `classes > 0`.
///
/// # Panics
/// If `labels` does not have one entry per row of `z` (when `classes > 0`),
/// or a label is not below `classes`.
pub fn generator_input(z: &Array2<f32>, labels: &[usize], classes: usize) -> ArrayD<f32> {
    if classes == 0 {
        return z.clone().into_dyn();
    }
    let (n, d) = z.dim();
    assert_eq!(
        labels.len(),
        n,
        "generator_input: {n} latents, {} labels",
        labels.len()
    );
    let mut out = Array2::zeros((n, d + classes));
    out.slice_mut(s![.., ..d]).assign(z);
    for (i, &l) in labels.iter().enumerate() {
        assert!(
            l < classes,
            "generator_input: label {l} of {classes} classes"
        );
        out[[i, d + l]] = 1.0;
    }
    out.into_dyn()
}

/// The discriminator's input: the images alone, or the images followed by
/// `classes` constant planes, plane `label` at 1 and the others at 0.
///
/// # Panics
/// If `images` is not `(N, 1, H, W)`, `labels` has not `N` entries (when
/// `classes > 0`), or a label is not below `classes`.
pub fn discriminator_input(images: ArrayD<f32>, labels: &[usize], classes: usize) -> ArrayD<f32> {
    if classes == 0 {
        return images;
    }
    let images = images
        .into_dimensionality::<Ix4>()
        .expect("discriminator_input: images are (N, 1, H, W)");
    let (n, c, h, w) = images.dim();
    assert_eq!(
        c, 1,
        "discriminator_input: images have {c} channels, expected 1"
    );
    assert_eq!(
        labels.len(),
        n,
        "discriminator_input: {n} images, {} labels",
        labels.len()
    );
    let mut out = Array4::zeros((n, 1 + classes, h, w));
    out.slice_mut(s![.., 0..1, .., ..]).assign(&images);
    for (i, &l) in labels.iter().enumerate() {
        assert!(
            l < classes,
            "discriminator_input: label {l} of {classes} classes"
        );
        out.slice_mut(s![i, 1 + l, .., ..]).fill(1.0);
    }
    out.into_dyn()
}

/// The image channel of a discriminator-input gradient (drops the label planes).
pub fn image_gradient(dx: ArrayD<f32>, classes: usize) -> ArrayD<f32> {
    if classes == 0 {
        return dx;
    }
    dx.slice_axis(Axis(1), (0..1).into()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GanConfig;
    use std::path::Path;
    use tegaki_nn::Mode;
    use tegaki_nn::gradcheck::{Tolerance, find_mismatches, random_input};
    use tegaki_tensor::rng;

    fn config(conditional: bool) -> GanConfig {
        let text = format!(
            "epochs = 1\nconditional = {conditional}\nlatent_dim = 8\n[data]\ndataset = \"mnist\"\n\
             [generator]\nchannels = [4, 3]\n[discriminator]\nchannels = [3, 4]\n"
        );
        GanConfig::from_toml_str(&text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn shapes_and_ranges() {
        for conditional in [false, true] {
            let cfg = config(conditional);
            let k = cfg.condition_classes();
            let mut r = rng::seeded(0);
            let mut g = build_generator(&cfg, &mut r);
            let mut d = build_discriminator(&cfg, &mut r);
            let labels = [3, 7, 0];
            let z = latent(3, 8, &mut r);
            let x = g.forward(generator_input(&z, &labels, k), Mode::Train);
            assert_eq!(x.shape(), &[3, 1, 28, 28]);
            assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
            let logits = d.forward(discriminator_input(x, &labels, k), Mode::Train);
            assert_eq!(logits.shape(), &[3, 1]);
            assert_eq!(
                g.output_shape(&[5, 8 + k]).unwrap(),
                vec![5, 1, 28, 28],
                "{g:?}"
            );
            assert_eq!(d.output_shape(&[5, 1 + k, 28, 28]).unwrap(), vec![5, 1]);
        }
    }

    #[test]
    fn initial_weights_follow_the_paper() {
        let mut cfg = config(false);
        cfg.generator.channels = [64, 32];
        let mut g = build_generator(&cfg, &mut rng::seeded(1));
        let mut seen = Vec::new();
        g.visit_params(&mut |name, p| {
            let n = p.len() as f64;
            let mean = p.value.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = p
                .value
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            seen.push((name.to_string(), mean, var.sqrt()));
        });
        let find = |n: &str| seen.iter().find(|s| s.0 == n).unwrap().clone();
        let (_, m, sd) = find("0.weight");
        assert!(m.abs() < 2e-3 && (sd - 0.02).abs() < 1e-3, "{m} {sd}");
        let (_, m, sd) = find("2.weight");
        assert!(
            (m - 1.0).abs() < 0.01 && sd > 0.005 && sd < 0.04,
            "{m} {sd}"
        );
        let (_, m, _) = find("7.bias");
        assert_eq!(m, 0.0);
    }

    #[test]
    fn conditioning_inputs() {
        let z = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
        let gi = generator_input(&z, &[2, 0], 4);
        assert_eq!(gi.shape(), &[2, 7]);
        assert_eq!(
            gi.as_slice().unwrap(),
            &[0., 1., 2., 0., 0., 1., 0., 3., 4., 5., 1., 0., 0., 0.]
        );
        assert_eq!(generator_input(&z, &[], 0), z.clone().into_dyn());

        let img = random_input(&[2, 1, 3, 3], 0);
        let di = discriminator_input(img.clone(), &[1, 2], 3);
        assert_eq!(di.shape(), &[2, 4, 3, 3]);
        assert_eq!(di.slice(s![.., 0..1, .., ..]).into_dyn(), img.view());
        assert!(di.slice(s![0, 2, .., ..]).iter().all(|&v| v == 1.0));
        assert!(di.slice(s![0, 3, .., ..]).iter().all(|&v| v == 0.0));
        assert!(di.slice(s![1, 3, .., ..]).iter().all(|&v| v == 1.0));
        assert_eq!(image_gradient(di, 3), img);
    }

    #[test]
    fn discriminator_gradients() {
        // The whole stack of strided convolutions, LeakyReLU, Flatten and
        // Linear on a conditional input. A parameter nudge moves hundreds of
        // pre-activations at once and some cross LeakyReLU's kink (the count
        // falls with the step, as it should for kinks), so a mild slope, a
        // small step and a small share of mismatches are allowed; a wiring bug
        // breaks most entries.
        let mut cfg = config(true);
        cfg.discriminator.negative_slope = 0.9;
        let mut d = build_discriminator(&cfg, &mut rng::seeded(2));
        d.visit_params(&mut |_, p| p.value.mapv_inplace(|v| v * 20.0));
        let x = random_input(&[2, 11, 28, 28], 3);
        let tol = Tolerance {
            max_entries: 40,
            step: 3e-3,
            ..Tolerance::default()
        };
        let checked = 40 + 40 + 3 + 40 + 4 + 40 + 1;
        let bad = find_mismatches(&mut d, &x, Mode::Train, tol, 7);
        assert!(
            bad.len() * 20 <= checked,
            "{} of {checked}: {bad:#?}",
            bad.len()
        );
    }
}
