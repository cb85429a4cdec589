//! The one error type of this crate: every variant names the file (or URL,
//! or config field) and says what was expected.

use std::path::PathBuf;

/// Everything that can go wrong reading, fetching or configuring data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file starts like a gzip stream but does not decompress.
    #[error("{}: corrupt gzip data: {source}", path.display())]
    CorruptGzip {
        /// The file involved.
        path: PathBuf,
        /// What the decompressor reported.
        source: std::io::Error,
    },
    /// The first four bytes are not an IDX magic number `00 00 08 DD`.
    #[error(
        "{}: not an IDX file of unsigned bytes: magic is {found:#010x}, expected 0x000008DD (DD = number of dimensions)",
        path.display()
    )]
    BadMagic {
        /// The file involved.
        path: PathBuf,
        /// The four bytes found, big-endian.
        found: u32,
    },
    /// The IDX file has a different number of dimensions than its role needs.
    #[error("{}: expected {expected} dimensions ({what}), found {found}", path.display())]
    WrongDims {
        /// The file involved.
        path: PathBuf,
        /// What the file should hold, e.g. "images N x H x W".
        what: &'static str,
        /// Expected number of dimensions.
        expected: usize,
        /// Number of dimensions in the header.
        found: usize,
    },
    /// The header's dimensions multiply to more bytes than can be addressed.
    #[error("{}: header dimensions {dims:?} are too large", path.display())]
    DimsTooLarge {
        /// The file involved.
        path: PathBuf,
        /// The dimensions in the header.
        dims: Vec<u64>,
    },
    /// The file ended before the header or the data it announced.
    #[error("{}: truncated: expected {expected} bytes of {part}, found {found}", path.display())]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// "header" or "data".
        part: &'static str,
        /// Bytes expected.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The file holds more bytes than its header announced.
    #[error("{}: {extra} unexpected bytes after the {expected} bytes the header announced", path.display())]
    TrailingData {
        /// The file involved.
        path: PathBuf,
        /// Bytes announced by the header (after the header itself).
        expected: u64,
        /// At least this many extra bytes were found.
        extra: u64,
    },
    /// The image and label files disagree on the number of examples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },
    /// The images do not have the dataset's size.
    #[error("{}: images are {found:?}, expected {expected:?} (channels, height, width)", path.display())]
    WrongImageShape {
        /// The file involved.
        path: PathBuf,
        /// The dataset's shape.
        expected: (usize, usize, usize),
        /// The file's shape.
        found: (usize, usize, usize),
    },
    /// A label is not a valid class index.
    #[error("{}: label {label} at index {index} is not below the number of classes {classes}", path.display())]
    LabelOutOfRange {
        /// The file involved.
        path: PathBuf,
        /// Position of the bad label.
        index: usize,
        /// The label found.
        label: u8,
        /// Number of classes of the dataset.
        classes: usize,
    },
    /// A CIFAR-10 batch file is malformed.
    #[error("{}: {message}", path.display())]
    BadCifar {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A contest file has a bad line.
    #[error("{}: line {line}: {message}", path.display())]
    Contest {
        /// The file involved.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A dataset's files are not in the data directory.
    #[error("{dataset} not found in {} (looked for {looked_for}); run `{command}`, or `{command} --from DIR` with local {local_kind}", dir.display())]
    Missing {
        /// Display name of the dataset.
        dataset: &'static str,
        /// The directory searched.
        dir: PathBuf,
        /// The file name(s) looked for.
        looked_for: String,
        /// The command that fetches the data.
        command: String,
        /// What `--from DIR` expects, e.g. "IDX files".
        local_kind: &'static str,
    },
    /// A downloaded or copied file does not have the published checksum.
    #[error(
        "{source_name}: SHA-256 mismatch: expected {expected}, got {found}; the file was discarded"
    )]
    Checksum {
        /// The URL or local path the bytes came from.
        source_name: String,
        /// The published checksum.
        expected: String,
        /// The checksum of the bytes received.
        found: String,
    },
    /// Every mirror failed for one file.
    #[error("could not fetch {file}:\n{}\nfetch it by hand (SHA-256 {sha256}) and run `cargo xtask download {dataset} --from DIR`", attempts.join("\n"))]
    Download {
        /// The file name.
        file: String,
        /// The dataset's command-line name.
        dataset: &'static str,
        /// The published checksum.
        sha256: &'static str,
        /// One line per URL tried: "URL: reason".
        attempts: Vec<String>,
    },
    /// A configuration value is invalid or a config file does not parse.
    #[error("{field}: {message}")]
    InvalidConfig {
        /// The field (e.g. `augment.affine.scale`) or file involved.
        field: String,
        /// What was wrong and what is allowed.
        message: String,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}
