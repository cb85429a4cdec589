//! `cargo xtask bench`: the anchors' throughput workloads (W1, W2, W3 on
//! MNIST) trained and evaluated by tegaki, one JSON line each in the format
//! of `anchors/python/bench.py`.
//!
//! The measurement itself is the `tegaki-bench` binary, built here in release
//! mode (no `-C target-cpu`: the GEMM kernels are chosen at run time) and run
//! once per workload, so that each line's peak RSS is that workload's alone.
//!
//! With `--compare PYTHON` (the anchors' virtual environment), each workload
//! and thread count is also run through `anchors/python/bench.py` for PyTorch
//! and JAX, interleaved with tegaki so all three see the same machine load,
//! and a Markdown table of the ratios follows the JSON lines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

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
    /// Threads (tegaki's rayon pool; the anchors' thread cap); a
    /// comma-separated list runs each.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    threads: Vec<usize>,
    /// Timed training steps per workload [default: 300, W3: 100].
    #[arg(long)]
    steps: Option<usize>,
    /// Data folder holding `mnist/` [default: $TEGAKI_DATA, else ./data, else
    /// ../shared/data when it holds MNIST].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Turn off tegaki's sparse-input and sparse-gradient paths (dense
    /// kernels only).
    #[arg(long)]
    dense: bool,
    /// Turn off tegaki's Winograd convolutions (im2col + GEMM everywhere).
    #[arg(long)]
    no_winograd: bool,
    /// Python of the anchors' virtual environment: also run PyTorch and JAX
    /// (`anchors/python/bench.py`) side by side and print a ratio table.
    #[arg(long, value_name = "PYTHON")]
    compare: Option<PathBuf>,
    /// The anchors' Python folder [default: ../shared/anchors/python].
    #[arg(long)]
    anchors: Option<PathBuf>,
    /// Also write the JSON lines and the table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
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

/// Runs `cmd`, echoes its stdout (one JSON line) and parses that line.
fn json_line(mut cmd: Command, what: &str) -> anyhow::Result<Value> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{what} printed no JSON line"))?;
    println!("{line}");
    serde_json::from_str(line).with_context(|| format!("{what}: bad JSON line"))
}

fn rate(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn num(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| tegaki_nn::grouped(x.round() as usize))
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
    let anchors = args.anchors.unwrap_or_else(|| {
        repo_root()
            .join("..")
            .join("shared")
            .join("anchors")
            .join("python")
    });
    if args.compare.is_some() && !anchors.join("bench.py").is_file() {
        bail!(
            "--compare: no bench.py in {} (pass --anchors DIR)",
            anchors.display()
        );
    }
    let mut log = String::new();
    let mut rows = Vec::new();
    for &threads in &args.threads {
        for w in workloads {
            let steps = args.steps.unwrap_or(if *w == "W3" { 100 } else { 300 });
            let mut cmd = Command::new(&exe);
            cmd.args(["--workload", w, "--threads", &threads.to_string()])
                .args(["--steps", &steps.to_string()])
                .arg("--data-dir")
                .arg(&data);
            if args.dense {
                cmd.arg("--dense");
            }
            if args.no_winograd {
                cmd.arg("--no-winograd");
            }
            let ours = json_line(cmd, &format!("tegaki-bench --workload {w}"))?;
            writeln!(log, "{ours}")?;
            let mut others = Vec::new();
            if let Some(python) = &args.compare {
                for imp in ["torch", "jax"] {
                    let v = anchor(python, &anchors, imp, w, threads, steps, &data)?;
                    writeln!(log, "{v}")?;
                    others.push(v);
                }
            }
            rows.push((w.to_string(), threads, ours, others));
        }
    }
    if args.compare.is_some() {
        let table = table(&rows);
        println!("\n{table}");
        log.push('\n');
        log.push_str(&table);
    }
    if let Some(out) = &args.out {
        tegaki_tensor::io::write_atomic(out, log.as_bytes())
            .with_context(|| format!("could not write {}", out.display()))?;
    }
    Ok(())
}

/// One run of the anchors' `bench.py`.
fn anchor(
    python: &Path,
    dir: &Path,
    imp: &str,
    w: &str,
    threads: usize,
    steps: usize,
    data: &Path,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new(python);
    cmd.current_dir(dir)
        .arg("bench.py")
        .args(["--impl", imp, "--workload", w])
        .args([
            "--threads",
            &threads.to_string(),
            "--steps",
            &steps.to_string(),
        ])
        .arg("--require-mnist")
        .env("MNIST_DIR", data.join("mnist"));
    json_line(cmd, &format!("bench.py --impl {imp} --workload {w}"))
}

/// The Markdown ratio table (images/s; ratios are tegaki over the other).
fn table(rows: &[(String, usize, Value, Vec<Value>)]) -> String {
    let mut t = String::from(
        "| workload | threads | train tegaki | train PyTorch | train JAX | vs PyTorch | vs JAX \
         | infer tegaki | infer PyTorch | infer JAX | vs PyTorch | vs JAX | tegaki peak RSS MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (w, threads, ours, others) in rows {
        let pick = |i: usize, key: &str| others.get(i).and_then(|v| rate(v, key));
        let (tt, ti) = (
            rate(ours, "train_images_per_s"),
            rate(ours, "infer_images_per_s"),
        );
        let (pt, jt) = (pick(0, "train_images_per_s"), pick(1, "train_images_per_s"));
        let (pi, ji) = (pick(0, "infer_images_per_s"), pick(1, "infer_images_per_s"));
        let _ = writeln!(
            t,
            "| {w} | {threads} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(tt),
            num(pt),
            num(jt),
            ratio(tt, pt),
            ratio(tt, jt),
            num(ti),
            num(pi),
            num(ji),
            ratio(ti, pi),
            ratio(ti, ji),
            rate(ours, "peak_rss_mb").map_or("-".into(), |m| format!("{m:.0}")),
        );
    }
    t
}
