use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::UpdateRule;

/// Plain stochastic gradient descent: `w -= lr * g`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sgd;

impl UpdateRule for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn slots(&self) -> &'static [&'static str] {
        &[]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        _state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        Zip::from(value).and(&grad).for_each(|w, &g| *w -= lr * g);
    }
}

/// Heavy-ball momentum (Polyak 1964, in PyTorch's form):
/// `velocity = momentum * velocity + g`, `w -= lr * velocity`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    /// Decay of the velocity, in [0, 1). Default 0.9.
    pub momentum: f32,
}

impl Default for Momentum {
    fn default() -> Self {
        Self { momentum: 0.9 }
    }
}

impl UpdateRule for Momentum {
    fn name(&self) -> &'static str {
        "momentum"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["velocity"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        let mu = self.momentum;
        Zip::from(value)
            .and(&grad)
            .and(&mut state[0])
            .for_each(|w, &g, v| {
                *v = mu * *v + g;
                *w -= lr * *v;
            });
    }
}

/// Nesterov momentum (Sutskever et al. 2013, in PyTorch's form):
/// `velocity = momentum * velocity + g`, `w -= lr * (g + momentum * velocity)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nesterov {
    /// Decay of the velocity, in [0, 1). Default 0.9.
    pub momentum: f32,
}

impl Default for Nesterov {
    fn default() -> Self {
        Self { momentum: 0.9 }
    }
}

impl UpdateRule for Nesterov {
    fn name(&self) -> &'static str {
        "nesterov"
    }
    fn slots(&self) -> &'static [&'static str] {
        &["velocity"]
    }
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        _t: u64,
    ) {
        let mu = self.momentum;
        Zip::from(value)
            .and(&grad)
            .and(&mut state[0])
            .for_each(|w, &g, v| {
                *v = mu * *v + g;
                *w -= lr * (g + mu * *v);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_trajectories, trajectories};

    // w0 = 1, g = 0.5, -1, 2 (second component: w0 = -2, g = 1, 0.25, -0.5); lr = 0.1.

    #[test]
    fn sgd_by_hand() {
        // w1 = 1 - 0.1*0.5 = 0.95; w2 = 0.95 + 0.1 = 1.05; w3 = 1.05 - 0.2 = 0.85
        // w1 = -2 - 0.1 = -2.1; w2 = -2.1 - 0.025 = -2.125; w3 = -2.125 + 0.05 = -2.075
        assert_trajectories(
            trajectories(Sgd, 0.1),
            [0.95, 1.05, 0.85],
            [-2.1, -2.125, -2.075],
        );
    }

    #[test]
    fn momentum_by_hand() {
        // v1 = 0.5,                   w1 = 1 - 0.1*0.5 = 0.95
        // v2 = 0.9*0.5 - 1 = -0.55,   w2 = 0.95 + 0.055 = 1.005
        // v3 = 0.9*-0.55 + 2 = 1.505, w3 = 1.005 - 0.1505 = 0.8545
        // v1 = 1,                      w1 = -2 - 0.1 = -2.1
        // v2 = 0.9*1 + 0.25 = 1.15,    w2 = -2.1 - 0.115 = -2.215
        // v3 = 0.9*1.15 - 0.5 = 0.535, w3 = -2.215 - 0.0535 = -2.2685
        assert_trajectories(
            trajectories(Momentum { momentum: 0.9 }, 0.1),
            [0.95, 1.005, 0.8545],
            [-2.1, -2.215, -2.2685],
        );
    }

    #[test]
    fn nesterov_by_hand() {
        // Same velocities as momentum; the step is lr * (g + 0.9 * v):
        // w1 = 1 - 0.1*(0.5 + 0.45) = 0.905
        // w2 = 0.905 - 0.1*(-1 - 0.495) = 1.0545
        // w3 = 1.0545 - 0.1*(2 + 1.3545) = 0.71905
        // w1 = -2 - 0.1*(1 + 0.9) = -2.19
        // w2 = -2.19 - 0.1*(0.25 + 1.035) = -2.3185
        // w3 = -2.3185 - 0.1*(-0.5 + 0.4815) = -2.31665
        assert_trajectories(
            trajectories(Nesterov { momentum: 0.9 }, 0.1),
            [0.905, 1.0545, 0.71905],
            [-2.19, -2.3185, -2.31665],
        );
    }
}
