//! Optimizers for tegaki.
//!
//! The crate knows [`Param`](tegaki_tensor::Param) and
//! [`HasParams`] only, never a layer:
//!
//! * an [`UpdateRule`] is the per-parameter math of one optimizer (SGD,
//!   momentum, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam, AdamW), a pure
//!   function of the value, the gradient and the rule's state slots;
//! * one generic [`Driver`] walks the parameters in visiting order, keeps a
//!   state per parameter, and applies what every optimizer shares: global-norm
//!   gradient clipping, coupled L2 weight decay and the learning-rate
//!   [`Schedule`];
//! * [`Sam`] wraps any optimizer and takes the sharpness-aware step, which needs
//!   a second forward/backward pass: that is why an [`Optimizer`] steps a
//!   [`Trainable`] (a model bound to its batch) rather than a bag of gradients;
//! * [`OptimizerConfig`] / [`ScheduleConfig`] are the `[optimizer]` and
//!   `[schedule]` tables of an experiment file, and [`build`] turns them into a
//!   boxed [`Optimizer`];
//! * [`OptimizerState`] holds moments and the step count for checkpoints, so a
//!   resumed run reproduces the next step bit for bit.

mod config;
mod driver;
mod error;
pub mod rules;
mod sam;
mod schedule;
mod state;
#[cfg(test)]
mod testutil;

pub use config::{OptimizerConfig, OptimizerKind, SamConfig, build, build_for_epochs};
pub use driver::{Driver, UpdateRule};
pub use error::OptimError;
pub use sam::Sam;
pub use schedule::{Schedule, ScheduleConfig, ScheduleKind, Warmup};
pub use state::{OptimizerState, load_state, save_state};

use tegaki_tensor::HasParams;

/// A model bound to the current batch.
///
/// `forward_backward` runs the forward pass, the loss and the backward pass,
/// assigning every parameter's `grad`, and returns the loss. An optimizer may
/// call it more than once per step (SAM does), at whatever weights it has put
/// into the parameters, so it must not advance any iterator or RNG that would
/// make the second call see a different batch.
pub trait Trainable: HasParams {
    /// Forward + backward on the bound batch; returns the loss.
    fn forward_backward(&mut self) -> f32;
}

/// A training-step policy: how gradients become parameter updates.
pub trait Optimizer: Send {
    /// One training step. The default runs [`Trainable::forward_backward`] once
    /// and then [`apply`](Optimizer::apply); [`Sam`] overrides it with two
    /// passes. Returns the loss at the weights the step started from.
    fn step(&mut self, model: &mut dyn Trainable) -> f32 {
        let loss = model.forward_backward();
        self.apply(model);
        loss
    }

    /// One update from the gradients already stored in the parameters (used by
    /// [`step`](Optimizer::step) and by training loops that compute gradients
    /// themselves, like the GAN's).
    ///
    /// # Panics
    /// If the number, names or shapes of the parameters differ from the first
    /// call (or from a loaded state): the optimizer's state is per parameter.
    fn apply(&mut self, params: &mut dyn HasParams);

    /// The learning rate the next update will use (after the schedule).
    fn lr(&self) -> f32;

    /// Number of updates applied so far (including those of a loaded state).
    fn steps(&self) -> u64;

    /// Moments and step count, for checkpoints.
    fn state(&self) -> OptimizerState;

    /// Restores a state saved by [`state`](Optimizer::state).
    ///
    /// A state of another optimizer is an error. Shapes are checked against the
    /// parameters here if the optimizer already knows them (after
    /// [`bind`](Optimizer::bind) or one update), otherwise at the next
    /// [`apply`](Optimizer::apply), which panics naming the tensor and both
    /// shapes.
    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError>;

    /// Creates the (zero) state for `params` now instead of at the first
    /// update, so that [`load_state`](Optimizer::load_state) can check shapes
    /// and return an error. Does nothing if the state already exists.
    fn bind(&mut self, params: &mut dyn HasParams);
}

#[cfg(test)]
mod convergence_tests {
    use crate::testutil::{Quadratic, Rosenbrock};
    use crate::{OptimizerConfig, OptimizerKind, ScheduleConfig, build};

    /// Every optimizer with a learning rate that suits these small problems,
    /// and the step counts they get.
    fn cases() -> Vec<(OptimizerConfig, u64)> {
        [
            ("sgd", 0.05, 400),
            ("momentum", 0.01, 400),
            ("nesterov", 0.01, 400),
            ("adagrad", 1.0, 1000),
            ("rmsprop", 0.05, 1000),
            ("adadelta", 1.0, 5000),
            ("adam", 0.05, 1000),
            ("adamw", 0.05, 1000),
        ]
        .into_iter()
        .map(|(name, lr, steps)| {
            let mut cfg = OptimizerConfig::new(OptimizerKind::from_name(name).unwrap());
            cfg.lr = lr;
            cfg.weight_decay = 0.0;
            (cfg, steps)
        })
        .collect()
    }

    #[test]
    fn every_optimizer_converges_on_a_convex_quadratic() {
        // Cosine annealing lets the sign-like methods (RMSProp, Adam) settle
        // instead of hovering at a distance of about lr.
        let sched = ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_steps: None,
            warmup_epochs: None,
        };
        for (cfg, steps) in cases() {
            let mut model = Quadratic::new(&[5.0, 5.0], &[1.0, 10.0], &[1.0, -2.0]);
            let start = model.loss();
            let mut opt = build(&cfg, &sched, steps).unwrap();
            for _ in 0..steps {
                opt.step(&mut model);
            }
            let end = model.loss();
            println!("{}: {start} -> {end}", cfg.kind.name());
            assert!(end < 1e-3, "{}: loss {start} -> {end}", cfg.kind.name());
        }
    }

    #[test]
    fn every_optimizer_makes_progress_on_rosenbrock() {
        for (mut cfg, steps) in cases() {
            // Rosenbrock's curvature reaches ~1e3 along the valley: plain
            // gradient methods need a small step.
            if matches!(cfg.kind.name(), "sgd" | "momentum" | "nesterov") {
                cfg.lr = 1e-4;
            }
            let mut model = Rosenbrock::new();
            let start = model.loss();
            let mut opt = build(&cfg, &ScheduleConfig::default(), steps).unwrap();
            for _ in 0..steps {
                opt.step(&mut model);
            }
            let end = model.loss();
            println!("{}: {start} -> {end}", cfg.kind.name());
            assert!(
                end.is_finite() && end < 0.5 * start,
                "{}: loss {start} -> {end}",
                cfg.kind.name()
            );
        }
    }
}
