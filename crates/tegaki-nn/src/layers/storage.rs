//! Storage helpers the layers share: layout normalisation, reuse of last
//! step's buffers, and the Eval-mode buffer pool ([`recycle`]).

use ndarray::{Array4, ArrayD};
use tegaki_tensor::recycle;

/// `x` itself when already in standard layout, else a standard-layout copy.
pub(crate) fn standard(x: ArrayD<f32>) -> ArrayD<f32> {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// A `shape` array for a caller that overwrites every element: the storage
/// kept in `spare` (stale values) when it has exactly that size, else a
/// buffer of that size from [`recycle`], else zeros (leaving `spare` for a
/// later call of its size, e.g. the next training step after an
/// evaluation). Reusing storage spares a fresh allocation, which would be
/// zeroed or page-faulted every step.
pub(crate) fn reuse_storage(
    spare: &mut Option<ArrayD<f32>>,
    shape: (usize, usize, usize, usize),
) -> Array4<f32> {
    let len = shape.0 * shape.1 * shape.2 * shape.3;
    let fits = spare
        .as_ref()
        .is_some_and(|s| s.len() == len && s.is_standard_layout() && s.as_slice().is_some());
    if fits {
        let (v, offset) = spare.take().expect("checked").into_raw_vec_and_offset();
        if offset == Some(0) && v.len() == len {
            return Array4::from_shape_vec(shape, v).expect("length checked");
        }
    }
    match recycle::take(len) {
        Some(v) => Array4::from_shape_vec(shape, v).expect("length checked"),
        None => Array4::zeros(shape),
    }
}

/// Hands an input an Eval-mode layer is done with to [`recycle`].
pub(crate) fn recycle_input<D: ndarray::Dimension>(x: ndarray::Array<f32, D>) {
    if x.is_standard_layout() {
        let len = x.len();
        let (v, offset) = x.into_raw_vec_and_offset();
        if offset == Some(0) && v.len() == len {
            recycle::give(v);
        }
    }
}
