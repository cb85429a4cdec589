//! Binary cross-entropy on logits, fused with the sigmoid and numerically
//! stable (the GAN's discriminator loss).

use ndarray::ArrayD;

/// Mean binary cross-entropy between `sigmoid(logits)` and `targets`, and its
/// gradient with respect to the logits.
///
/// Per element, `max(x, 0) - x*t + ln(1 + exp(-|x|))`, which equals
/// `-(t ln σ(x) + (1 - t) ln(1 - σ(x)))` but never overflows and keeps full
/// precision for logits of any size (|x| ~ 1e4 included). Targets may be any
/// value in `[0, 1]` (label smoothing). The gradient is
/// `(σ(x) - t) / len`, with σ evaluated without overflow.
///
/// # Panics
/// If the shapes differ or the arrays are empty.
pub fn bce_with_logits(logits: &ArrayD<f32>, targets: &ArrayD<f32>) -> (f32, ArrayD<f32>) {
    assert_eq!(
        logits.shape(),
        targets.shape(),
        "bce_with_logits: logits {:?} vs targets {:?}",
        logits.shape(),
        targets.shape()
    );
    assert!(!logits.is_empty(), "bce_with_logits: empty batch");
    let count = logits.len() as f64;
    let mut total = 0.0f64;
    let mut grad = ArrayD::zeros(logits.raw_dim());
    ndarray::Zip::from(&mut grad)
        .and(logits)
        .and(targets)
        .for_each(|g, &x, &t| {
            let (x, t) = (f64::from(x), f64::from(t));
            let e = (-x.abs()).exp();
            total += x.max(0.0) - x * t + e.ln_1p();
            // σ(x) from exp(-|x|) <= 1, so neither branch overflows.
            let sigmoid = if x >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            *g = ((sigmoid - t) / count) as f32;
        });
    ((total / count) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn arr(v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
    }

    /// The textbook formula, fine for moderate logits.
    fn naive(x: f64, t: f64) -> f64 {
        let s = 1.0 / (1.0 + (-x).exp());
        -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
    }

    #[test]
    fn matches_the_textbook_formula() {
        let x = [-3.0, -0.5, 0.0, 0.7, 2.5, 6.0];
        let t = [0.0, 1.0, 0.5, 0.9, 1.0, 0.0];
        let (loss, grad) = bce_with_logits(&arr(&x), &arr(&t));
        let expect: f64 = x
            .iter()
            .zip(&t)
            .map(|(&x, &t)| naive(f64::from(x), f64::from(t)))
            .sum::<f64>()
            / 6.0;
        assert!(
            (f64::from(loss) - expect).abs() < 1e-6,
            "{loss} vs {expect}"
        );
        for ((g, &x), &t) in grad.iter().zip(&x).zip(&t) {
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((g - (s - t) / 6.0).abs() < 1e-6);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = [-2.0f32, -0.3, 0.4, 1.7];
        let t = arr(&[1.0, 0.0, 0.25, 1.0]);
        let (_, grad) = bce_with_logits(&arr(&x), &t);
        let h = 1e-2f32;
        for i in 0..x.len() {
            let mut plus = x;
            plus[i] += h;
            let mut minus = x;
            minus[i] -= h;
            let numeric = (bce_with_logits(&arr(&plus), &t).0
                - bce_with_logits(&arr(&minus), &t).0)
                / (2.0 * h);
            assert!((grad[i] - numeric).abs() < 1e-3, "{} vs {numeric}", grad[i]);
        }
    }

    #[test]
    fn stable_for_huge_logits() {
        // Right answers: confident and correct costs ~0 with zero gradient;
        // confident and wrong costs |x| with gradient ±1/len.
        let x = arr(&[1e4, -1e4, 1e4, -1e4, 88.0, -104.0]);
        let t = arr(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let (loss, grad) = bce_with_logits(&x, &t);
        assert!(loss.is_finite());
        assert!((loss - 2e4 / 6.0).abs() < 1e-2, "{loss}");
        let n = 6.0;
        let expect = [0.0, 0.0, 1.0 / n, -1.0 / n, 0.0, 0.0];
        for (g, e) in grad.iter().zip(expect) {
            assert!(g.is_finite() && (g - e).abs() < 1e-7, "{g} vs {e}");
        }
    }

    #[test]
    fn log2_at_zero_logits() {
        let (loss, grad) = bce_with_logits(
            &ArrayD::zeros(IxDyn(&[4, 1])),
            &ArrayD::ones(IxDyn(&[4, 1])),
        );
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-7);
        assert!(grad.iter().all(|&g| (g + 0.125).abs() < 1e-7));
    }

    #[test]
    #[should_panic(expected = "bce_with_logits: logits")]
    fn shape_mismatch_panics() {
        bce_with_logits(&ArrayD::zeros(IxDyn(&[2, 1])), &ArrayD::zeros(IxDyn(&[2])));
    }
}
