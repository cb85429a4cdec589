//! The inverse of `Flatten`: the generator's `(N, C·H·W) -> (N, C, H, W)`.

use ndarray::{ArrayD, IxDyn};
use tegaki_nn::{Layer, Mode};

/// Reshapes `(N, D)` to `(N, d1, d2, ...)` in row-major order (so it undoes
/// [`tegaki_nn::Flatten`]); backward reshapes the gradient back to `(N, D)`.
/// A standard-layout input is reshaped without copying.
///
/// # Shapes
/// * input `(N, d1·d2·...)`, output `(N, d1, d2, ...)`
#[derive(Debug)]
pub struct Unflatten {
    shape: Vec<usize>,
    batch: Option<usize>,
}

impl Unflatten {
    /// Unflattens every sample to `shape` (without the batch axis).
    ///
    /// # Panics
    /// If `shape` is empty or has a zero.
    pub fn new(shape: &[usize]) -> Self {
        assert!(
            !shape.is_empty() && !shape.contains(&0),
            "Unflatten: the sample shape {shape:?} must be non-empty with positive sides"
        );
        Self {
            shape: shape.to_vec(),
            batch: None,
        }
    }

    fn features(&self) -> usize {
        self.shape.iter().product()
    }
}

fn reshape(a: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    a.into_shape_with_order(IxDyn(shape))
        .expect("element counts were checked by the caller")
}

impl Layer for Unflatten {
    fn describe(&self) -> String {
        format!("Unflatten({:?})", self.shape)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        match input {
            [n, d] if *d == self.features() => Ok(std::iter::once(*n)
                .chain(self.shape.iter().copied())
                .collect()),
            _ => Err(format!(
                "{} expects (N, {}), got {input:?}",
                self.describe(),
                self.features()
            )),
        }
    }

    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let out = self
            .output_shape(x.shape())
            .unwrap_or_else(|e| panic!("{e}"));
        self.batch = Some(out[0]);
        reshape(x, &out)
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let n = self.batch.take().unwrap_or_else(|| {
            panic!(
                "{}: backward called before forward (or twice for one forward)",
                self.describe()
            )
        });
        let expected: Vec<usize> = std::iter::once(n)
            .chain(self.shape.iter().copied())
            .collect();
        assert_eq!(
            dy.shape(),
            expected.as_slice(),
            "{}: dy has shape {:?}, the forward output had {expected:?}",
            self.describe(),
            dy.shape()
        );
        reshape(dy, &[n, self.features()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tegaki_nn::Flatten;
    use tegaki_nn::gradcheck::{check_layer, random_input};

    #[test]
    fn undoes_flatten() {
        let x = random_input(&[3, 4, 2, 5], 0);
        let flat = Flatten::new().forward(x.clone(), Mode::Train);
        let mut u = Unflatten::new(&[4, 2, 5]);
        let y = u.forward(flat.clone(), Mode::Train);
        assert_eq!(y, x);
        assert_eq!(y[[2, 3, 1, 4]], flat[[2, 3 * 10 + 5 + 4]]);
        assert_eq!(u.backward(y), flat);
    }

    #[test]
    fn gradients() {
        for (n, shape) in [(1, &[2, 3, 3][..]), (4, &[6][..]), (2, &[3, 2, 2])] {
            let d: usize = shape.iter().product();
            check_layer(&mut Unflatten::new(shape), &random_input(&[n, d], n as u64));
        }
    }

    #[test]
    fn shape_errors() {
        let u = Unflatten::new(&[2, 7, 7]);
        assert_eq!(u.output_shape(&[5, 98]).unwrap(), vec![5, 2, 7, 7]);
        let err = u.output_shape(&[5, 97]).unwrap_err();
        assert!(
            err.contains("Unflatten([2, 7, 7]) expects (N, 98)"),
            "{err}"
        );
        assert!(u.output_shape(&[5, 2, 49]).is_err());
    }

    #[test]
    #[should_panic(expected = "backward called before forward")]
    fn backward_before_forward_panics() {
        Unflatten::new(&[2]).backward(ArrayD::zeros(vec![1, 2]));
    }
}
