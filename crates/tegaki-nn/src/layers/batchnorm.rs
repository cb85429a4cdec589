//! Batch normalisation (Ioffe & Szegedy 2015) over dense and image batches.
//!
//! Both layers share one implementation that sees its input as
//! `(N, C, inner)`: statistics are taken per channel `c` over `N` and `inner`.
//! A dense batch `(N, D)` is `inner = 1`; an NCHW batch is `inner = H*W`, so a
//! channel's values are `N` contiguous planes and no transpose is needed.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use tegaki_tensor::Param;

use crate::layer::no_forward;
use crate::layers::storage::standard;
use crate::{Layer, Mode};

/// Momentum and epsilon of a batch-normalisation layer, with PyTorch's
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Weight of the current batch in the running statistics:
    /// `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// What `backward` needs from the last forward pass.
struct Cache {
    /// Shape of the last input (and output).
    shape: Vec<usize>,
    /// `1 / sqrt(var + eps)` per channel (batch or running variance).
    inv_std: Vec<f32>,
    mode: Mode,
}

/// The math shared by [`BatchNorm1d`] and [`BatchNorm2d`].
struct Norm {
    channels: usize,
    config: BatchNormConfig,
    weight: Param,
    bias: Param,
    running_mean: ArrayD<f32>,
    running_var: ArrayD<f32>,
    /// The normalised input `(x - mean) / sqrt(var + eps)` of the last forward
    /// pass, flat; its storage is reused from step to step.
    xhat: Vec<f32>,
    cache: Option<Cache>,
}

/// Per-channel sums over `N` and `inner` of `f(value)`, accumulated in f64
/// in a fixed order.
fn channel_sums(
    data: &[f32],
    channels: usize,
    inner: usize,
    f: impl Fn(usize, f32) -> f32,
) -> Vec<f64> {
    let mut sums = vec![0.0f64; channels];
    if inner == 1 {
        // Dense (N, D): walk whole rows, one running sum per feature.
        for row in data.chunks_exact(channels) {
            for (c, (s, &v)) in sums.iter_mut().zip(row).enumerate() {
                *s += f64::from(f(c, v));
            }
        }
        return sums;
    }
    for sample in data.chunks_exact(channels * inner) {
        for (c, (plane, s)) in sample.chunks_exact(inner).zip(&mut sums).enumerate() {
            // Eight lanes of partial sums let the compiler vectorise a plane.
            let mut lanes = [0.0f32; 8];
            let chunks = plane.chunks_exact(8);
            let tail: f32 = chunks.remainder().iter().map(|&v| f(c, v)).sum();
            for chunk in chunks {
                for (l, &v) in lanes.iter_mut().zip(chunk) {
                    *l += f(c, v);
                }
            }
            *s += f64::from(lanes.iter().sum::<f32>() + tail);
        }
    }
    sums
}

/// Applies `f(channel, value)` to every value, samples in parallel.
fn map_channels(
    data: &mut [f32],
    channels: usize,
    inner: usize,
    f: impl Fn(usize, f32) -> f32 + Sync,
) {
    data.par_chunks_mut(channels * inner).for_each(|sample| {
        for (c, plane) in sample.chunks_exact_mut(inner).enumerate() {
            for v in plane {
                *v = f(c, *v);
            }
        }
    });
}

impl Norm {
    fn new(channels: usize, config: BatchNormConfig) -> Self {
        assert!(channels > 0, "BatchNorm: needs at least one channel");
        let ones = || ArrayD::ones(IxDyn(&[channels]));
        let zeros = || ArrayD::zeros(IxDyn(&[channels]));
        Self {
            channels,
            config,
            weight: Param::new(ones()),
            bias: Param::new(zeros()),
            running_mean: zeros(),
            running_var: ones(),
            xhat: Vec::new(),
            cache: None,
        }
    }

    fn set_momentum(&mut self, momentum: f32) {
        assert!(
            (0.0..=1.0).contains(&momentum),
            "BatchNorm: momentum must lie in [0, 1], got {momentum}"
        );
        self.config.momentum = momentum;
    }

    fn set_eps(&mut self, eps: f32) {
        assert!(eps > 0.0, "BatchNorm: eps must be positive, got {eps}");
        self.config.eps = eps;
    }

    /// `x` is `(N, channels, inner)` in standard layout (any rank).
    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode, inner: usize, name: &str) -> ArrayD<f32> {
        let c = self.channels;
        let count = x.len() / c;
        let eps = self.config.eps;
        let (mean, inv_std): (Vec<f32>, Vec<f32>) = match mode {
            Mode::Train => {
                assert!(
                    count > 1,
                    "{name}: Train mode needs more than one value per channel, got input {:?}",
                    x.shape()
                );
                let data = x.as_slice().expect("standard layout");
                let n = count as f64;
                let mean: Vec<f64> = channel_sums(data, c, inner, |_, v| v)
                    .into_iter()
                    .map(|s| s / n)
                    .collect();
                let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
                // Two passes (mean, then squared deviations) stay accurate when
                // the mean is large compared with the spread.
                let var: Vec<f64> = channel_sums(data, c, inner, |ch, v| {
                    let d = v - mean32[ch];
                    d * d
                })
                .into_iter()
                .map(|s| s / n)
                .collect();
                let m = f64::from(self.config.momentum);
                let rm = self.running_mean.as_slice_mut().expect("1-D buffer");
                let rv = self.running_var.as_slice_mut().expect("1-D buffer");
                for ch in 0..c {
                    rm[ch] = ((1.0 - m) * f64::from(rm[ch]) + m * mean[ch]) as f32;
                    // PyTorch tracks the unbiased variance but normalises with the biased one.
                    let unbiased = var[ch] * n / (n - 1.0);
                    rv[ch] = ((1.0 - m) * f64::from(rv[ch]) + m * unbiased) as f32;
                }
                let inv_std = var
                    .iter()
                    .map(|&v| (1.0 / (v + f64::from(eps)).sqrt()) as f32)
                    .collect();
                (mean32, inv_std)
            }
            Mode::Eval => {
                let mean = self.running_mean.as_slice().expect("1-D buffer").to_vec();
                let inv_std = self
                    .running_var
                    .iter()
                    .map(|&v| 1.0 / (v + eps).sqrt())
                    .collect();
                (mean, inv_std)
            }
        };
        // xhat goes to the layer's own buffer, y overwrites x: no fresh
        // allocation per step.
        let gamma = self.weight.value.as_slice().expect("1-D param");
        let beta = self.bias.value.as_slice().expect("1-D param");
        self.xhat.resize(x.len(), 0.0);
        x.as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(c * inner)
            .zip(self.xhat.par_chunks_mut(c * inner))
            .for_each(|(x_s, xh_s)| {
                if inner == 1 {
                    let per_feature = mean.iter().zip(&inv_std).zip(gamma.iter().zip(beta));
                    for ((v, h), ((m, k), (g, b))) in x_s.iter_mut().zip(xh_s).zip(per_feature) {
                        *h = (*v - m) * k;
                        *v = g * *h + b;
                    }
                    return;
                }
                for (ch, (xp, hp)) in x_s
                    .chunks_exact_mut(inner)
                    .zip(xh_s.chunks_exact_mut(inner))
                    .enumerate()
                {
                    let (m, k, g, b) = (mean[ch], inv_std[ch], gamma[ch], beta[ch]);
                    for (v, h) in xp.iter_mut().zip(hp) {
                        *h = (*v - m) * k;
                        *v = g * *h + b;
                    }
                }
            });
        self.cache = Some(Cache {
            shape: x.shape().to_vec(),
            inv_std,
            mode,
        });
        x
    }

    /// Assigns dgamma and dbeta; returns dx (computed in `dy`'s storage).
    fn backward(&mut self, dy: ArrayD<f32>, inner: usize, name: &str) -> ArrayD<f32> {
        let Cache {
            shape,
            inv_std,
            mode,
        } = self
            .cache
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward(name)));
        assert_eq!(dy.shape(), shape, "{name}: dy shape vs last output");
        let mut dy = if dy.is_standard_layout() {
            dy
        } else {
            dy.as_standard_layout().into_owned()
        };
        let c = self.channels;
        let count = (self.xhat.len() / c) as f64;
        let xh = &self.xhat[..];
        let g = dy.as_slice_mut().expect("standard layout");
        let dbeta = channel_sums(g, c, inner, |_, v| v);
        // Σ dy * xhat, pairing each dy with its xhat through the flat index.
        let mut dgamma = vec![0.0f64; c];
        for (g_s, x_s) in g.chunks_exact(c * inner).zip(xh.chunks_exact(c * inner)) {
            if inner == 1 {
                for ((d, gv), xv) in dgamma.iter_mut().zip(g_s).zip(x_s) {
                    *d += f64::from(gv * xv);
                }
                continue;
            }
            for (ch, (gp, xp)) in g_s
                .chunks_exact(inner)
                .zip(x_s.chunks_exact(inner))
                .enumerate()
            {
                dgamma[ch] += f64::from(gp.iter().zip(xp).map(|(a, b)| a * b).sum::<f32>());
            }
        }
        for (dst, src) in self.weight.grad.iter_mut().zip(&dgamma) {
            *dst = *src as f32;
        }
        for (dst, src) in self.bias.grad.iter_mut().zip(&dbeta) {
            *dst = *src as f32;
        }
        let gamma = self.weight.value.as_slice().expect("1-D param");
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * inv_std[ch]).collect();
        match mode {
            // Running statistics are constants: the layer is affine in x.
            Mode::Eval => map_channels(g, c, inner, |ch, v| v * scale[ch]),
            Mode::Train => {
                // dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)),
                // means over the channel's N * inner values.
                let mean_dy: Vec<f32> = dbeta.iter().map(|&s| (s / count) as f32).collect();
                let mean_dyx: Vec<f32> = dgamma.iter().map(|&s| (s / count) as f32).collect();
                g.par_chunks_mut(c * inner)
                    .zip(xh.par_chunks(c * inner))
                    .for_each(|(g_s, x_s)| {
                        if inner == 1 {
                            let per_feature = scale.iter().zip(&mean_dy).zip(&mean_dyx);
                            for ((d, &xv), ((k, md), mx)) in
                                g_s.iter_mut().zip(x_s).zip(per_feature)
                            {
                                *d = k * (*d - md - xv * mx);
                            }
                            return;
                        }
                        for (ch, (gp, xp)) in g_s
                            .chunks_exact_mut(inner)
                            .zip(x_s.chunks_exact(inner))
                            .enumerate()
                        {
                            let (k, md, mx) = (scale[ch], mean_dy[ch], mean_dyx[ch]);
                            for (d, &xv) in gp.iter_mut().zip(xp) {
                                *d = k * (*d - md - xv * mx);
                            }
                        }
                    });
            }
        }
        dy
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.weight);
        f("bias", &mut self.bias);
    }

    fn visit_buffers(&mut self, f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {
        f("running_mean", &mut self.running_mean);
        f("running_var", &mut self.running_var);
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name}({}, eps={:e}, momentum={})",
            self.channels, self.config.eps, self.config.momentum
        )
    }
}

macro_rules! batchnorm_layer {
    ($(#[$doc:meta])* $name:ident, $label:literal, $rank:literal, $expects:literal) => {
        $(#[$doc])*
        pub struct $name(Norm);

        impl $name {
            #[doc = concat!("A ", $label, " over `features` channels with PyTorch's defaults ",
                "(momentum 0.1, eps 1e-5); `weight` (gamma) starts at 1, `bias` (beta) ",
                "at 0, `running_mean` at 0 and `running_var` at 1.")]
            ///
            /// # Panics
            /// If `features` is 0.
            pub fn new(features: usize) -> Self {
                Self::with_config(features, BatchNormConfig::default())
            }

            #[doc = concat!("A ", $label, " with an explicit configuration.")]
            ///
            /// # Panics
            /// If `features` is 0, the momentum lies outside `[0, 1]` or eps is not positive.
            pub fn with_config(features: usize, config: BatchNormConfig) -> Self {
                let mut norm = Norm::new(features, config);
                norm.set_momentum(config.momentum);
                norm.set_eps(config.eps);
                Self(norm)
            }

            /// Sets the running-statistics momentum.
            ///
            /// # Panics
            /// If `momentum` lies outside `[0, 1]`.
            pub fn momentum(mut self, momentum: f32) -> Self {
                self.0.set_momentum(momentum);
                self
            }

            /// Sets the epsilon added to the variance.
            ///
            /// # Panics
            /// If `eps` is not positive.
            pub fn eps(mut self, eps: f32) -> Self {
                self.0.set_eps(eps);
                self
            }

            /// The layer's momentum and epsilon.
            pub fn config(&self) -> BatchNormConfig {
                self.0.config
            }

            fn check_input(&self, shape: &[usize]) -> Result<usize, String> {
                if shape.len() != $rank || shape[1] != self.0.channels {
                    return Err(format!(
                        concat!("{} expects ", $expects, ", got {:?}"),
                        self.describe(),
                        self.0.channels,
                        shape
                    ));
                }
                Ok(shape[2..].iter().product())
            }
        }

        impl Layer for $name {
            fn describe(&self) -> String {
                self.0.describe(stringify!($name))
            }

            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
                self.check_input(input)?;
                Ok(input.to_vec())
            }

            fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
                let inner = self.check_input(x.shape()).unwrap_or_else(|e| panic!("{e}"));
                self.0.forward(standard(x), mode, inner, stringify!($name))
            }

            fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
                let inner = self.check_input(dy.shape()).unwrap_or_else(|e| panic!("{e}"));
                self.0.backward(dy, inner, stringify!($name))
            }

            fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
                self.0.visit_params(f);
            }

            fn visit_buffers(&mut self, f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {
                self.0.visit_buffers(f);
            }
        }
    };
}

batchnorm_layer!(
    /// Batch normalisation of a dense batch `(N, D)`, per feature over `N`.
    ///
    /// `Train`: normalises with the batch mean and biased variance, then
    /// updates the running mean and the running *unbiased* variance with
    /// `momentum` (PyTorch's semantics). `Eval`: normalises with the running
    /// statistics. Output `gamma * xhat + beta`, shape as the input.
    ///
    /// Parameters `weight` (gamma) and `bias` (beta), buffers `running_mean`
    /// and `running_var`, all `(D,)`.
    BatchNorm1d,
    "BatchNorm1d",
    2,
    "(N, {})"
);

batchnorm_layer!(
    /// Batch normalisation of an NCHW batch, per channel over `N`, `H` and `W`.
    ///
    /// Same semantics as [`BatchNorm1d`] with `N*H*W` values per channel.
    /// Parameters `weight` (gamma) and `bias` (beta), buffers `running_mean`
    /// and `running_var`, all `(C,)`.
    BatchNorm2d,
    "BatchNorm2d",
    4,
    "(N, {}, H, W)"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{Tolerance, check_layer_with, random_input};
    use ndarray::{Array1, Axis};

    /// Per-channel (mean, biased variance) of an NCHW or (N, D) array, in f64.
    fn stats(x: &ArrayD<f32>) -> (Vec<f64>, Vec<f64>) {
        let c = x.shape()[1];
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for ch in 0..c {
            let v: Vec<f64> = x
                .index_axis(Axis(1), ch)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            mean[ch] = m;
            var[ch] = v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64;
        }
        (mean, var)
    }

    fn shift(x: ArrayD<f32>, offset: f32, scale: f32) -> ArrayD<f32> {
        x.mapv(|v| v * scale + offset)
    }

    fn set(layer: &mut dyn Layer, name: &str, values: &[f32]) {
        let mut hit = false;
        layer.visit_params(&mut |n, p| {
            if n == name {
                p.value.assign(&Array1::from(values.to_vec()).into_dyn());
                hit = true;
            }
        });
        layer.visit_buffers(&mut |n, b| {
            if n == name {
                b.assign(&Array1::from(values.to_vec()).into_dyn());
                hit = true;
            }
        });
        assert!(hit, "no tensor {name}");
    }

    fn get(layer: &mut dyn Layer, name: &str) -> Vec<f32> {
        let mut out = Vec::new();
        layer.visit_buffers(&mut |n, b| {
            if n == name {
                out = b.iter().copied().collect();
            }
        });
        out
    }

    #[test]
    fn train_step_normalises_and_updates_running_stats() {
        for (mut layer, shape) in [
            (
                Box::new(BatchNorm1d::new(3).momentum(0.3)) as Box<dyn Layer>,
                vec![5, 3],
            ),
            (
                Box::new(BatchNorm2d::new(2).momentum(0.3)),
                vec![3, 2, 4, 5],
            ),
        ] {
            let x = shift(random_input(&shape, 1), 2.0, 3.0);
            let c = shape[1];
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32).collect();
            let beta: Vec<f32> = (0..c).map(|i| -1.0 + 0.25 * i as f32).collect();
            set(layer.as_mut(), "weight", &gamma);
            set(layer.as_mut(), "bias", &beta);
            set(layer.as_mut(), "running_mean", &vec![0.5; c]);
            set(layer.as_mut(), "running_var", &vec![2.0; c]);
            let y = layer.forward(x.clone(), Mode::Train);
            let (mean, var) = stats(&x);
            let count = (x.len() / c) as f64;
            for ((idx, &xv), &yv) in x.indexed_iter().zip(y.iter()) {
                let ch = idx[1];
                let expect = f64::from(gamma[ch]) * (f64::from(xv) - mean[ch])
                    / (var[ch] + 1e-5).sqrt()
                    + f64::from(beta[ch]);
                assert!((f64::from(yv) - expect).abs() < 1e-4, "{yv} vs {expect}");
            }
            let rm = get(layer.as_mut(), "running_mean");
            let rv = get(layer.as_mut(), "running_var");
            for ch in 0..c {
                let em = 0.7 * 0.5 + 0.3 * mean[ch];
                let ev = 0.7 * 2.0 + 0.3 * var[ch] * count / (count - 1.0);
                assert!(
                    (f64::from(rm[ch]) - em).abs() < 1e-5,
                    "mean {} vs {em}",
                    rm[ch]
                );
                assert!(
                    (f64::from(rv[ch]) - ev).abs() < 1e-4,
                    "var {} vs {ev}",
                    rv[ch]
                );
            }
        }
    }

    #[test]
    fn eval_uses_running_statistics() {
        for (mut layer, shape) in [
            (
                Box::new(BatchNorm1d::new(3).eps(1e-3)) as Box<dyn Layer>,
                vec![4, 3],
            ),
            (Box::new(BatchNorm2d::new(3).eps(1e-3)), vec![2, 3, 3, 2]),
        ] {
            let (rm, rv) = ([0.3, -1.0, 2.0], [0.5, 4.0, 1.5]);
            let (gamma, beta) = ([1.5, -0.5, 2.0], [0.1, 0.2, -0.3]);
            set(layer.as_mut(), "running_mean", &rm);
            set(layer.as_mut(), "running_var", &rv);
            set(layer.as_mut(), "weight", &gamma);
            set(layer.as_mut(), "bias", &beta);
            let x = random_input(&shape, 2);
            let y = layer.forward(x.clone(), Mode::Eval);
            for ((idx, &xv), &yv) in x.indexed_iter().zip(y.iter()) {
                let ch = idx[1];
                let expect = gamma[ch] * (xv - rm[ch]) / (rv[ch] + 1e-3).sqrt() + beta[ch];
                assert!((yv - expect).abs() < 1e-5, "{yv} vs {expect}");
            }
            // Eval leaves the running statistics alone.
            assert_eq!(get(layer.as_mut(), "running_mean"), rm);
            assert_eq!(get(layer.as_mut(), "running_var"), rv);
        }
    }

    fn gradcheck(layer: &mut dyn Layer, shape: &[usize], mode: Mode, seed: u64) {
        let c = shape[1];
        let gamma: Vec<f32> = (0..c).map(|i| 0.8 + 0.3 * i as f32).collect();
        let beta: Vec<f32> = (0..c).map(|i| 0.1 * i as f32).collect();
        set(layer, "weight", &gamma);
        set(layer, "bias", &beta);
        set(layer, "running_var", &vec![1.7; c]);
        let x = shift(random_input(shape, seed), 0.5, 1.5);
        check_layer_with(layer, &x, mode, Tolerance::default());
    }

    #[test]
    fn gradients_1d() {
        for (i, shape) in [[2, 3], [5, 4], [16, 1]].iter().enumerate() {
            for mode in [Mode::Train, Mode::Eval] {
                gradcheck(&mut BatchNorm1d::new(shape[1]), shape, mode, i as u64);
            }
        }
    }

    #[test]
    fn gradients_2d() {
        for (i, shape) in [[2, 3, 2, 2], [1, 2, 3, 4], [4, 3, 3, 1]]
            .iter()
            .enumerate()
        {
            for mode in [Mode::Train, Mode::Eval] {
                gradcheck(&mut BatchNorm2d::new(shape[1]), shape, mode, 10 + i as u64);
            }
        }
    }

    #[test]
    fn batchnorm2d_equals_batchnorm1d_on_the_channel_view() {
        // Moving the channel axis last and flattening gives (N*H*W, C): the
        // same statistics, so the same normalisation and gradients.
        let x = shift(random_input(&[3, 2, 2, 3], 5), 1.0, 2.0);
        let dy = random_input(&[3, 2, 2, 3], 6);
        let to_rows = |a: &ArrayD<f32>| {
            a.view()
                .permuted_axes(vec![0, 2, 3, 1])
                .as_standard_layout()
                .into_shape_with_order(vec![18, 2])
                .unwrap()
                .to_owned()
        };
        let mut bn2 = BatchNorm2d::new(2);
        let mut bn1 = BatchNorm1d::new(2);
        let y2 = bn2.forward(x.clone(), Mode::Train);
        let y1 = bn1.forward(to_rows(&x), Mode::Train);
        let dx2 = bn2.backward(dy.clone());
        let dx1 = bn1.backward(to_rows(&dy));
        for (a, b) in to_rows(&y2).iter().zip(y1.iter()) {
            assert!((a - b).abs() < 1e-5);
        }
        for (a, b) in to_rows(&dx2).iter().zip(dx1.iter()) {
            assert!((a - b).abs() < 1e-5);
        }
        let (mut g1, mut g2) = (Vec::new(), Vec::new());
        bn1.visit_params(&mut |_, p| g1.extend(p.grad.iter().copied()));
        bn2.visit_params(&mut |_, p| g2.extend(p.grad.iter().copied()));
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert_eq!(get(&mut bn1, "running_var"), get(&mut bn2, "running_var"));
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert!(BatchNorm1d::new(3).output_shape(&[4, 2]).is_err());
        assert!(BatchNorm1d::new(3).output_shape(&[4, 3, 2, 2]).is_err());
        assert!(BatchNorm2d::new(3).output_shape(&[4, 3]).is_err());
        assert_eq!(
            BatchNorm2d::new(3).output_shape(&[4, 3, 5, 6]).unwrap(),
            vec![4, 3, 5, 6]
        );
    }

    #[test]
    #[should_panic(expected = "more than one value per channel")]
    fn train_needs_two_values_per_channel() {
        BatchNorm1d::new(2).forward(ArrayD::zeros(vec![1, 2]), Mode::Train);
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        BatchNorm2d::new(1).backward(ArrayD::zeros(vec![2, 1, 2, 2]));
    }

    #[test]
    fn config_defaults_and_builders() {
        assert_eq!(
            BatchNorm1d::new(4).config(),
            BatchNormConfig {
                momentum: 0.1,
                eps: 1e-5
            }
        );
        let bn = BatchNorm2d::new(4).momentum(0.01).eps(1e-3);
        assert_eq!(
            bn.config(),
            BatchNormConfig {
                momentum: 0.01,
                eps: 1e-3
            }
        );
        assert_eq!(bn.describe(), "BatchNorm2d(4, eps=1e-3, momentum=0.01)");
    }
}
