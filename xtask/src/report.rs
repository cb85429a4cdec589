//! `cargo xtask report --run runs/NAME`: a Markdown report in the run folder
//! with loss and accuracy curves, the final numbers, per-class accuracy, the
//! confusion matrix and the most confidently wrong test images.

use std::path::PathBuf;

use anyhow::Context;
use tegaki_train::{ExperimentConfig, RunDir};

/// Options of `cargo xtask report`.
#[derive(clap::Args)]
pub struct Args {
    /// The run folder written by `tegaki train`.
    #[arg(long)]
    run: PathBuf,
    /// Data folder (default: $TEGAKI_DATA, then ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs the task.
pub fn run(args: Args) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run)?;
    let cfg = ExperimentConfig::load(&run.config_path())?;
    let data_dir = tegaki_data::resolve_data_dir(args.data_dir.as_deref());
    let mut test = tegaki_data::load(cfg.data.dataset, tegaki_data::Split::Test, &data_dir)?;
    if let Some(limit) = cfg.data.limit_test
        && limit < test.len()
    {
        test = test.subset(&(0..limit).collect::<Vec<_>>());
    }
    let mut model = tegaki_train::trainer::build_for(&cfg, &test)?;
    let ckpt = run.best_path();
    RunDir::load_checkpoint(&ckpt, &mut model)
        .with_context(|| format!("loading {}", ckpt.display()))?;
    let eval = tegaki_train::evaluate(&mut model, &test);
    let path = tegaki_train::report::write_report(&run, &cfg, &eval, &test)?;
    println!(
        "wrote {} (test accuracy {:.2}%)",
        path.display(),
        100.0 * eval.accuracy
    );
    Ok(())
}
