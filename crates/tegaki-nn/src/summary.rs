//! A text summary of a model: one row per layer with its output shape and
//! parameter count, then the totals.

use crate::Sequential;

/// Formats `n` with thousands separators: `79510` -> `79,510`.
pub fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `(N, 32, 28, 28)`: the batch axis printed as `N`.
fn shape_text(sample: &[usize]) -> String {
    let mut parts = vec!["N".to_string()];
    parts.extend(sample.iter().map(usize::to_string));
    format!("({})", parts.join(", "))
}

/// A table of `model`'s layers for inputs of `sample_shape` (one sample,
/// without the batch axis, e.g. `[784]` or `[1, 28, 28]`): index, layer
/// description, output shape and parameter count, then the total parameter
/// count and the number of buffer values (BatchNorm running statistics).
///
/// Shapes come from [`Layer::output_shape`](crate::Layer::output_shape); nothing is computed. A nested
/// [`Sequential`] is one row.
///
/// # Errors
/// If the shapes do not fit, naming the first layer that rejects its input.
///
/// # Example
/// ```
/// use tegaki_nn::{Linear, Sequential, Sigmoid, summary};
/// use tegaki_tensor::rng;
///
/// let mut init = rng::stream(0, "init");
/// let mut net = Sequential::new()
///     .with(Linear::new(784, 100, &mut init))
///     .with(Sigmoid::new())
///     .with(Linear::new(100, 10, &mut init));
/// let table = summary(&mut net, &[784]).unwrap();
/// assert!(table.contains("Total parameters: 79,510"));
/// assert!(summary(&mut net, &[785]).is_err());
/// ```
pub fn summary(model: &mut Sequential, sample_shape: &[usize]) -> Result<String, String> {
    let header = ["#", "Layer", "Output shape", "Params"];
    let mut rows: Vec<[String; 4]> = vec![[
        String::new(),
        "input".to_string(),
        shape_text(sample_shape),
        String::new(),
    ]];
    let mut shape: Vec<usize> = std::iter::once(1)
        .chain(sample_shape.iter().copied())
        .collect();
    let mut total = 0;
    let mut buffers = 0;
    for (i, layer) in model.layers_mut().iter_mut().enumerate() {
        shape = layer
            .output_shape(&shape)
            .map_err(|e| format!("layer {i}: {e}"))?;
        let params = layer.num_params();
        layer.visit_buffers(&mut |_, b| buffers += b.len());
        total += params;
        let out = shape
            .get(1..)
            .ok_or_else(|| format!("layer {i}: {} dropped the batch axis", layer.describe()))?;
        rows.push([
            i.to_string(),
            layer.describe(),
            shape_text(out),
            grouped(params),
        ]);
    }

    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let text = format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
        );
        text.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(header));
    out.push('\n');
    out.push_str(&line(
        width.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
    ));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
        out.push('\n');
    }
    out.push_str(&format!(
        "Total parameters: {} ({:.1} KiB as f32)\n",
        grouped(total),
        total as f64 * 4.0 / 1024.0
    ));
    out.push_str(&format!("Buffer values: {}\n", grouped(buffers)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dropout, Flatten, Layer, LeakyReLU, Linear, Mode, ReLU, Sigmoid, Tanh};
    use ndarray::ArrayD;
    use tegaki_tensor::{Param, rng};

    #[test]
    fn grouping() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn seed_basic_net() {
        let mut init = rng::stream(0, "init");
        let mut net = Sequential::new()
            .with(Linear::new(784, 100, &mut init))
            .with(Sigmoid::new())
            .with(Linear::new(100, 10, &mut init));
        insta::assert_snapshot!(summary(&mut net, &[784]).unwrap());
    }

    /// Shape-only stand-ins for convolution, pooling and batch norm, so this
    /// snapshot does not depend on layers written elsewhere: `summary` never
    /// runs a forward pass.
    enum Stub {
        /// 3x3 convolution with padding 1: weight `[out, in, 3, 3]` and bias.
        Conv(usize, usize, Vec<Param>),
        /// 2x2 pooling with stride 2.
        Pool,
        /// Per-channel normalisation: weight and bias, running mean and variance.
        Norm(usize, Vec<Param>, Vec<ArrayD<f32>>),
    }

    impl Stub {
        fn conv(cin: usize, cout: usize) -> Self {
            let w = Param::new(ArrayD::zeros(vec![cout, cin, 3, 3]));
            Stub::Conv(cin, cout, vec![w, Param::new(ArrayD::zeros(vec![cout]))])
        }
        fn norm(c: usize) -> Self {
            let p = || Param::new(ArrayD::zeros(vec![c]));
            Stub::Norm(
                c,
                vec![p(), p()],
                vec![ArrayD::zeros(vec![c]), ArrayD::ones(vec![c])],
            )
        }
    }

    impl Layer for Stub {
        fn describe(&self) -> String {
            match self {
                Stub::Conv(i, o, _) => format!("ConvStub({i}, {o}, k=3, pad=1)"),
                Stub::Pool => "PoolStub(2)".to_string(),
                Stub::Norm(c, ..) => format!("NormStub({c})"),
            }
        }
        fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
            match (self, input) {
                (Stub::Conv(i, o, _), [n, c, h, w]) if c == i => Ok(vec![*n, *o, *h, *w]),
                (Stub::Pool, [n, c, h, w]) => Ok(vec![*n, *c, h / 2, w / 2]),
                (Stub::Norm(k, ..), [_, c, _, _]) if c == k => Ok(input.to_vec()),
                _ => Err(format!("{} does not take {input:?}", self.describe())),
            }
        }
        fn forward(&mut self, _x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
            unreachable!("summary only asks for shapes")
        }
        fn backward(&mut self, _dy: ArrayD<f32>) -> ArrayD<f32> {
            unreachable!("summary only asks for shapes")
        }
        fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
            if let Stub::Conv(_, _, params) | Stub::Norm(_, params, _) = self {
                for (name, p) in ["weight", "bias"].into_iter().zip(params) {
                    f(name, p);
                }
            }
        }
        fn visit_buffers(&mut self, f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {
            if let Stub::Norm(_, _, buffers) = self {
                for (name, b) in ["running_mean", "running_var"].into_iter().zip(buffers) {
                    f(name, b);
                }
            }
        }
    }

    /// The MNIST CNN's shape: two conv blocks, then a dense head.
    #[test]
    fn small_cnn_shaped_net() {
        let mut init = rng::stream(0, "init");
        let mut net = Sequential::new()
            .with(Stub::conv(1, 32))
            .with(Stub::norm(32))
            .with(ReLU::new())
            .with(Stub::Pool)
            .with(Stub::conv(32, 64))
            .with(LeakyReLU::new(0.2))
            .with(Stub::Pool)
            .with(Flatten::new())
            .with(Linear::new(3136, 128, &mut init))
            .with(Tanh::new())
            .with(Dropout::new(0.5, &mut init))
            .with(
                Sequential::new()
                    .with(Linear::new(128, 10, &mut init))
                    .with(Sigmoid::new()),
            );
        insta::assert_snapshot!(summary(&mut net, &[1, 28, 28]).unwrap());
    }

    #[test]
    fn shape_errors_name_the_layer() {
        let mut init = rng::seeded(0);
        let mut net = Sequential::new()
            .with(Flatten::new())
            .with(Linear::new(10, 2, &mut init));
        let err = summary(&mut net, &[3, 3]).unwrap_err();
        assert_eq!(err, "layer 1: Linear(10, 2) expects (N, 10), got [1, 9]");
        let err = summary(&mut net, &[]).unwrap_err();
        assert!(err.starts_with("layer 0: Flatten expects"), "{err}");
    }
}
