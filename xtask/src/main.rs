//! Project automation: `cargo xtask <task>` (see `cargo xtask --help`).

use clap::{Parser, Subcommand};

mod ci;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Ci(args) => ci::run(args),
    }
}
