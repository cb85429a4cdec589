//! (placeholder: being written)
/// placeholder
pub struct Sequential;
