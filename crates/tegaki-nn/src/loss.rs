//! (placeholder: being written)
/// placeholder
pub struct SoftmaxCrossEntropy;
/// placeholder
pub enum Targets {}
