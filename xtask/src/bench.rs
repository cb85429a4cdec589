//! `cargo xtask bench`: the anchors' throughput workloads (W1, W2, W3 on
//! MNIST) trained and evaluated by tegaki, one JSON line each in the format
//! of `anchors/python/bench.py`.
//!
//! The measurement itself is the `tegaki-bench` binary, built here in release
//! mode (no `-C target-cpu`: the GEMM kernels are chosen at run time) and run
//! once per workload, so that each line's peak RSS is that workload's alone.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::smoke::{cargo, repo_root};

/// Which workloads to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// 784-100 sigmoid-10, SGD lr 0.01.
    #[value(name = "W1", alias = "w1")]
    W1,
    /// 784-1000 BatchNorm1d ReLU Dropout(0.5)-10, Adam lr 1e-3.
    #[value(name = "W2", alias = "w2")]
    W2,
    /// conv3x3(32)-pool-conv3x3(64)-pool-128-10 CNN, Adam lr 1e-3.
    #[value(name = "W3", alias = "w3")]
    W3,
    /// W1, W2 and W3.
    All,
}

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Workload: W1, W2, W3 or all.
    #[arg(long, value_enum, default_value = "all")]
    workload: Which,
    /// Threads in tegaki's rayon pool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed training steps per workload [default: 300, W3: 100].
    #[arg(long)]
    steps: Option<usize>,
    /// Data folder holding `mnist/` [default: $TEGAKI_DATA, else ./data, else
    /// ../shared/data when it holds MNIST].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The data folder: the flag, `$TEGAKI_DATA` or `./data` as everywhere else,
/// falling back to the shared reference copy next to the repository.
fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    let dir = tegaki_data::resolve_data_dir(flag.as_deref());
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(&dir))
    };
    let shared = repo_root().join("..").join("shared").join("data");
    if !dir.join("mnist").is_dir() && shared.join("mnist").is_dir() {
        shared
    } else {
        dir
    }
}

/// Runs the task.
pub fn run(args: Args) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-q", "-p", "tegaki-bench"])?;
    let exe = repo_root()
        .join("target")
        .join("release")
        .join(format!("tegaki-bench{}", std::env::consts::EXE_SUFFIX));
    let data = data_dir(args.data_dir);
    let workloads: &[&str] = match args.workload {
        Which::W1 => &["W1"],
        Which::W2 => &["W2"],
        Which::W3 => &["W3"],
        Which::All => &["W1", "W2", "W3"],
    };
    for w in workloads {
        let steps = args.steps.unwrap_or(if *w == "W3" { 100 } else { 300 });
        let status = Command::new(&exe)
            .args(["--workload", w, "--threads", &args.threads.to_string()])
            .args(["--steps", &steps.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .status()
            .with_context(|| format!("could not run {}", exe.display()))?;
        if !status.success() {
            bail!("tegaki-bench --workload {w} failed ({status})");
        }
    }
    Ok(())
}
