//! An in-memory labelled image set, and loading the known datasets from disk.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array4, ArrayView2, Axis};
use rayon::prelude::*;

use crate::cifar::{CIFAR10_IMAGE_BYTES, read_cifar_batch};
use crate::error::DataError;
use crate::idx::read_idx_file;
use crate::kinds::{CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, DatasetKind, RemoteFile, Split};

/// Labelled images held compactly as bytes: `images` is `(N, C*H*W)`, one
/// CHW image per row, 0..=255. Conversion to f32 happens per minibatch
/// ([`Dataset::batch_f32`]), so an epoch never copies the whole set.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    images: Array2<u8>,
    labels: Vec<u8>,
    channels: usize,
    height: usize,
    width: usize,
    classes: Vec<String>,
}

tegaki_tensor::simd_dispatch! {
    /// `dst[i] = src[i] / 255`, exactly rounded (a vector divide).
    fn to_unit_f32(src: &[u8], dst: &mut [f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f32::from(s) / 255.0;
        }
    }
}

impl Dataset {
    /// A dataset from raw parts.
    ///
    /// # Panics
    /// If `images` does not have `labels.len()` rows of `c*h*w` bytes, or a
    /// label is not below `classes.len()`: callers build these from data they
    /// already validated, so a mismatch is a bug.
    pub fn from_u8(
        name: impl Into<String>,
        images: Array2<u8>,
        labels: Vec<u8>,
        (channels, height, width): (usize, usize, usize),
        classes: Vec<String>,
    ) -> Self {
        let name = name.into();
        assert_eq!(
            images.dim(),
            (labels.len(), channels * height * width),
            "Dataset::from_u8({name}): images {:?} vs {} labels of {channels}x{height}x{width}",
            images.dim(),
            labels.len()
        );
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= classes.len())
        {
            panic!(
                "Dataset::from_u8({name}): label {l} at {i} but only {} classes",
                classes.len()
            );
        }
        Self {
            name,
            images: images.as_standard_layout().into_owned(),
            labels,
            channels,
            height,
            width,
            classes,
        }
    }

    /// A short name, e.g. `mnist/train`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels per image.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `(channels, height, width)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The raw images, `(N, C*H*W)`.
    pub fn images(&self) -> ArrayView2<'_, u8> {
        self.images.view()
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// How many examples each class has.
    pub fn label_histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.classes.len()];
        for &l in &self.labels {
            h[usize::from(l)] += 1;
        }
        h
    }

    /// The examples at `indices` as f32 NCHW scaled to [0, 1].
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch_f32(&self, indices: &[usize]) -> Array4<f32> {
        let mut out = Array4::zeros((indices.len(), self.channels, self.height, self.width));
        self.batch_f32_into(indices, &mut out);
        out
    }

    /// [`Dataset::batch_f32`] into a reused buffer.
    ///
    /// # Panics
    /// If `out` is not `(indices.len(), C, H, W)` in standard layout, or an
    /// index is out of range.
    pub fn batch_f32_into(&self, indices: &[usize], out: &mut Array4<f32>) {
        let expected = (indices.len(), self.channels, self.height, self.width);
        assert_eq!(
            out.dim(),
            expected,
            "Dataset::batch_f32_into: wrong output shape"
        );
        let flat = out
            .as_slice_mut()
            .expect("Dataset::batch_f32_into: output must be in standard layout");
        let row = self.channels * self.height * self.width;
        if row == 0 {
            return;
        }
        let images = self
            .images
            .as_slice()
            .expect("images are kept in standard layout");
        let convert = |(dst, &i): (&mut [f32], &usize)| {
            assert!(
                i < self.len(),
                "Dataset::batch_f32_into: index {i} out of range"
            );
            to_unit_f32(&images[i * row..(i + 1) * row], dst);
        };
        // Large batches (inference) in parallel: this also keeps the worker
        // threads awake for the forward pass that follows.
        if indices.len() * row >= 1 << 16 {
            flat.par_chunks_exact_mut(row)
                .zip(indices.par_iter())
                .for_each(convert);
        } else {
            flat.chunks_exact_mut(row).zip(indices).for_each(convert);
        }
    }

    /// The labels at `indices` as class indices.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<usize> {
        indices
            .iter()
            .map(|&i| usize::from(self.labels[i]))
            .collect()
    }

    /// A new dataset of the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes.clone(),
        }
    }

    /// This dataset followed by `other` (e.g. pseudo-labelled extra images).
    ///
    /// # Panics
    /// If the image shapes or class lists differ.
    pub fn concat(&self, other: &Dataset) -> Dataset {
        assert_eq!(
            (self.shape(), &self.classes),
            (other.shape(), &other.classes),
            "Dataset::concat({}, {}): shapes or classes differ",
            self.name,
            other.name
        );
        let images = ndarray::concatenate(Axis(0), &[self.images.view(), other.images.view()])
            .expect("same row length checked above");
        let mut labels = self.labels.clone();
        labels.extend_from_slice(&other.labels);
        Dataset {
            name: self.name.clone(),
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes.clone(),
        }
    }

    /// Splits into `(train, validation)` with `n_val` examples drawn at random
    /// (deterministic in `seed`) for validation; both parts keep the original
    /// order of their examples.
    ///
    /// # Panics
    /// If `n_val > self.len()`.
    pub fn split_validation(&self, n_val: usize, seed: u64) -> (Dataset, Dataset) {
        assert!(
            n_val <= self.len(),
            "Dataset::split_validation({}): n_val {n_val} > {} examples",
            self.name,
            self.len()
        );
        let order = crate::batches::shuffled(
            self.len(),
            &mut tegaki_tensor::rng::stream(seed, "validation-split"),
        );
        let mut val: Vec<usize> = order[..n_val].to_vec();
        let mut train: Vec<usize> = order[n_val..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        let mut t = self.subset(&train);
        let mut v = self.subset(&val);
        t.name = format!("{}/train-part", self.name);
        v.name = format!("{}/validation", self.name);
        (t, v)
    }

    /// Splits off the last `n_val` examples as validation, unshuffled.
    ///
    /// # Panics
    /// If `n_val > self.len()`.
    pub fn split_last(&self, n_val: usize) -> (Dataset, Dataset) {
        assert!(
            n_val <= self.len(),
            "Dataset::split_last: n_val {n_val} > {}",
            self.len()
        );
        let cut = self.len() - n_val;
        let first: Vec<usize> = (0..cut).collect();
        let last: Vec<usize> = (cut..self.len()).collect();
        (self.subset(&first), self.subset(&last))
    }

    /// Mean and standard deviation of all pixels on the [0, 1] scale (for
    /// normalisation constants).
    pub fn pixel_mean_std(&self) -> (f64, f64) {
        let mut counts = [0u64; 256];
        for &p in &self.images {
            counts[usize::from(p)] += 1;
        }
        let n = self.images.len().max(1) as f64;
        let mean = counts
            .iter()
            .enumerate()
            .map(|(v, &c)| v as f64 / 255.0 * c as f64)
            .sum::<f64>()
            / n;
        let var = counts
            .iter()
            .enumerate()
            .map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }
}

/// The data directory: the flag if given, else env `TEGAKI_DATA`, else `./data`.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("TEGAKI_DATA") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("data"),
    }
}

fn missing(kind: DatasetKind, dir: &Path, data_dir: &Path, looked_for: String) -> DataError {
    let mut command = kind.download_command();
    if data_dir != Path::new("data") {
        command = format!("{command} --data-dir {}", data_dir.display());
    }
    DataError::Missing {
        dataset: kind.display_name(),
        dir: dir.to_path_buf(),
        looked_for,
        command,
        local_kind: match kind {
            DatasetKind::Cifar10 => "cifar-10-binary.tar.gz or extracted *.bin batch files",
            _ => "IDX files",
        },
    }
}

/// Where a published file (or its gunzipped twin) sits in `dir`, if it does.
pub fn find_local(dir: &Path, file: &RemoteFile) -> Option<PathBuf> {
    [file.name, file.gunzipped_name()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Loads a split of a dataset from `data_dir/<kind.dir_name()>`.
///
/// MNIST-family files may be gzipped or not (detected by content). When files
/// are missing, the error names them and the command that fetches them.
pub fn load(kind: DatasetKind, split: Split, data_dir: &Path) -> Result<Dataset, DataError> {
    let dir = data_dir.join(kind.dir_name());
    let classes: Vec<String> = kind.class_names().iter().map(|s| s.to_string()).collect();
    let (c, h, w) = kind.shape();
    let name = format!("{}/{split}", kind.name());
    if kind == DatasetKind::Cifar10 {
        let names: Vec<&str> = match split {
            Split::Train => CIFAR10_TRAIN_BATCHES.to_vec(),
            Split::Test => vec![CIFAR10_TEST_BATCH],
        };
        let absent: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !dir.join(n).is_file())
            .collect();
        if !absent.is_empty() {
            return Err(missing(kind, &dir, data_dir, absent.join(", ")));
        }
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for n in names {
            let path = dir.join(n);
            let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
            let (im, lb) = read_cifar_batch(std::io::BufReader::new(file), &path)?;
            images.extend_from_slice(&im);
            labels.extend_from_slice(&lb);
        }
        let images = Array2::from_shape_vec((labels.len(), CIFAR10_IMAGE_BYTES), images)
            .expect("read_cifar_batch returns whole records");
        return Ok(Dataset::from_u8(name, images, labels, (c, h, w), classes));
    }

    let files = kind.files();
    let (img_file, lbl_file) = match split {
        Split::Train => (&files[0], &files[1]),
        Split::Test => (&files[2], &files[3]),
    };
    let (img_path, lbl_path) = match (find_local(&dir, img_file), find_local(&dir, lbl_file)) {
        (Some(i), Some(l)) => (i, l),
        (i, l) => {
            let absent: Vec<String> = [(i, img_file), (l, lbl_file)]
                .into_iter()
                .filter(|(p, _)| p.is_none())
                .map(|(_, f)| format!("{}[.gz]", f.gunzipped_name()))
                .collect();
            return Err(missing(kind, &dir, data_dir, absent.join(", ")));
        }
    };
    let img = read_idx_file(&img_path)?;
    let (n, ih, iw) = img.image_dims(&img_path)?;
    if (ih, iw) != (h, w) {
        return Err(DataError::WrongImageShape {
            path: img_path,
            expected: (c, h, w),
            found: (1, ih, iw),
        });
    }
    let lbl = read_idx_file(&lbl_path)?;
    let nl = lbl.label_count(&lbl_path)?;
    if nl != n {
        return Err(DataError::CountMismatch {
            images_path: img_path,
            images: n,
            labels_path: lbl_path,
            labels: nl,
        });
    }
    if let Some((index, &label)) = lbl
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes.len())
    {
        return Err(DataError::LabelOutOfRange {
            path: lbl_path,
            index,
            label,
            classes: classes.len(),
        });
    }
    let images = Array2::from_shape_vec((n, h * w), img.data).expect("read_idx checked the length");
    Ok(Dataset::from_u8(name, images, lbl.data, (c, h, w), classes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::{write_idx, write_idx_gz};

    pub(crate) fn tiny(n: usize) -> Dataset {
        let images = Array2::from_shape_fn((n, 4), |(i, j)| (i * 10 + j) as u8);
        let labels = (0..n).map(|i| (i % 3) as u8).collect();
        Dataset::from_u8(
            "tiny",
            images,
            labels,
            (1, 2, 2),
            vec!["a".into(), "b".into(), "c".into()],
        )
    }

    #[test]
    fn batch_subset_concat_and_split() {
        let d = tiny(10);
        let b = d.batch_f32(&[2, 0]);
        assert_eq!(b.dim(), (2, 1, 2, 2));
        assert_eq!(b[[0, 0, 0, 1]], 21.0 / 255.0);
        assert_eq!(b[[1, 0, 1, 1]], 3.0 / 255.0);
        assert_eq!(d.labels_of(&[2, 4]), vec![2, 1]);
        let s = d.subset(&[5, 1]);
        assert_eq!(s.images().row(0).to_vec(), vec![50, 51, 52, 53]);
        assert_eq!(s.labels(), &[2, 1]);
        let c = d.concat(&s);
        assert_eq!(c.len(), 12);
        assert_eq!(c.images().row(11).to_vec(), vec![10, 11, 12, 13]);
        assert_eq!(d.label_histogram(), vec![4, 3, 3]);

        let (t, v) = d.split_validation(3, 7);
        assert_eq!((t.len(), v.len()), (7, 3));
        assert_eq!(d.split_validation(3, 7), (t.clone(), v.clone()));
        assert_ne!(d.split_validation(3, 8).1, v);
        let mut all: Vec<u8> = t
            .images()
            .column(0)
            .iter()
            .chain(v.images().column(0).iter())
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).map(|i| i * 10).collect::<Vec<u8>>());
        let (a, b) = d.split_last(2);
        assert_eq!(b.images().row(0)[0], 80);
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn pixel_statistics() {
        let d = Dataset::from_u8(
            "s",
            Array2::from_shape_vec((1, 2), vec![0, 255]).unwrap(),
            vec![0],
            (1, 1, 2),
            vec!["x".into()],
        );
        let (m, s) = d.pixel_mean_std();
        assert!((m - 0.5).abs() < 1e-12 && (s - 0.5).abs() < 1e-12);
    }

    #[test]
    #[should_panic(expected = "label 3 at 0")]
    fn from_u8_rejects_bad_labels() {
        Dataset::from_u8(
            "x",
            Array2::zeros((1, 4)),
            vec![3],
            (1, 2, 2),
            vec!["a".into()],
        );
    }

    #[test]
    fn resolve_data_dir_prefers_flag() {
        assert_eq!(resolve_data_dir(Some(Path::new("/x"))), PathBuf::from("/x"));
    }

    fn write_mnist_like(dir: &Path, n_img: usize, n_lbl: usize, gz_images: bool) {
        std::fs::create_dir_all(dir).unwrap();
        let img: Vec<u8> = (0..n_img * 784).map(|i| i as u8).collect();
        let lbl: Vec<u8> = (0..n_lbl).map(|i| (i % 10) as u8).collect();
        if gz_images {
            // gzipped content under the gunzipped name: detection is by magic
            let f = std::fs::File::create(dir.join("t10k-images-idx3-ubyte")).unwrap();
            write_idx_gz(f, &[n_img, 28, 28], &img).unwrap();
        } else {
            let f = std::fs::File::create(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
            write_idx(f, &[n_img, 28, 28], &img).unwrap();
        }
        let f = std::fs::File::create(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        write_idx_gz(f, &[n_lbl], &lbl).unwrap();
    }

    #[test]
    fn load_from_generated_files_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load(DatasetKind::Mnist, Split::Test, tmp.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("MNIST not found in"), "{msg}");
        assert!(
            msg.contains("looked for t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"),
            "{msg}"
        );
        assert!(
            msg.contains("run `cargo xtask download mnist --data-dir"),
            "{msg}"
        );
        assert!(msg.contains("--from DIR` with local IDX files"), "{msg}");

        write_mnist_like(&tmp.path().join("kmnist"), 5, 5, true);
        let d = load(DatasetKind::Kmnist, Split::Test, tmp.path()).unwrap();
        assert_eq!((d.len(), d.shape()), (5, (1, 28, 28)));
        assert_eq!(d.classes()[1], "ki");
        assert_eq!(d.images()[[1, 0]], (784 % 256) as u8);

        write_mnist_like(&tmp.path().join("mnist"), 5, 4, false);
        let e = load(DatasetKind::Mnist, Split::Test, tmp.path()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 5,
                    labels: 4,
                    ..
                }
            ),
            "{e}"
        );

        let e = load(DatasetKind::Cifar10, Split::Train, tmp.path()).unwrap_err();
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
        assert!(
            e.to_string().contains("cargo xtask download cifar10"),
            "{e}"
        );
    }

    #[test]
    fn load_cifar_from_generated_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cifar10");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for i in 0..3u8 {
            bytes.push(i);
            bytes.extend(std::iter::repeat_n(i * 50, CIFAR10_IMAGE_BYTES));
        }
        std::fs::write(dir.join(CIFAR10_TEST_BATCH), &bytes).unwrap();
        let d = load(DatasetKind::Cifar10, Split::Test, tmp.path()).unwrap();
        assert_eq!((d.len(), d.shape()), (3, (3, 32, 32)));
        assert_eq!(d.labels(), &[0, 1, 2]);
        assert_eq!(d.batch_f32(&[2])[[0, 2, 31, 31]], 100.0 / 255.0);
        assert_eq!(d.classes()[0], "airplane");
    }
}
