//! Project automation: `cargo xtask <task>` (see `cargo xtask --help`).

// Doc comments here double as `--help` texts, where `<placeholder>` is the
// usual notation, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use clap::{Parser, Subcommand};

mod augment_preview;
mod bench;
mod bench_optimizers;
mod ci;
mod download;
mod report;
mod smoke;
mod train;

/// tegaki's project tasks. Run from anywhere inside the repository.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The checks expected before a commit: fmt --check, clippy -D warnings, tests, docs.
    Ci(ci::Args),
    /// Fetch and verify datasets: mnist, fashion-mnist, kmnist, cifar10 or all (`--from DIR` works offline).
    Download(download::Args),
    /// Write a PNG grid of original images and their augmented versions.
    AugmentPreview(augment_preview::Args),
    /// The anchors' W1/W2/W3 MNIST throughput workloads (release build), one JSON line each.
    Bench(bench::Args),
    /// Train the same MNIST network with every optimizer over several seeds; writes reports/bench-optimizers/.
    BenchOptimizers(bench_optimizers::Args),
    /// Train a config (default configs/cnn.toml) with an optimised build, fetching the data first if missing.
    Train(train::Args),
    /// Write report.md (curves, confusion matrix, wrong images, final numbers) into a run folder.
    Report(report::Args),
    /// A tiny end-to-end training run on a slice of MNIST that must beat chance (used by CI).
    Smoke(smoke::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Ci(args) => ci::run(args),
        Task::Download(args) => download::run(args),
        Task::AugmentPreview(args) => augment_preview::run(args),
        Task::Bench(args) => bench::run(args),
        Task::BenchOptimizers(args) => bench_optimizers::run(args),
        Task::Train(args) => train::run(args),
        Task::Report(args) => report::run(args),
        Task::Smoke(args) => smoke::run(args),
    }
}
