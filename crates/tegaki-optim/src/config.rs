//! The `[optimizer]` table of an experiment file and [`build`].

use serde::{Deserialize, Serialize};

use crate::rules::{AdaDelta, AdaGrad, Adam, AdamW, Momentum, Nesterov, RmsProp, Sgd};
use crate::{Driver, OptimError, Optimizer, Sam, ScheduleConfig, UpdateRule};

/// Which optimizer, with its own hyperparameters (the papers' / PyTorch's
/// defaults via [`OptimizerKind::from_name`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Plain SGD.
    Sgd,
    /// Heavy-ball momentum.
    Momentum(Momentum),
    /// Nesterov momentum.
    Nesterov(Nesterov),
    /// AdaGrad.
    AdaGrad(AdaGrad),
    /// RMSProp.
    RmsProp(RmsProp),
    /// AdaDelta.
    AdaDelta(AdaDelta),
    /// Adam with coupled (L2) weight decay, if any.
    Adam(Adam),
    /// Adam with decoupled weight decay ([`OptimizerConfig::weight_decay`]).
    AdamW(Adam),
}

impl OptimizerKind {
    /// Every optimizer's name, in a fixed order.
    pub const NAMES: [&'static str; 8] = [
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
    ];

    /// The optimizer called `name` (as in [`NAMES`](Self::NAMES)) with default
    /// hyperparameters.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sgd" => Self::Sgd,
            "momentum" => Self::Momentum(Momentum::default()),
            "nesterov" => Self::Nesterov(Nesterov::default()),
            "adagrad" => Self::AdaGrad(AdaGrad::default()),
            "rmsprop" => Self::RmsProp(RmsProp::default()),
            "adadelta" => Self::AdaDelta(AdaDelta::default()),
            "adam" => Self::Adam(Adam::default()),
            "adamw" => Self::AdamW(Adam::default()),
            _ => return None,
        })
    }

    /// The name used in files (`"adam"`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Momentum(_) => "momentum",
            Self::Nesterov(_) => "nesterov",
            Self::AdaGrad(_) => "adagrad",
            Self::RmsProp(_) => "rmsprop",
            Self::AdaDelta(_) => "adadelta",
            Self::Adam(_) => "adam",
            Self::AdamW(_) => "adamw",
        }
    }

    /// The usual learning rate: PyTorch's default where it has one (AdaGrad
    /// 0.01, AdaDelta 1.0, Adam/AdamW 1e-3); 0.1 for SGD and 0.01 for the
    /// momentum methods (the common MNIST choices); 1e-3 for RMSProp
    /// (Hinton's lecture and Keras; PyTorch's 0.01 is rarely stable).
    pub fn default_lr(&self) -> f32 {
        match self {
            Self::Sgd => 0.1,
            Self::Momentum(_) | Self::Nesterov(_) | Self::AdaGrad(_) => 0.01,
            Self::RmsProp(_) | Self::Adam(_) | Self::AdamW(_) => 1e-3,
            Self::AdaDelta(_) => 1.0,
        }
    }

    /// The default weight decay: 0.01 (decoupled) for AdamW, 0 otherwise.
    pub fn default_weight_decay(&self) -> f32 {
        match self {
            Self::AdamW(_) => 0.01,
            _ => 0.0,
        }
    }
}

/// SAM's settings (the `sam = { ... }` entry of `[optimizer]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamConfig {
    /// Neighbourhood radius, > 0. Default 0.05 (the paper's; ASAM usually wants more).
    #[serde(default = "default_sam_rho")]
    pub rho: f32,
    /// ASAM's scale-invariant neighbourhood. Default false.
    #[serde(default)]
    pub adaptive: bool,
}

fn default_sam_rho() -> f32 {
    0.05
}

impl Default for SamConfig {
    fn default() -> Self {
        Self {
            rho: default_sam_rho(),
            adaptive: false,
        }
    }
}

/// The `[optimizer]` table of an experiment file:
///
/// ```toml
/// [optimizer]
/// name = "adam"           # sgd | momentum | nesterov | adagrad | rmsprop | adadelta | adam | adamw
/// lr = 1e-3               # every optimizer has a usual default
/// beta1 = 0.9             # the optimizer's own settings, with the papers' defaults
/// weight_decay = 5e-4     # L2, coupled (added to the gradient); decoupled for adamw
/// clip_norm = 1.0         # optional: clip the global gradient norm
/// sam = { rho = 0.05 }    # optional: wrap in SAM
/// ```
///
/// A setting the chosen optimizer does not have is an error, as is a value out
/// of range ([`validate`](Self::validate)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOptimizerConfig", into = "RawOptimizerConfig")]
pub struct OptimizerConfig {
    /// The optimizer and its own hyperparameters.
    pub kind: OptimizerKind,
    /// The base learning rate (the schedule scales it).
    pub lr: f32,
    /// L2 weight decay, added to the gradient as `weight_decay * w`; for AdamW
    /// the decoupled decay `w *= 1 - lr * weight_decay`.
    pub weight_decay: f32,
    /// Clip all gradients together to this global L2 norm.
    pub clip_norm: Option<f32>,
    /// Wrap the optimizer in SAM.
    pub sam: Option<SamConfig>,
}

impl OptimizerConfig {
    /// `kind` with its usual learning rate and weight decay, no clipping, no SAM.
    pub fn new(kind: OptimizerKind) -> Self {
        Self {
            kind,
            lr: kind.default_lr(),
            weight_decay: kind.default_weight_decay(),
            clip_norm: None,
            sam: None,
        }
    }

    /// Checks every value's range; the error names the field, e.g.
    /// `optimizer.beta1 = 1.2: expected a value in [0, 1)`.
    pub fn validate(&self) -> Result<(), OptimError> {
        fn unit(field: &str, v: f32) -> Result<(), OptimError> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(OptimError::config(field, v, "a value in [0, 1)"))
            }
        }
        fn non_negative(field: &str, v: f32) -> Result<(), OptimError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(OptimError::config(field, v, "a value >= 0"))
            }
        }
        fn positive(field: &str, v: f32) -> Result<(), OptimError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(OptimError::config(field, v, "a positive value"))
            }
        }
        non_negative("optimizer.lr", self.lr)?;
        non_negative("optimizer.weight_decay", self.weight_decay)?;
        if let Some(c) = self.clip_norm {
            positive("optimizer.clip_norm", c)?;
        }
        if let Some(sam) = self.sam {
            positive("optimizer.sam.rho", sam.rho)?;
        }
        match self.kind {
            OptimizerKind::Sgd => Ok(()),
            OptimizerKind::Momentum(Momentum { momentum })
            | OptimizerKind::Nesterov(Nesterov { momentum }) => {
                unit("optimizer.momentum", momentum)
            }
            OptimizerKind::AdaGrad(AdaGrad { eps }) => positive("optimizer.eps", eps),
            OptimizerKind::RmsProp(RmsProp { alpha, eps }) => {
                unit("optimizer.alpha", alpha)?;
                positive("optimizer.eps", eps)
            }
            OptimizerKind::AdaDelta(AdaDelta { rho, eps }) => {
                unit("optimizer.rho", rho)?;
                positive("optimizer.eps", eps)
            }
            OptimizerKind::Adam(Adam { beta1, beta2, eps })
            | OptimizerKind::AdamW(Adam { beta1, beta2, eps }) => {
                unit("optimizer.beta1", beta1)?;
                unit("optimizer.beta2", beta2)?;
                positive("optimizer.eps", eps)
            }
        }
    }
}

/// The flat form the file uses: `name` plus every possible setting.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptimizerConfig {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lr: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    momentum: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alpha: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rho: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beta1: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beta2: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eps: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clip_norm: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sam: Option<SamConfig>,
}

impl TryFrom<RawOptimizerConfig> for OptimizerConfig {
    type Error = OptimError;

    fn try_from(raw: RawOptimizerConfig) -> Result<Self, OptimError> {
        let mut kind = OptimizerKind::from_name(&raw.name).ok_or_else(|| {
            OptimError::config(
                "optimizer.name",
                format!("\"{}\"", raw.name),
                &format!("one of {}", OptimizerKind::NAMES.join(", ")),
            )
        })?;
        let name = kind.name();
        let mut own: Vec<(&str, Option<f32>)> = vec![
            ("momentum", raw.momentum),
            ("alpha", raw.alpha),
            ("rho", raw.rho),
            ("beta1", raw.beta1),
            ("beta2", raw.beta2),
            ("eps", raw.eps),
        ];
        // Each arm takes the settings the optimizer has; whatever is left is an error.
        let mut take = |field: &str, into: &mut f32| {
            if let Some((_, v)) = own.iter_mut().find(|(f, _)| *f == field)
                && let Some(v) = v.take()
            {
                *into = v;
            }
        };
        let settings: &[&str] = match &mut kind {
            OptimizerKind::Sgd => &[],
            OptimizerKind::Momentum(Momentum { momentum })
            | OptimizerKind::Nesterov(Nesterov { momentum }) => {
                take("momentum", momentum);
                &["momentum"]
            }
            OptimizerKind::AdaGrad(AdaGrad { eps }) => {
                take("eps", eps);
                &["eps"]
            }
            OptimizerKind::RmsProp(RmsProp { alpha, eps }) => {
                take("alpha", alpha);
                take("eps", eps);
                &["alpha", "eps"]
            }
            OptimizerKind::AdaDelta(AdaDelta { rho, eps }) => {
                take("rho", rho);
                take("eps", eps);
                &["rho", "eps"]
            }
            OptimizerKind::Adam(Adam { beta1, beta2, eps })
            | OptimizerKind::AdamW(Adam { beta1, beta2, eps }) => {
                take("beta1", beta1);
                take("beta2", beta2);
                take("eps", eps);
                &["beta1", "beta2", "eps"]
            }
        };
        if let Some((field, Some(v))) = own.iter().find(|(_, v)| v.is_some()) {
            let mut has = vec!["lr"];
            has.extend_from_slice(settings);
            has.extend_from_slice(&["weight_decay", "clip_norm", "sam"]);
            return Err(OptimError::config(
                &format!("optimizer.{field}"),
                v,
                &format!("no such setting for {name} (it has {})", has.join(", ")),
            ));
        }
        let defaults = OptimizerConfig::new(kind);
        let cfg = OptimizerConfig {
            kind,
            lr: raw.lr.unwrap_or(defaults.lr),
            weight_decay: raw.weight_decay.unwrap_or(defaults.weight_decay),
            clip_norm: raw.clip_norm,
            sam: raw.sam,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl From<OptimizerConfig> for RawOptimizerConfig {
    fn from(cfg: OptimizerConfig) -> Self {
        let mut raw = RawOptimizerConfig {
            name: cfg.kind.name().to_string(),
            lr: Some(cfg.lr),
            weight_decay: Some(cfg.weight_decay),
            clip_norm: cfg.clip_norm,
            sam: cfg.sam,
            ..Default::default()
        };
        match cfg.kind {
            OptimizerKind::Sgd => {}
            OptimizerKind::Momentum(Momentum { momentum })
            | OptimizerKind::Nesterov(Nesterov { momentum }) => raw.momentum = Some(momentum),
            OptimizerKind::AdaGrad(AdaGrad { eps }) => raw.eps = Some(eps),
            OptimizerKind::RmsProp(RmsProp { alpha, eps }) => {
                raw.alpha = Some(alpha);
                raw.eps = Some(eps);
            }
            OptimizerKind::AdaDelta(AdaDelta { rho, eps }) => {
                raw.rho = Some(rho);
                raw.eps = Some(eps);
            }
            OptimizerKind::Adam(Adam { beta1, beta2, eps })
            | OptimizerKind::AdamW(Adam { beta1, beta2, eps }) => {
                raw.beta1 = Some(beta1);
                raw.beta2 = Some(beta2);
                raw.eps = Some(eps);
            }
        }
        raw
    }
}

fn driver<R: UpdateRule + 'static>(
    rule: R,
    cfg: &OptimizerConfig,
    schedule: crate::Schedule,
    weight_decay: f32,
) -> Box<dyn Optimizer> {
    Box::new(
        Driver::new(rule, schedule)
            .with_weight_decay(weight_decay)
            .with_clip_norm(cfg.clip_norm),
    )
}

/// Builds the optimizer `cfg` describes, with the schedule resolved for a run
/// of `total_steps` updates. A schedule with lengths in epochs is an error
/// here; use [`build_for_epochs`].
pub fn build(
    cfg: &OptimizerConfig,
    sched: &ScheduleConfig,
    total_steps: u64,
) -> Result<Box<dyn Optimizer>, OptimError> {
    build_inner(cfg, sched, total_steps, None)
}

/// Builds the optimizer for a run of `epochs` epochs of `steps_per_epoch`
/// updates each (so the schedule may use epoch units).
pub fn build_for_epochs(
    cfg: &OptimizerConfig,
    sched: &ScheduleConfig,
    epochs: u64,
    steps_per_epoch: u64,
) -> Result<Box<dyn Optimizer>, OptimError> {
    build_inner(cfg, sched, epochs * steps_per_epoch, Some(steps_per_epoch))
}

fn build_inner(
    cfg: &OptimizerConfig,
    sched: &ScheduleConfig,
    total_steps: u64,
    steps_per_epoch: Option<u64>,
) -> Result<Box<dyn Optimizer>, OptimError> {
    cfg.validate()?;
    let schedule = sched.resolve(cfg.lr, total_steps, steps_per_epoch)?;
    let wd = cfg.weight_decay;
    let base = match cfg.kind {
        OptimizerKind::Sgd => driver(Sgd, cfg, schedule, wd),
        OptimizerKind::Momentum(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::Nesterov(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::AdaGrad(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::RmsProp(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::AdaDelta(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::Adam(r) => driver(r, cfg, schedule, wd),
        OptimizerKind::AdamW(adam) => driver(
            AdamW {
                adam,
                weight_decay: wd,
            },
            cfg,
            schedule,
            0.0,
        ),
    };
    Ok(match cfg.sam {
        Some(sam) => Box::new(Sam::new(base, sam.rho, sam.adaptive)),
        None => base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OptimizerConfig, String> {
        toml::from_str::<OptimizerConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_papers() {
        let cfg = parse("name = \"adam\"").unwrap();
        assert_eq!(
            cfg,
            OptimizerConfig::new(OptimizerKind::Adam(Adam::default()))
        );
        assert_eq!(
            (cfg.lr, cfg.weight_decay, cfg.clip_norm, cfg.sam),
            (1e-3, 0.0, None, None)
        );
        let OptimizerKind::Adam(adam) = cfg.kind else {
            panic!("{cfg:?}")
        };
        assert_eq!((adam.beta1, adam.beta2, adam.eps), (0.9, 0.999, 1e-8));
        assert_eq!(parse("name = \"adamw\"").unwrap().weight_decay, 0.01);
        let ada = parse("name = \"adadelta\"").unwrap();
        assert_eq!(ada.lr, 1.0);
        assert_eq!(
            ada.kind,
            OptimizerKind::AdaDelta(AdaDelta {
                rho: 0.9,
                eps: 1e-6
            })
        );
    }

    #[test]
    fn a_full_table_parses_and_round_trips() {
        let cfg = parse(
            "name = \"momentum\"\nlr = 0.05\nmomentum = 0.8\nweight_decay = 5e-4\n\
             clip_norm = 1.0\nsam = { rho = 0.1, adaptive = true }",
        )
        .unwrap();
        assert_eq!(
            cfg.kind,
            OptimizerKind::Momentum(Momentum { momentum: 0.8 })
        );
        assert_eq!(
            cfg.sam,
            Some(SamConfig {
                rho: 0.1,
                adaptive: true
            })
        );
        assert_eq!(
            parse("name = \"sgd\"\nsam = {}").unwrap().sam,
            Some(SamConfig::default())
        );
        for name in OptimizerKind::NAMES {
            let mut cfg = OptimizerConfig::new(OptimizerKind::from_name(name).unwrap());
            cfg.clip_norm = Some(3.0);
            let text = toml::to_string(&cfg).unwrap();
            assert_eq!(parse(&text).unwrap(), cfg, "{text}");
        }
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases = [
            (
                "name = \"adam\"\nbeta1 = 1.2",
                "optimizer.beta1 = 1.2: expected a value in [0, 1)",
            ),
            (
                "name = \"adamw\"\nbeta2 = -0.1",
                "optimizer.beta2 = -0.1: expected a value in [0, 1)",
            ),
            (
                "name = \"sgd\"\nlr = -0.1",
                "optimizer.lr = -0.1: expected a value >= 0",
            ),
            (
                "name = \"rmsprop\"\neps = 0.0",
                "optimizer.eps = 0: expected a positive value",
            ),
            (
                "name = \"nesterov\"\nmomentum = 1.0",
                "optimizer.momentum = 1: expected a value in [0, 1)",
            ),
            (
                "name = \"adadelta\"\nrho = 1.5",
                "optimizer.rho = 1.5: expected a value in [0, 1)",
            ),
            (
                "name = \"sgd\"\nweight_decay = -1.0",
                "optimizer.weight_decay = -1: expected a value >= 0",
            ),
            (
                "name = \"sgd\"\nclip_norm = 0.0",
                "optimizer.clip_norm = 0: expected a positive value",
            ),
            (
                "name = \"sgd\"\nsam = { rho = -0.05 }",
                "optimizer.sam.rho = -0.05: expected a positive value",
            ),
            (
                "name = \"adam\"\nmomentum = 0.9",
                "optimizer.momentum = 0.9: expected no such setting for adam (it has lr, beta1, beta2, eps, weight_decay, clip_norm, sam)",
            ),
            (
                "name = \"lbfgs\"",
                "optimizer.name = \"lbfgs\": expected one of sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam, adamw",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}\n got: {err}\nwant: {want}");
        }
        let err = parse("name = \"adam\"\nbetas = [0.9, 0.99]").unwrap_err();
        assert!(err.contains("unknown field `betas`"), "{err}");
        let err = parse("name = \"adam\"\nsam = { radius = 1.0 }").unwrap_err();
        assert!(err.contains("unknown field `radius`"), "{err}");
        // validate() also guards configs built in code.
        let mut cfg = OptimizerConfig::new(OptimizerKind::Adam(Adam::default()));
        cfg.lr = f32::NAN;
        assert!(build(&cfg, &ScheduleConfig::default(), 10).is_err());
    }

    #[test]
    fn build_applies_sam_and_the_schedule() {
        let cfg = parse("name = \"sgd\"\nlr = 0.4\nsam = {}").unwrap();
        let sched = ScheduleConfig::Step {
            step_size: None,
            step_epochs: Some(1),
            gamma: 0.5,
            warmup_steps: None,
            warmup_epochs: None,
        };
        assert!(
            build(&cfg, &sched, 10).is_err(),
            "epochs need steps per epoch"
        );
        let mut opt = build_for_epochs(&cfg, &sched, 3, 2).unwrap();
        let mut model = crate::testutil::Quadratic::new(&[1.0], &[1.0], &[0.0]);
        let mut lrs = Vec::new();
        for _ in 0..5 {
            lrs.push(opt.lr());
            opt.step(&mut model);
        }
        assert_eq!(lrs, [0.4, 0.4, 0.2, 0.2, 0.1]);
        assert_eq!(model.calls, 10, "SAM evaluates twice per step");
    }
}
