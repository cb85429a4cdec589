//! Softmax and cross-entropy, fused and numerically stable.
//!
//! The loss is computed from the logits through log-sum-exp,
//! `log softmax(z)ₖ = zₖ - m - log Σⱼ e^(zⱼ - m)` with `m = maxⱼ zⱼ`, so logits
//! of any magnitude give finite values, and the gradient comes out of the same
//! pass in closed form (`(softmax - target) / N`), never through a separate
//! softmax layer whose Jacobian would be multiplied out.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, Zip};

/// What the network should have predicted, for a batch of `N` rows: the two
/// kinds are explicit, never guessed from array sizes.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per sample, each `< classes`.
    Classes(Vec<usize>),
    /// One probability row per sample, `(N, classes)`: soft targets for label
    /// smoothing and mixup. Rows should be non-negative and sum to 1; the
    /// gradient is exact for any row (see [`softmax_cross_entropy`]).
    Probabilities(Array2<f32>),
}

impl Targets {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Probabilities(p) => p.nrows(),
        }
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels as one-hot probability rows, `(N, classes)`.
    ///
    /// # Panics
    /// If a label is `>= classes`.
    pub fn one_hot(labels: &[usize], classes: usize) -> Self {
        Self::smoothed(labels, classes, 0.0)
    }

    /// Label smoothing: each row puts `1 - eps + eps / classes` on its label and
    /// `eps / classes` on every other class (PyTorch's `label_smoothing`).
    ///
    /// # Panics
    /// If a label is `>= classes` or `eps` is not in `[0, 1]`.
    pub fn smoothed(labels: &[usize], classes: usize, eps: f32) -> Self {
        assert!(
            (0.0..=1.0).contains(&eps),
            "label smoothing eps must be in [0, 1], got {eps}"
        );
        let off = eps / classes as f32;
        let mut rows = Array2::from_elem((labels.len(), classes), off);
        for (n, &label) in labels.iter().enumerate() {
            check_label(n, label, classes);
            rows[[n, label]] += 1.0 - eps;
        }
        Targets::Probabilities(rows)
    }
}

fn check_label(row: usize, label: usize, classes: usize) {
    assert!(
        label < classes,
        "cross-entropy: label {label} of sample {row} is out of range for {classes} classes"
    );
}

/// Row-wise `log softmax`, stable for any logits (log-sum-exp with the row
/// maximum subtracted).
pub fn log_softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let log_sum = row.fold(0.0f32, |s, &v| s + (v - max).exp()).ln();
        row.mapv_inplace(|v| v - max - log_sum);
    }
    out
}

/// Row-wise softmax, stable for any logits; each row sums to 1.
pub fn softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

fn logits2<'a>(logits: &'a ArrayD<f32>, targets: &Targets) -> ArrayView2<'a, f32> {
    let z = logits
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| {
            panic!(
                "cross-entropy: logits must be (N, classes), got {:?}",
                logits.shape()
            )
        });
    assert_eq!(
        z.nrows(),
        targets.len(),
        "cross-entropy: {} rows of logits but {} targets",
        z.nrows(),
        targets.len()
    );
    if let Targets::Probabilities(p) = targets {
        assert_eq!(
            p.ncols(),
            z.ncols(),
            "cross-entropy: logits have {} classes but target rows have {}",
            z.ncols(),
            p.ncols()
        );
    }
    z
}

/// Mean cross-entropy of `softmax(logits)` against `targets` over the batch,
/// and its gradient with respect to the logits.
///
/// With per-sample loss `-Σₖ tₖ log softmax(z)ₖ`, the gradient is
/// `(softmax(z) · Σₖ tₖ - t) / N`, which is `(softmax(z) - t) / N` for
/// probability rows and one-hot labels.
///
/// # Shapes
/// `logits`: `(N, classes)`; the gradient has the same shape.
///
/// # Panics
/// If `logits` is not 2-D, the number of targets differs from `N`, a label is
/// `>= classes`, or probability rows have a different class count.
pub fn softmax_cross_entropy(logits: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>) {
    let z = logits2(logits, targets);
    let n = z.nrows();
    let scale = 1.0 / n.max(1) as f32;
    let log_p = log_softmax(z);
    let mut loss = 0.0f64;
    // grad starts as softmax = exp(log_softmax), then the target is subtracted.
    let mut grad = log_p.mapv(f32::exp);
    match targets {
        Targets::Classes(labels) => {
            for (row, &label) in labels.iter().enumerate() {
                check_label(row, label, z.ncols());
                loss -= f64::from(log_p[[row, label]]);
                grad[[row, label]] -= 1.0;
            }
        }
        Targets::Probabilities(t) => {
            for ((mut g, lp), t) in grad.rows_mut().into_iter().zip(log_p.rows()).zip(t.rows()) {
                let mass: f32 = t.sum();
                loss -= Zip::from(&t)
                    .and(&lp)
                    .fold(0.0f64, |s, &t, &lp| s + f64::from(t * lp));
                Zip::from(&mut g)
                    .and(&t)
                    .for_each(|g, &t| *g = *g * mass - t);
            }
        }
    }
    grad.mapv_inplace(|g| g * scale);
    ((loss * f64::from(scale)) as f32, grad.into_dyn())
}

/// The mean cross-entropy alone, for evaluation (no gradient is built).
///
/// # Panics
/// As [`softmax_cross_entropy`].
pub fn cross_entropy_loss(logits: &ArrayD<f32>, targets: &Targets) -> f32 {
    let z = logits2(logits, targets);
    let log_p = log_softmax(z);
    let total: f64 = match targets {
        Targets::Classes(labels) => labels
            .iter()
            .enumerate()
            .map(|(row, &label)| {
                check_label(row, label, z.ncols());
                -f64::from(log_p[[row, label]])
            })
            .sum(),
        Targets::Probabilities(t) => -Zip::from(t)
            .and(&log_p)
            .fold(0.0f64, |s, &t, &lp| s + f64::from(t * lp)),
    };
    (total / z.nrows().max(1) as f64) as f32
}

/// The index of the largest logit in each row (the predicted class); the
/// first one on ties.
pub fn argmax_rows(logits: ArrayView2<f32>) -> Vec<usize> {
    logits
        .axis_iter(Axis(0))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect()
}

/// Softmax followed by cross-entropy as one loss, for code that wants a value
/// to hold (e.g. a trainer generic over losses); it forwards to
/// [`softmax_cross_entropy`] and [`cross_entropy_loss`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftmaxCrossEntropy;

impl SoftmaxCrossEntropy {
    /// Mean loss over the batch and d(loss)/d(logits); see [`softmax_cross_entropy`].
    pub fn loss_and_grad(&self, logits: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>) {
        softmax_cross_entropy(logits, targets)
    }

    /// Mean loss over the batch; see [`cross_entropy_loss`].
    pub fn loss(&self, logits: &ArrayD<f32>, targets: &Targets) -> f32 {
        cross_entropy_loss(logits, targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::random_input;
    use ndarray::arr2;

    /// Central differences of the loss in f64 on every logit.
    fn numeric_grad(logits: &ArrayD<f32>, targets: &Targets) -> ArrayD<f64> {
        let h = 1e-2f32;
        let mut z = logits.clone();
        let mut g = ArrayD::zeros(logits.raw_dim());
        for i in 0..z.len() {
            let orig = z.as_slice().unwrap()[i];
            z.as_slice_mut().unwrap()[i] = orig + h;
            let plus = f64::from(cross_entropy_loss(&z, targets));
            z.as_slice_mut().unwrap()[i] = orig - h;
            let minus = f64::from(cross_entropy_loss(&z, targets));
            z.as_slice_mut().unwrap()[i] = orig;
            g.as_slice_mut().unwrap()[i] = (plus - minus) / (2.0 * f64::from(h));
        }
        g
    }

    fn assert_grad_matches(logits: &ArrayD<f32>, targets: &Targets) {
        let (loss, grad) = softmax_cross_entropy(logits, targets);
        assert!((loss - cross_entropy_loss(logits, targets)).abs() < 1e-5);
        let numeric = numeric_grad(logits, targets);
        for (a, n) in grad.iter().zip(&numeric) {
            assert!(
                (f64::from(*a) - n).abs() < 1e-3 + 1e-2 * n.abs(),
                "analytic {a} vs numeric {n} for {targets:?}"
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (n, c) in [(1, 3), (4, 10), (7, 5)] {
            let z = random_input(&[n, c], n as u64).mapv(|v| 2.0 * v);
            let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 1) % c).collect();
            assert_grad_matches(&z, &Targets::Classes(labels.clone()));
            assert_grad_matches(&z, &Targets::one_hot(&labels, c));
            assert_grad_matches(&z, &Targets::smoothed(&labels, c, 0.1));
            let mut soft = random_input(&[n, c], 99).mapv(f32::exp);
            for mut row in soft.rows_mut() {
                let s = row.sum();
                row.mapv_inplace(|v| v / s);
            }
            let soft = soft.into_dimensionality::<Ix2>().unwrap();
            assert_grad_matches(&z, &Targets::Probabilities(soft));
        }
    }

    #[test]
    fn gradient_is_softmax_minus_target_over_n() {
        let z = random_input(&[3, 4], 5);
        let labels = vec![0, 3, 1];
        let (_, g) = softmax_cross_entropy(&z, &Targets::Classes(labels.clone()));
        let mut expect = softmax(z.view().into_dimensionality().unwrap());
        for (r, &l) in labels.iter().enumerate() {
            expect[[r, l]] -= 1.0;
        }
        for (a, b) in g.iter().zip(expect.iter()) {
            assert!((a - b / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn one_hot_probabilities_equal_class_indices() {
        let z = random_input(&[6, 10], 3);
        let labels = vec![9, 0, 4, 4, 2, 7];
        let (l1, g1) = softmax_cross_entropy(&z, &Targets::Classes(labels.clone()));
        let (l2, g2) = softmax_cross_entropy(&z, &Targets::one_hot(&labels, 10));
        assert!((l1 - l2).abs() < 1e-6);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn known_values() {
        // Uniform logits: loss = ln(classes), whatever the label.
        let z = ArrayD::zeros(vec![2, 4]);
        let (loss, _) = softmax_cross_entropy(&z, &Targets::Classes(vec![1, 3]));
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        // Label smoothing with eps = 0.1 on a confident prediction (Python, float64:
        // lse = 5 + ln(1 + 2e^-5); loss = -Σ t·(z - lse)):
        // z = [[5, 0, 0]], t = [0.9333, 0.0333, 0.0333]; loss = 0.346719.
        let z = arr2(&[[5.0f32, 0.0, 0.0]]).into_dyn();
        let loss = cross_entropy_loss(&z, &Targets::smoothed(&[0], 3, 0.1));
        assert!((loss - 0.346_719).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn mixup_rows_mix_the_losses() {
        // A row 0.3·onehot(a) + 0.7·onehot(b) gives 0.3·L(a) + 0.7·L(b).
        let z = random_input(&[1, 5], 8);
        let la = cross_entropy_loss(&z, &Targets::Classes(vec![1]));
        let lb = cross_entropy_loss(&z, &Targets::Classes(vec![4]));
        let t = arr2(&[[0.0f32, 0.3, 0.0, 0.0, 0.7]]);
        let mixed = cross_entropy_loss(&z, &Targets::Probabilities(t));
        assert!((mixed - (0.3 * la + 0.7 * lb)).abs() < 1e-5);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let z = arr2(&[[1e4f32, -1e4, 0.0], [-1e4, -1e4, 1e4], [3e4, 3e4, -3e4]]).into_dyn();
        let (loss, g) = softmax_cross_entropy(&z, &Targets::Classes(vec![1, 2, 0]));
        assert!(loss.is_finite() && g.iter().all(|v| v.is_finite()));
        // Sample 0 is wrong by 2e4, sample 1 right, sample 2 a tie: (2e4 + 0 + ln 2) / 3.
        assert!((loss - (2e4 + 2f32.ln()) / 3.0).abs() < 1e-2, "{loss}");
        let s = softmax(z.view().into_dimensionality().unwrap());
        assert!(s.iter().all(|v| v.is_finite()));
        assert_eq!(s[[2, 0]], 0.5);
        let soft = Targets::smoothed(&[1, 2, 0], 3, 0.2);
        let (loss, g) = softmax_cross_entropy(&z, &soft);
        assert!(loss.is_finite() && g.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn argmax_and_softmax_rows() {
        let z = arr2(&[[0.1f32, 2.0, -1.0], [5.0, 5.0, 1.0]]);
        assert_eq!(argmax_rows(z.view()), vec![1, 0]);
        let s = softmax(z.view());
        for row in s.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
        let ls = log_softmax(z.view());
        for (a, b) in ls.iter().zip(s.iter()) {
            assert!((a.exp() - b).abs() < 1e-6);
        }
    }

    #[test]
    #[should_panic(expected = "label 10 of sample 1 is out of range for 10 classes")]
    fn label_out_of_range_panics() {
        softmax_cross_entropy(&ArrayD::zeros(vec![2, 10]), &Targets::Classes(vec![3, 10]));
    }

    #[test]
    #[should_panic(expected = "3 rows of logits but 2 targets")]
    fn row_count_mismatch_panics() {
        softmax_cross_entropy(&ArrayD::zeros(vec![3, 10]), &Targets::Classes(vec![3, 1]));
    }

    #[test]
    #[should_panic(expected = "logits have 4 classes but target rows have 3")]
    fn class_count_mismatch_panics() {
        let t = Targets::Probabilities(Array2::zeros((2, 3)));
        softmax_cross_entropy(&ArrayD::zeros(vec![2, 4]), &t);
    }
}
