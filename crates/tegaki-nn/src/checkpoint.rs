//! Saving and loading a model's parameters and buffers as safetensors.
//!
//! Every parameter and buffer is stored under the name its layer tree gives it
//! ([`Layer::visit_params`], [`Layer::visit_buffers`]), in PyTorch's layouts:
//! `0.weight` is `[out, in]` for a Linear layer, `[out, in, kh, kw]` for a
//! convolution, and BatchNorm's running statistics sit beside its parameters
//! (`1.running_mean`). Writes are atomic ([`tegaki_tensor::io::write_safetensors`]).
//!
//! Loading checks the whole file against the model before assigning anything:
//! a missing tensor, an extra tensor or a shape mismatch is an error naming the
//! file, the tensor and both shapes, and leaves the model untouched.
//!
//! Callers that bundle more state into the same file (an optimizer's moments
//! under `optim.`) combine [`model_tensors`] with their own tensors and load
//! with [`load_tensors`], telling it which prefixes are not the model's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use tegaki_tensor::io::{TensorFile, TensorIoError, read_safetensors, write_safetensors};

use crate::Layer;

/// Why a checkpoint could not be saved or loaded; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed, or the file is not valid safetensors
    /// (truncated, corrupt header, wrong dtype).
    #[error(transparent)]
    Io(#[from] TensorIoError),
    /// The model has a tensor the file lacks.
    #[error("{path}: missing tensor `{name}` (the model expects shape {expected:?})")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its shape in the model.
        expected: Vec<usize>,
    },
    /// The file has a tensor the model lacks.
    #[error(
        "{path}: unexpected tensor `{name}` with shape {shape:?} (the model has no such parameter or buffer)"
    )]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor's shape in the file differs from the model's.
    #[error(
        "{path}: tensor `{name}` has shape {found:?} in the file, the model expects {expected:?}"
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its shape in the model.
        expected: Vec<usize>,
        /// Its shape in the file.
        found: Vec<usize>,
    },
}

/// Copies of every parameter value and buffer of `model`, by composed name.
///
/// # Panics
/// If two tensors share a name (a bug in a layer's visitors).
pub fn model_tensors(model: &mut dyn Layer) -> BTreeMap<String, ArrayD<f32>> {
    let mut out = BTreeMap::new();
    let mut insert = |name: &str, value: &ArrayD<f32>| {
        let previous = out.insert(name.to_string(), value.clone());
        assert!(
            previous.is_none(),
            "checkpoint: two tensors of the model are named `{name}`"
        );
    };
    model.visit_params(&mut |name, p| insert(name, &p.value));
    model.visit_buffers(&mut |name, b| insert(name, b));
    out
}

/// Writes every parameter and buffer of `model`, plus `metadata`, to `path`
/// (atomically: a crash never leaves a half-written file).
///
/// # Errors
/// [`CheckpointError::Io`] if the file cannot be written.
pub fn save_model(
    path: &Path,
    model: &mut dyn Layer,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let tensors = model_tensors(model);
    write_safetensors(
        path,
        tensors.iter().map(|(name, t)| (name.clone(), t.view())),
        metadata,
    )?;
    Ok(())
}

/// Loads every parameter and buffer of `model` from `path` and returns the
/// file's metadata. The file must hold exactly the model's tensors.
///
/// # Errors
/// A [`CheckpointError`] naming the file (and the tensor, with both shapes,
/// when the contents do not fit the model). On error the model is unchanged.
pub fn load_model(
    path: &Path,
    model: &mut dyn Layer,
) -> Result<BTreeMap<String, String>, CheckpointError> {
    let file = read_safetensors(path)?;
    load_tensors(model, &file, path, &[])?;
    Ok(file.metadata)
}

/// Assigns `model`'s parameters and buffers from `file`'s tensors, skipping
/// the file's tensors whose names start with one of `ignore_prefixes` (state
/// that is not the model's, e.g. `"optim."`). `path` only labels errors.
///
/// Everything is checked before anything is assigned, so on error the model
/// is unchanged.
///
/// # Errors
/// [`CheckpointError::Missing`], [`CheckpointError::Unexpected`] or
/// [`CheckpointError::Shape`] for the first offending tensor in name order
/// (missing and mismatched tensors are reported before extra ones).
pub fn load_tensors(
    model: &mut dyn Layer,
    file: &TensorFile,
    path: &Path,
    ignore_prefixes: &[&str],
) -> Result<(), CheckpointError> {
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    model.visit_params(&mut |name, p| {
        expected.insert(name.to_string(), p.value.shape().to_vec());
    });
    model.visit_buffers(&mut |name, b| {
        expected.insert(name.to_string(), b.shape().to_vec());
    });
    for (name, shape) in &expected {
        let found = file
            .tensors
            .get(name)
            .ok_or_else(|| CheckpointError::Missing {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
            })?;
        if found.shape() != shape.as_slice() {
            return Err(CheckpointError::Shape {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
                found: found.shape().to_vec(),
            });
        }
    }
    let ignored = |name: &str| ignore_prefixes.iter().any(|p| name.starts_with(p));
    if let Some((name, t)) = file
        .tensors
        .iter()
        .find(|(name, _)| !expected.contains_key(*name) && !ignored(name))
    {
        return Err(CheckpointError::Unexpected {
            path: path.to_path_buf(),
            name: name.clone(),
            shape: t.shape().to_vec(),
        });
    }
    model.visit_params(&mut |name, p| p.value.assign(&file.tensors[name]));
    model.visit_buffers(&mut |name, b| b.assign(&file.tensors[name]));
    Ok(())
}
