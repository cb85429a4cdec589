//! `tegaki gan train|sample|score` end to end on a small generated dataset.

mod common;

use common::{tegaki, text, tmpdir, write_data};
use std::path::Path;

fn gan_config(conditional: bool) -> String {
    format!(
        "seed = 1\nepochs = 2\nbatch_size = 20\nlatent_dim = 8\nconditional = {conditional}\n\
         [data]\ndataset = \"mnist\"\n[generator]\nchannels = [8, 4]\n\
         [discriminator]\nchannels = [4, 8]\n"
    )
}

const CLASSIFIER: &str = r#"
seed = 5
epochs = 1
batch_size = 25
[data]
dataset = "mnist"
validation = 50
[model]
layers = [
  { type = "flatten" },
  { type = "linear", out_features = 10 },
]
[optimizer]
name = "adam"
lr = 3e-3
"#;

#[test]
fn train_sample_score_and_errors() {
    let dir = tmpdir("gan-");
    write_data(&dir, 200, 50);
    let data = dir.to_str().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let mut runs = Vec::new();
    for conditional in [true, false] {
        let cfg = dir.join(format!("gan-{conditional}.toml"));
        std::fs::write(&cfg, gan_config(conditional)).unwrap();
        let run = dir.join(format!("gan-{conditional}"));
        let o = tegaki(&[
            "gan",
            "train",
            "--config",
            &s(&cfg),
            "--data-dir",
            data,
            "--out",
            &s(&run),
            "--epochs",
            "1",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("epoch 1/1  D loss"), "{}", text(&o));
        for f in [
            "config.toml",
            "metrics.csv",
            "last.safetensors",
            "samples-epoch-001.png",
        ] {
            assert!(run.join(f).is_file(), "missing {f}");
        }
        // The run folder's config says 1 epoch now: nothing left to do...
        let o = tegaki(&[
            "gan",
            "train",
            "--out",
            &s(&run),
            "--resume",
            "--data-dir",
            data,
        ]);
        assert!(
            o.status.success() && text(&o).contains("--epochs"),
            "{}",
            text(&o)
        );
        // ...until --epochs asks for more.
        let o = tegaki(&[
            "gan",
            "train",
            "--out",
            &s(&run),
            "--resume",
            "--epochs",
            "2",
            "--data-dir",
            data,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("resuming") && run.join("samples-epoch-002.png").is_file(),
            "{}",
            text(&o)
        );
        runs.push(run);
    }
    let (cond, uncond) = (&runs[0], &runs[1]);

    let seven = dir.join("seven.png");
    let o = tegaki(&[
        "gan",
        "sample",
        "--run",
        &s(cond),
        "--digit",
        "7",
        "--n",
        "9",
        "--out",
        &s(&seven),
    ]);
    assert!(o.status.success() && seven.is_file(), "{}", text(&o));
    let o = tegaki(&[
        "gan",
        "sample",
        "--run",
        &s(uncond),
        "--digit",
        "7",
        "--out",
        &s(&seven),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("needs a class-conditional run"),
        "{}",
        text(&o)
    );
    let grid = dir.join("grid.png");
    let o = tegaki(&["gan", "sample", "--run", &s(uncond), "--out", &s(&grid)]);
    assert!(o.status.success() && grid.is_file(), "{}", text(&o));

    let clf_cfg = dir.join("clf.toml");
    std::fs::write(&clf_cfg, CLASSIFIER).unwrap();
    let clf = dir.join("clf");
    let o = tegaki(&[
        "train",
        "--config",
        &s(&clf_cfg),
        "--data-dir",
        data,
        "--out",
        &s(&clf),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tegaki(&[
        "gan",
        "score",
        "--run",
        &s(cond),
        "--classifier",
        &s(&clf),
        "--n",
        "200",
        "--data-dir",
        data,
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("generated (200 samples, n/10 per digit): Inception Score")
            && out.contains("class histogram: 0: ")
            && out.contains("real mnist test set (50 images): Inception Score"),
        "{out}"
    );

    // Errors name what is wrong.
    let o = tegaki(&["gan", "sample", "--run", &s(&dir), "--out", &s(&grid)]);
    assert!(
        !o.status.success() && text(&o).contains("not a GAN run folder"),
        "{}",
        text(&o)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        gan_config(false).replace("latent_dim = 8", "latent = 8"),
    )
    .unwrap();
    let o = tegaki(&["gan", "train", "--config", &s(&bad), "--data-dir", data]);
    assert!(
        !o.status.success() && text(&o).contains("bad.toml") && text(&o).contains("latent"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
