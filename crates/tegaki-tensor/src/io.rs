//! Tensor files: safetensors reading and writing, and atomic file writes.
//!
//! Every file tegaki writes goes through [`write_atomic`]: the bytes land in a
//! temporary file beside the target, are flushed to disk, and only then renamed
//! over the target, so a crash or Ctrl-C never leaves a half-written file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use safetensors::{Dtype, SafeTensors, View};

/// What went wrong reading or writing a tensor file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorIoError {
    /// The operating system refused a read, write or rename.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (truncated, bad header, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser objected to.
        reason: String,
    },
    /// A tensor is stored with an element type tegaki does not read.
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected F32")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The dtype found.
        dtype: String,
    },
}

/// The contents of a safetensors file: named f32 tensors plus string metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors by name.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
}

struct F32View<'a> {
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn le_bytes(a: &ArrayViewD<f32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() * 4);
    for v in a.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Serialises named tensors and metadata to safetensors bytes.
pub fn to_safetensors_bytes<'a>(
    tensors: impl IntoIterator<Item = (String, ArrayViewD<'a, f32>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let views: Vec<(String, F32View)> = tensors
        .into_iter()
        .map(|(name, a)| {
            let shape = a.shape().to_vec();
            (
                name,
                F32View {
                    shape,
                    data: Cow::Owned(le_bytes(&a)),
                },
            )
        })
        .collect();
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let meta = if meta.is_empty() { None } else { Some(meta) };
    safetensors::serialize(views, meta).map_err(|e| e.to_string())
}

/// Parses safetensors bytes; `path` only labels errors.
pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<TensorFile, TensorIoError> {
    let corrupt = |reason: String| TensorIoError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let parsed = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    for (name, view) in parsed.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(TensorIoError::Dtype {
                path: path.to_path_buf(),
                name,
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, array);
    }
    Ok(TensorFile { tensors, metadata })
}

/// Writes named tensors and metadata to `path` as safetensors, atomically.
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (String, ArrayViewD<'a, f32>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), TensorIoError> {
    let bytes =
        to_safetensors_bytes(tensors, metadata).map_err(|reason| TensorIoError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
    write_atomic(path, &bytes).map_err(|source| TensorIoError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a safetensors file of f32 tensors.
pub fn read_safetensors(path: &Path) -> Result<TensorFile, TensorIoError> {
    let bytes = std::fs::read(path).map_err(|source| TensorIoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_safetensors_bytes(&bytes, path)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed and synced, then renamed over `path`. On error the temporary file is
/// removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("tegaki-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = arr2(&[[1.0f32, -2.5], [3.0, f32::MIN_POSITIVE]]).into_dyn();
        let mut meta = BTreeMap::new();
        meta.insert("epoch".to_string(), "3".to_string());
        write_safetensors(&path, [("w".to_string(), a.view())], &meta).unwrap();
        let back = read_safetensors(&path).unwrap();
        assert_eq!(back.tensors["w"], a);
        assert_eq!(back.metadata, meta);
        // no temp files left behind
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 5, 9, bytes.len() - 1] {
            let err = from_safetensors_bytes(&bytes[..cut], &path).unwrap_err();
            assert!(matches!(err, TensorIoError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("t.safetensors"));
        }
        let missing = read_safetensors(&dir.join("nope.safetensors")).unwrap_err();
        assert!(matches!(missing, TensorIoError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
