//! The one driver every optimizer shares.

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use tegaki_tensor::{HasParams, Param};

use crate::schedule::Schedule;
use crate::state::{KEY_NAME, KEY_STEP, OptimizerState, TENSOR_PREFIX};
use crate::{OptimError, Optimizer};

/// PyTorch's `clip_grad_norm_` guard, so an all-zero gradient is not divided by 0.
const CLIP_EPS: f32 = 1e-6;

/// The per-parameter math of one optimizer.
///
/// A rule sees one parameter at a time, with the gradient already clipped and
/// weight-decayed by the [`Driver`], and the learning rate already scheduled.
/// Its state is a fixed list of tensors shaped like the parameter (the
/// *slots*, e.g. Adam's `m` and `v`), named as the papers name them.
pub trait UpdateRule: Send {
    /// The optimizer's name, stored in saved states (`"adam"`).
    fn name(&self) -> &'static str;

    /// The names of the state tensors kept per parameter, in order.
    fn slots(&self) -> &'static [&'static str];

    /// The state of a fresh parameter: one zero tensor per slot.
    fn init_state(&self, param: &Param) -> Vec<ArrayD<f32>> {
        self.slots()
            .iter()
            .map(|_| tegaki_tensor::zeros_like(&param.value))
            .collect()
    }

    /// Updates `value` in place from `grad`, reading and writing `state`
    /// (one tensor per slot). `lr` is the scheduled learning rate and `t` the
    /// 1-based index of this update (for bias corrections).
    fn update(
        &self,
        value: &mut ArrayD<f32>,
        grad: ArrayViewD<'_, f32>,
        state: &mut [ArrayD<f32>],
        lr: f32,
        t: u64,
    );
}

struct ParamState {
    name: String,
    shape: Vec<usize>,
    slots: Vec<ArrayD<f32>>,
}

/// A loaded state whose parameters have not been seen yet.
struct Pending {
    groups: BTreeMap<String, Vec<ArrayD<f32>>>,
}

/// Runs an [`UpdateRule`] over every parameter of a model.
///
/// Per update, in this order: clip all gradients together to a global L2 norm
/// of at most `clip_norm` (PyTorch's `clip_grad_norm_`), add coupled L2 weight
/// decay `weight_decay * w` to each gradient, take the learning rate from the
/// [`Schedule`] at the current step, then let the rule update each parameter.
/// The gradients stored in the parameters are left untouched.
pub struct Driver<R> {
    rule: R,
    schedule: Schedule,
    weight_decay: f32,
    clip_norm: Option<f32>,
    params: Vec<ParamState>,
    pending: Option<Pending>,
    step: u64,
}

impl<R: UpdateRule> Driver<R> {
    /// A driver with no weight decay and no clipping.
    pub fn new(rule: R, schedule: Schedule) -> Self {
        Self {
            rule,
            schedule,
            weight_decay: 0.0,
            clip_norm: None,
            params: Vec::new(),
            pending: None,
            step: 0,
        }
    }

    /// Sets the coupled L2 weight decay (added to the gradient as `wd * w`).
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the global gradient-norm bound (`None`: no clipping).
    pub fn with_clip_norm(mut self, clip_norm: Option<f32>) -> Self {
        self.clip_norm = clip_norm;
        self
    }

    /// The update rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    fn init_from(&mut self, params: &mut dyn HasParams) {
        let mut pending = self.pending.take();
        let rule = &self.rule;
        let slot_names = rule.slots();
        let mut states = Vec::new();
        params.visit_params(&mut |name, p| {
            let slots = match pending.as_mut() {
                None => rule.init_state(p),
                Some(pending) => {
                    let slots = pending.groups.remove(name).unwrap_or_else(|| {
                        if slot_names.is_empty() {
                            Vec::new()
                        } else {
                            panic!(
                                "optimizer state has no tensors for parameter `{name}` \
                                 (shape {:?})",
                                p.shape()
                            )
                        }
                    });
                    for (slot, t) in slot_names.iter().zip(&slots) {
                        assert!(
                            t.shape() == p.shape(),
                            "optimizer state tensor `{TENSOR_PREFIX}{name}.{slot}` has shape \
                             {:?}, expected {:?} (the parameter's shape)",
                            t.shape(),
                            p.shape()
                        );
                    }
                    slots
                }
            };
            states.push(ParamState {
                name: name.to_string(),
                shape: p.shape().to_vec(),
                slots,
            });
        });
        if let Some(pending) = pending
            && let Some(name) = pending.groups.keys().next()
        {
            panic!(
                "optimizer state has tensors for `{name}`, which is not a parameter of the model"
            );
        }
        self.params = states;
    }

    fn global_grad_norm(params: &mut dyn HasParams) -> f32 {
        let mut sum = 0.0f64;
        params.visit_params(&mut |_, p| {
            sum += p
                .grad
                .iter()
                .map(|&g| f64::from(g) * f64::from(g))
                .sum::<f64>();
        });
        sum.sqrt() as f32
    }

    /// Reads the groups `optim.<param>.<slot>` of a state, checking that each
    /// group is complete and of one shape.
    fn parse_groups(
        &self,
        state: &OptimizerState,
    ) -> Result<BTreeMap<String, Vec<ArrayD<f32>>>, OptimError> {
        let slot_names = self.rule.slots();
        let mut groups: BTreeMap<String, Vec<Option<ArrayD<f32>>>> = BTreeMap::new();
        for (key, tensor) in &state.tensors {
            let unexpected = || OptimError::UnexpectedTensor {
                tensor: key.clone(),
            };
            let Some(rest) = key.strip_prefix(TENSOR_PREFIX) else {
                continue;
            };
            let (param, slot) = slot_names
                .iter()
                .enumerate()
                .find_map(|(i, s)| {
                    rest.strip_suffix(s)
                        .and_then(|r| r.strip_suffix('.'))
                        .map(|param| (param, i))
                })
                .ok_or_else(unexpected)?;
            let group = groups
                .entry(param.to_string())
                .or_insert_with(|| vec![None; slot_names.len()]);
            group[slot] = Some(tensor.clone());
        }
        let mut out = BTreeMap::new();
        for (param, group) in groups {
            let mut slots = Vec::with_capacity(group.len());
            for (slot, t) in slot_names.iter().zip(group) {
                let tensor = format!("{TENSOR_PREFIX}{param}.{slot}");
                let t = t.ok_or_else(|| OptimError::MissingTensor {
                    tensor: tensor.clone(),
                })?;
                if let Some(first) = slots.first().map(|a: &ArrayD<f32>| a.shape().to_vec())
                    && t.shape() != first.as_slice()
                {
                    return Err(OptimError::Shape {
                        tensor,
                        expected: first,
                        found: t.shape().to_vec(),
                    });
                }
                slots.push(t);
            }
            out.insert(param, slots);
        }
        Ok(out)
    }
}

impl<R: UpdateRule> Optimizer for Driver<R> {
    fn apply(&mut self, params: &mut dyn HasParams) {
        if self.params.is_empty() || self.pending.is_some() {
            self.init_from(params);
        }
        let scale = match self.clip_norm {
            Some(max) => {
                let norm = Self::global_grad_norm(params);
                if norm > max {
                    max / (norm + CLIP_EPS)
                } else {
                    1.0
                }
            }
            None => 1.0,
        };
        let lr = self.schedule.lr(self.step);
        let t = self.step + 1;
        let wd = self.weight_decay;
        let rule = &self.rule;
        let states = &mut self.params;
        let mut i = 0;
        params.visit_params(&mut |name, p| {
            let state = states.get_mut(i).unwrap_or_else(|| {
                panic!(
                    "the model has more parameters than the optimizer's state ({}); \
                     parameter `{name}` is new",
                    i
                )
            });
            assert!(
                state.name == name && state.shape == p.shape(),
                "parameter {i} is `{name}` with shape {:?}, but the optimizer's state is for \
                 `{}` with shape {:?}",
                p.shape(),
                state.name,
                state.shape
            );
            let Param { value, grad } = p;
            let grad: CowArray<'_, f32, IxDyn> = if scale == 1.0 && wd == 0.0 {
                grad.view().into()
            } else {
                let mut g = grad.mapv(|g| g * scale);
                if wd != 0.0 {
                    g.zip_mut_with(value, |g, &w| *g += wd * w);
                }
                g.into()
            };
            rule.update(value, grad.view(), &mut state.slots, lr, t);
            i += 1;
        });
        assert!(
            i == self.params.len(),
            "the model has {i} parameters, but the optimizer's state has {}",
            self.params.len()
        );
        self.step += 1;
    }

    fn lr(&self) -> f32 {
        self.schedule.lr(self.step)
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> OptimizerState {
        let mut out = OptimizerState::default();
        out.metadata
            .insert(KEY_NAME.to_string(), self.rule.name().to_string());
        out.metadata
            .insert(KEY_STEP.to_string(), self.step.to_string());
        let slot_names = self.rule.slots();
        let mut put = |param: &str, slots: &[ArrayD<f32>]| {
            for (slot, t) in slot_names.iter().zip(slots) {
                out.tensors
                    .insert(format!("{TENSOR_PREFIX}{param}.{slot}"), t.clone());
            }
        };
        match &self.pending {
            Some(pending) => {
                for (param, slots) in &pending.groups {
                    put(param, slots);
                }
            }
            None => {
                for p in &self.params {
                    put(&p.name, &p.slots);
                }
            }
        }
        out
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        let found = state
            .metadata
            .get(KEY_NAME)
            .ok_or_else(|| OptimError::Metadata {
                key: KEY_NAME.to_string(),
                problem: "missing".to_string(),
            })?;
        if found != self.rule.name() {
            return Err(OptimError::WrongOptimizer {
                expected: self.rule.name().to_string(),
                found: found.clone(),
            });
        }
        let step_text = state
            .metadata
            .get(KEY_STEP)
            .ok_or_else(|| OptimError::Metadata {
                key: KEY_STEP.to_string(),
                problem: "missing".to_string(),
            })?;
        let step: u64 = step_text.parse().map_err(|_| OptimError::Metadata {
            key: KEY_STEP.to_string(),
            problem: format!("`{step_text}` is not a step count"),
        })?;
        let mut groups = self.parse_groups(state)?;
        if self.params.is_empty() {
            self.pending = Some(Pending { groups });
        } else {
            let slot_names = self.rule.slots();
            let mut restored = Vec::with_capacity(self.params.len());
            for p in &self.params {
                let slots = match groups.remove(&p.name) {
                    Some(slots) => slots,
                    None if slot_names.is_empty() => Vec::new(),
                    None => {
                        return Err(OptimError::MissingTensor {
                            tensor: format!("{TENSOR_PREFIX}{}.{}", p.name, slot_names[0]),
                        });
                    }
                };
                for (slot, t) in slot_names.iter().zip(&slots) {
                    if t.shape() != p.shape.as_slice() {
                        return Err(OptimError::Shape {
                            tensor: format!("{TENSOR_PREFIX}{}.{slot}", p.name),
                            expected: p.shape.clone(),
                            found: t.shape().to_vec(),
                        });
                    }
                }
                restored.push(slots);
            }
            if let Some(extra) = groups.keys().next() {
                return Err(OptimError::UnexpectedTensor {
                    tensor: format!("{TENSOR_PREFIX}{extra}.{}", slot_names[0]),
                });
            }
            for (p, slots) in self.params.iter_mut().zip(restored) {
                p.slots = slots;
            }
            self.pending = None;
        }
        self.step = step;
        Ok(())
    }

    fn bind(&mut self, params: &mut dyn HasParams) {
        if self.params.is_empty() {
            self.init_from(params);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Sgd;
    use ndarray::{ArrayD, IxDyn};

    fn param(values: &[f32], grads: &[f32]) -> Param {
        Param {
            value: ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap(),
            grad: ArrayD::from_shape_vec(IxDyn(&[grads.len()]), grads.to_vec()).unwrap(),
        }
    }

    fn values(params: &[Param]) -> Vec<Vec<f32>> {
        params
            .iter()
            .map(|p| p.value.iter().copied().collect())
            .collect()
    }

    #[test]
    fn clipping_scales_all_gradients_by_the_global_norm() {
        // ||(3, 4, 12)|| = 13; clip to 1.3 -> scale 1.3 / (13 + 1e-6) ~= 0.1.
        let mut params = vec![param(&[0.0, 0.0], &[3.0, 4.0]), param(&[1.0], &[12.0])];
        let mut opt = Driver::new(Sgd, Schedule::constant(1.0)).with_clip_norm(Some(1.3));
        opt.apply(&mut params);
        let got = values(&params);
        let want = [[-0.3f32, -0.4].as_slice(), [1.0 - 1.2].as_slice()];
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() < 1e-6, "{got:?}");
            }
        }
        // The stored gradients are not modified.
        assert_eq!(params[1].grad[[0]], 12.0);

        // Below the bound nothing changes: w -= g exactly.
        let mut params = vec![param(&[0.0, 0.0], &[3.0, 4.0])];
        let mut opt = Driver::new(Sgd, Schedule::constant(1.0)).with_clip_norm(Some(5.5));
        opt.apply(&mut params);
        assert_eq!(values(&params), vec![vec![-3.0, -4.0]]);
    }

    #[test]
    fn weight_decay_is_added_to_the_clipped_gradient() {
        // g = (3, 4) clipped to norm 1 -> (0.6, 0.8); plus 0.5 * w = (1, -0.5):
        // g' = (1.6, 0.3); w -= 0.1 g' -> (2 - 0.16, -1 - 0.03) = (1.84, -1.03).
        let mut params = vec![param(&[2.0, -1.0], &[3.0, 4.0])];
        let mut opt = Driver::new(Sgd, Schedule::constant(0.1))
            .with_clip_norm(Some(1.0))
            .with_weight_decay(0.5);
        opt.apply(&mut params);
        let got = values(&params);
        assert!(
            (got[0][0] - 1.84).abs() < 1e-6 && (got[0][1] + 1.03).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn lr_and_steps_follow_the_schedule() {
        use crate::{ScheduleKind, Warmup};
        let schedule = Schedule::new(1.0, ScheduleKind::Constant, Warmup { steps: 4 }, 10);
        let mut opt = Driver::new(Sgd, schedule);
        let mut params = vec![param(&[0.0], &[1.0])];
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(opt.lr());
            opt.apply(&mut params);
        }
        assert_eq!(seen, vec![0.25, 0.5, 0.75, 1.0, 1.0]);
        assert_eq!(opt.steps(), 5);
        // The updates used those rates: w = -(0.25 + 0.5 + 0.75 + 1 + 1).
        assert_eq!(params[0].value[[0]], -3.5);
    }

    #[test]
    #[should_panic(expected = "the model has 1 parameters, but the optimizer's state has 2")]
    fn fewer_parameters_panic() {
        let mut opt = Driver::new(Sgd, Schedule::constant(0.1));
        opt.apply(&mut vec![param(&[0.0], &[1.0]), param(&[0.0], &[1.0])]);
        opt.apply(&mut vec![param(&[0.0], &[1.0])]);
    }

    #[test]
    #[should_panic(expected = "parameter 0 is `0` with shape [2]")]
    fn a_changed_shape_panics() {
        let mut opt = Driver::new(crate::rules::Adam::default(), Schedule::constant(0.1));
        opt.apply(&mut vec![param(&[0.0], &[1.0])]);
        opt.apply(&mut vec![param(&[0.0, 1.0], &[1.0, 1.0])]);
    }
}
