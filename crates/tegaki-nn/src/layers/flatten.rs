//! Flattening everything after the batch axis.

use ndarray::{ArrayD, IxDyn};

use crate::layer::no_forward;
use crate::{Layer, Mode};

/// Reshapes `(N, d1, d2, ...)` to `(N, d1·d2·...)` in row-major order, the
/// bridge from convolutional feature maps to dense layers; backward reshapes
/// the gradient back. A standard-layout input is reshaped without copying.
///
/// # Shapes
/// * input `(N, C, H, W)` (any rank ≥ 2), output `(N, C·H·W)`
#[derive(Debug, Default)]
pub struct Flatten {
    input_shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Reshapes `a` to `shape`, copying only if `a` is not in standard layout.
fn reshape(a: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    a.into_shape_with_order(IxDyn(shape))
        .expect("element counts were checked by the caller")
}

impl Layer for Flatten {
    fn describe(&self) -> String {
        "Flatten".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        match input {
            [n, rest @ ..] if !rest.is_empty() => Ok(vec![*n, rest.iter().product()]),
            _ => Err(format!(
                "Flatten expects (N, ...) with at least 2 axes, got {input:?}"
            )),
        }
    }

    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let out = self
            .output_shape(x.shape())
            .unwrap_or_else(|e| panic!("{e}"));
        self.input_shape = Some(x.shape().to_vec());
        reshape(x, &out)
    }

    fn backward(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        let shape = self
            .input_shape
            .take()
            .unwrap_or_else(|| panic!("{}", no_forward("Flatten")));
        let n = shape[0];
        let rest: usize = shape[1..].iter().product();
        assert_eq!(
            dy.shape(),
            &[n, rest],
            "Flatten: dy has shape {:?}, the forward output had {:?}",
            dy.shape(),
            [n, rest]
        );
        reshape(dy, &shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_input};
    use ndarray::Axis;

    #[test]
    fn flattens_row_major_and_back() {
        let x = random_input(&[2, 3, 4, 5], 0);
        let mut f = Flatten::new();
        let y = f.forward(x.clone(), Mode::Train);
        assert_eq!(y.shape(), &[2, 60]);
        assert_eq!(y[[1, 2 * 20 + 3 * 5 + 4]], x[[1, 2, 3, 4]]);
        let dx = f.backward(y.clone());
        assert_eq!(dx, x);
    }

    #[test]
    fn non_standard_layout_input() {
        let x = random_input(&[3, 2, 4], 1);
        let mut transposed = x.clone();
        transposed.swap_axes(1, 2);
        let y = Flatten::new().forward(transposed.clone(), Mode::Eval);
        assert_eq!(y.shape(), &[3, 8]);
        assert_eq!(y[[2, 3 * 2 + 1]], transposed[[2, 3, 1]]);
        assert_eq!(y.index_axis(Axis(0), 0)[1], x[[0, 1, 0]]);
    }

    #[test]
    fn gradients() {
        for shape in [&[1, 3, 2, 2][..], &[4, 2, 3, 3], &[2, 5]] {
            check_layer(&mut Flatten::new(), &random_input(shape, 2));
        }
    }

    #[test]
    fn shape_errors() {
        let f = Flatten::new();
        assert_eq!(f.output_shape(&[7, 1, 28, 28]).unwrap(), vec![7, 784]);
        assert!(
            f.output_shape(&[7])
                .unwrap_err()
                .contains("at least 2 axes")
        );
    }

    #[test]
    #[should_panic(expected = "Flatten: backward called before forward")]
    fn backward_before_forward_panics() {
        Flatten::new().backward(ArrayD::zeros(vec![1, 2]));
    }
}
