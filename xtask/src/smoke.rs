//! `cargo xtask smoke`: a tiny end-to-end training run that must beat chance.
//!
//! Uses the real MNIST files from `../shared/data/mnist` when they exist,
//! installed through the same `download --from` path a user takes; otherwise
//! it generates a small learnable IDX dataset. Then it runs the `tegaki`
//! binary on `configs/smoke.toml` and checks the test accuracy it reports.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Options of `cargo xtask smoke`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder with the reference MNIST files (default: ../shared/data/mnist).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Minimum test accuracy to pass.
    #[arg(long, default_value_t = 0.5)]
    min_accuracy: f64,
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

/// Runs `cargo <args>` from the repository root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("could not run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Writes a small synthetic MNIST-format dataset: each class is a bright bar at
/// its own position plus noise, so a tiny MLP learns it in one epoch.
fn synthetic_mnist(dir: &Path) -> anyhow::Result<()> {
    use rand::RngExt;
    use tegaki_tensor::rng;
    std::fs::create_dir_all(dir)?;
    let mut r = rng::stream(7, "smoke-data");
    for (prefix, n) in [("train", 3000usize), ("t10k", 1000)] {
        let mut images = vec![0u8; n * 784];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let k = r.random_range(0..10usize);
            labels[i] = k as u8;
            let img = &mut images[i * 784..(i + 1) * 784];
            for (p, v) in img.iter_mut().enumerate() {
                let (y, x) = (p / 28, p % 28);
                let on = y >= 2 + 2 * k && y < 4 + 2 * k && (4..24).contains(&x);
                let noise: u8 = r.random_range(0..60);
                *v = if on { 255 - noise } else { noise };
            }
        }
        let mut f = std::fs::File::create(dir.join(format!("{prefix}-images-idx3-ubyte")))?;
        tegaki_data::idx::write_idx(&mut f, &[n, 28, 28], &images)?;
        let mut f = std::fs::File::create(dir.join(format!("{prefix}-labels-idx1-ubyte")))?;
        tegaki_data::idx::write_idx(&mut f, &[n], &labels)?;
    }
    Ok(())
}

/// Runs the smoke test.
pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    let work = root.join("target").join("smoke");
    let _ = std::fs::remove_dir_all(&work);
    let data = work.join("data");
    let from = args
        .from
        .unwrap_or_else(|| root.join("..").join("shared").join("data").join("mnist"));
    if from.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "smoke: installing MNIST from {} (the `download --from` path)",
            from.display()
        );
        cargo(&[
            "xtask",
            "download",
            "mnist",
            "--from",
            from.to_str().context("non-UTF-8 path")?,
            "--data-dir",
            data.to_str().context("non-UTF-8 path")?,
        ])?;
    } else {
        eprintln!(
            "smoke: {} not found; using a generated MNIST-format dataset instead",
            from.display()
        );
        synthetic_mnist(&data.join("mnist"))?;
    }
    let run_dir = work.join("run");
    cargo(&[
        "run",
        "-q",
        "-p",
        "tegaki-cli",
        "--",
        "train",
        "--config",
        root.join("configs/smoke.toml")
            .to_str()
            .context("non-UTF-8 path")?,
        "--data-dir",
        data.to_str().context("non-UTF-8 path")?,
        "--out",
        run_dir.to_str().context("non-UTF-8 path")?,
    ])?;
    let summary = std::fs::read_to_string(run_dir.join("summary.toml"))
        .with_context(|| format!("{}: the training run left no summary", run_dir.display()))?;
    let acc: f64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("test_accuracy = "))
        .and_then(|v| v.trim().parse().ok())
        .context("summary.toml has no test_accuracy")?;
    for f in [
        "config.toml",
        "metrics.csv",
        "last.safetensors",
        "best.safetensors",
    ] {
        if !run_dir.join(f).is_file() {
            bail!("smoke: the run folder lacks {f}");
        }
    }
    if acc < args.min_accuracy {
        bail!(
            "smoke: test accuracy {acc:.4} is below {:.2} (chance is 0.10)",
            args.min_accuracy
        );
    }
    println!(
        "smoke: 1 passed, 0 failed (test accuracy {:.2}%, chance 10%)",
        100.0 * acc
    );
    Ok(())
}
