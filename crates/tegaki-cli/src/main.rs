//! `tegaki`: train, evaluate and predict handwritten digits with networks whose
//! every layer has a hand-written backward pass.

// Doc comments here double as `--help` texts, where `<placeholder>` is the
// usual notation, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

// Layers allocate multi-megabyte activations every step; glibc returns such
// blocks to the OS and page-faults them back in each time (~5 ms per 10 MB
// here), mimalloc keeps them mapped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod gan;
mod preprocess;

/// Train, evaluate and use handwritten-digit classifiers on the CPU.
///
/// Every layer's forward and backward pass is written by hand and checked
/// against finite differences. Data: MNIST, Fashion-MNIST, KMNIST (IDX files)
/// and CIFAR-10, looked up in --data-dir, then $TEGAKI_DATA, then ./data
/// (fetch them with `cargo xtask download`).
#[derive(Parser)]
#[command(name = "tegaki", version, about, long_about, max_term_width = 100)]
struct Cli {
    /// Worker threads (0 = one per core).
    #[arg(
        long,
        global = true,
        default_value_t = 0,
        env = "TEGAKI_THREADS",
        hide_env_values = true
    )]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier described by an experiment config (TOML).
    ///
    /// Writes the run folder: config.toml (resolved), metrics.csv,
    /// last.safetensors (with optimizer and RNG state, for --resume) and
    /// best.safetensors. Ctrl-C saves `last` and exits; --resume continues
    /// exactly where it stopped.
    Train(TrainArgs),
    /// Evaluate a trained run on the test set: accuracy, per-class accuracy,
    /// confusion matrix (printed and confusion.png) and the most confidently
    /// wrong images (wrong.png).
    Eval(EvalArgs),
    /// Classify image files (PNG/JPG of any size) or a contest file.
    ///
    /// Images are made MNIST-like first: grey, inverted if the paper is
    /// light, cropped to the ink, scaled to fit 20x20, centred by centre of
    /// mass in 28x28. With --contest, reads one image per line (784 integers
    /// 0..255) and writes one label per line to --out.
    Predict(PredictArgs),
    /// Print the layer table of a config's model (output shapes, parameters).
    Summary(SummaryArgs),
    /// Train, sample and score a DCGAN that writes digits.
    Gan(gan::GanArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Experiment config (see configs/*.toml). Optional with --resume.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Folder with the datasets (default: $TEGAKI_DATA, then ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run folder (default: runs/<config name>).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override the config's number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the config's batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the optimizer's learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Train on only the first N training images (smoke runs).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Test on only the first N test images (smoke runs).
    #[arg(long)]
    limit_test: Option<usize>,
}

#[derive(Args)]
struct EvalArgs {
    /// The run folder written by `tegaki train`.
    #[arg(long)]
    run: PathBuf,
    /// Folder with the datasets (default: $TEGAKI_DATA, then ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Which checkpoint to evaluate.
    #[arg(long, value_enum, default_value_t = Which::Best)]
    checkpoint: Which,
    /// How many confidently-wrong images to show in wrong.png.
    #[arg(long, default_value_t = 40)]
    wrong: usize,
}

#[derive(Args)]
struct PredictArgs {
    /// The run folder written by `tegaki train`.
    #[arg(long)]
    run: PathBuf,
    /// Image files to classify.
    inputs: Vec<PathBuf>,
    /// A contest file: one image per line, 784 integers 0..255.
    #[arg(long, requires = "out")]
    contest: Option<PathBuf>,
    /// Where to write the contest predictions (one label per line).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Which checkpoint to use.
    #[arg(long, value_enum, default_value_t = Which::Best)]
    checkpoint: Which,
}

#[derive(Args)]
struct SummaryArgs {
    /// Experiment config.
    #[arg(long, short)]
    config: PathBuf,
}

/// A checkpoint in a run folder.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Which {
    /// best.safetensors (best validation metric).
    Best,
    /// last.safetensors (end of the last epoch).
    Last,
}

impl Which {
    fn path(self, run: &Path) -> PathBuf {
        match self {
            Which::Best => run.join("best.safetensors"),
            Which::Last => run.join("last.safetensors"),
        }
    }
}

fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: finishing the current step and saving the last checkpoint (Ctrl-C again to quit now)");
    })
    .context("could not install the Ctrl-C handler")?;
    Ok(flag)
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = tegaki_tensor::parallel::set_num_threads(cli.threads) {
        eprintln!("warning: {e}");
    }
    let result = match cli.command {
        Command::Train(a) => commands::train(a),
        Command::Eval(a) => commands::eval(a),
        Command::Predict(a) => commands::predict(a),
        Command::Summary(a) => commands::summary(a),
        Command::Gan(a) => gan::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn require_file(path: &Path, what: &str) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("{what} {} does not exist", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    fn help(path: &[&str]) -> String {
        let mut cmd = Cli::command().term_width(100);
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub
                .find_subcommand_mut(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        sub.render_long_help().to_string()
    }

    #[test]
    fn help_texts() {
        insta::assert_snapshot!("tegaki", help(&[]));
        for name in ["train", "eval", "predict", "summary"] {
            insta::assert_snapshot!(name, help(&[name]));
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
