//! `tegaki gan train|sample|score`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tegaki_gan::sample::{grid_png, to_unit};
use tegaki_gan::score::classify;
use tegaki_gan::train::{GanProgress, config_path, last_path, load_training_data};
use tegaki_gan::{
    Gan, GanConfig, GanOptions, GanOutcome, GanOverrides, class_histogram, inception_score,
};
use tegaki_train::{ExperimentConfig, RunDir};

use crate::interrupt_flag;

/// The `gan` subcommand group.
#[derive(Args)]
pub struct GanArgs {
    #[command(subcommand)]
    command: GanCommand,
}

#[derive(Subcommand)]
enum GanCommand {
    /// Train a DCGAN (optionally class-conditional) described by a GAN config.
    ///
    /// Writes the run folder: config.toml, metrics.csv, last.safetensors
    /// (both networks, both optimizers, position) and a 10x10 sample grid
    /// samples-epoch-NNN.png after every epoch. Ctrl-C saves and exits;
    /// --resume continues bit for bit.
    Train(GanTrainArgs),
    /// Draw samples of a trained GAN as a PNG grid.
    Sample(GanSampleArgs),
    /// Score a GAN with a trained classifier: Inception Score and class histogram.
    Score(GanScoreArgs),
}

#[derive(Args)]
struct GanTrainArgs {
    /// GAN config (see configs/dcgan.toml, configs/cdcgan.toml). Optional with --resume.
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
    /// Train on only the first N training images (smoke runs).
    #[arg(long)]
    limit_train: Option<usize>,
}

#[derive(Args)]
struct GanSampleArgs {
    /// The run folder written by `tegaki gan train`.
    #[arg(long)]
    run: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Only this digit (needs a conditional run).
    #[arg(long)]
    digit: Option<usize>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per row (default: the square root of --n, rounded up).
    #[arg(long)]
    columns: Option<usize>,
    /// Output PNG.
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct GanScoreArgs {
    /// The GAN run folder.
    #[arg(long)]
    run: PathBuf,
    /// A classifier run folder written by `tegaki train` (its best.safetensors is used).
    #[arg(long)]
    classifier: PathBuf,
    /// Number of generated images (a conditional run makes n/10 of each digit).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder with the datasets, for the real-data reference score.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(a: GanArgs) -> anyhow::Result<()> {
    match a.command {
        GanCommand::Train(a) => train(a),
        GanCommand::Sample(a) => sample(a),
        GanCommand::Score(a) => score(a),
    }
}

fn train(a: GanTrainArgs) -> anyhow::Result<()> {
    let out = match (&a.out, &a.config) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => PathBuf::from("runs").join(c.file_stem().unwrap_or_default()),
        (None, None) => {
            bail!("give --config FILE (and optionally --out DIR), or --out DIR with --resume")
        }
    };
    let (mut cfg, cfg_path) = if a.resume {
        let p = config_path(&out);
        if !p.is_file() {
            bail!(
                "{} is not a GAN run folder (no config.toml) to resume",
                out.display()
            );
        }
        (GanConfig::load(&p)?, p)
    } else {
        let Some(c) = &a.config else {
            bail!("--config FILE is required (unless --resume)")
        };
        if last_path(&out).exists() {
            bail!(
                "{} already holds a run; continue it with --resume, or choose another folder with --out",
                out.display()
            );
        }
        (GanConfig::load(c)?, c.clone())
    };
    let overrides = GanOverrides {
        epochs: a.epochs,
        seed: a.seed,
        limit_train: a.limit_train,
    };
    cfg.apply(&overrides, &cfg_path)?;
    let dir = tegaki_data::resolve_data_dir(a.data_dir.as_deref());
    let data = load_training_data(&cfg, &dir)?;
    let mut gan = Gan::new(cfg.clone());
    let k = cfg.condition_classes();
    eprintln!(
        "{}: {} training images, {}, seed {}",
        cfg.data.dataset,
        data.len(),
        if cfg.conditional {
            "class-conditional"
        } else {
            "unconditional"
        },
        cfg.seed
    );
    eprintln!(
        "generator:\n{}",
        tegaki_nn::summary(&mut gan.generator, &[cfg.latent_dim + k])
            .map_err(anyhow::Error::msg)?
    );
    eprintln!(
        "discriminator:\n{}",
        tegaki_nn::summary(&mut gan.discriminator, &[1 + k, 28, 28]).map_err(anyhow::Error::msg)?
    );
    let options = GanOptions {
        resume: a.resume,
        interrupt: Some(interrupt_flag()?),
        no_grids: false,
    };
    let started = std::time::Instant::now();
    let outcome = tegaki_gan::train_gan(&cfg, &data, &out, &options, &mut GanProgress::default())?;
    if let GanOutcome::Finished { epochs } = outcome {
        eprintln!(
            "{epochs} epochs in {:.0}s; samples in {}; try `tegaki gan sample --run {} --out grid.png`",
            started.elapsed().as_secs_f64(),
            out.display(),
            out.display()
        );
    }
    Ok(())
}

fn sample(a: GanSampleArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut gan = Gan::open(&a.run)?;
    let labels = gan.labels(a.n, a.digit)?;
    let images = gan.generate(a.n, &labels, a.seed);
    let columns = a
        .columns
        .unwrap_or_else(|| (a.n as f64).sqrt().ceil() as usize)
        .max(1);
    grid_png(&images.into_dyn(), columns, 2, None, &a.out)?;
    eprintln!("wrote {} samples to {}", a.n, a.out.display());
    Ok(())
}

/// The classifier of a run folder with `best.safetensors` loaded.
fn load_classifier(run: &Path) -> anyhow::Result<tegaki_nn::Sequential> {
    let dir = RunDir::open(run)?;
    let cfg = ExperimentConfig::load(&dir.config_path())?;
    let (c, h, w) = cfg.data.dataset.shape();
    if (c, h, w) != (1, 28, 28) {
        bail!(
            "{}: the classifier is for {c}x{h}x{w} images, the GAN makes 1x28x28",
            run.display()
        );
    }
    let mut model = tegaki_train::model::build_model(
        &cfg.model,
        &[c, h, w],
        &mut tegaki_tensor::rng::stream(cfg.seed, "init"),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("building the model of {}", dir.config_path().display()))?;
    let best = dir.best_path();
    if !best.is_file() {
        bail!(
            "{} does not exist; the classifier run has not finished an epoch",
            best.display()
        );
    }
    RunDir::load_checkpoint(&best, &mut model)?;
    Ok(model)
}

fn histogram_line(h: &[f64]) -> String {
    h.iter()
        .enumerate()
        .map(|(i, f)| format!("{i}: {:.1}%", 100.0 * f))
        .collect::<Vec<_>>()
        .join("  ")
}

fn score(a: GanScoreArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut gan = Gan::open(&a.run)?;
    let mut clf = load_classifier(&a.classifier)?;
    let labels = gan.labels(a.n, None)?;
    let images = gan.generate(a.n, &labels, a.seed);
    let probs = classify(&mut clf, &to_unit(&images.into_dyn()));
    let is = inception_score(probs.view());
    let hist = class_histogram(probs.view());
    let (lo, hi) = hist.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &f| {
        (lo.min(f), hi.max(f))
    });
    println!(
        "generated ({} samples, {}): Inception Score {is:.3}",
        a.n,
        if gan.is_conditional() {
            "n/10 per digit"
        } else {
            "unconditional"
        }
    );
    println!("  class histogram: {}", histogram_line(&hist));
    println!(
        "  smallest class {:.1}%, largest {:.1}%",
        100.0 * lo,
        100.0 * hi
    );
    if !labels.is_empty() {
        let agree = probs
            .rows()
            .into_iter()
            .zip(&labels)
            .filter(|(row, l)| {
                tegaki_train::evaluate::argmax(row.as_slice().expect("contiguous")).0 == **l
            })
            .count();
        println!(
            "  classifier agrees with the requested digit on {:.2}%",
            100.0 * agree as f64 / labels.len() as f64
        );
    }
    let dir = tegaki_data::resolve_data_dir(a.data_dir.as_deref());
    match tegaki_data::load(gan.config.data.dataset, tegaki_data::Split::Test, &dir) {
        Ok(test) => {
            let all: Vec<usize> = (0..test.len()).collect();
            let real = classify(&mut clf, &test.batch_f32(&all).into_dyn());
            println!(
                "real {} test set ({} images): Inception Score {:.3}",
                gan.config.data.dataset,
                test.len(),
                inception_score(real.view())
            );
            println!(
                "  class histogram: {}",
                histogram_line(&class_histogram(real.view()))
            );
        }
        Err(e) => eprintln!("(no reference score for real images: {e})"),
    }
    Ok(())
}
