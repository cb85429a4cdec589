//! (placeholder: being written)
/// placeholder
pub fn summary() {}
