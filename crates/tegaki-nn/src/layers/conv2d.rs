//! (placeholder: being written)
/// placeholder
pub struct Conv2d;
