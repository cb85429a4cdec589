//! Evaluation: loss, accuracy, per-class accuracy and the confusion matrix.

use ndarray::{Array2, ArrayD, Axis, Ix2};
use tegaki_data::Dataset;
use tegaki_nn::loss::{softmax, softmax_cross_entropy};
use tegaki_nn::{Layer, Mode, Targets};

/// Images per forward pass during evaluation.
pub const EVAL_BATCH: usize = 1000;

/// The result of running a model over a labelled dataset.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// `confusion[[true, predicted]]` counts.
    pub confusion: Array2<usize>,
    /// The predicted class of every image.
    pub predictions: Vec<usize>,
    /// The softmax probability of each prediction.
    pub confidence: Vec<f32>,
}

impl Evaluation {
    /// Accuracy of each true class (NaN for a class with no images).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .outer_iter()
            .enumerate()
            .map(|(k, row)| {
                let total: usize = row.sum();
                if total == 0 {
                    f64::NAN
                } else {
                    row[k] as f64 / total as f64
                }
            })
            .collect()
    }
}

/// Class probabilities `(N, K)` for a batch of images, in Eval mode.
pub fn predict_proba(model: &mut dyn Layer, x: ArrayD<f32>) -> Array2<f32> {
    let logits = model.forward(x, Mode::Eval);
    let logits = logits
        .into_dimensionality::<Ix2>()
        .expect("classifier output is (N, K)");
    softmax(logits.view())
}

/// Evaluates `model` on every image of `data`.
pub fn evaluate(model: &mut dyn Layer, data: &Dataset) -> Evaluation {
    let k = data.num_classes();
    let mut confusion = Array2::zeros((k, k));
    let mut predictions = Vec::with_capacity(data.len());
    let mut confidence = Vec::with_capacity(data.len());
    let mut loss_sum = 0.0f64;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let x = data.batch_f32(chunk).into_dyn();
        let labels = data.labels_of(chunk);
        let logits = model.forward(x, Mode::Eval);
        let (loss, _) = softmax_cross_entropy(&logits, &Targets::Classes(labels.clone()));
        loss_sum += f64::from(loss) * chunk.len() as f64;
        let probs = softmax(
            logits
                .view()
                .into_dimensionality::<Ix2>()
                .expect("(N, K) logits"),
        );
        for (row, &label) in probs.axis_iter(Axis(0)).zip(&labels) {
            let (pred, p) = argmax(row.as_slice().expect("contiguous row"));
            confusion[[label, pred]] += 1;
            predictions.push(pred);
            confidence.push(p);
        }
    }
    let correct: usize = (0..k).map(|i| confusion[[i, i]]).sum();
    Evaluation {
        loss: loss_sum / data.len().max(1) as f64,
        accuracy: correct as f64 / data.len().max(1) as f64,
        confusion,
        predictions,
        confidence,
    }
}

/// Index and value of the largest entry (the first one on ties).
pub fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}
