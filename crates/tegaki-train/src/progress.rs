//! Progress reporting: a live bar on a terminal, one plain line per epoch
//! otherwise (so `> log.txt` and CI logs stay readable).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::EpochMetrics;

/// Receives progress events from the training loop.
pub trait Observer {
    /// An epoch of `steps` steps begins (1-based `epoch` of `total`).
    fn epoch_start(&mut self, epoch: usize, total: usize, steps: usize);
    /// A step finished; running means over the epoch so far.
    fn step(&mut self, step: usize, loss: f64, acc: f64, images_per_s: f64, lr: f32);
    /// An epoch finished; `best` when it improved the monitored metric.
    fn epoch_end(&mut self, metrics: &EpochMetrics, best: bool);
    /// A one-off message (resume, early stopping, pseudo-labelling).
    fn message(&mut self, text: &str);
}

/// Reports nothing (tests, library use).
#[derive(Default)]
pub struct SilentObserver;

impl Observer for SilentObserver {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn step(&mut self, _: usize, _: f64, _: f64, _: f64, _: f32) {}
    fn epoch_end(&mut self, _: &EpochMetrics, _: bool) {}
    fn message(&mut self, _: &str) {}
}

/// The command-line observer.
pub struct ProgressObserver {
    bar: Option<ProgressBar>,
    tty: bool,
    epoch: usize,
    total: usize,
}

impl Default for ProgressObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressObserver {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            epoch: 0,
            total: 0,
        }
    }
}

/// One epoch as a plain line, as printed off-terminal and after each bar.
pub fn epoch_line(m: &EpochMetrics, total: usize, best: bool) -> String {
    let val = if m.val_loss.is_nan() {
        String::new()
    } else {
        format!("  val loss {:.4} acc {:.2}%", m.val_loss, 100.0 * m.val_acc)
    };
    format!(
        "epoch {}/{}  train loss {:.4} acc {:.2}%{val}  lr {:.2e}  {:.1}s{}",
        m.epoch,
        total,
        m.train_loss,
        100.0 * m.train_acc,
        m.lr,
        m.seconds,
        if best { "  *best" } else { "" }
    )
}

impl Observer for ProgressObserver {
    fn epoch_start(&mut self, epoch: usize, total: usize, steps: usize) {
        self.epoch = epoch;
        self.total = total;
        if self.tty {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{total}"));
            self.bar = Some(bar);
        }
    }

    fn step(&mut self, step: usize, loss: f64, acc: f64, images_per_s: f64, lr: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {loss:.4} acc {:.2}% {images_per_s:.0} img/s lr {lr:.2e}",
                100.0 * acc
            ));
        }
    }

    fn epoch_end(&mut self, metrics: &EpochMetrics, best: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("{}", epoch_line(metrics, self.total, best));
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}
