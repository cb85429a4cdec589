//! (placeholder: being written)
/// placeholder
pub struct MaxPool2d;
