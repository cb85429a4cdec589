//! The real MNIST files from the shared data folder (`../shared/data` beside
//! the repository, or env `TEGAKI_SHARED_DATA`). Skipped, saying so, when absent.

use std::path::PathBuf;

use tegaki_data::install::install_from_dir;
use tegaki_data::{DatasetKind, Split, load};

fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("TEGAKI_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("mnist/train-images-idx3-ubyte.gz").is_file() {
        Some(dir)
    } else {
        println!(
            "skipped: real MNIST not found in {} (set TEGAKI_SHARED_DATA)",
            dir.display()
        );
        None
    }
}

#[test]
fn real_mnist_loads_with_right_shapes_and_histogram() {
    let Some(dir) = shared_data() else { return };
    let train = load(DatasetKind::Mnist, Split::Train, &dir).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.shape(), (1, 28, 28));
    assert_eq!(train.images().dim(), (60_000, 784));
    assert_eq!(
        train.label_histogram(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let test = load(DatasetKind::Mnist, Split::Test, &dir).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(
        test.label_histogram(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // the usual normalisation constants (PyTorch's MNIST example)
    let (mean, std) = train.pixel_mean_std();
    assert!(
        (mean - 0.1307).abs() < 1e-4 && (std - 0.3081).abs() < 1e-4,
        "{mean} {std}"
    );
    let x = train.batch_f32(&[0]);
    assert_eq!(x.dim(), (1, 1, 28, 28));
    assert_eq!(train.labels_of(&[0]), vec![5]);
}

#[test]
fn install_from_shared_folder_verifies_and_loads() {
    let Some(dir) = shared_data() else { return };
    let data = tempfile::tempdir().unwrap();
    let done =
        install_from_dir(DatasetKind::Mnist, &dir.join("mnist"), data.path(), &mut ()).unwrap();
    assert_eq!(done.len(), 4);
    assert!(
        done.iter().all(|d| d.verification.starts_with("sha256 ok")),
        "{done:?}"
    );
    let again =
        install_from_dir(DatasetKind::Mnist, &dir.join("mnist"), data.path(), &mut ()).unwrap();
    assert!(
        again
            .iter()
            .all(|d| d.verification.starts_with("already present")),
        "{again:?}"
    );
    let test = load(DatasetKind::Mnist, Split::Test, data.path()).unwrap();
    assert_eq!(test.len(), 10_000);
    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(data.path().join("mnist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".part")), "{names:?}");
}
