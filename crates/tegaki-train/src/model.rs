//! Building a [`Sequential`] network from a [`ModelConfig`], inferring every
//! layer's input size from the previous layer's output.

use tegaki_nn::{
    BatchNorm1d, BatchNorm2d, Conv2d, Dropout, DropoutScaling, Flatten, Layer, LeakyReLU, Linear,
    MaxPool2d, ReLU, Sequential, Sigmoid, Tanh,
};
use tegaki_tensor::SeededRng;

use crate::config::{DropoutScalingName, InitName, LayerSpec, ModelConfig};

/// Builds the network for samples of `sample_shape` (`[C, H, W]` for images).
///
/// Returns an error naming the layer (`model.layers[i]`) whose input does not
/// fit, e.g. a Linear after an image without a Flatten.
pub fn build_model(
    cfg: &ModelConfig,
    sample_shape: &[usize],
    rng: &mut SeededRng,
) -> Result<Sequential, String> {
    let mut shape: Vec<usize> = std::iter::once(1)
        .chain(sample_shape.iter().copied())
        .collect();
    let mut model = Sequential::new();
    for (i, spec) in cfg.layers.iter().enumerate() {
        let where_ = || format!("model.layers[{i}] ({})", spec_name(spec));
        let layer: Box<dyn Layer> = match *spec {
            LayerSpec::Linear {
                out_features,
                bias,
                init,
            } => {
                let [_, d] = shape[..] else {
                    return Err(format!(
                        "{}: expects (N, features) input but gets {}; add {{ type = \"flatten\" }} before it",
                        where_(),
                        fmt_shape(&shape)
                    ));
                };
                let init = init.unwrap_or(InitName::Torch).init();
                Box::new(Linear::with_init(d, out_features, init, bias, rng))
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                bias,
                init,
            } => {
                let [_, c, _, _] = shape[..] else {
                    return Err(format!(
                        "{}: expects (N, C, H, W) input but gets {}",
                        where_(),
                        fmt_shape(&shape)
                    ));
                };
                let init = init.unwrap_or(InitName::Torch).init();
                Box::new(Conv2d::new(
                    c,
                    out_channels,
                    kernel.hw(),
                    stride.hw(),
                    padding.hw(),
                    bias,
                    init,
                    rng,
                ))
            }
            LayerSpec::Maxpool2d { kernel, stride } => {
                Box::new(MaxPool2d::new(kernel.hw(), stride.unwrap_or(kernel).hw()))
            }
            LayerSpec::Batchnorm1d { momentum, eps } => {
                let [_, d] = shape[..] else {
                    return Err(format!(
                        "{}: expects (N, features) input but gets {}; use batchnorm2d for images",
                        where_(),
                        fmt_shape(&shape)
                    ));
                };
                Box::new(BatchNorm1d::new(d).momentum(momentum).eps(eps))
            }
            LayerSpec::Batchnorm2d { momentum, eps } => {
                let [_, c, _, _] = shape[..] else {
                    return Err(format!(
                        "{}: expects (N, C, H, W) input but gets {}; use batchnorm1d after flatten",
                        where_(),
                        fmt_shape(&shape)
                    ));
                };
                Box::new(BatchNorm2d::new(c).momentum(momentum).eps(eps))
            }
            LayerSpec::Relu => Box::new(ReLU::new()),
            LayerSpec::Sigmoid => Box::new(Sigmoid::new()),
            LayerSpec::Tanh => Box::new(Tanh::new()),
            LayerSpec::Leakyrelu { negative_slope } => Box::new(LeakyReLU::new(negative_slope)),
            LayerSpec::Dropout { p, scaling } => {
                let scaling = match scaling {
                    DropoutScalingName::Inverted => DropoutScaling::Inverted,
                    DropoutScalingName::TestTime => DropoutScaling::TestTime,
                };
                Box::new(Dropout::with_scaling(p, scaling, rng))
            }
            LayerSpec::Flatten => Box::new(Flatten::new()),
        };
        shape = layer
            .output_shape(&shape)
            .map_err(|e| format!("{}: {e}", where_()))?;
        model.push_boxed(layer);
    }
    Ok(model)
}

fn spec_name(spec: &LayerSpec) -> &'static str {
    match spec {
        LayerSpec::Linear { .. } => "linear",
        LayerSpec::Conv2d { .. } => "conv2d",
        LayerSpec::Maxpool2d { .. } => "maxpool2d",
        LayerSpec::Batchnorm1d { .. } => "batchnorm1d",
        LayerSpec::Batchnorm2d { .. } => "batchnorm2d",
        LayerSpec::Relu => "relu",
        LayerSpec::Sigmoid => "sigmoid",
        LayerSpec::Tanh => "tanh",
        LayerSpec::Leakyrelu { .. } => "leakyrelu",
        LayerSpec::Dropout { .. } => "dropout",
        LayerSpec::Flatten => "flatten",
    }
}

fn fmt_shape(shape: &[usize]) -> String {
    let rest: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
    format!("(N, {})", rest.join(", "))
}
