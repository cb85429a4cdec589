//! Evaluation pictures and the Markdown report of a run folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::Axis;
use tegaki_data::Dataset;
use tegaki_plot::{LineChart, Series, Tile};

use crate::evaluate::Evaluation;
use crate::run::{EpochMetrics, RunDir};
use crate::{ExperimentConfig, TrainError};

fn plot_err(e: tegaki_plot::PlotError) -> TrainError {
    TrainError::Run(e.to_string())
}

/// Writes `confusion.png` and `wrong.png` (the `n_wrong` most confidently
/// wrong images) into the run folder; returns their paths.
pub fn write_eval_pictures(
    run: &RunDir,
    eval: &Evaluation,
    test: &Dataset,
    title: &str,
    n_wrong: usize,
) -> Result<(PathBuf, PathBuf), TrainError> {
    let cpath = run.path().join("confusion.png");
    tegaki_plot::confusion_png(&eval.confusion, test.classes(), title, &cpath).map_err(plot_err)?;
    let mut wrong: Vec<usize> = (0..test.len())
        .filter(|&i| eval.predictions[i] != test.labels()[i] as usize)
        .collect();
    wrong.sort_by(|&x, &y| eval.confidence[y].total_cmp(&eval.confidence[x]));
    wrong.truncate(n_wrong);
    let tiles: Vec<Tile> = wrong
        .iter()
        .map(|&i| {
            let img = test.batch_f32(&[i]);
            let (h, w) = (img.shape()[2], img.shape()[3]);
            // colour images are shown as their grey level
            let grey = img
                .index_axis(Axis(0), 0)
                .mean_axis(Axis(0))
                .expect("at least one channel");
            Tile {
                pixels: grey.iter().copied().collect(),
                height: h,
                width: w,
                caption: Some(format!(
                    "{}>{} {:.0}%",
                    test.labels()[i],
                    eval.predictions[i],
                    100.0 * eval.confidence[i]
                )),
            }
        })
        .collect();
    let wpath = run.path().join("wrong.png");
    tegaki_plot::image_grid_png(
        &tiles,
        10,
        3,
        Some("most confidently wrong (true>predicted, confidence)"),
        &wpath,
    )
    .map_err(plot_err)?;
    Ok((cpath, wpath))
}

/// Writes `loss.png` and `accuracy.png` from the epoch metrics.
pub fn write_curves(run: &RunDir, rows: &[EpochMetrics]) -> Result<(PathBuf, PathBuf), TrainError> {
    let series = |name: &str, f: &dyn Fn(&EpochMetrics) -> f64| Series {
        name: name.to_string(),
        points: rows
            .iter()
            .map(|r| (r.epoch as f64, f(r)))
            .filter(|p| p.1.is_finite())
            .collect(),
        band: None,
    };
    let loss = LineChart {
        title: "loss per epoch".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: vec![
            series("train", &|r| r.train_loss),
            series("validation", &|r| r.val_loss),
        ],
        log_y: true,
    };
    let acc = LineChart {
        title: "accuracy per epoch".into(),
        x_label: "epoch".into(),
        y_label: "accuracy (%)".into(),
        series: vec![
            series("train", &|r| 100.0 * r.train_acc),
            series("validation", &|r| 100.0 * r.val_acc),
        ],
        log_y: false,
    };
    let lp = run.path().join("loss.png");
    let ap = run.path().join("accuracy.png");
    tegaki_plot::line_chart_png(&loss, &lp, (800, 480)).map_err(plot_err)?;
    tegaki_plot::line_chart_png(&acc, &ap, (800, 480)).map_err(plot_err)?;
    Ok((lp, ap))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `report.md` (curves, final numbers, per-class accuracy, confusion
/// matrix, confidently-wrong images) into the run folder.
pub fn write_report(
    run: &RunDir,
    config: &ExperimentConfig,
    eval: &Evaluation,
    test: &Dataset,
) -> Result<PathBuf, TrainError> {
    let rows = run.read_metrics()?;
    let (lp, ap) = write_curves(run, &rows)?;
    let title = format!(
        "{} test set: {:.2}% correct",
        config.data.dataset,
        100.0 * eval.accuracy
    );
    let (cp, wp) = write_eval_pictures(run, eval, test, &title, 40)?;
    let name = config.name.clone().unwrap_or_else(|| file_name(run.path()));
    let mut md = String::new();
    let _ = writeln!(md, "# Run report: {name}\n");
    let _ = writeln!(
        md,
        "Run folder `{}`; dataset {}; seed {}.\n",
        run.path().display(),
        config.data.dataset,
        config.seed
    );
    let _ = writeln!(md, "## Result\n");
    let _ = writeln!(md, "| metric | value |\n|---|---:|");
    let _ = writeln!(md, "| test accuracy | {:.2}% |", 100.0 * eval.accuracy);
    let _ = writeln!(md, "| test loss | {:.4} |", eval.loss);
    let _ = writeln!(md, "| test images | {} |", test.len());
    if let Some(last) = rows.last() {
        let total: f64 = rows.iter().map(|r| r.seconds).sum();
        let _ = writeln!(md, "| epochs | {} |", last.epoch);
        let _ = writeln!(md, "| training time | {total:.0} s |");
        let _ = writeln!(
            md,
            "| final train loss / acc | {:.4} / {:.2}% |",
            last.train_loss,
            100.0 * last.train_acc
        );
        if last.val_loss.is_finite() {
            let _ = writeln!(
                md,
                "| final validation loss / acc | {:.4} / {:.2}% |",
                last.val_loss,
                100.0 * last.val_acc
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Curves\n\n![loss]({})\n\n![accuracy]({})\n",
        file_name(&lp),
        file_name(&ap)
    );
    let _ = writeln!(
        md,
        "## Per epoch\n\n| epoch | train loss | train acc | val loss | val acc | lr | seconds |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.2}% | {:.4} | {:.2}% | {:.2e} | {:.1} |",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.val_loss,
            100.0 * r.val_acc,
            r.lr,
            r.seconds
        );
    }
    let _ = writeln!(
        md,
        "\n## Per class\n\n| class | name | accuracy |\n|---:|---|---:|"
    );
    for (k, acc) in eval.per_class_accuracy().iter().enumerate() {
        let _ = writeln!(
            md,
            "| {k} | {} | {:.2}% |",
            test.classes().get(k).map_or("", String::as_str),
            100.0 * acc
        );
    }
    let _ = writeln!(
        md,
        "\n## Confusion matrix\n\n![confusion]({})\n",
        file_name(&cp)
    );
    let _ = writeln!(
        md,
        "## Most confidently wrong\n\n![wrong]({})\n",
        file_name(&wp)
    );
    let path = run.path().join("report.md");
    run.write_text("report.md", &md)?;
    Ok(path)
}
