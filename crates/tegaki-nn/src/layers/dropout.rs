//! (placeholder: being written)
/// placeholder
pub struct Dropout;
/// placeholder
pub struct DropoutScaling;
