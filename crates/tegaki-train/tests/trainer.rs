//! End-to-end tests of the training loop on a small generated MNIST-format
//! dataset: determinism, exact resume (also from the middle of an epoch),
//! non-finite loss handling and config errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tegaki_train::run::EpochMetrics;
use tegaki_train::{
    ExperimentConfig, Observer, Outcome, RunDir, Session, SilentObserver, TrainOptions, train,
};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tegaki-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Class k is a bright horizontal bar at row 2+2k, plus deterministic noise.
fn write_data(dir: &Path) {
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (prefix, n) in [("train", 600usize), ("t10k", 200)] {
        let mut images = vec![0u8; n * 784];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let k = (i * 7 + 3) % 10;
            labels[i] = k as u8;
            for p in 0..784 {
                let (y, x) = (p / 28, p % 28);
                let noise = ((i * 31 + p * 17) % 50) as u8;
                let on = y >= 2 + 2 * k && y < 4 + 2 * k && (4..24).contains(&x);
                images[i * 784 + p] = if on { 250 - noise } else { noise };
            }
        }
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-images-idx3-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n, 28, 28], &images).unwrap();
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-labels-idx1-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n], &labels).unwrap();
    }
}

const CONFIG: &str = r#"
seed = 3
epochs = 2
batch_size = 50

[data]
dataset = "mnist"
validation = 100

[augment]
noise = { sigma = 0.05, p = 0.5 }

[model]
layers = [
  { type = "conv2d", out_channels = 4, kernel = 3, padding = 1 },
  { type = "batchnorm2d" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out_features = 16 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear", out_features = 10 },
]

[optimizer]
name = "adam"
lr = 3e-3

[schedule]
name = "cosine"
"#;

fn config(text: &str) -> ExperimentConfig {
    ExperimentConfig::from_toml_str(text, Path::new("test.toml")).unwrap()
}

/// Sets the interrupt flag after `at` steps of epoch `epoch`.
struct InterruptAt {
    flag: Arc<AtomicBool>,
    epoch: usize,
    at: usize,
    current: usize,
}

impl Observer for InterruptAt {
    fn epoch_start(&mut self, epoch: usize, _: usize, _: usize) {
        self.current = epoch;
    }
    fn step(&mut self, step: usize, _: f64, _: f64, _: f64, _: f32) {
        if self.current == self.epoch && step == self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
    fn epoch_end(&mut self, _: &EpochMetrics, _: bool) {}
    fn message(&mut self, _: &str) {}
}

fn weights(run: &Path) -> std::collections::BTreeMap<String, Vec<u32>> {
    let file = tegaki_tensor::io::read_safetensors(&run.join("last.safetensors")).unwrap();
    file.tensors
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn run_straight(data: &Path, out: &Path) {
    let mut s = Session::new(config(CONFIG), data).unwrap();
    let run = RunDir::create(out).unwrap();
    let outcome = train(&mut s, &run, &TrainOptions::default(), &mut SilentObserver).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished {
            epochs: 2,
            stopped_early: false
        }
    );
}

fn run_interrupted_then_resumed(data: &Path, out: &Path, epoch: usize, at: usize) {
    let flag = Arc::new(AtomicBool::new(false));
    let mut s = Session::new(config(CONFIG), data).unwrap();
    let run = RunDir::create(out).unwrap();
    let opts = TrainOptions {
        resume: false,
        interrupt: Some(flag.clone()),
    };
    let mut obs = InterruptAt {
        flag: flag.clone(),
        epoch,
        at,
        current: 0,
    };
    let outcome = train(&mut s, &run, &opts, &mut obs).unwrap();
    assert!(
        matches!(outcome, Outcome::Interrupted { .. }),
        "{outcome:?}"
    );
    // a fresh process: new session from the run's resolved config
    let cfg = ExperimentConfig::load(&run.config_path()).unwrap();
    let mut s = Session::new(cfg, data).unwrap();
    let opts = TrainOptions {
        resume: true,
        interrupt: None,
    };
    let outcome = train(&mut s, &run, &opts, &mut SilentObserver).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished {
            epochs: 2,
            stopped_early: false
        }
    );
}

#[test]
fn resume_is_bit_exact_and_seed_is_deterministic() {
    let dir = tmpdir("resume");
    write_data(&dir);
    run_straight(&dir, &dir.join("a"));
    run_straight(&dir, &dir.join("a2"));
    let a = weights(&dir.join("a"));
    assert_eq!(a, weights(&dir.join("a2")), "same seed, different weights");

    // 1 epoch + resume (interrupt right at the start of epoch 2)
    run_interrupted_then_resumed(&dir, &dir.join("b"), 1, 10);
    assert_eq!(a, weights(&dir.join("b")), "epoch-boundary resume differs");
    // interrupted in the middle of epoch 2
    run_interrupted_then_resumed(&dir, &dir.join("c"), 2, 3);
    assert_eq!(a, weights(&dir.join("c")), "mid-epoch resume differs");

    let rows = RunDir::open(&dir.join("c"))
        .unwrap()
        .read_metrics()
        .unwrap();
    assert_eq!(rows.len(), 2);
    let straight = RunDir::open(&dir.join("a"))
        .unwrap()
        .read_metrics()
        .unwrap();
    assert_eq!(rows[1].train_loss, straight[1].train_loss);
    assert!(
        rows[1].val_acc > 0.5,
        "the model should learn the bars: {rows:?}"
    );

    // a different seed gives different weights
    let mut s = Session::new(config(&CONFIG.replace("seed = 3", "seed = 4")), &dir).unwrap();
    let run = RunDir::create(&dir.join("d")).unwrap();
    train(&mut s, &run, &TrainOptions::default(), &mut SilentObserver).unwrap();
    assert_ne!(a, weights(&dir.join("d")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint() {
    let dir = tmpdir("nan");
    write_data(&dir);
    let text = CONFIG
        .replace("epochs = 2", "epochs = 3")
        .replace("lr = 3e-3", "lr = 1e30")
        .replace("name = \"cosine\"", "name = \"constant\"");
    let mut s = Session::new(config(&text), &dir).unwrap();
    let run = RunDir::create(&dir.join("run")).unwrap();
    let err = train(&mut s, &run, &TrainOptions::default(), &mut SilentObserver).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("epoch") && msg.contains("step"), "{msg}");
    match err {
        tegaki_train::TrainError::NonFinite { epoch, step, .. } => {
            assert!(epoch >= 1 && step >= 1);
            // checkpoints only ever hold finite, completed epochs
            if epoch > 1 {
                let file = tegaki_tensor::io::read_safetensors(&run.last_path()).unwrap();
                assert!(
                    file.tensors
                        .values()
                        .all(|t| t.iter().all(|v| v.is_finite()))
                );
            } else {
                assert!(!run.last_path().exists());
            }
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_errors_name_file_key_and_expectation() {
    let p = Path::new("configs/broken.toml");
    let err = ExperimentConfig::from_toml_str(
        &CONFIG.replace("batch_size = 50", "batch_size = 50\nbatchsize = 3"),
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("configs/broken.toml") && err.contains("batchsize"),
        "{err}"
    );

    let err = ExperimentConfig::from_toml_str(&CONFIG.replace("p = 0.3", "p = 1.5"), p)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers[7].p") && err.contains("[0, 1)"),
        "{err}"
    );

    let err = ExperimentConfig::from_toml_str(&CONFIG.replace("epochs = 2", "epochs = 0"), p)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`epochs`") && err.contains("at least 1"),
        "{err}"
    );

    let err =
        ExperimentConfig::from_toml_str(&CONFIG.replace("name = \"adam\"", "name = \"adamm\""), p)
            .unwrap_err()
            .to_string();
    assert!(err.contains("adamm"), "{err}");

    let err = ExperimentConfig::from_toml_str(
        &CONFIG.replace("dataset = \"mnist\"", "dataset = \"mnits\""),
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mnits"), "{err}");

    // a linear layer straight after an image: caught when building
    let cfg = config(&CONFIG.replace("  { type = \"flatten\" },\n", ""));
    let err = tegaki_train::model::build_model(
        &cfg.model,
        &[1, 28, 28],
        &mut tegaki_tensor::rng::seeded(0),
    )
    .err()
    .unwrap();
    assert!(
        err.contains("model.layers[4]") && err.contains("flatten"),
        "{err}"
    );
}

#[test]
fn shipped_configs_parse_and_build() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_none_or(|e| e != "toml") || !text.contains("[model]") {
            continue;
        }
        let cfg = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let shape = match cfg.data.dataset {
            tegaki_data::DatasetKind::Cifar10 => vec![3, 32, 32],
            _ => vec![1, 28, 28],
        };
        tegaki_train::model::build_model(&cfg.model, &shape, &mut tegaki_tensor::rng::seeded(0))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // the resolved form parses back to the same config
        let again = ExperimentConfig::from_toml_str(&cfg.to_toml(), &path).unwrap();
        assert_eq!(again, cfg, "{}", path.display());
        n += 1;
    }
    assert!(n >= 4, "expected the shipped configs in {}", dir.display());
}

/// Collects messages.
#[derive(Default)]
struct Messages(Vec<String>);

impl Observer for Messages {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: f64, _: f64, _: f64, _: f32) {}
    fn epoch_end(&mut self, _: &EpochMetrics, _: bool) {}
    fn message(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
}

#[test]
fn pseudo_labelling_adds_confident_unlabeled_images() {
    let dir = tmpdir("pseudo");
    write_data(&dir);
    // the unlabeled file: 40 bar images in the contest format
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let k = i % 10;
            (0..784)
                .map(|p| {
                    let (y, x) = (p / 28, p % 28);
                    let on = y >= 2 + 2 * k && y < 4 + 2 * k && (4..24).contains(&x);
                    if on { "240" } else { "10" }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    std::fs::write(dir.join("unlabeled.txt"), lines.join("\n")).unwrap();
    let text = format!(
        "{CONFIG}\n[pseudo_label]\nfile = \"unlabeled.txt\"\nthreshold = 0.2\nepochs = 1\n"
    );
    // relative paths are taken from the config file's folder
    let cfg = ExperimentConfig::from_toml_str(&text, &dir.join("exp.toml")).unwrap();
    let mut s = Session::new(cfg, &dir).unwrap();
    let run = RunDir::create(&dir.join("run")).unwrap();
    let mut obs = Messages::default();
    let outcome = train(&mut s, &run, &TrainOptions::default(), &mut obs).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished {
            epochs: 3,
            stopped_early: false
        }
    );
    let msg = obs
        .0
        .iter()
        .find(|m| m.starts_with("pseudo-labelling"))
        .expect("a pseudo-labelling message");
    let chosen: usize = msg.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(chosen > 20, "{msg}");
    assert_eq!(run.read_metrics().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
