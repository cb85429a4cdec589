//! The update rules, one file per family. Each is the paper's per-parameter
//! math and nothing else: the [`Driver`](crate::Driver) supplies the scheduled
//! learning rate, clipping and coupled weight decay.
//!
//! Formulas follow PyTorch's implementations (which follow the papers), with
//! `g` the gradient, `w` the parameter and `lr` the scheduled learning rate.

mod adadelta;
mod adagrad;
mod adam;
mod rmsprop;
mod sgd;

pub use adadelta::AdaDelta;
pub use adagrad::AdaGrad;
pub use adam::{Adam, AdamW};
pub use rmsprop::RmsProp;
pub use sgd::{Momentum, Nesterov, Sgd};
