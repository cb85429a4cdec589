//! The contest formats: unlabelled images as text, and predictions as text.
//!
//! Images: one per line, 784 whitespace-separated integers 0..=255 (a 28x28
//! image, row-major). Predictions: one label per line, in the same order.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use ndarray::Array2;

use crate::error::DataError;

/// Values per contest image (28 x 28).
pub const CONTEST_PIXELS: usize = 784;

/// Reads contest images from `reader`; `path` names the source in errors.
/// Blank lines at the end are ignored; anywhere else they are an error, since
/// predictions are matched to images by line.
pub fn read_contest_from(reader: impl Read, path: &Path) -> Result<Array2<u8>, DataError> {
    let err = |line: usize, message: String| DataError::Contest {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut data = Vec::new();
    let mut rows = 0usize;
    let mut blank_at: Option<usize> = None;
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => err(lineno, "not valid UTF-8 text".into()),
            _ => DataError::io(path, e),
        })?;
        if line.trim().is_empty() {
            blank_at.get_or_insert(lineno);
            continue;
        }
        if let Some(b) = blank_at {
            return Err(err(b, "blank line between images".into()));
        }
        let start = data.len();
        for (j, tok) in line.split_whitespace().enumerate() {
            let value: u64 = tok.parse().map_err(|_| {
                err(
                    lineno,
                    format!("value {} is `{tok}`, expected an integer 0..=255", j + 1),
                )
            })?;
            if value > 255 {
                return Err(err(
                    lineno,
                    format!("value {} is {value}, out of range 0..=255", j + 1),
                ));
            }
            if j >= CONTEST_PIXELS {
                let found = line.split_whitespace().count();
                return Err(err(
                    lineno,
                    format!("expected {CONTEST_PIXELS} values, found {found}"),
                ));
            }
            data.push(value as u8);
        }
        let found = data.len() - start;
        if found != CONTEST_PIXELS {
            return Err(err(
                lineno,
                format!("expected {CONTEST_PIXELS} values, found {found}"),
            ));
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(err(1, "no images: the file is empty".into()));
    }
    Ok(Array2::from_shape_vec((rows, CONTEST_PIXELS), data).expect("rows of 784 checked"))
}

/// Reads a contest image file into `(N, 784)` bytes.
pub fn read_contest(path: &Path) -> Result<Array2<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    read_contest_from(file, path)
}

/// Writes one label per line to `path`, atomically (temp file + rename).
pub fn write_predictions(path: &Path, labels: &[usize]) -> Result<(), DataError> {
    let mut text = String::with_capacity(labels.len() * 2);
    for l in labels {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    tegaki_tensor::io::write_atomic(path, text.as_bytes()).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: u32, n: usize) -> String {
        vec![v.to_string(); n].join(" ")
    }

    fn read(text: &str) -> Result<Array2<u8>, DataError> {
        read_contest_from(text.as_bytes(), Path::new("c.txt"))
    }

    #[test]
    fn reads_generated_file() {
        let text = format!("{}\n{}\t\n\n", line(0, 784), line(255, 784));
        let a = read(&text).unwrap();
        assert_eq!(a.dim(), (2, 784));
        assert_eq!((a[[0, 0]], a[[1, 783]]), (0, 255));
    }

    #[test]
    fn bad_lines_name_line_and_problem() {
        let good = line(1, 784);
        let cases = [
            (
                format!("{good}\n{}\n", line(1, 783)),
                "c.txt: line 2: expected 784 values, found 783",
            ),
            (
                format!("{}\n", line(1, 785)),
                "c.txt: line 1: expected 784 values, found 785",
            ),
            (
                format!("{good}\n{} 300\n", line(1, 783)),
                "c.txt: line 2: value 784 is 300, out of range 0..=255",
            ),
            (
                format!("x {}\n", line(1, 783)),
                "c.txt: line 1: value 1 is `x`, expected an integer 0..=255",
            ),
            (
                format!("-1 {}\n", line(1, 783)),
                "c.txt: line 1: value 1 is `-1`",
            ),
            (
                format!("{good}\n\n{good}\n"),
                "c.txt: line 2: blank line between images",
            ),
            (String::new(), "c.txt: line 1: no images"),
        ];
        for (text, want) in cases {
            let e = read(&text).unwrap_err().to_string();
            assert!(e.starts_with(want), "got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn predictions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pred.txt");
        write_predictions(&p, &[3, 1, 4]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "3\n1\n4\n");
        assert!(write_predictions(&dir.path().join("no/such/dir/p.txt"), &[1]).is_err());
    }
}
