//! CIFAR-10 binary batches and the archive they ship in.
//!
//! A batch file is a sequence of 3073-byte records: one label byte, then
//! 1024 red, 1024 green and 1024 blue bytes, each plane row-major 32x32. That
//! is already CHW, so records map straight onto [`crate::Dataset`] rows.

use std::io::Read;
use std::path::Path;

use crate::error::DataError;
use crate::kinds::{CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES};

/// Bytes per CIFAR-10 image (3 x 32 x 32).
pub const CIFAR10_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes per record: the label byte plus the image.
pub const CIFAR10_RECORD_BYTES: usize = 1 + CIFAR10_IMAGE_BYTES;
/// Records per official batch file.
pub const CIFAR10_BATCH_RECORDS: usize = 10_000;

/// Reads one batch file; returns `(images, labels)` with images as
/// `labels.len()` rows of [`CIFAR10_IMAGE_BYTES`] bytes (CHW).
pub fn read_cifar_batch(
    mut reader: impl Read,
    path: &Path,
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    let bad = |message: String| DataError::BadCifar {
        path: path.to_path_buf(),
        message,
    };
    if bytes.is_empty() {
        return Err(bad("empty file, expected records of 3073 bytes".into()));
    }
    if !bytes.len().is_multiple_of(CIFAR10_RECORD_BYTES) {
        return Err(bad(format!(
            "{} bytes is not a whole number of 3073-byte records (label + 3x32x32); truncated or not a CIFAR-10 batch",
            bytes.len()
        )));
    }
    let n = bytes.len() / CIFAR10_RECORD_BYTES;
    let mut images = Vec::with_capacity(n * CIFAR10_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
        if record[0] >= 10 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index: i,
                label: record[0],
                classes: 10,
            });
        }
        labels.push(record[0]);
        images.extend_from_slice(&record[1..]);
    }
    Ok((images, labels))
}

/// Extracts the six batch files from the official `cifar-10-binary.tar.gz`
/// (gzip or plain tar) into `dest`, checking each batch's size; other
/// members (`batches.meta.txt`, `readme.html`) are skipped. Each batch is
/// written to a temporary name and renamed, so a failure leaves no partial batch.
pub fn extract_cifar_archive(
    reader: impl Read,
    archive: &Path,
    dest: &Path,
) -> Result<Vec<String>, DataError> {
    extract_batches(reader, archive, dest, CIFAR10_BATCH_RECORDS)
}

/// [`extract_cifar_archive`] with `records` per batch (tests use small batches).
fn extract_batches(
    reader: impl Read,
    archive: &Path,
    dest: &Path,
    records: usize,
) -> Result<Vec<String>, DataError> {
    let (reader, _) = crate::idx::maybe_gunzip(reader).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(reader);
    let bad = |message: String| DataError::BadCifar {
        path: archive.to_path_buf(),
        message,
    };
    let wanted: Vec<&str> = CIFAR10_TRAIN_BATCHES
        .iter()
        .copied()
        .chain([CIFAR10_TEST_BATCH])
        .collect();
    let mut written = Vec::new();
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("corrupt tar archive: {e}")))?;
        let entry_path = entry
            .path()
            .map_err(|e| bad(format!("bad member name: {e}")))?
            .into_owned();
        let Some(name) = entry_path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(&name) = wanted.iter().find(|w| **w == name) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("reading {name}: {e}")))?;
        let expected = records * CIFAR10_RECORD_BYTES;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{name} has {} bytes, expected {expected}",
                bytes.len()
            )));
        }
        let target = dest.join(name);
        tegaki_tensor::io::write_atomic(&target, &bytes).map_err(|e| DataError::io(&target, e))?;
        written.push(name.to_string());
    }
    if written.len() != wanted.len() {
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|w| !written.iter().any(|x| x == w))
            .collect();
        return Err(bad(format!("archive lacks {}", missing.join(", "))));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..CIFAR10_IMAGE_BYTES).map(|i| fill.wrapping_add(i as u8)));
        r
    }

    #[test]
    fn reads_small_generated_batch() {
        let mut bytes = record(3, 0);
        bytes.extend(record(9, 100));
        let (images, labels) = read_cifar_batch(&bytes[..], Path::new("b.bin")).unwrap();
        assert_eq!(labels, vec![3, 9]);
        assert_eq!(images.len(), 2 * CIFAR10_IMAGE_BYTES);
        assert_eq!(images[0], 0);
        // first pixel of the green plane of image 1
        assert_eq!(images[CIFAR10_IMAGE_BYTES + 1024], 100u8.wrapping_add(0));
        assert_eq!(images[CIFAR10_IMAGE_BYTES + 1025], 100u8.wrapping_add(1));
    }

    #[test]
    fn rejects_bad_batches() {
        let p = Path::new("b.bin");
        let e = read_cifar_batch(&record(1, 0)[..3000], p).unwrap_err();
        assert!(
            e.to_string().contains("3000 bytes is not a whole number"),
            "{e}"
        );
        let e = read_cifar_batch(&record(10, 0)[..], p).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    label: 10,
                    index: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(read_cifar_batch(&[][..], p).is_err());
    }

    #[test]
    fn extracts_batches_from_a_generated_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar_bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar_bytes);
            let batch: Vec<u8> = (0..20)
                .flat_map(|i| record((i % 10) as u8, i as u8))
                .collect();
            let mut names: Vec<&str> = CIFAR10_TRAIN_BATCHES.to_vec();
            names.push(CIFAR10_TEST_BATCH);
            names.push("batches.meta.txt");
            for name in names {
                let data: &[u8] = if name.ends_with(".txt") {
                    b"airplane\n"
                } else {
                    &batch
                };
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                builder
                    .append_data(&mut header, format!("cifar-10-batches-bin/{name}"), data)
                    .unwrap();
            }
            builder.finish().unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_bytes).unwrap();
        let gz = gz.finish().unwrap();
        let written = extract_batches(&gz[..], Path::new("a.tar.gz"), dir.path(), 20).unwrap();
        assert_eq!(written.len(), 6);
        assert!(!dir.path().join("batches.meta.txt").exists());
        let (images, labels) = read_cifar_batch(
            std::fs::File::open(dir.path().join(CIFAR10_TEST_BATCH)).unwrap(),
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(labels.len(), 20);
        assert_eq!(labels[13], 3);
        assert_eq!(images.len(), 20 * CIFAR10_IMAGE_BYTES);
        // the official size is enforced
        let e = extract_cifar_archive(&gz[..], Path::new("a.tar.gz"), dir.path()).unwrap_err();
        assert!(e.to_string().contains("expected 30730000"), "{e}");

        let e =
            extract_cifar_archive(&tar_bytes[..1024], Path::new("a.tar"), dir.path()).unwrap_err();
        assert!(e.to_string().contains("a.tar"), "{e}");
    }
}
