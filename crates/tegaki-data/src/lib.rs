//! Datasets for tegaki: MNIST, Fashion-MNIST, KMNIST and CIFAR-10 from disk,
//! contest text files, verified installs (and, with the `download` feature,
//! downloads), deterministic minibatches and on-the-fly augmentation.
//!
//! Parsing reads from `impl Read`, so tests build tiny files in memory; only
//! [`install`] touches the file system beyond reading, and only its `http`
//! part (feature `download`) the network.
//!
//! Typical use by a training loop:
//! ```no_run
//! use tegaki_data::{Batches, DatasetKind, Split, epoch_order, load, resolve_data_dir};
//! let data = load(DatasetKind::Mnist, Split::Train, &resolve_data_dir(None))?;
//! let (train, val) = data.split_validation(5_000, 42);
//! for epoch in 0..2 {
//!     let order = epoch_order(train.len(), 42, epoch);
//!     for idx in Batches::new(&order, 128, false) {
//!         let x = train.batch_f32(idx); // (128, 1, 28, 28) in [0, 1]
//!         let y = train.labels_of(idx);
//!         # let _ = (x, y, &val);
//!     }
//! }
//! # Ok::<(), tegaki_data::DataError>(())
//! ```

pub mod augment;
pub mod batches;
pub mod cifar;
pub mod contest;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod install;
pub mod kinds;

pub use augment::{AugmentConfig, Pipeline};
pub use batches::{Batches, epoch_order};
pub use contest::{read_contest, write_predictions};
pub use dataset::{Dataset, load, resolve_data_dir};
pub use error::DataError;
pub use kinds::{DatasetKind, RemoteFile, Split};
