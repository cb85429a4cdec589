//! The `tegaki` binary end to end on a small generated dataset: train, eval,
//! predict (contest file and image files) and the errors users meet.

mod common;

use std::path::Path;
use std::process::Output;

use common::{image, tegaki, tegaki_with_env, text, tmpdir, write_data};

const CONFIG: &str = r#"
seed = 5
epochs = 3
batch_size = 25
[data]
dataset = "mnist"
validation = 50
[model]
layers = [
  { type = "flatten" },
  { type = "linear", out_features = 32, init = "he" },
  { type = "relu" },
  { type = "linear", out_features = 10 },
]
[optimizer]
name = "adam"
lr = 3e-3
"#;

/// `tegaki train --config CFG --data-dir DATA --out OUT`.
fn train(cfg: &Path, data: &str, out: &str) -> Output {
    tegaki(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data,
        "--out",
        out,
    ])
}

#[test]
fn train_eval_predict_and_errors() {
    let dir = tmpdir("");
    write_data(&dir, 500, 100);
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let data = dir.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();

    let o = train(&cfg, data, run_s);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("epoch 3/3") && out.contains("test accuracy"),
        "{out}"
    );
    for f in [
        "config.toml",
        "metrics.csv",
        "last.safetensors",
        "best.safetensors",
        "summary.toml",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    // training again into the same folder would overwrite it: refused
    let o = train(&cfg, data, run_s);
    assert!(
        !o.status.success() && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );

    let o = tegaki(&["eval", "--run", run_s, "--data-dir", data]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("confusion matrix")
            && run.join("confusion.png").is_file()
            && run.join("wrong.png").is_file()
    );

    // contest workflow: one label per line, in order
    let contest = dir.join("contest.txt");
    let lines: Vec<String> = (0..20)
        .map(|i| {
            image(i % 10, 1000 + i)
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    std::fs::write(&contest, lines.join("\n") + "\n").unwrap();
    let pred = dir.join("predict.txt");
    let o = tegaki(&[
        "predict",
        "--run",
        run_s,
        "--contest",
        contest.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let got: Vec<usize> = std::fs::read_to_string(&pred)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(got.len(), 20);
    let correct = got
        .iter()
        .enumerate()
        .filter(|(i, k)| i % 10 == **k)
        .count();
    assert!(correct >= 16, "{got:?}");

    // a line with 783 numbers: error naming file and line, no partial output
    let mut bad_lines = lines.clone();
    bad_lines[6] = bad_lines[6].rsplit_once(' ').unwrap().0.to_string();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, bad_lines.join("\n")).unwrap();
    let bad_out = dir.join("bad-predict.txt");
    let o = tegaki(&[
        "predict",
        "--run",
        run_s,
        "--contest",
        bad.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    let msg = text(&o);
    assert!(
        !o.status.success()
            && msg.contains("bad.txt")
            && msg.contains("line 7")
            && msg.contains("783"),
        "{msg}"
    );
    assert!(!bad_out.exists());

    // image files: a dark bar on white paper, big and off-centre
    let png = dir.join("digit3.png");
    let img = image::GrayImage::from_fn(120, 90, |x, y| {
        let on = (70..80).contains(&x) && (10..80).contains(&y);
        image::Luma([if on { 10 } else { 245 }])
    });
    img.save(&png).unwrap();
    let o = tegaki(&["predict", "--run", run_s, png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(png.to_str().unwrap()));
    let notimg = dir.join("notes.png");
    std::fs::write(&notimg, b"not a png").unwrap();
    let o = tegaki(&["predict", "--run", run_s, notimg.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains("notes.png"),
        "{}",
        text(&o)
    );

    // missing data names the command that fetches it
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = train(
        &cfg,
        empty.to_str().unwrap(),
        dir.join("r2").to_str().unwrap(),
    );
    assert!(
        !o.status.success() && text(&o).contains("cargo xtask download mnist"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small CNN whose 3x3 convolutions take the Winograd path (the second has
/// 8 input channels; both are followed by ReLU + pool, which Eval fuses).
const CNN_CONFIG: &str = r#"
seed = 3
epochs = 2
batch_size = 25
[data]
dataset = "mnist"
validation = 50
[model]
layers = [
  { type = "conv2d", out_channels = 8, kernel = 3, padding = 1 },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "conv2d", out_channels = 8, kernel = 3, padding = 1 },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out_features = 10 },
]
[optimizer]
name = "adam"
lr = 3e-3
"#;

#[test]
fn cnn_evaluates_the_same_with_and_without_winograd() {
    let dir = tmpdir("cnn");
    write_data(&dir, 300, 100);
    let cfg = dir.join("cnn.toml");
    std::fs::write(&cfg, CNN_CONFIG).unwrap();
    let data = dir.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let o = train(&cfg, data, run_s);
    assert!(o.status.success(), "{}", text(&o));
    let accuracy = |env: &[(&str, &str)]| {
        let o = tegaki_with_env(&["eval", "--run", run_s, "--data-dir", data], env);
        assert!(o.status.success(), "{}", text(&o));
        let out = text(&o);
        let line = out
            .lines()
            .find(|l| l.contains("test accuracy"))
            .unwrap_or_else(|| panic!("{out}"));
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    let winograd = accuracy(&[]);
    let im2col = accuracy(&[("TEGAKI_NO_WINOGRAD", "1")]);
    // Rounding differs by ulps; on 100 images no prediction flips.
    assert_eq!(winograd, im2col);
    assert!(
        winograd.trim_end_matches('%').parse::<f64>().unwrap() > 50.0,
        "{winograd}"
    );
}
