//! `cargo xtask download [mnist|fashion-mnist|kmnist|cifar10|all] [--from DIR] [--data-dir DIR]`

use std::path::PathBuf;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use tegaki_data::DatasetKind;
use tegaki_data::install::{self, Progress};

/// Options of `cargo xtask download`.
#[derive(clap::Args)]
pub struct Args {
    /// mnist, fashion-mnist, kmnist, cifar10 or all.
    #[arg(default_value = "mnist")]
    dataset: String,
    /// Take the files from this local folder instead of the network (same
    /// checks). With `all`, each dataset is looked for in DIR/<name> first.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Where datasets live (default: env TEGAKI_DATA, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// An indicatif bar per transfer (hidden when stderr is not a terminal).
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        self.0 = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}

/// Fetches (or copies) and verifies the requested datasets.
pub fn run(args: Args) -> anyhow::Result<()> {
    let kinds: Vec<DatasetKind> = if args.dataset.eq_ignore_ascii_case("all") {
        DatasetKind::ALL.to_vec()
    } else {
        vec![args.dataset.parse()?]
    };
    let data_dir = tegaki_data::resolve_data_dir(args.data_dir.as_deref());
    let mut bar = Bar(None);
    let mut failed = Vec::new();
    for kind in kinds {
        let result = match &args.from {
            Some(from) => {
                let sub = from.join(kind.dir_name());
                let src = if sub.is_dir() { sub } else { from.clone() };
                eprintln!("{}: installing from {}", kind.display_name(), src.display());
                install::install_from_dir(kind, &src, &data_dir, &mut bar)
            }
            None => {
                eprintln!(
                    "{}: downloading into {}",
                    kind.display_name(),
                    data_dir.display()
                );
                install::download(kind, &data_dir, &mut bar)
            }
        };
        match result {
            Ok(done) => {
                for item in done {
                    println!("{}: {}", item.path.display(), item.verification);
                }
            }
            // With `all`, go on with the other datasets and fail at the end.
            Err(e) => {
                eprintln!("error: {} was not installed: {e}", kind.display_name());
                failed.push(kind.name());
            }
        }
    }
    if !failed.is_empty() {
        bail!("not installed: {}", failed.join(", "));
    }
    Ok(())
}
