//! IDX files (LeCun's MNIST format), gzip-compressed or raw.
//!
//! Layout: magic `00 00 08 DD` (08 = unsigned bytes, DD = number of
//! dimensions), one big-endian `u32` per dimension, then the bytes in C order.
//! Compression is detected from the gzip magic `1f 8b`, never from the file
//! name, so renamed or already-gunzipped files read the same. Parsing never
//! trusts the header for allocation sizes: memory grows only as data arrives,
//! so a hostile header cannot make the reader allocate gigabytes.

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::DataError;

/// The IDX type code of unsigned bytes, the only element type MNIST-family files use.
pub const IDX_U8: u8 = 0x08;

/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decoded IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions from the header, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The elements in C order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Checks that this is an image file `N x H x W` and returns `(n, h, w)`.
    pub fn image_dims(&self, path: &Path) -> Result<(usize, usize, usize), DataError> {
        match self.dims[..] {
            [n, h, w] => Ok((n, h, w)),
            _ => Err(DataError::WrongDims {
                path: path.to_path_buf(),
                what: "images N x H x W",
                expected: 3,
                found: self.dims.len(),
            }),
        }
    }

    /// Checks that this is a label file `N` and returns `n`.
    pub fn label_count(&self, path: &Path) -> Result<usize, DataError> {
        match self.dims[..] {
            [n] => Ok(n),
            _ => Err(DataError::WrongDims {
                path: path.to_path_buf(),
                what: "labels N",
                expected: 1,
                found: self.dims.len(),
            }),
        }
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A reader of the decoded bytes of `reader`, gunzipping when the stream
/// starts with the gzip magic; also says whether it did.
pub fn maybe_gunzip<'a>(mut reader: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, bool)> {
    let mut head = [0u8; 2];
    let n = read_up_to(&mut reader, &mut head)?;
    let rest = io::Cursor::new(head[..n].to_vec()).chain(reader);
    if n == 2 && head == GZIP_MAGIC {
        Ok((Box::new(MultiGzDecoder::new(rest)), true))
    } else {
        Ok((Box::new(rest), false))
    }
}

/// Reads an IDX file of unsigned bytes, gzip-compressed or raw. `path` only
/// names the source in errors.
pub fn read_idx(reader: impl Read, path: &Path) -> Result<IdxArray, DataError> {
    let (mut reader, gz) = maybe_gunzip(reader).map_err(|e| DataError::io(path, e))?;
    let wrap = |source: io::Error| {
        if gz {
            DataError::CorruptGzip {
                path: path.to_path_buf(),
                source,
            }
        } else {
            DataError::io(path, source)
        }
    };

    let mut magic = [0u8; 4];
    let n = read_up_to(&mut reader, &mut magic).map_err(wrap)?;
    if n < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            part: "header",
            expected: 4,
            found: n as u64,
        });
    }
    if magic[0] != 0 || magic[1] != 0 || magic[2] != IDX_U8 {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: u32::from_be_bytes(magic),
        });
    }
    let ndims = usize::from(magic[3]);
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let n = read_up_to(&mut reader, &mut dim_bytes).map_err(wrap)?;
    if n < dim_bytes.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            part: "header",
            expected: 4 + dim_bytes.len() as u64,
            found: 4 + n as u64,
        });
    }
    let dims: Vec<u64> = dim_bytes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let total = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(|| DataError::DimsTooLarge {
            path: path.to_path_buf(),
            dims: dims.clone(),
        })?;

    // Grow with the data, not with the header's claim.
    let mut data = Vec::with_capacity(total.min(1 << 24) as usize);
    (&mut reader)
        .take(total)
        .read_to_end(&mut data)
        .map_err(wrap)?;
    if (data.len() as u64) < total {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            part: "data",
            expected: total,
            found: data.len() as u64,
        });
    }
    let extra = io::copy(&mut reader, &mut io::sink()).map_err(wrap)?;
    if extra > 0 {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected: total,
            extra,
        });
    }
    Ok(IdxArray {
        dims: dims.iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Opens and reads an IDX file (gzip or raw).
pub fn read_idx_file(path: &Path) -> Result<IdxArray, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    read_idx(io::BufReader::with_capacity(1 << 16, file), path)
}

/// Writes a raw (uncompressed) IDX file of unsigned bytes.
///
/// # Panics
/// If `data.len()` is not the product of `dims`, a dimension exceeds
/// `u32::MAX` or there are more than 255 dimensions: those are caller bugs.
pub fn write_idx(mut writer: impl Write, dims: &[usize], data: &[u8]) -> io::Result<()> {
    assert!(
        dims.len() <= 255,
        "write_idx: {} dimensions, at most 255",
        dims.len()
    );
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "write_idx: dims {dims:?} do not match {} bytes",
        data.len()
    );
    writer.write_all(&[0, 0, IDX_U8, dims.len() as u8])?;
    for &d in dims {
        let d = u32::try_from(d).expect("write_idx: dimension exceeds u32::MAX");
        writer.write_all(&d.to_be_bytes())?;
    }
    writer.write_all(data)?;
    writer.flush()
}

/// Writes a gzip-compressed IDX file (same panics as [`write_idx`]).
pub fn write_idx_gz(writer: impl Write, dims: &[usize], data: &[u8]) -> io::Result<()> {
    let mut enc = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
    write_idx(&mut enc, dims, data)?;
    enc.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> &'static Path {
        Path::new("mem.idx")
    }

    fn sample() -> (Vec<usize>, Vec<u8>) {
        (vec![3, 2, 4], (0..24).map(|i| (i * 11) as u8).collect())
    }

    fn raw(dims: &[usize], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_idx(&mut out, dims, data).unwrap();
        out
    }

    #[test]
    fn round_trip_raw_and_gzip() {
        let (dims, data) = sample();
        let bytes = raw(&dims, &data);
        assert_eq!(&bytes[..8], &[0, 0, 8, 3, 0, 0, 0, 3]);
        let a = read_idx(&bytes[..], p()).unwrap();
        assert_eq!(
            (a.dims.clone(), a.data.clone()),
            (dims.clone(), data.clone())
        );
        let mut gz = Vec::new();
        write_idx_gz(&mut gz, &dims, &data).unwrap();
        assert_eq!(&gz[..2], &GZIP_MAGIC);
        assert_eq!(read_idx(&gz[..], p()).unwrap(), a);
        assert_eq!(a.image_dims(p()).unwrap(), (3, 2, 4));
        assert!(matches!(
            a.label_count(p()),
            Err(DataError::WrongDims {
                expected: 1,
                found: 3,
                ..
            })
        ));
    }

    #[test]
    fn bad_inputs_give_named_errors() {
        let (dims, data) = sample();
        let good = raw(&dims, &data);

        let mut bad_magic = good.clone();
        bad_magic[2] = 0x0D;
        let e = read_idx(&bad_magic[..], p()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 0x0000_0D03,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("mem.idx: not an IDX file"), "{e}");

        let e = read_idx(&good[..3], p()).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { part: "header", .. }),
            "{e}"
        );
        let e = read_idx(&good[..9], p()).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { part: "header", .. }),
            "{e}"
        );

        let e = read_idx(&good[..good.len() - 1], p()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    part: "data",
                    expected: 24,
                    found: 23,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("expected 24 bytes of data, found 23"),
            "{e}"
        );

        let mut long = good.clone();
        long.extend_from_slice(&[1, 2]);
        let e = read_idx(&long[..], p()).unwrap_err();
        assert!(matches!(e, DataError::TrailingData { extra: 2, .. }), "{e}");

        let huge = [
            0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let e = read_idx(&huge[..], p()).unwrap_err();
        assert!(matches!(e, DataError::DimsTooLarge { .. }), "{e}");

        let mut gz = Vec::new();
        write_idx_gz(&mut gz, &dims, &data).unwrap();
        let mut corrupt = gz.clone();
        corrupt[12] ^= 0xff;
        let e = read_idx(&corrupt[..], p()).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e}");
        let e = read_idx(&gz[..gz.len() / 2], p()).unwrap_err();
        assert!(matches!(e, DataError::CorruptGzip { .. }), "{e}");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_idx(&bytes[..], p());
            let mut gz_prefixed = GZIP_MAGIC.to_vec();
            gz_prefixed.extend_from_slice(&bytes);
            let _ = read_idx(&gz_prefixed[..], p());
        }

        #[test]
        fn mutated_files_never_panic(
            cut in 0usize..60,
            flips in proptest::collection::vec((0usize..60, any::<u8>()), 0..4),
            gzip in any::<bool>(),
        ) {
            let (dims, data) = sample();
            let mut bytes = Vec::new();
            if gzip {
                write_idx_gz(&mut bytes, &dims, &data).unwrap();
            } else {
                write_idx(&mut bytes, &dims, &data).unwrap();
            }
            for (at, x) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= x;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            if let Ok(a) = read_idx(&bytes[..], p()) {
                prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
            }
        }

        #[test]
        fn round_trip_any_shape(dims in proptest::collection::vec(0usize..5, 0..4), seed in any::<u8>()) {
            let len: usize = dims.iter().product();
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let a = read_idx(&raw(&dims, &data)[..], p()).unwrap();
            prop_assert_eq!(a.dims, dims);
            prop_assert_eq!(a.data, data);
        }
    }
}
