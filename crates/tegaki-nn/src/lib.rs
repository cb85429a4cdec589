//! Layers with hand-written forward and backward passes.
//!
//! Every layer implements [`Layer`]: `forward(x, Mode)` keeps what the backward
//! pass needs, `backward(dy)` assigns parameter gradients and returns the input
//! gradient. There is no autograd: each backward is written out by hand and
//! checked against finite differences by [`gradcheck`].
//!
//! Layout: dense activations are `(N, D)`, images NCHW, all `f32`.
//!
//! * layers: [`Linear`], [`Conv2d`], [`MaxPool2d`], [`BatchNorm1d`],
//!   [`BatchNorm2d`], [`Dropout`], [`Flatten`] and the activations [`Sigmoid`],
//!   [`Tanh`], [`ReLU`], [`LeakyReLU`];
//! * [`Sequential`] chains layers and names their parameters PyTorch's way
//!   (`"0.weight"`); [`summary()`] prints its layers and shapes;
//! * [`loss`]: softmax + cross-entropy fused and stable, for class indices or
//!   probability rows ([`Targets`]);
//! * [`checkpoint`]: every parameter and buffer to and from safetensors.
//!
//! # Example: the seed's basic network
//!
//! 784-100-10 with a sigmoid hidden layer, trained by plain SGD written out by
//! hand over [`Layer::visit_params`] (tegaki-optim does this properly):
//!
//! ```
//! use tegaki_nn::{Layer, Linear, Mode, Sequential, Sigmoid, Targets, softmax_cross_entropy};
//! use tegaki_tensor::{Init, rng};
//!
//! let mut init = rng::stream(0, "init");
//! let mut net = Sequential::new()
//!     .with(Linear::new(784, 100, &mut init))
//!     .with(Sigmoid::new())
//!     .with(Linear::new(100, 10, &mut init));
//!
//! // A small random batch standing in for 16 MNIST images.
//! let mut data = rng::stream(0, "data");
//! let x = Init::Normal { mean: 0.5, std: 0.3 }.tensor(&[16, 784], &mut data);
//! let y = Targets::Classes((0..16).map(|i| i % 10).collect());
//!
//! let lr = 0.5;
//! let mut losses = Vec::new();
//! for _ in 0..20 {
//!     let logits = net.forward(x.clone(), Mode::Train);
//!     let (loss, dlogits) = softmax_cross_entropy(&logits, &y);
//!     losses.push(loss);
//!     net.backward_params_only(dlogits);
//!     net.visit_params(&mut |_, p| p.value.scaled_add(-lr, &p.grad));
//! }
//! // From ln(10) ≈ 2.30 down to about 1.07, falling at every step.
//! assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
//! assert!(losses[19] < 0.6 * losses[0], "{losses:?}");
//! ```

pub mod bce;
pub mod checkpoint;
pub mod gradcheck;
mod layer;
pub mod layers;
pub mod loss;
mod sequential;
mod summary;

pub use bce::bce_with_logits;
pub use checkpoint::{CheckpointError, load_model, save_model};
pub use layer::{Fusable, Layer, Mode};
pub use layers::*;
pub use loss::{SoftmaxCrossEntropy, Targets, softmax_cross_entropy};
pub use sequential::{EVAL_SLICE_VALUES, Sequential};
pub use summary::{grouped, summary};
