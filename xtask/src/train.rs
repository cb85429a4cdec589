//! `cargo xtask train`: fetch the data if it is missing, then train a config
//! with an optimised build of the `tegaki` binary.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::smoke::{cargo, repo_root};

/// Options of `cargo xtask train`.
#[derive(clap::Args)]
pub struct Args {
    /// Experiment config.
    #[arg(long, default_value = "configs/cnn.toml")]
    config: PathBuf,
    /// Data folder (default: $TEGAKI_DATA, then ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Install the dataset from this local folder instead of downloading it.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Run folder (default: runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// More arguments for `tegaki train` (e.g. `-- --epochs 2`).
    #[arg(last = true)]
    rest: Vec<String>,
}

/// Runs the task.
pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    let config = if args.config.is_absolute() {
        args.config.clone()
    } else {
        root.join(&args.config)
    };
    let cfg = tegaki_train::ExperimentConfig::load(&config)?;
    let data_dir = tegaki_data::resolve_data_dir(args.data_dir.as_deref());
    let data_dir = if data_dir.is_absolute() {
        data_dir
    } else {
        std::env::current_dir()?.join(data_dir)
    };
    let kind = cfg.data.dataset;
    let present = tegaki_data::load(kind, tegaki_data::Split::Test, &data_dir).is_ok();
    if !present {
        let dir = data_dir.to_str().context("non-UTF-8 data path")?;
        let mut download = vec!["xtask", "download", kind.name(), "--data-dir", dir];
        let from;
        if let Some(f) = &args.from {
            from = f.to_str().context("non-UTF-8 path")?.to_string();
            download.extend(["--from", from.as_str()]);
        }
        if let Err(e) = cargo(&download) {
            bail!(
                "{e}\n{} is not in {} and could not be downloaded. If this machine is offline, point tegaki at \
                 local IDX files: `cargo xtask train --from DIR` (copies and verifies them) or \
                 `cargo xtask train --data-dir DIR` where DIR/{}/ holds them.",
                kind.display_name(),
                data_dir.display(),
                kind.dir_name()
            );
        }
    }
    let config_s = config
        .to_str()
        .context("non-UTF-8 config path")?
        .to_string();
    let data_s = data_dir
        .to_str()
        .context("non-UTF-8 data path")?
        .to_string();
    let mut cmd: Vec<String> = [
        "run",
        "--release",
        "-q",
        "-p",
        "tegaki-cli",
        "--",
        "train",
        "--config",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.extend([config_s, "--data-dir".into(), data_s]);
    if let Some(out) = &args.out {
        cmd.extend([
            "--out".into(),
            out.to_str().context("non-UTF-8 path")?.to_string(),
        ]);
    }
    cmd.extend(args.rest.iter().cloned());
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    cargo(&refs)
}
