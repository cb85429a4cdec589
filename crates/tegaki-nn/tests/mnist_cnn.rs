//! The course's MNIST CNN assembled from the real layers: its summary, and a
//! gradient check through a small conv chain end to end.

use tegaki_nn::gradcheck::{check_layer, random_input};
use tegaki_nn::{
    BatchNorm2d, Conv2d, Dropout, Flatten, Layer, Linear, MaxPool2d, ReLU, Sequential, Tanh,
    summary,
};
use tegaki_tensor::rng;

#[test]
fn mnist_cnn_summary() {
    let mut init = rng::stream(0, "init");
    let mut net = Sequential::new()
        .with(Conv2d::torch_default(
            1,
            32,
            (3, 3),
            (1, 1),
            (1, 1),
            &mut init,
        ))
        .with(BatchNorm2d::new(32))
        .with(ReLU::new())
        .with(MaxPool2d::new((2, 2), (2, 2)))
        .with(Conv2d::torch_default(
            32,
            64,
            (3, 3),
            (1, 1),
            (1, 1),
            &mut init,
        ))
        .with(ReLU::new())
        .with(MaxPool2d::new((2, 2), (2, 2)))
        .with(Flatten::new())
        .with(Linear::new(3136, 128, &mut init))
        .with(ReLU::new())
        .with(Dropout::new(0.5, &mut init))
        .with(Linear::new(128, 10, &mut init));
    assert_eq!(net.num_params(), 320 + 64 + 18_496 + 401_536 + 1_290);
    insta::assert_snapshot!(summary(&mut net, &[1, 28, 28]).unwrap());
}

#[test]
fn conv_chain_gradients() {
    // Smooth activations only: inside a chain a nudged weight could push a
    // value across a ReLU kink or change a max-pool winner.
    let mut init = rng::stream(1, "init");
    let mut net = Sequential::new()
        .with(Conv2d::torch_default(
            2,
            3,
            (3, 2),
            (2, 1),
            (1, 0),
            &mut init,
        ))
        .with(BatchNorm2d::new(3))
        .with(Tanh::new())
        .with(Flatten::new())
        .with(Dropout::new(0.25, &mut init))
        .with(Linear::new(3 * 3 * 4, 4, &mut init));
    for n in [1, 3] {
        check_layer(&mut net, &random_input(&[n, 2, 5, 5], n as u64));
    }
}
