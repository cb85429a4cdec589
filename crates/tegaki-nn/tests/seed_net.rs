//! The seed's basic network (784-100 sigmoid-10, softmax cross-entropy,
//! minibatch SGD) end to end: gradients of the whole chain, and a short
//! training run on synthetic data that must learn it.

use ndarray::{Array2, ArrayD, Axis, Ix2};
use tegaki_nn::gradcheck::{check_layer, random_input};
use tegaki_nn::loss::argmax_rows;
use tegaki_nn::{Layer, Linear, Mode, Sequential, Sigmoid, Targets, softmax_cross_entropy};
use tegaki_tensor::{Init, SeededRng, rng};

fn basic_net(seed: u64) -> Sequential {
    let mut init = rng::stream(seed, "init");
    Sequential::new()
        .with(Linear::new(784, 100, &mut init))
        .with(Sigmoid::new())
        .with(Linear::new(100, 10, &mut init))
}

#[test]
fn whole_network_gradients() {
    let mut net = basic_net(0);
    for n in [1, 3] {
        check_layer(&mut net, &random_input(&[n, 784], n as u64));
    }
}

/// Ten random 784-pixel prototypes, one per class.
fn prototypes(rng: &mut SeededRng) -> Array2<f32> {
    Init::Normal {
        mean: 0.5,
        std: 0.5,
    }
    .tensor(&[10, 784], rng)
    .into_dimensionality::<Ix2>()
    .unwrap()
}

/// `n` noisy copies of the prototypes, with their labels.
fn samples(protos: &Array2<f32>, n: usize, rng: &mut SeededRng) -> (ArrayD<f32>, Vec<usize>) {
    let noise = Init::Normal {
        mean: 0.0,
        std: 1.5,
    }
    .tensor(&[n, 784], rng);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + i / 10) % 10).collect();
    let mut x = noise.into_dimensionality::<Ix2>().unwrap();
    for (mut row, &label) in x.axis_iter_mut(Axis(0)).zip(&labels) {
        row += &protos.row(label);
    }
    (x.into_dyn(), labels)
}

fn accuracy(net: &mut Sequential, x: &ArrayD<f32>, labels: &[usize]) -> f64 {
    let logits: Array2<f32> = net.predict(x.clone()).into_dimensionality().unwrap();
    let hits = argmax_rows(logits.view())
        .iter()
        .zip(labels)
        .filter(|(a, b)| a == b)
        .count();
    hits as f64 / labels.len() as f64
}

#[test]
fn minibatch_sgd_learns_separable_data() {
    let mut data = rng::stream(1, "data");
    let protos = prototypes(&mut data);
    let (train_x, train_y) = samples(&protos, 400, &mut data);
    let (test_x, test_y) = samples(&protos, 200, &mut data);
    let mut net = basic_net(1);
    let before = accuracy(&mut net, &test_x, &test_y);
    let lr = 0.3;
    let batch = 50;
    for _epoch in 0..3 {
        for start in (0..400).step_by(batch) {
            let x = train_x
                .slice_axis(Axis(0), (start..start + batch).into())
                .to_owned();
            let y = Targets::Classes(train_y[start..start + batch].to_vec());
            let logits = net.forward(x, Mode::Train);
            let (_, dlogits) = softmax_cross_entropy(&logits, &y);
            net.backward_params_only(dlogits);
            net.visit_params(&mut |_, p| p.value.scaled_add(-lr, &p.grad));
        }
    }
    let after = accuracy(&mut net, &test_x, &test_y);
    assert!(before < 0.3, "untrained accuracy {before}");
    assert!(
        after > 0.9,
        "accuracy after training {after} (before {before})"
    );
}
