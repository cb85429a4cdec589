//! Helpers shared by the unit tests.

use ndarray::{ArrayD, IxDyn};
use tegaki_tensor::{HasParams, Param};

use crate::{Driver, Optimizer, Schedule, Trainable, UpdateRule};

/// The scalar case of every hand-computed test: w0 = 1, gradients 0.5, -1, 2.
pub const SCALAR_W0: f32 = 1.0;
/// Gradients of the scalar case (and of the vector's first component).
pub const SCALAR_GRADS: [f32; 3] = [0.5, -1.0, 2.0];
/// The vector case: w0 = [1, -2]; the first component repeats the scalar case.
pub const VECTOR_W0: [f32; 2] = [1.0, -2.0];
/// Gradients of the vector case, per step.
pub const VECTOR_GRADS: [[f32; 2]; 3] = [[0.5, 1.0], [-1.0, 0.25], [2.0, -0.5]];

/// Runs `rule` at constant `lr` for three steps with the given gradients, on a
/// 0-d scalar and on a 2-vector; returns the values after each step.
pub fn trajectories<R: UpdateRule + Clone>(rule: R, lr: f32) -> (Vec<f32>, Vec<[f32; 2]>) {
    let mut scalar_opt = Driver::new(rule.clone(), Schedule::constant(lr));
    let mut scalar = vec![Param::new(ArrayD::from_elem(IxDyn(&[]), SCALAR_W0))];
    let mut s = Vec::new();
    for g in SCALAR_GRADS {
        scalar[0].grad = ArrayD::from_elem(IxDyn(&[]), g);
        scalar_opt.apply(&mut scalar);
        s.push(scalar[0].value[[]]);
    }
    let mut vector_opt = Driver::new(rule, Schedule::constant(lr));
    let mut vector = vec![Param::new(
        ArrayD::from_shape_vec(IxDyn(&[2]), VECTOR_W0.to_vec()).unwrap(),
    )];
    let mut v = Vec::new();
    for g in VECTOR_GRADS {
        vector[0].grad = ArrayD::from_shape_vec(IxDyn(&[2]), g.to_vec()).unwrap();
        vector_opt.apply(&mut vector);
        v.push([vector[0].value[[0]], vector[0].value[[1]]]);
    }
    (s, v)
}

/// Asserts both trajectories match the hand-computed values to 2e-6: `first`
/// for the scalar and the vector's first component, `second` for the other.
#[track_caller]
pub fn assert_trajectories(got: (Vec<f32>, Vec<[f32; 2]>), first: [f32; 3], second: [f32; 3]) {
    const TOL: f32 = 2e-6;
    let (s, v) = got;
    for t in 0..3 {
        assert!(
            (s[t] - first[t]).abs() <= TOL,
            "scalar step {}: got {}, expected {}",
            t + 1,
            s[t],
            first[t]
        );
        for (c, want) in [(0, first[t]), (1, second[t])] {
            assert!(
                (v[t][c] - want).abs() <= TOL,
                "vector[{c}] step {}: got {}, expected {}",
                t + 1,
                v[t][c],
                want
            );
        }
    }
}

/// `f(w) = sum_i c_i / 2 * (w_i - target_i)^2`, an ill-conditioned convex quadratic.
pub struct Quadratic {
    /// The one parameter.
    pub params: Vec<Param>,
    /// Curvatures.
    pub c: Vec<f32>,
    /// The minimiser.
    pub target: Vec<f32>,
    /// Number of forward_backward calls.
    pub calls: usize,
}

impl Quadratic {
    /// Starts at `w0`.
    pub fn new(w0: &[f32], c: &[f32], target: &[f32]) -> Self {
        Self {
            params: vec![Param::new(
                ArrayD::from_shape_vec(IxDyn(&[w0.len()]), w0.to_vec()).unwrap(),
            )],
            c: c.to_vec(),
            target: target.to_vec(),
            calls: 0,
        }
    }

    /// The loss at the current weights.
    pub fn loss(&self) -> f32 {
        let w = &self.params[0].value;
        (0..self.c.len())
            .map(|i| 0.5 * self.c[i] * (w[[i]] - self.target[i]).powi(2))
            .sum()
    }
}

impl HasParams for Quadratic {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.params.visit_params(f);
    }
}

impl Trainable for Quadratic {
    fn forward_backward(&mut self) -> f32 {
        self.calls += 1;
        let loss = self.loss();
        let p = &mut self.params[0];
        for i in 0..self.c.len() {
            p.grad[[i]] = self.c[i] * (p.value[[i]] - self.target[i]);
        }
        loss
    }
}

/// Rosenbrock's `(1 - x)^2 + 100 (y - x^2)^2`, minimum 0 at (1, 1).
pub struct Rosenbrock {
    /// `[x, y]`.
    pub params: Vec<Param>,
}

impl Rosenbrock {
    /// Starts at the classic (-1.5, 2).
    pub fn new() -> Self {
        Self {
            params: vec![Param::new(
                ArrayD::from_shape_vec(IxDyn(&[2]), vec![-1.5, 2.0]).unwrap(),
            )],
        }
    }

    /// The loss at the current point.
    pub fn loss(&self) -> f32 {
        let w = &self.params[0].value;
        let (x, y) = (w[[0]], w[[1]]);
        (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
    }
}

impl HasParams for Rosenbrock {
    fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        self.params.visit_params(f);
    }
}

impl Trainable for Rosenbrock {
    fn forward_backward(&mut self) -> f32 {
        let loss = self.loss();
        let p = &mut self.params[0];
        let (x, y) = (p.value[[0]], p.value[[1]]);
        p.grad[[0]] = -2.0 * (1.0 - x) - 400.0 * x * (y - x * x);
        p.grad[[1]] = 200.0 * (y - x * x);
        loss
    }
}
