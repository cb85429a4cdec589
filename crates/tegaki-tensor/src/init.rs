//! Weight initialisers, drawn from an explicit [`SeededRng`].
//!
//! Fans follow PyTorch: for a weight of shape `[out, in, k...]`,
//! `fan_in = in * prod(k)` and `fan_out = out * prod(k)`.

use ndarray::{ArrayD, IxDyn};
use rand::RngExt;
use rand_distr::{Distribution, Normal, Uniform};

use crate::SeededRng;

/// How to fill a freshly created weight tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (biases).
    Zeros,
    /// Every entry the given constant (BatchNorm's gamma = 1).
    Constant(f32),
    /// The course's N(0, 1/fan_in), i.e. standard deviation `1/sqrt(fan_in)`.
    CourseNormal,
    /// Glorot & Bengio 2010: U(-a, a) with `a = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// Glorot & Bengio 2010: N(0, 2 / (fan_in + fan_out)).
    XavierNormal,
    /// He et al. 2015 for ReLU: N(0, 2 / fan_in).
    HeNormal,
    /// He et al. 2015 for ReLU: U(-a, a) with `a = sqrt(6 / fan_in)`.
    HeUniform,
    /// PyTorch's default for Linear and Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    TorchDefault,
    /// N(mean, std^2) with the given parameters (DCGAN uses N(0, 0.02^2)).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
}

/// `(fan_in, fan_out)` of a weight shape `[out, in, k...]` (1-D shapes use
/// their length for both).
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, inp, rest @ ..] => {
            let receptive: usize = rest.iter().product();
            (inp * receptive, out * receptive)
        }
    }
}

impl Init {
    /// A new tensor of `shape` filled by this scheme, with fans taken from the
    /// shape (see [`fans`]).
    pub fn tensor(&self, shape: &[usize], rng: &mut SeededRng) -> ArrayD<f32> {
        let (fan_in, fan_out) = fans(shape);
        self.tensor_with_fans(shape, fan_in, fan_out, rng)
    }

    /// A new tensor of `shape` filled by this scheme with explicit fans.
    pub fn tensor_with_fans(
        &self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut SeededRng,
    ) -> ArrayD<f32> {
        let fan_in = fan_in.max(1) as f32;
        let fan_out = fan_out.max(1) as f32;
        let normal = |std: f32, rng: &mut SeededRng| {
            let d = Normal::new(0.0f32, std).expect("finite std");
            ArrayD::from_shape_simple_fn(IxDyn(shape), || d.sample(rng))
        };
        let uniform = |a: f32, rng: &mut SeededRng| {
            let d = Uniform::new_inclusive(-a, a).expect("finite bound");
            ArrayD::from_shape_simple_fn(IxDyn(shape), || d.sample(rng))
        };
        match *self {
            Init::Zeros => ArrayD::zeros(IxDyn(shape)),
            Init::Constant(c) => ArrayD::from_elem(IxDyn(shape), c),
            Init::CourseNormal => normal(1.0 / fan_in.sqrt(), rng),
            Init::XavierUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::XavierNormal => normal((2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::HeNormal => normal((2.0 / fan_in).sqrt(), rng),
            Init::HeUniform => uniform((6.0 / fan_in).sqrt(), rng),
            Init::TorchDefault => uniform(1.0 / fan_in.sqrt(), rng),
            Init::Normal { mean, std } => {
                let d = Normal::new(mean, std).expect("finite std");
                ArrayD::from_shape_simple_fn(IxDyn(shape), || d.sample(rng))
            }
        }
    }
}

/// A uniform draw in `[0, 1)`, re-exported for layers that need raw draws.
pub fn uniform01(rng: &mut SeededRng) -> f32 {
    rng.random::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    fn std_of(a: &ArrayD<f32>) -> f32 {
        let m = a.mean().unwrap();
        (a.mapv(|v| (v - m) * (v - m)).mean().unwrap()).sqrt()
    }

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[100, 784]), (784, 100));
        assert_eq!(fans(&[64, 32, 3, 3]), (288, 576));
    }

    #[test]
    fn scales_match_their_formulas() {
        let mut r = rng::seeded(1);
        let shape = [400, 300];
        let course = Init::CourseNormal.tensor(&shape, &mut r);
        assert!((std_of(&course) - 1.0 / 300f32.sqrt()).abs() < 0.002);
        let he = Init::HeNormal.tensor(&shape, &mut r);
        assert!((std_of(&he) - (2.0 / 300f32).sqrt()).abs() < 0.003);
        let xu = Init::XavierUniform.tensor(&shape, &mut r);
        let a = (6.0f32 / 700.0).sqrt();
        assert!(xu.iter().all(|v| v.abs() <= a));
        assert!((std_of(&xu) - a / 3f32.sqrt()).abs() < 0.002);
        let td = Init::TorchDefault.tensor(&shape, &mut r);
        assert!(td.iter().all(|v| v.abs() <= 1.0 / 300f32.sqrt()));
    }

    #[test]
    fn same_seed_same_tensor() {
        let a = Init::HeNormal.tensor(&[3, 4], &mut rng::seeded(5));
        let b = Init::HeNormal.tensor(&[3, 4], &mut rng::seeded(5));
        let c = Init::HeNormal.tensor(&[3, 4], &mut rng::seeded(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
