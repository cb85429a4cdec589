//! The subcommands' implementations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ndarray::{Array4, Axis};
use tegaki_data::{Dataset, DatasetKind, Split};
use tegaki_nn::Layer;
use tegaki_train::evaluate::{argmax, predict_proba};
use tegaki_train::model::build_model;
use tegaki_train::{
    ExperimentConfig, Outcome, Overrides, ProgressObserver, RunDir, Session, TrainOptions,
};

use crate::{EvalArgs, PredictArgs, SummaryArgs, TrainArgs, interrupt_flag, require_file};

fn data_dir(flag: Option<&Path>) -> PathBuf {
    tegaki_data::resolve_data_dir(flag)
}

fn load_split(cfg: &ExperimentConfig, split: Split, dir: &Path) -> anyhow::Result<Dataset> {
    let mut data = tegaki_data::load(cfg.data.dataset, split, dir)?;
    if split == Split::Test
        && let Some(limit) = cfg.data.limit_test
        && limit < data.len()
    {
        data = data.subset(&(0..limit).collect::<Vec<_>>());
    }
    Ok(data)
}

/// The model of a run folder with the weights of `checkpoint` loaded.
fn load_run_model(
    run: &Path,
    checkpoint: &Path,
    sample_shape: &[usize],
) -> anyhow::Result<(ExperimentConfig, tegaki_nn::Sequential)> {
    let run = RunDir::open(run)?;
    let cfg = ExperimentConfig::load(&run.config_path())?;
    let mut model = build_model(
        &cfg.model,
        sample_shape,
        &mut tegaki_tensor::rng::stream(cfg.seed, "init"),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("building the model of {}", run.config_path().display()))?;
    require_file(checkpoint, "checkpoint")?;
    RunDir::load_checkpoint(checkpoint, &mut model)?;
    Ok((cfg, model))
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        epochs: a.epochs,
        seed: a.seed,
        batch_size: a.batch_size,
        lr: a.lr,
        limit_train: a.limit_train,
        limit_test: a.limit_test,
    };
    let out = match (&a.out, &a.config) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => PathBuf::from("runs").join(c.file_stem().unwrap_or_default()),
        (None, None) => {
            bail!("give --config FILE (and optionally --out DIR), or --out DIR with --resume")
        }
    };
    let (mut cfg, cfg_path) = if a.resume {
        let run = RunDir::open(&out)?;
        require_file(&run.last_path(), "checkpoint")?;
        let p = run.config_path();
        (ExperimentConfig::load(&p)?, p)
    } else {
        let Some(c) = &a.config else {
            bail!("--config FILE is required (unless --resume)")
        };
        if out.join("last.safetensors").exists() {
            bail!(
                "{} already holds a run; continue it with --resume, or choose another folder with --out",
                out.display()
            );
        }
        (ExperimentConfig::load(c)?, c.clone())
    };
    cfg.apply(&overrides, &cfg_path)?;
    let dir = data_dir(a.data_dir.as_deref());
    let mut session = Session::new(cfg.clone(), &dir)?;
    let run = RunDir::create(&out)?;
    let sample = tegaki_train::trainer::sample_shape(&session.train);
    let mut shape = vec![1];
    shape.extend(&sample);
    eprintln!(
        "{}: {} training images, {} validation, seed {}",
        cfg.data.dataset,
        session.train.len(),
        session.val.as_ref().map_or(0, |v| v.len()),
        cfg.seed
    );
    eprintln!(
        "{}",
        tegaki_nn::summary(&mut session.model, &sample).map_err(anyhow::Error::msg)?
    );
    let options = TrainOptions {
        resume: a.resume,
        interrupt: Some(interrupt_flag()?),
    };
    let started = std::time::Instant::now();
    let outcome = tegaki_train::train(&mut session, &run, &options, &mut ProgressObserver::new())?;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Outcome::Interrupted { .. } => Ok(()),
        Outcome::Finished { epochs, .. } => {
            let test = load_split(&cfg, Split::Test, &dir)?;
            RunDir::load_checkpoint(&run.best_path(), &mut session.model)?;
            let e = tegaki_train::evaluate(&mut session.model, &test);
            eprintln!(
                "test accuracy {:.2}% (loss {:.4}) on {} images with best.safetensors; {epochs} epochs in {:.0}s",
                100.0 * e.accuracy,
                e.loss,
                test.len(),
                seconds
            );
            let mut s = BTreeMap::new();
            s.insert("test_accuracy", format!("{:.6}", e.accuracy));
            s.insert("test_loss", format!("{:.6}", e.loss));
            s.insert("test_images", test.len().to_string());
            s.insert("epochs", epochs.to_string());
            s.insert("train_seconds", format!("{seconds:.1}"));
            let text: String = s.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            run.write_text("summary.toml", &text)?;
            eprintln!("run folder: {}", run.path().display());
            Ok(())
        }
    }
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&a.run)?;
    let cfg = ExperimentConfig::load(&run.config_path())?;
    let dir = data_dir(a.data_dir.as_deref());
    let test = load_split(&cfg, Split::Test, &dir)?;
    let ckpt = a.checkpoint.path(&a.run);
    let (_, mut model) =
        load_run_model(&a.run, &ckpt, &tegaki_train::trainer::sample_shape(&test))?;
    let e = tegaki_train::evaluate(&mut model, &test);
    let classes = test.classes().to_vec();
    println!(
        "{}: {} {} test images",
        ckpt.display(),
        test.len(),
        cfg.data.dataset
    );
    println!(
        "test accuracy {:.2}%  loss {:.4}",
        100.0 * e.accuracy,
        e.loss
    );
    println!("\nper-class accuracy:");
    for (k, acc) in e.per_class_accuracy().iter().enumerate() {
        println!(
            "  {:>2} {:<12} {:6.2}%",
            k,
            classes.get(k).map_or("", String::as_str),
            100.0 * acc
        );
    }
    println!("\nconfusion matrix (rows: true, columns: predicted):");
    print!("     ");
    for p in 0..e.confusion.ncols() {
        print!("{p:>6}");
    }
    println!();
    for (t, row) in e.confusion.outer_iter().enumerate() {
        print!("  {t:>2} ");
        for v in row {
            print!("{v:>6}");
        }
        println!();
    }
    let title = format!(
        "{} test set: {:.2}% correct",
        cfg.data.dataset,
        100.0 * e.accuracy
    );
    let (cpath, wpath) =
        tegaki_train::report::write_eval_pictures(&run, &e, &test, &title, a.wrong)?;
    println!("\nwrote {} and {}", cpath.display(), wpath.display());
    Ok(())
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&a.run)?;
    let cfg = ExperimentConfig::load(&run.config_path())?;
    let shape = sample_shape(cfg.data.dataset);
    let ckpt = a.checkpoint.path(&a.run);
    let (_, mut model) = load_run_model(&a.run, &ckpt, &shape)?;
    if a.inputs.is_empty() && a.contest.is_none() {
        bail!("nothing to predict: give image files, or --contest FILE --out FILE");
    }
    if let Some(contest) = &a.contest {
        let out = a.out.as_ref().expect("clap requires --out with --contest");
        let classes: Vec<String> = cfg
            .data
            .dataset
            .class_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let data = tegaki_train::trainer::read_unlabeled(
            contest,
            (shape[0], shape[1], shape[2]),
            &classes,
        )?;
        let labels = predict_labels(&mut model, &data);
        tegaki_data::write_predictions(out, &labels)?;
        eprintln!(
            "wrote {} labels for {} to {}",
            labels.len(),
            contest.display(),
            out.display()
        );
    }
    if !a.inputs.is_empty() {
        let classes = cfg.data.dataset.class_names();
        let mut images = Vec::new();
        for path in &a.inputs {
            let img = image::open(path)
                .with_context(|| format!("{}: not a readable image", path.display()))?;
            images.extend(to_sample(&img, &shape));
        }
        let n = a.inputs.len();
        let x =
            Array4::from_shape_vec((n, shape[0], shape[1], shape[2]), images).expect("sizes match");
        let probs = predict_proba(&mut model, x.into_dyn());
        for (path, row) in a.inputs.iter().zip(probs.axis_iter(Axis(0))) {
            let (k, p) = argmax(row.as_slice().expect("contiguous"));
            println!(
                "{}\t{}\t{}\t{:.4}",
                path.display(),
                k,
                classes.get(k).map_or("", |s| s),
                p
            );
        }
    }
    Ok(())
}

fn predict_labels(model: &mut dyn Layer, data: &Dataset) -> Vec<usize> {
    let all: Vec<usize> = (0..data.len()).collect();
    let mut labels = Vec::with_capacity(data.len());
    for chunk in all.chunks(tegaki_train::evaluate::EVAL_BATCH) {
        let probs = predict_proba(model, data.batch_f32(chunk).into_dyn());
        labels.extend(
            probs
                .axis_iter(Axis(0))
                .map(|r| argmax(r.as_slice().expect("contiguous")).0),
        );
    }
    labels
}

fn sample_shape(kind: DatasetKind) -> Vec<usize> {
    let (c, h, w) = kind.shape();
    vec![c, h, w]
}

/// One image as model input: MNIST-like preprocessing for grey datasets, a
/// plain resize for colour ones.
fn to_sample(img: &image::DynamicImage, shape: &[usize]) -> Vec<f32> {
    if shape[0] == 1 {
        crate::preprocess::mnistify(&img.to_luma8())
    } else {
        let rgb = image::imageops::resize(
            &img.to_rgb8(),
            shape[2] as u32,
            shape[1] as u32,
            image::imageops::FilterType::Triangle,
        );
        let mut out = vec![0.0; shape.iter().product()];
        for (x, y, p) in rgb.enumerate_pixels() {
            for c in 0..3 {
                out[(c * shape[1] + y as usize) * shape[2] + x as usize] =
                    f32::from(p.0[c]) / 255.0;
            }
        }
        out
    }
}

pub fn summary(a: SummaryArgs) -> anyhow::Result<()> {
    let cfg = ExperimentConfig::load(&a.config)?;
    let shape = sample_shape(cfg.data.dataset);
    let mut model = build_model(
        &cfg.model,
        &shape,
        &mut tegaki_tensor::rng::stream(cfg.seed, "init"),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("building the model of {}", a.config.display()))?;
    println!(
        "{}",
        tegaki_nn::summary(&mut model, &shape).map_err(anyhow::Error::msg)?
    );
    Ok(())
}
