//! Scoring generated images with a trained classifier.
//!
//! The classifier-based Inception Score (Salimans et al. 2016, with an MNIST
//! classifier in place of Inception): `IS = exp(E_x KL(p(y|x) || p(y)))`,
//! where `p(y)` is the mean of `p(y|x)` over the samples. It is high when each
//! image is classified confidently *and* the classes are spread evenly; with
//! `K` classes it lies in `[1, K]`.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2};
use tegaki_nn::loss::softmax;
use tegaki_nn::{Layer, Mode};

/// Images per classifier forward pass.
const BATCH: usize = 1000;

/// The Inception Score of class probabilities `probs` `(N, K)` (rows sum to 1).
/// Zero probabilities contribute nothing (`0 ln 0 = 0`).
///
/// # Panics
/// If `probs` has no rows.
pub fn inception_score(probs: ArrayView2<'_, f32>) -> f64 {
    let n = probs.nrows();
    assert!(n > 0, "inception_score: no samples");
    let k = probs.ncols();
    let mut marginal = vec![0.0f64; k];
    for row in probs.rows() {
        for (m, &p) in marginal.iter_mut().zip(row) {
            *m += f64::from(p);
        }
    }
    marginal.iter_mut().for_each(|m| *m /= n as f64);
    let mut kl_sum = 0.0f64;
    for row in probs.rows() {
        for (&p, &m) in row.iter().zip(&marginal) {
            let p = f64::from(p);
            if p > 0.0 {
                kl_sum += p * (p.ln() - m.ln());
            }
        }
    }
    (kl_sum / n as f64).exp()
}

/// The fraction of rows of `probs` whose most likely class is each class.
pub fn class_histogram(probs: ArrayView2<'_, f32>) -> Vec<f64> {
    let n = probs.nrows().max(1) as f64;
    let mut counts = vec![0usize; probs.ncols()];
    for row in probs.rows() {
        let best =
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &p)| if p > b.1 { (i, p) } else { b },
            );
        counts[best.0] += 1;
    }
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// Class probabilities of `classifier` (softmax of its logits, eval mode) for
/// images `(N, C, H, W)` in the classifier's pixel scale.
pub fn classify(classifier: &mut dyn Layer, images: &ArrayD<f32>) -> Array2<f32> {
    let mut rows = Vec::new();
    let n = images.shape()[0];
    for start in (0..n).step_by(BATCH) {
        let x = images
            .slice_axis(Axis(0), (start..(start + BATCH).min(n)).into())
            .to_owned();
        let logits = classifier
            .forward(x, Mode::Eval)
            .into_dimensionality::<Ix2>()
            .expect("classifier output is (N, K)");
        rows.push(softmax(logits.view()));
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("same class count")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tegaki_nn::Linear;
    use tegaki_tensor::rng;

    fn one_hot(classes: &[usize], k: usize) -> Array2<f32> {
        let mut a = Array2::zeros((classes.len(), k));
        for (i, &c) in classes.iter().enumerate() {
            a[[i, c]] = 1.0;
        }
        a
    }

    #[test]
    fn confident_and_uniform_gives_the_class_count() {
        let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
        let p = one_hot(&labels, 10);
        assert!((inception_score(p.view()) - 10.0).abs() < 1e-9);
        assert_eq!(class_histogram(p.view()), vec![0.1; 10]);
    }

    #[test]
    fn one_class_or_no_confidence_gives_one() {
        let p = one_hot(&[3; 50], 10);
        assert!((inception_score(p.view()) - 1.0).abs() < 1e-12);
        let mut h = vec![0.0; 10];
        h[3] = 1.0;
        assert_eq!(class_histogram(p.view()), h);
        let flat = Array2::from_elem((20, 10), 0.1f32);
        assert!((inception_score(flat.view()) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn intermediate_case_matches_the_formula() {
        // Two samples over 2 classes: p = (0.9, 0.1) and (0.1, 0.9); marginal
        // (0.5, 0.5); KL = 0.9 ln 1.8 + 0.1 ln 0.2 for both.
        let p = Array2::from_shape_vec((2, 2), vec![0.9f32, 0.1, 0.1, 0.9]).unwrap();
        let kl = 0.9f64 * (1.8f64).ln() + 0.1 * (0.2f64).ln();
        assert!((inception_score(p.view()) - kl.exp()).abs() < 1e-6);
        // Five classes used evenly by confident samples: IS = 5.
        let p = one_hot(&[0, 1, 2, 3, 4, 0, 1, 2, 3, 4], 10);
        assert!((inception_score(p.view()) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn classify_batches_and_normalises() {
        let mut clf = Linear::new(6, 4, &mut rng::seeded(0));
        let x = tegaki_nn::gradcheck::random_input(&[BATCH + 7, 6], 1);
        let p = classify(&mut clf, &x);
        assert_eq!(p.dim(), (BATCH + 7, 4));
        for row in p.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
        let direct = softmax(
            clf.forward(
                x.slice_axis(Axis(0), (BATCH..BATCH + 7).into()).to_owned(),
                Mode::Eval,
            )
            .into_dimensionality::<Ix2>()
            .unwrap()
            .view(),
        );
        assert_eq!(p.slice(ndarray::s![BATCH.., ..]), direct);
    }
}
