//! Dropout with an independent Bernoulli mask per element.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use tegaki_tensor::SeededRng;

use super::activation::{map_inplace, zip_assign};
use crate::layer::no_forward;
use crate::{Layer, Mode};

/// Mask elements per parallel chunk (and the smallest mask drawn in parallel
/// is two chunks): 16k ChaCha8 words take ~40 µs, well above a task's cost.
const MASK_CHUNK: usize = 16 * 1024;

/// Where Dropout compensates for the units it drops, so that the expected
/// activation is the same in training and in evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DropoutScaling {
    /// Kept units are scaled by `1 / (1 - p)` in `Train`; `Eval` is the
    /// identity (PyTorch, burn). The default.
    #[default]
    Inverted,
    /// No scaling in `Train`; every unit is multiplied by `1 - p` in `Eval`
    /// (the seed's form, and the original paper's).
    TestTime,
}

/// What the forward pass leaves for backward: the mask (with its scaling
/// folded in) in `Train`, a plain factor in `Eval`.
#[derive(Debug)]
enum Cache {
    Mask(ArrayD<f32>),
    Scale(f32),
}

/// Zeroes each element independently with probability `p` in `Train`.
///
/// Unlike the seed (one mask shared by the whole batch, drawn with
/// replacement), every element of every sample gets its own Bernoulli draw.
/// The layer owns its RNG, derived from the one given to the constructor and
/// exposed as `"mask"` through [`Layer::visit_rngs`], so checkpoints and
/// gradient checks can replay the exact masks.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    scaling: DropoutScaling,
    rng: SeededRng,
    cache: Option<Cache>,
    /// The last mask, after backward, whose storage the next one reuses.
    spare: Option<ArrayD<f32>>,
}

impl Dropout {
    /// Dropout with drop probability `p` and [`DropoutScaling::Inverted`].
    /// Draws the seed of its own mask RNG from `rng`.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1)`.
    pub fn new(p: f32, rng: &mut SeededRng) -> Self {
        Self::with_scaling(p, DropoutScaling::default(), rng)
    }

    /// Dropout with drop probability `p` and an explicit scaling.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1)`.
    pub fn with_scaling(p: f32, scaling: DropoutScaling, rng: &mut SeededRng) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: drop probability p must be in [0, 1), got {p}"
        );
        Self {
            p,
            scaling,
            rng: SeededRng::from_rng(rng),
            cache: None,
            spare: None,
        }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Where the layer rescales.
    pub fn scaling(&self) -> DropoutScaling {
        self.scaling
    }

    /// A fresh mask of `shape` (`kept` where the element survives, else 0),
    /// in the storage of the last one when the shape is the same. Element
    /// `i` survives when the generator's `i`-th next word is below
    /// `(1 - p) * 2^32`. Chunks of the mask are drawn in parallel, each from
    /// a copy of the generator moved to its first word (ChaCha can seek), so
    /// the mask is the one a serial draw would give, on any number of threads.
    fn draw_mask(&mut self, shape: &[usize], kept: f32) -> ArrayD<f32> {
        let mut mask = match self.spare.take() {
            Some(m) if m.shape() == shape && m.is_standard_layout() => m,
            _ => ArrayD::zeros(shape),
        };
        let threshold = ((1.0 - f64::from(self.p)) * 4_294_967_296.0) as u64;
        // The words in bulk (the same words, in the same order, as one
        // `next_u32` per element), then thresholded in place.
        let fill = |rng: &mut SeededRng, out: &mut [f32]| {
            rng.fill_bytes(bytemuck::cast_slice_mut(out));
            for v in out {
                let word = u32::from_le_bytes(v.to_ne_bytes());
                *v = if u64::from(word) < threshold {
                    kept
                } else {
                    0.0
                };
            }
        };
        let data = mask.as_slice_mut().expect("standard layout");
        if data.len() < 2 * MASK_CHUNK {
            fill(&mut self.rng, data);
            return mask;
        }
        let start = self.rng.get_word_pos();
        let base = &self.rng;
        data.par_chunks_mut(MASK_CHUNK)
            .enumerate()
            .for_each(|(k, chunk)| {
                let mut rng = base.clone();
                rng.set_word_pos(start + (k * MASK_CHUNK) as u128);
                fill(&mut rng, chunk);
            });
        self.rng.set_word_pos(start + data.len() as u128);
        mask
    }
}

impl Layer for Dropout {
    fn describe(&self) -> String {
        match self.scaling {
            DropoutScaling::Inverted => format!("Dropout(p={})", self.p),
            DropoutScaling::TestTime => format!("Dropout(p={}, test-time scaling)", self.p),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }

    fn forward(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let keep = 1.0 - self.p;
        let cache = match (mode, self.scaling) {
            (Mode::Train, _) if self.p == 0.0 => Cache::Scale(1.0),
            (Mode::Train, DropoutScaling::Inverted) => {
                Cache::Mask(self.draw_mask(x.shape(), 1.0 / keep))
            }
            (Mode::Train, DropoutScaling::TestTime) => Cache::Mask(self.draw_mask(x.shape(), 1.0)),
            (Mode::Eval, DropoutScaling::Inverted) => Cache::Scale(1.0),
            (Mode::Eval, DropoutScaling::TestTime) => Cache::Scale(keep),
        };
        match &cache {
            Cache::Mask(m) => zip_assign(&mut x, m, |v, m| v * m),
            Cache::Scale(s) if *s != 1.0 => map_inplace(&mut x, |v| v * s),
            Cache::Scale(_) => {}
        }
        self.cache = Some(cache);
        x
    }

    fn backward(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let cache = self
            .cache
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("Dropout")));
        match cache {
            Cache::Mask(m) => {
                assert_eq!(
                    dy.shape(),
                    m.shape(),
                    "Dropout: dy has shape {:?}, the forward output had {:?}",
                    dy.shape(),
                    m.shape()
                );
                zip_assign(&mut dy, &m, |g, m| g * m);
                self.spare = Some(m);
            }
            Cache::Scale(s) if s != 1.0 => map_inplace(&mut dy, |g| g * s),
            Cache::Scale(_) => {}
        }
        dy
    }

    fn visit_rngs(&mut self, f: &mut dyn FnMut(&str, &mut SeededRng)) {
        f("mask", &mut self.rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{Tolerance, check_layer, check_layer_with, random_input};
    use tegaki_tensor::{RngState, rng};

    #[test]
    fn eval_is_identity_when_inverted() {
        let x = random_input(&[3, 7], 0);
        let mut d = Dropout::new(0.5, &mut rng::seeded(1));
        assert_eq!(d.forward(x.clone(), Mode::Eval), x);
        let dy = random_input(&[3, 7], 2);
        assert_eq!(d.backward(dy.clone()), dy);
    }

    #[test]
    fn eval_scales_by_keep_probability_when_test_time() {
        let x = random_input(&[3, 7], 0);
        let mut d = Dropout::with_scaling(0.25, DropoutScaling::TestTime, &mut rng::seeded(1));
        assert_eq!(d.forward(x.clone(), Mode::Eval), x.mapv(|v| v * 0.75));
    }

    #[test]
    fn drop_rate_and_scale_in_train() {
        let n = 200_000;
        let x = ArrayD::ones(vec![100, n / 100]);
        for p in [0.2f32, 0.5, 0.8] {
            let mut d = Dropout::new(p, &mut rng::seeded(3));
            let y = d.forward(x.clone(), Mode::Train);
            let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
            // The binomial standard deviation is below 0.0012 here; allow ~5 sigma.
            assert!(
                (dropped - f64::from(p)).abs() < 0.006,
                "p={p}: dropped {dropped}"
            );
            let scale = 1.0 / (1.0 - p);
            assert!(y.iter().all(|&v| v == 0.0 || v == scale));
            // Inverted scaling keeps the expected activation.
            let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 0.03, "p={p}: mean {mean}");
        }
        let mut d = Dropout::with_scaling(0.5, DropoutScaling::TestTime, &mut rng::seeded(3));
        let y = d.forward(x, Mode::Train);
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0));
    }

    #[test]
    fn masks_are_independent_per_sample_and_per_call() {
        let x = ArrayD::ones(vec![4, 64]);
        let mut d = Dropout::new(0.5, &mut rng::seeded(5));
        let a = d.forward(x.clone(), Mode::Train);
        let b = d.forward(x, Mode::Train);
        assert_ne!(a, b);
        let rows: Vec<_> = a.outer_iter().collect();
        assert!(rows.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn mask_is_the_serial_draw_on_any_number_of_threads() {
        use rand::Rng;
        // 2.5 chunks (the parallel path) and a small mask (the serial one),
        // twice each, so the second draw starts where the first left off.
        for len in [5 * MASK_CHUNK / 2 + 3, 777] {
            let mut reference = rng::seeded(9);
            let serial: Vec<Vec<f32>> = (0..2)
                .map(|_| {
                    (0..len)
                        .map(|_| {
                            if reference.next_u32() < 3 << 30 {
                                4.0
                            } else {
                                0.0
                            }
                        })
                        .collect()
                })
                .collect();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut d = Dropout::new(0.25, &mut rng::seeded(0));
                d.rng = rng::seeded(9);
                for want in &serial {
                    let mask = pool.install(|| d.draw_mask(&[1, len], 4.0));
                    assert_eq!(mask.as_slice().unwrap(), &want[..], "{len} on {threads}");
                }
                assert_eq!(d.rng.next_u32(), reference.clone().next_u32());
            }
        }
    }

    #[test]
    fn backward_uses_the_forward_mask() {
        let x = random_input(&[5, 9], 0);
        let mut d = Dropout::new(0.4, &mut rng::seeded(2));
        let y = d.forward(x.clone(), Mode::Train);
        let dx = d.backward(ArrayD::ones(vec![5, 9]));
        for ((&xv, &yv), &g) in x.iter().zip(&y).zip(&dx) {
            assert!((yv - xv * g).abs() < 1e-6);
        }
    }

    #[test]
    fn restoring_the_rng_replays_the_mask() {
        let x = ArrayD::ones(vec![8, 8]);
        let mut d = Dropout::new(0.5, &mut rng::seeded(7));
        let mut state = None;
        d.visit_rngs(&mut |name, r| {
            assert_eq!(name, "mask");
            state = Some(RngState::capture(r));
        });
        let a = d.forward(x.clone(), Mode::Train);
        d.visit_rngs(&mut |_, r| *r = state.unwrap().restore());
        assert_eq!(d.forward(x, Mode::Train), a);
    }

    #[test]
    fn rng_is_derived_from_the_constructor_rng() {
        let x = ArrayD::ones(vec![4, 16]);
        let mut parent = rng::seeded(11);
        let mut first = Dropout::new(0.5, &mut parent);
        let mut second = Dropout::new(0.5, &mut parent);
        let mut again = Dropout::new(0.5, &mut rng::seeded(11));
        let a = first.forward(x.clone(), Mode::Train);
        assert_ne!(a, second.forward(x.clone(), Mode::Train));
        assert_eq!(a, again.forward(x, Mode::Train));
    }

    #[test]
    fn gradients() {
        for (shape, p) in [
            (&[1, 8][..], 0.5),
            (&[4, 6][..], 0.3),
            (&[2, 2, 3, 3][..], 0.5),
        ] {
            let x = random_input(shape, 1);
            check_layer(&mut Dropout::new(p, &mut rng::seeded(4)), &x);
            let mut tt = Dropout::with_scaling(p, DropoutScaling::TestTime, &mut rng::seeded(4));
            check_layer(&mut tt, &x);
            check_layer_with(&mut tt, &x, Mode::Eval, Tolerance::default());
        }
    }

    #[test]
    #[should_panic(expected = "must be in [0, 1)")]
    fn rejects_p_of_one() {
        Dropout::new(1.0, &mut rng::seeded(0));
    }

    #[test]
    #[should_panic(expected = "Dropout: backward called before forward")]
    fn backward_before_forward_panics() {
        Dropout::new(0.5, &mut rng::seeded(0)).backward(ArrayD::zeros(vec![1, 2]));
    }
}
