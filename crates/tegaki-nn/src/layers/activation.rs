//! (placeholder: being written)
/// placeholder
pub struct ReLU;
/// placeholder
pub struct Sigmoid;
/// placeholder
pub struct Tanh;
/// placeholder
pub struct LeakyReLU;
