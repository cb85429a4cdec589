//! Save -> load round trips and every bad-file case of `tegaki_nn::checkpoint`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use tegaki_nn::checkpoint::{load_tensors, model_tensors};
use tegaki_nn::gradcheck::random_input;
use tegaki_nn::{
    CheckpointError, Dropout, Flatten, Layer, Linear, Mode, ReLU, Sequential, load_model,
    save_model,
};
use tegaki_tensor::io::{TensorIoError, read_safetensors, write_safetensors};
use tegaki_tensor::{Param, rng};

/// A per-feature affine layer with a running-mean buffer: enough of
/// BatchNorm's shape (params and buffers side by side) to test checkpoints
/// without depending on it.
struct ScaleWithStats {
    scale: Param,
    running_mean: ArrayD<f32>,
}

impl ScaleWithStats {
    fn new(features: usize, seed: u64) -> Self {
        Self {
            scale: Param::new(random_input(&[features], seed)),
            running_mean: random_input(&[features], seed + 1),
        }
    }
}

impl Layer for ScaleWithStats {
    fn describe(&self) -> String {
        "ScaleWithStats".to_string()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        (x - &self.running_mean) * &self.scale.value
    }
    fn backward(&mut self, _dy: ArrayD<f32>) -> ArrayD<f32> {
        unreachable!("checkpoint tests never call backward")
    }
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("weight", &mut self.scale);
    }
    fn visit_buffers(&mut self, f: &mut dyn FnMut(&str, &mut ArrayD<f32>)) {
        f("running_mean", &mut self.running_mean);
    }
}

fn model(seed: u64) -> Sequential {
    let mut init = rng::stream(seed, "init");
    Sequential::new()
        .with(Flatten::new())
        .with(Linear::new(12, 8, &mut init))
        .with(ScaleWithStats::new(8, seed))
        .with(ReLU::new())
        .with(Dropout::new(0.5, &mut init))
        .with(Sequential::new().with(Linear::new(8, 3, &mut init)))
}

/// A fresh folder for one test, removed when the guard drops.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tegaki-nn-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, tensors: &BTreeMap<String, ArrayD<f32>>) {
    write_safetensors(
        path,
        tensors.iter().map(|(k, v)| (k.clone(), v.view())),
        &BTreeMap::new(),
    )
    .unwrap();
}

fn eval(model: &mut Sequential) -> ArrayD<f32> {
    model.forward(random_input(&[5, 3, 2, 2], 42), Mode::Eval)
}

#[test]
fn names_follow_pytorch() {
    let names: Vec<(String, Vec<usize>)> = model_tensors(&mut model(0))
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    let expect = [
        ("1.bias", vec![8]),
        ("1.weight", vec![8, 12]),
        ("2.running_mean", vec![8]),
        ("2.weight", vec![8]),
        ("5.0.bias", vec![3]),
        ("5.0.weight", vec![3, 8]),
    ];
    let expect: Vec<(String, Vec<usize>)> = expect
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
    assert_eq!(names, expect);
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = TempDir::new("round-trip");
    let path = dir.file("model.safetensors");
    let mut original = model(1);
    let expected = eval(&mut original);
    let meta = BTreeMap::from([
        ("epoch".to_string(), "7".to_string()),
        ("arch".to_string(), original.describe()),
    ]);
    save_model(&path, &mut original, &meta).unwrap();

    let mut restored = model(2);
    assert_ne!(eval(&mut restored), expected);
    let back = load_model(&path, &mut restored).unwrap();
    assert_eq!(back, meta);
    let got = eval(&mut restored);
    let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&expected));
    assert_eq!(model_tensors(&mut restored), model_tensors(&mut original));
    // The atomic write leaves no temporary file behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

/// Loads `path` into a fresh model, asserts that it failed and that the model
/// was left unchanged, and returns the error.
fn load_err(path: &Path) -> CheckpointError {
    let mut m = model(3);
    let before = model_tensors(&mut m);
    let err = load_model(path, &mut m).unwrap_err();
    assert_eq!(
        model_tensors(&mut m),
        before,
        "a failed load changed the model"
    );
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    err
}

#[test]
fn missing_tensor() {
    let dir = TempDir::new("missing");
    let path = dir.file("m.safetensors");
    let mut tensors = model_tensors(&mut model(1));
    tensors.remove("2.running_mean");
    write(&path, &tensors);
    let err = load_err(&path);
    assert!(
        matches!(&err, CheckpointError::Missing { name, expected, .. }
            if name == "2.running_mean" && expected == &[8]),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing tensor `2.running_mean`"));
    assert!(err.to_string().contains("[8]"));
}

#[test]
fn unexpected_tensor() {
    let dir = TempDir::new("extra");
    let path = dir.file("m.safetensors");
    let mut tensors = model_tensors(&mut model(1));
    tensors.insert("6.weight".to_string(), ArrayD::zeros(vec![2, 3]));
    write(&path, &tensors);
    let err = load_err(&path);
    assert!(
        matches!(&err, CheckpointError::Unexpected { name, shape, .. }
            if name == "6.weight" && shape == &[2, 3]),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("unexpected tensor `6.weight` with shape [2, 3]")
    );
}

#[test]
fn shape_mismatch() {
    let dir = TempDir::new("shape");
    let path = dir.file("m.safetensors");
    let mut tensors = model_tensors(&mut model(1));
    tensors.insert("1.weight".to_string(), ArrayD::zeros(vec![12, 8]));
    write(&path, &tensors);
    let err = load_err(&path);
    assert!(
        matches!(&err, CheckpointError::Shape { name, expected, found, .. }
            if name == "1.weight" && expected == &[8, 12] && found == &[12, 8]),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("`1.weight` has shape [12, 8] in the file, the model expects [8, 12]"));
}

#[test]
fn truncated_and_corrupt_files() {
    let dir = TempDir::new("truncated");
    let path = dir.file("m.safetensors");
    save_model(&path, &mut model(1), &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut_path = dir.file("cut.safetensors");
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let err = load_err(&cut_path);
        assert!(
            matches!(err, CheckpointError::Io(TensorIoError::Corrupt { .. })),
            "cut at {cut}: {err:?}"
        );
    }
    let mut garbage = bytes.clone();
    garbage[8..24].fill(b'{');
    std::fs::write(&cut_path, &garbage).unwrap();
    assert!(matches!(
        load_err(&cut_path),
        CheckpointError::Io(TensorIoError::Corrupt { .. })
    ));
    let absent = dir.file("absent.safetensors");
    assert!(matches!(
        load_err(&absent),
        CheckpointError::Io(TensorIoError::Io { .. })
    ));
}

#[test]
fn save_into_a_missing_folder_fails_cleanly() {
    let dir = TempDir::new("no-folder");
    let path = dir.file("no/such/folder/m.safetensors");
    let err = save_model(&path, &mut model(1), &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, CheckpointError::Io(TensorIoError::Io { .. })));
    assert!(err.to_string().contains("m.safetensors"), "{err}");
}

#[test]
fn bundled_optimizer_state_is_skipped_by_prefix() {
    let dir = TempDir::new("bundle");
    let path = dir.file("bundle.safetensors");
    let mut original = model(1);
    let mut tensors = model_tensors(&mut original);
    tensors.insert("optim.m.1.weight".to_string(), ArrayD::ones(vec![8, 12]));
    write(&path, &tensors);
    let file = read_safetensors(&path).unwrap();

    let mut restored = model(2);
    let err = load_tensors(&mut restored, &file, &path, &[]).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Unexpected { ref name, .. } if name == "optim.m.1.weight")
    );
    load_tensors(&mut restored, &file, &path, &["optim."]).unwrap();
    assert_eq!(eval(&mut restored), eval(&mut original));
}

/// A small CNN from the real layers: conv weights `[out, in, kh, kw]` and
/// BatchNorm running statistics must survive the round trip.
fn cnn(seed: u64) -> Sequential {
    use tegaki_nn::{BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d};
    let mut init = rng::stream(seed, "init");
    Sequential::new()
        .with(Conv2d::torch_default(
            1,
            4,
            (3, 3),
            (1, 1),
            (1, 1),
            &mut init,
        ))
        .with(BatchNorm2d::new(4))
        .with(ReLU::new())
        .with(MaxPool2d::new((2, 2), (2, 2)))
        .with(Flatten::new())
        .with(Linear::new(64, 6, &mut init))
        .with(BatchNorm1d::new(6))
        .with(Linear::new(6, 3, &mut init))
}

#[test]
fn cnn_round_trip_keeps_running_statistics() {
    let dir = TempDir::new("cnn");
    let path = dir.file("cnn.safetensors");
    let mut original = cnn(1);
    // Training-mode passes move the running statistics off their initial values.
    for seed in 0..3 {
        original.forward(random_input(&[4, 1, 8, 8], seed), Mode::Train);
    }
    let shapes: BTreeMap<String, Vec<usize>> = model_tensors(&mut original)
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    assert_eq!(shapes["0.weight"], [4, 1, 3, 3]);
    assert_eq!(shapes["1.running_var"], [4]);
    assert_eq!(shapes["5.weight"], [6, 64]);
    assert_eq!(shapes["6.running_mean"], [6]);
    save_model(&path, &mut original, &BTreeMap::new()).unwrap();

    let mut restored = cnn(2);
    load_model(&path, &mut restored).unwrap();
    let x = random_input(&[3, 1, 8, 8], 9);
    let a = original.forward(x.clone(), Mode::Eval);
    let b = restored.forward(x, Mode::Eval);
    let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}
