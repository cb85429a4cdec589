//! Helpers shared by the CLI's end-to-end tests: running the binary and a
//! small generated MNIST-shaped dataset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `tegaki` binary with `args` on 2 threads.
pub fn tegaki(args: &[&str]) -> Output {
    tegaki_with_env(args, &[])
}

/// [`tegaki`] with extra environment variables.
pub fn tegaki_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tegaki"))
        .args(args)
        .env("TEGAKI_THREADS", "2")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh, empty temporary folder for this test binary (`tag` keeps the
/// test files apart).
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tegaki-cli-{tag}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Class k is a vertical bar at column 3+2k.
pub fn image(k: usize, i: usize) -> Vec<u8> {
    (0..784)
        .map(|p| {
            let (y, x) = (p / 28, p % 28);
            let noise = ((i * 13 + p * 7) % 40) as u8;
            if x >= 3 + 2 * k && x < 5 + 2 * k && (4..24).contains(&y) {
                250 - noise
            } else {
                noise
            }
        })
        .collect()
}

/// `dir/mnist` with `train` training and `test` test images of [`image`].
pub fn write_data(dir: &Path, train: usize, test: usize) {
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images: Vec<u8> = (0..n).flat_map(|i| image(i % 10, i)).collect();
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-images-idx3-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n, 28, 28], &images).unwrap();
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-labels-idx1-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n], &labels).unwrap();
    }
}
