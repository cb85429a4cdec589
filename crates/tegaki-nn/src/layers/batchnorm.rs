//! (placeholder: being written)
/// placeholder
pub struct BatchNorm1d;
/// placeholder
pub struct BatchNorm2d;
