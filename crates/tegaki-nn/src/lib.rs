//! Layers with hand-written forward and backward passes.
//!
//! Every layer implements [`Layer`]: `forward(x, Mode)` keeps what the backward
//! pass needs, `backward(dy)` assigns parameter gradients and returns the input
//! gradient. There is no autograd: each backward is written out by hand and
//! checked against finite differences by [`gradcheck`].
//!
//! Layout: dense activations are `(N, D)`, images NCHW, all `f32`.

pub mod checkpoint;
pub mod gradcheck;
mod layer;
pub mod layers;
pub mod loss;
mod sequential;
mod summary;

pub use layer::{Layer, Mode};
pub use layers::*;
pub use loss::{SoftmaxCrossEntropy, Targets};
pub use sequential::Sequential;
pub use summary::summary;
