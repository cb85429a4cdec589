//! The datasets tegaki knows: names, classes, files, checksums and mirrors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A dataset tegaki can fetch and load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Handwritten digits (LeCun et al.), 28x28 grey.
    Mnist,
    /// Zalando's clothing images, a drop-in MNIST replacement, 28x28 grey.
    FashionMnist,
    /// Kuzushiji-MNIST: cursive Japanese hiragana, 28x28 grey.
    Kmnist,
    /// CIFAR-10 (Krizhevsky 2009), 32x32 colour, binary version.
    Cifar10,
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training set (60,000 for the MNIST family, 50,000 for CIFAR-10).
    Train,
    /// The test set (10,000 each).
    Test,
}

/// A file as published: its name, SHA-256 of the published bytes and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// The published file name, e.g. `train-images-idx3-ubyte.gz`.
    pub name: &'static str,
    /// Lower-case hex SHA-256 of the published (compressed) bytes.
    pub sha256: &'static str,
    /// Size of the published file in bytes.
    pub size: u64,
}

impl RemoteFile {
    /// The name without a trailing `.gz` (how a gunzipped copy is called).
    pub fn gunzipped_name(&self) -> &'static str {
        self.name.strip_suffix(".gz").unwrap_or(self.name)
    }
}

const fn rf(name: &'static str, size: u64, sha256: &'static str) -> RemoteFile {
    RemoteFile { name, sha256, size }
}

/// The four IDX file names shared by the MNIST family, in the order
/// train images, train labels, test images, test labels.
pub const IDX_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

// Checksums: tensorflow/datasets url_checksums (see ../shared/docs/ECOSYSTEM.md);
// our local copies in ../shared/data match them byte for byte.
const MNIST_FILES: [RemoteFile; 4] = [
    rf(
        IDX_NAMES[0],
        9_912_422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    rf(
        IDX_NAMES[1],
        28_881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    rf(
        IDX_NAMES[2],
        1_648_877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    rf(
        IDX_NAMES[3],
        4_542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];
const FASHION_FILES: [RemoteFile; 4] = [
    rf(
        IDX_NAMES[0],
        26_421_880,
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    rf(
        IDX_NAMES[1],
        29_515,
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    rf(
        IDX_NAMES[2],
        4_422_102,
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    rf(
        IDX_NAMES[3],
        5_148,
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
];
const KMNIST_FILES: [RemoteFile; 4] = [
    rf(
        IDX_NAMES[0],
        18_165_135,
        "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
    ),
    rf(
        IDX_NAMES[1],
        29_497,
        "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
    ),
    rf(
        IDX_NAMES[2],
        3_041_136,
        "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
    ),
    rf(
        IDX_NAMES[3],
        5_120,
        "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    ),
];
// The Toronto binary archive (170,052,171 bytes, MD5 c32a1d4ab5d03f1284b67883e8d87530).
// The SHA-256 was cross-checked against several independent public pins of the
// same URL (e.g. MLDatasets.jl, torchvision.rb); we could not download it here.
const CIFAR10_FILES: [RemoteFile; 1] = [rf(
    "cifar-10-binary.tar.gz",
    170_052_171,
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
)];

/// CIFAR-10's training batch files inside the archive (and in the data directory).
pub const CIFAR10_TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// CIFAR-10's test batch file.
pub const CIFAR10_TEST_BATCH: &str = "test_batch.bin";

impl DatasetKind {
    /// Every dataset, in the order `download all` fetches them.
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Kmnist,
        DatasetKind::Cifar10,
    ];

    /// The command-line and serde name: `mnist`, `fashion-mnist`, `kmnist`, `cifar10`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Kmnist => "kmnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// The sub-folder of the data directory holding this dataset (same as [`Self::name`]).
    pub fn dir_name(self) -> &'static str {
        self.name()
    }

    /// The name people write: `MNIST`, `Fashion-MNIST`, `KMNIST`, `CIFAR-10`.
    pub fn display_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Kmnist => "KMNIST",
            DatasetKind::Cifar10 => "CIFAR-10",
        }
    }

    /// Class names, indexed by label.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::FashionMnist => &[
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            DatasetKind::Kmnist => &["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
            DatasetKind::Cifar10 => &[
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        }
    }

    /// Number of classes (10 for all four).
    pub fn num_classes(self) -> usize {
        self.class_names().len()
    }

    /// Image shape `(channels, height, width)`.
    pub fn shape(self) -> (usize, usize, usize) {
        match self {
            DatasetKind::Cifar10 => (3, 32, 32),
            _ => (1, 28, 28),
        }
    }

    /// Number of examples in a split.
    pub fn len(self, split: Split) -> usize {
        match (self, split) {
            (DatasetKind::Cifar10, Split::Train) => 50_000,
            (_, Split::Train) => 60_000,
            (_, Split::Test) => 10_000,
        }
    }

    /// The published files with their checksums.
    pub fn files(self) -> &'static [RemoteFile] {
        match self {
            DatasetKind::Mnist => &MNIST_FILES,
            DatasetKind::FashionMnist => &FASHION_FILES,
            DatasetKind::Kmnist => &KMNIST_FILES,
            DatasetKind::Cifar10 => &CIFAR10_FILES,
        }
    }

    /// Base URLs (ending in `/`) tried in order; a file's URL is base + name.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            // yann.lecun.com last: it often answers 403 to scripts.
            DatasetKind::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            DatasetKind::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
            DatasetKind::Kmnist => &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
            DatasetKind::Cifar10 => &["https://www.cs.toronto.edu/~kriz/"],
        }
    }

    /// The command that fetches this dataset.
    pub fn download_command(self) -> String {
        format!("cargo xtask download {}", self.name())
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown dataset name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset `{0}`; expected one of mnist, fashion-mnist, kmnist, cifar10")]
pub struct UnknownDataset(pub String);

impl FromStr for DatasetKind {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDataset(s.to_string()))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_fromstr_and_serde() {
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().unwrap(), k);
            let v: toml::Value = toml::Value::try_from(k).unwrap();
            assert_eq!(v.as_str(), Some(k.name()));
            assert_eq!(k.num_classes(), 10);
            for f in k.files() {
                assert_eq!(f.sha256.len(), 64, "{k} {}", f.name);
                assert!(
                    f.sha256
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
            }
        }
        assert!(
            "emnist"
                .parse::<DatasetKind>()
                .unwrap_err()
                .to_string()
                .contains("fashion-mnist")
        );
    }
}
