//! (placeholder: being written)
/// placeholder
pub struct Flatten;
