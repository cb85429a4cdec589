//! Tensor primitives for tegaki.
//!
//! Everything the layers share lives here, written once:
//!
//! * the **layout convention**: dense activations are `(N, D)`, images are NCHW,
//!   every value is `f32`, the batch axis is always first;
//! * [`conv_output_size`] and [`ConvGeometry`], the one place that computes
//!   convolution and pooling output sizes;
//! * [`im2col`] / [`col2im`] (exact adjoints of each other);
//! * the GEMM entry points in [`gemm`] that every layer multiplies through;
//! * seeded initialisers in [`init`] and the portable RNG in [`rng`];
//! * [`Param`], a trainable value with its gradient beside it.

pub mod conv;
pub mod gemm;
pub mod init;
pub mod io;
pub mod math;
pub mod parallel;
mod param;
pub mod recycle;
pub mod rng;
pub mod simd;
pub mod sparse;
pub mod winograd;

pub use conv::{ConvGeometry, col2im, conv_output_size, im2col, try_conv_output_size};
pub use init::Init;
pub use param::{HasParams, Param, zeros_like};
pub use rng::{RngState, SeededRng};
