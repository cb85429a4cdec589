//! One file per layer: the struct, its constructor, the `Layer` impl and its
//! tests (each with the shared gradient check).

mod activation;
mod batchnorm;
mod conv2d;
mod conv_transpose2d;
mod dropout;
mod flatten;
mod linear;
mod maxpool2d;
mod storage;

pub use activation::{LeakyReLU, ReLU, Sigmoid, Tanh};
pub use batchnorm::{BatchNorm1d, BatchNorm2d, BatchNormConfig};
pub use conv_transpose2d::ConvTranspose2d;
pub use conv2d::Conv2d;
pub use dropout::{Dropout, DropoutScaling};
pub use flatten::Flatten;
pub use linear::Linear;
pub use maxpool2d::MaxPool2d;
