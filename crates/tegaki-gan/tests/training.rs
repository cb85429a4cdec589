//! The GAN loop on a tiny synthetic dataset: a step changes both networks with
//! finite losses, the run folder is complete, and resuming (at an epoch
//! boundary or mid-epoch after an interrupt) reproduces a straight run bit for bit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::Array2;
use tegaki_data::Dataset;
use tegaki_gan::train::{GanObserver, SilentGanObserver, last_path, metrics_path, samples_path};
use tegaki_gan::{Gan, GanConfig, GanMetrics, GanOptions, GanOutcome, train_gan};
use tegaki_tensor::io::read_safetensors;

/// 40 images of class `i % 10`: a bar whose column depends on the class.
fn data() -> Dataset {
    let n = 40;
    let images = Array2::from_shape_fn((n, 784), |(i, p)| {
        let (y, x) = (p / 28, p % 28);
        let k = i % 10;
        if x >= 3 + 2 * k && x < 5 + 2 * k && (4..24).contains(&y) {
            240 - (i % 7) as u8
        } else {
            ((i * 13 + p * 7) % 30) as u8
        }
    });
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::from_u8(
        "synthetic",
        images,
        labels,
        (1, 28, 28),
        (0..10).map(|k| k.to_string()).collect(),
    )
}

fn config(conditional: bool, epochs: usize) -> GanConfig {
    let text = format!(
        "seed = 3\nepochs = {epochs}\nbatch_size = 8\nlatent_dim = 6\nconditional = {conditional}\n\
         [data]\ndataset = \"mnist\"\n[generator]\nchannels = [4, 3]\n\
         [discriminator]\nchannels = [3, 4]\n"
    );
    GanConfig::from_toml_str(&text, Path::new("test.toml")).unwrap()
}

fn tensors(run: &Path) -> Vec<(String, Vec<u32>)> {
    let file = read_safetensors(&last_path(run)).unwrap();
    file.tensors
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn quiet() -> GanOptions {
    GanOptions {
        no_grids: true,
        ..GanOptions::default()
    }
}

#[test]
fn one_epoch_changes_both_networks_with_finite_losses() {
    for conditional in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(conditional, 1);
        let mut before = Gan::new(cfg.clone());
        let options = GanOptions::default();
        let out = train_gan(&cfg, &data(), dir.path(), &options, &mut SilentGanObserver).unwrap();
        assert_eq!(out, GanOutcome::Finished { epochs: 1 });
        let mut after = Gan::open(dir.path()).unwrap();
        for (a, b) in [
            (&mut before.generator, &mut after.generator),
            (&mut before.discriminator, &mut after.discriminator),
        ] {
            let mut va = Vec::new();
            a.visit_params(&mut |_, p| va.push(p.value.clone()));
            let mut i = 0;
            b.visit_params(&mut |name, p| {
                assert_ne!(p.value, va[i], "{name} did not change");
                i += 1;
            });
        }
        let metrics = std::fs::read_to_string(metrics_path(dir.path())).unwrap();
        let row: Vec<f64> = metrics
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(row[0], 1.0);
        assert!(row[1..].iter().all(|v| v.is_finite()), "{metrics}");
        assert!((0.0..=1.0).contains(&row[3]) && (0.0..=1.0).contains(&row[4]));
        assert!(samples_path(dir.path(), 1).is_file());
        assert!(dir.path().join("config.toml").is_file());
    }
}

#[test]
fn resume_at_an_epoch_boundary_is_bit_exact() {
    let straight = tempfile::tempdir().unwrap();
    train_gan(
        &config(true, 2),
        &data(),
        straight.path(),
        &quiet(),
        &mut SilentGanObserver,
    )
    .unwrap();

    let split = tempfile::tempdir().unwrap();
    train_gan(
        &config(true, 1),
        &data(),
        split.path(),
        &quiet(),
        &mut SilentGanObserver,
    )
    .unwrap();
    assert_ne!(tensors(split.path()), tensors(straight.path()));
    let resume = GanOptions {
        resume: true,
        ..quiet()
    };
    train_gan(
        &config(true, 2),
        &data(),
        split.path(),
        &resume,
        &mut SilentGanObserver,
    )
    .unwrap();
    assert_eq!(tensors(split.path()), tensors(straight.path()));
    let a = std::fs::read_to_string(metrics_path(straight.path())).unwrap();
    let b = std::fs::read_to_string(metrics_path(split.path())).unwrap();
    let losses = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
}

/// Raises the interrupt flag once `at` steps of epoch `epoch` are done.
struct InterruptAt {
    flag: Arc<AtomicBool>,
    epoch: usize,
    at: usize,
    current: usize,
}

impl GanObserver for InterruptAt {
    fn epoch_start(&mut self, epoch: usize, _: usize, _: usize) {
        self.current = epoch;
    }
    fn step(&mut self, step: usize, _: &GanMetrics, _: f64) {
        if self.current == self.epoch && step == self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
    fn epoch_end(&mut self, _: &GanMetrics) {}
    fn message(&mut self, _: &str) {}
}

#[test]
fn interrupt_and_resume_mid_epoch_is_bit_exact() {
    let cfg = config(false, 2);
    let straight = tempfile::tempdir().unwrap();
    train_gan(
        &cfg,
        &data(),
        straight.path(),
        &quiet(),
        &mut SilentGanObserver,
    )
    .unwrap();

    let split = tempfile::tempdir().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let options = GanOptions {
        interrupt: Some(flag.clone()),
        ..quiet()
    };
    let mut observer = InterruptAt {
        flag,
        epoch: 2,
        at: 3,
        current: 0,
    };
    let out = train_gan(&cfg, &data(), split.path(), &options, &mut observer).unwrap();
    assert_eq!(out, GanOutcome::Interrupted { epoch: 2, step: 3 });
    let resume = GanOptions {
        resume: true,
        ..quiet()
    };
    train_gan(&cfg, &data(), split.path(), &resume, &mut SilentGanObserver).unwrap();
    assert_eq!(tensors(split.path()), tensors(straight.path()));
    let a = std::fs::read_to_string(metrics_path(straight.path())).unwrap();
    let b = std::fs::read_to_string(metrics_path(split.path())).unwrap();
    // Epoch means include the steps before the interrupt.
    let epoch2 = |t: &str| {
        t.lines()
            .nth(2)
            .unwrap()
            .rsplit_once(',')
            .unwrap()
            .0
            .to_string()
    };
    assert_eq!(epoch2(&a), epoch2(&b));
}

#[test]
fn run_folder_errors() {
    let dir = tempfile::tempdir().unwrap();
    let resume = GanOptions {
        resume: true,
        ..quiet()
    };
    let run = |conditional: bool, epochs: usize, options: &GanOptions| {
        train_gan(
            &config(conditional, epochs),
            &data(),
            dir.path(),
            options,
            &mut SilentGanObserver,
        )
    };
    let err = run(false, 1, &resume).unwrap_err().to_string();
    assert!(err.contains("last.safetensors does not exist"), "{err}");
    run(false, 1, &quiet()).unwrap();
    let err = run(false, 1, &quiet()).unwrap_err().to_string();
    assert!(err.contains("already holds a run"), "{err}");
    // A conditional network cannot load an unconditional checkpoint.
    let err = run(true, 2, &resume).unwrap_err().to_string();
    assert!(err.contains("generator.") && err.contains("shape"), "{err}");
    let err = match Gan::open(&dir.path().join("nope")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a missing run"),
    };
    assert!(err.contains("not a GAN run folder"), "{err}");
}
