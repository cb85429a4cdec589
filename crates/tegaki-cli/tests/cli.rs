//! The `tegaki` binary end to end on a small generated dataset: train, eval,
//! predict (contest file and image files) and the errors users meet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tegaki(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tegaki"))
        .args(args)
        .env("TEGAKI_THREADS", "2")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tegaki-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Class k is a vertical bar at column 3+2k.
fn image(k: usize, i: usize) -> Vec<u8> {
    (0..784)
        .map(|p| {
            let (y, x) = (p / 28, p % 28);
            let noise = ((i * 13 + p * 7) % 40) as u8;
            if x >= 3 + 2 * k && x < 5 + 2 * k && (4..24).contains(&y) {
                250 - noise
            } else {
                noise
            }
        })
        .collect()
}

fn write_data(dir: &Path) {
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (prefix, n) in [("train", 500usize), ("t10k", 100)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images: Vec<u8> = (0..n).flat_map(|i| image(i % 10, i)).collect();
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-images-idx3-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n, 28, 28], &images).unwrap();
        let mut f =
            std::fs::File::create(mnist.join(format!("{prefix}-labels-idx1-ubyte"))).unwrap();
        tegaki_data::idx::write_idx(&mut f, &[n], &labels).unwrap();
    }
}

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

#[test]
fn train_eval_predict_and_errors() {
    let dir = tmpdir();
    write_data(&dir);
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let data = dir.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();

    let o = tegaki(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data,
        "--out",
        run_s,
    ]);
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
    let o = tegaki(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data,
        "--out",
        run_s,
    ]);
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
    let o = tegaki(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        empty.to_str().unwrap(),
        "--out",
        dir.join("r2").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("cargo xtask download mnist"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
