//! Learning-rate schedules: functions of the step index and the run's length.

use serde::{Deserialize, Serialize};

use crate::OptimError;

/// The `[schedule]` table of an experiment file.
///
/// ```toml
/// [schedule]
/// name = "cosine"      # constant | step | cosine | one-cycle
/// min_lr = 0.0
/// warmup_epochs = 1    # or warmup_steps; constant, step and cosine take a warm-up
/// ```
///
/// Lengths may be given in steps or in epochs; epochs need the number of
/// steps per epoch when the optimizer is built ([`build_for_epochs`](crate::build_for_epochs)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// The optimizer's `lr` throughout (after an optional linear warm-up).
    Constant {
        /// Linear warm-up length in steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_steps: Option<u64>,
        /// Linear warm-up length in epochs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_epochs: Option<u64>,
    },
    /// Step decay: `lr * gamma^floor(t / step_size)`, `t` counted after the warm-up.
    Step {
        /// Steps between decays (give this or `step_epochs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_size: Option<u64>,
        /// Epochs between decays (give this or `step_size`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_epochs: Option<u64>,
        /// Multiplier per decay, > 0. Default 0.1.
        #[serde(default = "default_gamma")]
        gamma: f32,
        /// Linear warm-up length in steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_steps: Option<u64>,
        /// Linear warm-up length in epochs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_epochs: Option<u64>,
    },
    /// Cosine annealing (Loshchilov & Hutter 2017, one cycle, no restarts)
    /// from `lr` to `min_lr` over the steps after the warm-up.
    Cosine {
        /// The final learning rate, in [0, lr]. Default 0.
        #[serde(default)]
        min_lr: f32,
        /// Linear warm-up length in steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_steps: Option<u64>,
        /// Linear warm-up length in epochs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup_epochs: Option<u64>,
    },
    /// One-cycle (Smith & Topin 2019, PyTorch's `OneCycleLR` with cosine
    /// annealing, learning rate only): from `max_lr / div_factor` up to
    /// `max_lr` over the first `pct_start` of the run, then down to
    /// `max_lr / (div_factor * final_div_factor)`.
    OneCycle {
        /// The peak learning rate. Default: the optimizer's `lr`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_lr: Option<f32>,
        /// Fraction of the run spent rising, in (0, 1). Default 0.3.
        #[serde(default = "default_pct_start")]
        pct_start: f32,
        /// `max_lr / initial lr`, > 0. Default 25.
        #[serde(default = "default_div_factor")]
        div_factor: f32,
        /// `initial lr / final lr`, > 0. Default 1e4.
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f32,
    },
}

fn default_gamma() -> f32 {
    0.1
}
fn default_pct_start() -> f32 {
    0.3
}
fn default_div_factor() -> f32 {
    25.0
}
fn default_final_div_factor() -> f32 {
    1e4
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::Constant {
            warmup_steps: None,
            warmup_epochs: None,
        }
    }
}

/// A schedule's shape, with every length in steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleKind {
    /// The base learning rate.
    Constant,
    /// `base * gamma^floor(t / step_size)`.
    Step {
        /// Steps between decays, > 0.
        step_size: u64,
        /// Multiplier per decay.
        gamma: f32,
    },
    /// Cosine from the base rate down to `min_lr`.
    Cosine {
        /// The final learning rate.
        min_lr: f32,
    },
    /// PyTorch's `OneCycleLR` (two phases, cosine annealing).
    OneCycle {
        /// Peak learning rate.
        max_lr: f32,
        /// Fraction of the run spent rising.
        pct_start: f32,
        /// `max_lr / initial lr`.
        div_factor: f32,
        /// `initial lr / final lr`.
        final_div_factor: f32,
    },
}

/// A resolved schedule: the learning rate as a pure function of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    base_lr: f32,
    kind: ScheduleKind,
    warmup_steps: u64,
    total_steps: u64,
}

/// The resolved linear warm-up: the rate rises as `base * (t + 1) / steps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warmup {
    /// Warm-up length in steps (0: none).
    pub steps: u64,
}

/// `end + (start - end) / 2 * (1 + cos(pi * pct))`, PyTorch's `_annealing_cos`.
fn anneal_cos(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

impl Schedule {
    /// A schedule from its parts. `total_steps` is the run's length (used by
    /// cosine and one-cycle; steps past it keep the final rate).
    pub fn new(base_lr: f32, kind: ScheduleKind, warmup: Warmup, total_steps: u64) -> Self {
        Self {
            base_lr,
            kind,
            warmup_steps: warmup.steps,
            total_steps,
        }
    }

    /// The constant rate `lr`.
    pub fn constant(lr: f32) -> Self {
        Self::new(lr, ScheduleKind::Constant, Warmup { steps: 0 }, 0)
    }

    /// The optimizer's configured learning rate.
    pub fn base_lr(&self) -> f32 {
        self.base_lr
    }

    /// The learning rate of the update with 0-based index `step`.
    pub fn lr(&self, step: u64) -> f32 {
        let base = f64::from(self.base_lr);
        if let ScheduleKind::OneCycle {
            max_lr,
            pct_start,
            div_factor,
            final_div_factor,
        } = self.kind
        {
            let max_lr = f64::from(max_lr);
            let initial = max_lr / f64::from(div_factor);
            let min_lr = initial / f64::from(final_div_factor);
            let last = self.total_steps.saturating_sub(1) as f64;
            let t = (step as f64).min(last);
            let rise_end = f64::from(pct_start) * self.total_steps as f64 - 1.0;
            let lr = if t <= rise_end {
                anneal_cos(initial, max_lr, t / rise_end)
            } else if last > rise_end.max(0.0) {
                let from = rise_end.max(0.0);
                anneal_cos(max_lr, min_lr, (t - from) / (last - from))
            } else {
                max_lr
            };
            return lr as f32;
        }
        if step < self.warmup_steps {
            return (base * (step + 1) as f64 / self.warmup_steps as f64) as f32;
        }
        let t = step - self.warmup_steps;
        let lr = match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Step { step_size, gamma } => {
                let decays = (t / step_size).min(i32::MAX as u64) as i32;
                base * f64::from(gamma).powi(decays)
            }
            ScheduleKind::Cosine { min_lr } => {
                let span = self.total_steps.saturating_sub(self.warmup_steps);
                if span == 0 {
                    base
                } else {
                    let pct = t.min(span) as f64 / span as f64;
                    anneal_cos(base, f64::from(min_lr), pct)
                }
            }
            ScheduleKind::OneCycle { .. } => unreachable!("handled above"),
        };
        lr as f32
    }
}

fn check_positive(field: &str, v: f32) -> Result<(), OptimError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(field, v, "a positive value"))
    }
}

/// Converts an epochs-or-steps pair into steps.
fn steps_of(
    steps: Option<u64>,
    epochs: Option<u64>,
    steps_field: &str,
    epochs_field: &str,
    steps_per_epoch: Option<u64>,
) -> Result<Option<u64>, OptimError> {
    match (steps, epochs) {
        (Some(_), Some(e)) => Err(OptimError::config(
            epochs_field,
            e,
            &format!("either {steps_field} or {epochs_field}, not both"),
        )),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(e)) => match steps_per_epoch {
            Some(spe) => Ok(Some(e * spe)),
            None => Err(OptimError::config(
                epochs_field,
                e,
                &format!("{steps_field} instead: this run does not know its steps per epoch"),
            )),
        },
        (None, None) => Ok(None),
    }
}

impl ScheduleConfig {
    /// Checks the ranges that do not depend on the run (`schedule.gamma > 0`, ...).
    pub fn validate(&self) -> Result<(), OptimError> {
        match *self {
            ScheduleConfig::Constant { .. } => Ok(()),
            ScheduleConfig::Step {
                step_size,
                step_epochs,
                gamma,
                ..
            } => {
                check_positive("schedule.gamma", gamma)?;
                if step_size.is_none() && step_epochs.is_none() {
                    return Err(OptimError::config(
                        "schedule.step_size",
                        "(missing)",
                        "a step count (or schedule.step_epochs)",
                    ));
                }
                for (field, v) in [
                    ("schedule.step_size", step_size),
                    ("schedule.step_epochs", step_epochs),
                ] {
                    if v == Some(0) {
                        return Err(OptimError::config(field, 0, "a positive count"));
                    }
                }
                Ok(())
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                if min_lr.is_finite() && min_lr >= 0.0 {
                    Ok(())
                } else {
                    Err(OptimError::config(
                        "schedule.min_lr",
                        min_lr,
                        "a value >= 0",
                    ))
                }
            }
            ScheduleConfig::OneCycle {
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                if let Some(m) = max_lr {
                    check_positive("schedule.max_lr", m)?;
                }
                if !(pct_start > 0.0 && pct_start < 1.0) {
                    return Err(OptimError::config(
                        "schedule.pct_start",
                        pct_start,
                        "a value in (0, 1)",
                    ));
                }
                check_positive("schedule.div_factor", div_factor)?;
                check_positive("schedule.final_div_factor", final_div_factor)
            }
        }
    }

    /// Resolves the schedule for a run of `total_steps` updates starting from
    /// `base_lr`. Epoch-based lengths need `steps_per_epoch`.
    pub fn resolve(
        &self,
        base_lr: f32,
        total_steps: u64,
        steps_per_epoch: Option<u64>,
    ) -> Result<Schedule, OptimError> {
        self.validate()?;
        let warmup = |steps, epochs| {
            steps_of(
                steps,
                epochs,
                "schedule.warmup_steps",
                "schedule.warmup_epochs",
                steps_per_epoch,
            )
            .map(Option::unwrap_or_default)
        };
        let (kind, warmup_steps) = match *self {
            ScheduleConfig::Constant {
                warmup_steps,
                warmup_epochs,
            } => (ScheduleKind::Constant, warmup(warmup_steps, warmup_epochs)?),
            ScheduleConfig::Step {
                step_size,
                step_epochs,
                gamma,
                warmup_steps,
                warmup_epochs,
            } => {
                let step_size = steps_of(
                    step_size,
                    step_epochs,
                    "schedule.step_size",
                    "schedule.step_epochs",
                    steps_per_epoch,
                )?
                .filter(|&s| s > 0)
                .ok_or_else(|| {
                    OptimError::config("schedule.step_epochs", 0, "at least one step")
                })?;
                (
                    ScheduleKind::Step { step_size, gamma },
                    warmup(warmup_steps, warmup_epochs)?,
                )
            }
            ScheduleConfig::Cosine {
                min_lr,
                warmup_steps,
                warmup_epochs,
            } => {
                if min_lr > base_lr {
                    return Err(OptimError::config(
                        "schedule.min_lr",
                        min_lr,
                        &format!("a value <= optimizer.lr ({base_lr})"),
                    ));
                }
                (
                    ScheduleKind::Cosine { min_lr },
                    warmup(warmup_steps, warmup_epochs)?,
                )
            }
            ScheduleConfig::OneCycle {
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
            } => (
                ScheduleKind::OneCycle {
                    max_lr: max_lr.unwrap_or(base_lr),
                    pct_start,
                    div_factor,
                    final_div_factor,
                },
                0,
            ),
        };
        if warmup_steps > total_steps {
            return Err(OptimError::config(
                "schedule.warmup_steps",
                warmup_steps,
                &format!("at most the run's {total_steps} steps"),
            ));
        }
        Ok(Schedule::new(
            base_lr,
            kind,
            Warmup {
                steps: warmup_steps,
            },
            total_steps,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn assert_lrs(schedule: &Schedule, steps: &[u64], want: &[f32]) {
        for (&s, &w) in steps.iter().zip(want) {
            let got = schedule.lr(s);
            assert!(
                (got - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "step {s}: lr {got}, expected {w}"
            );
        }
    }

    fn from_toml(text: &str) -> ScheduleConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn constant_with_warmup() {
        let s = from_toml("name = \"constant\"\nwarmup_steps = 4")
            .resolve(0.2, 100, None)
            .unwrap();
        // (t + 1) / 4 * 0.2 during warm-up, then 0.2.
        assert_lrs(
            &s,
            &[0, 1, 3, 4, 99, 1000],
            &[0.05, 0.1, 0.2, 0.2, 0.2, 0.2],
        );
    }

    #[test]
    fn step_decay_in_epochs() {
        let cfg = from_toml("name = \"step\"\nstep_epochs = 2\ngamma = 0.5");
        // 10 steps per epoch: halve every 20 steps.
        let s = cfg.resolve(1.0, 100, Some(10)).unwrap();
        assert_lrs(
            &s,
            &[0, 19, 20, 39, 40, 99],
            &[1.0, 1.0, 0.5, 0.5, 0.25, 0.0625],
        );
        let err = cfg.resolve(1.0, 100, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule.step_epochs = 2: expected schedule.step_size instead: this run does not \
             know its steps per epoch"
        );
    }

    #[test]
    fn cosine_after_warmup() {
        let s = from_toml("name = \"cosine\"\nmin_lr = 0.001\nwarmup_steps = 2")
            .resolve(0.1, 10, None)
            .unwrap();
        // Warm-up 0.05, 0.1; then over 8 steps: 0.001 + 0.099 (1 + cos(pi k / 8)) / 2,
        // k = 0, 2, 4, 8: 0.1, 0.0855018, 0.0505, 0.001 (steps past the end keep 0.001).
        assert_lrs(
            &s,
            &[0, 1, 2, 4, 6, 10, 50],
            &[0.05, 0.1, 0.1, 0.085_501_79, 0.0505, 0.001, 0.001],
        );
    }

    #[test]
    fn one_cycle_matches_pytorch() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=10) (pct_start 0.3,
        // div_factor 25, final_div_factor 1e4, cos): rises 0.04 -> 1 over steps 0..2,
        // then 1 + ... down to 4e-6 at step 9: 1 - (1 - 4e-6)(1 - cos(pi k / 7)) / 2.
        let s = from_toml("name = \"one-cycle\"\nmax_lr = 1.0")
            .resolve(0.5, 10, None)
            .unwrap();
        assert_lrs(
            &s,
            &[0, 1, 2, 3, 5, 8, 9, 20],
            &[
                0.04,
                0.52,
                1.0,
                0.950_484_6,
                0.611_262,
                0.049_519_37,
                4e-6,
                4e-6,
            ],
        );
    }

    #[test]
    fn invalid_schedules_name_the_field() {
        let cases = [
            (
                "name = \"step\"\nstep_size = 3\ngamma = -1.0",
                1.0,
                "schedule.gamma = -1: expected a positive value",
            ),
            (
                "name = \"step\"",
                1.0,
                "schedule.step_size = (missing): expected a step count (or schedule.step_epochs)",
            ),
            (
                "name = \"cosine\"\nmin_lr = 0.5",
                0.1,
                "schedule.min_lr = 0.5: expected a value <= optimizer.lr (0.1)",
            ),
            (
                "name = \"one-cycle\"\npct_start = 1.0",
                0.1,
                "schedule.pct_start = 1: expected a value in (0, 1)",
            ),
            (
                "name = \"constant\"\nwarmup_steps = 200",
                0.1,
                "schedule.warmup_steps = 200: expected at most the run's 100 steps",
            ),
            (
                "name = \"constant\"\nwarmup_steps = 2\nwarmup_epochs = 1",
                0.1,
                "schedule.warmup_epochs = 1: expected either schedule.warmup_steps or schedule.warmup_epochs, not both",
            ),
        ];
        for (text, lr, want) in cases {
            let err = from_toml(text).resolve(lr, 100, Some(10)).unwrap_err();
            assert_eq!(err.to_string(), want, "{text}");
        }
        let err = toml::from_str::<ScheduleConfig>("name = \"cosine\"\ngamma = 0.1").unwrap_err();
        assert!(err.to_string().contains("unknown field `gamma`"), "{err}");
        let err = toml::from_str::<ScheduleConfig>("name = \"linear\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `linear`"),
            "{err}"
        );
    }
}
