//! Optimizer state for checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::ArrayD;
use tegaki_tensor::io::{read_safetensors, write_safetensors};

use crate::OptimError;

/// Prefix of every state tensor: `optim.<param name>.<slot>`.
pub(crate) const TENSOR_PREFIX: &str = "optim.";
/// Metadata key of the optimizer's name.
pub(crate) const KEY_NAME: &str = "optim.name";
/// Metadata key of the number of updates applied.
pub(crate) const KEY_STEP: &str = "optim.step";

/// An optimizer's moments and step count, by name.
///
/// Tensors are named `optim.<param name>.<slot>` (`optim.0.weight.m`), and the
/// metadata holds `optim.name` (`"adam"`) and `optim.step`. Every key starts
/// with `optim.`, so the state can share one safetensors file with the model's
/// weights; [`Optimizer::load_state`](crate::Optimizer::load_state) ignores
/// keys without that prefix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    /// State tensors by name.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// String metadata (optimizer name, step count).
    pub metadata: BTreeMap<String, String>,
}

/// Writes `state` to `path` as safetensors (atomically).
pub fn save_state(path: &Path, state: &OptimizerState) -> Result<(), OptimError> {
    write_safetensors(
        path,
        state.tensors.iter().map(|(k, v)| (k.clone(), v.view())),
        &state.metadata,
    )?;
    Ok(())
}

/// Reads the optimizer state from a safetensors file, keeping only the
/// `optim.`-prefixed tensors and metadata (so a checkpoint that also holds the
/// model's weights can be passed as is).
pub fn load_state(path: &Path) -> Result<OptimizerState, OptimError> {
    let file = read_safetensors(path)?;
    Ok(OptimizerState {
        tensors: file
            .tensors
            .into_iter()
            .filter(|(k, _)| k.starts_with(TENSOR_PREFIX))
            .collect(),
        metadata: file
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with(TENSOR_PREFIX))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OptimizerConfig, OptimizerKind, SamConfig, ScheduleConfig, Trainable, build};
    use ndarray::{ArrayD, IxDyn};
    use tegaki_tensor::{HasParams, Param};

    /// Two parameters whose gradient is a fixed non-linear function of the
    /// weights, so every step depends on the last.
    #[derive(Clone)]
    struct Wavy {
        params: Vec<Param>,
    }

    impl Wavy {
        fn new() -> Self {
            let a =
                ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| 0.3 * i[0] as f32 - 0.2 * i[1] as f32);
            let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.5, -1.5, 2.0]).unwrap();
            Self {
                params: vec![Param::new(a), Param::new(b)],
            }
        }
        fn bits(&self) -> Vec<u32> {
            self.params
                .iter()
                .flat_map(|p| p.value.iter().map(|v| v.to_bits()))
                .collect()
        }
    }

    impl HasParams for Wavy {
        fn visit_params(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
            self.params.visit_params(f);
        }
    }

    impl Trainable for Wavy {
        fn forward_backward(&mut self) -> f32 {
            let mut loss = 0.0;
            for p in &mut self.params {
                p.grad = p.value.mapv(|w| (1.3 * w + 0.2).sin() + 0.1 * w);
                loss += p.value.iter().map(|w| w * w).sum::<f32>();
            }
            loss
        }
    }

    fn configs() -> Vec<OptimizerConfig> {
        let mut out: Vec<OptimizerConfig> = OptimizerKind::NAMES
            .iter()
            .map(|n| {
                let mut cfg = OptimizerConfig::new(OptimizerKind::from_name(n).unwrap());
                cfg.weight_decay = 1e-3;
                cfg.clip_norm = Some(2.0);
                cfg
            })
            .collect();
        let mut sam = OptimizerConfig::new(OptimizerKind::from_name("adam").unwrap());
        sam.sam = Some(SamConfig::default());
        out.push(sam);
        out
    }

    fn cosine() -> ScheduleConfig {
        ScheduleConfig::Cosine {
            min_lr: 0.0,
            warmup_steps: Some(2),
            warmup_epochs: None,
        }
    }

    #[test]
    fn resuming_reproduces_the_next_step_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        for cfg in configs() {
            for bind_first in [false, true] {
                let name = cfg.kind.name();
                let mut model = Wavy::new();
                let mut opt = build(&cfg, &cosine(), 10).unwrap();
                for _ in 0..3 {
                    opt.step(&mut model);
                }
                let path = dir.path().join(format!("{name}.safetensors"));
                save_state(&path, &opt.state()).unwrap();
                let mut resumed_model = model.clone();
                opt.step(&mut model);

                let mut resumed = build(&cfg, &cosine(), 10).unwrap();
                if bind_first {
                    resumed.bind(&mut resumed_model);
                }
                let loaded = load_state(&path).unwrap();
                resumed.load_state(&loaded).unwrap();
                assert_eq!(resumed.steps(), 3, "{name}");
                assert_eq!(resumed.state(), loaded, "{name}: state after loading");
                resumed.step(&mut resumed_model);
                assert_eq!(resumed.lr().to_bits(), opt.lr().to_bits(), "{name}");
                assert_eq!(
                    model.bits(),
                    resumed_model.bits(),
                    "{name}, bind first: {bind_first}"
                );
                assert_eq!(opt.state(), resumed.state(), "{name}");
            }
        }
    }

    #[test]
    fn state_names_its_tensors_after_the_parameters() {
        let cfg = OptimizerConfig::new(OptimizerKind::from_name("adam").unwrap());
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        let mut model = Wavy::new();
        opt.step(&mut model);
        let state = opt.state();
        let names: Vec<&str> = state.tensors.keys().map(String::as_str).collect();
        assert_eq!(names, ["optim.0.m", "optim.0.v", "optim.1.m", "optim.1.v"]);
        assert_eq!(state.metadata["optim.name"], "adam");
        assert_eq!(state.metadata["optim.step"], "1");
    }

    fn adam_state_after_one_step() -> OptimizerState {
        let cfg = OptimizerConfig::new(OptimizerKind::from_name("adam").unwrap());
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        opt.step(&mut Wavy::new());
        opt.state()
    }

    #[test]
    fn loading_another_optimizers_state_is_an_error() {
        let state = adam_state_after_one_step();
        let cfg = OptimizerConfig::new(OptimizerKind::from_name("rmsprop").unwrap());
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        let err = opt.load_state(&state).unwrap_err();
        assert_eq!(
            err.to_string(),
            "optimizer state is for `adam`, but this optimizer is `rmsprop`"
        );
    }

    #[test]
    fn loading_wrong_shapes_names_the_tensor_and_both_shapes() {
        let mut state = adam_state_after_one_step();
        state
            .tensors
            .insert("optim.1.m".into(), ArrayD::zeros(IxDyn(&[4])));
        state
            .tensors
            .insert("optim.1.v".into(), ArrayD::zeros(IxDyn(&[4])));
        let cfg = OptimizerConfig::new(OptimizerKind::from_name("adam").unwrap());
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        opt.bind(&mut Wavy::new());
        let err = opt.load_state(&state).unwrap_err();
        assert_eq!(
            err.to_string(),
            "optimizer state tensor `optim.1.m` has shape [4], expected [3]"
        );

        // Slots of one parameter disagreeing is caught even before binding.
        state
            .tensors
            .insert("optim.1.v".into(), ArrayD::zeros(IxDyn(&[5])));
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        let err = opt.load_state(&state).unwrap_err();
        assert!(
            err.to_string()
                .contains("`optim.1.v` has shape [5], expected [4]"),
            "{err}"
        );

        let mut missing = adam_state_after_one_step();
        missing.tensors.remove("optim.0.v");
        let err = opt.load_state(&missing).unwrap_err();
        assert_eq!(err.to_string(), "optimizer state has no tensor `optim.0.v`");
    }

    #[test]
    #[should_panic(expected = "optimizer state tensor `optim.1.m` has shape [4], expected [3]")]
    fn wrong_shapes_without_bind_panic_at_the_next_update() {
        let mut state = adam_state_after_one_step();
        state
            .tensors
            .insert("optim.1.m".into(), ArrayD::zeros(IxDyn(&[4])));
        state
            .tensors
            .insert("optim.1.v".into(), ArrayD::zeros(IxDyn(&[4])));
        let cfg = OptimizerConfig::new(OptimizerKind::from_name("adam").unwrap());
        let mut opt = build(&cfg, &ScheduleConfig::default(), 10).unwrap();
        opt.load_state(&state).unwrap();
        opt.step(&mut Wavy::new());
    }

    #[test]
    fn a_checkpoint_with_weights_loads_only_the_optimizer_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        let state = adam_state_after_one_step();
        let mut meta = state.metadata.clone();
        meta.insert("epoch".into(), "4".into());
        let weights = ArrayD::<f32>::ones(IxDyn(&[3]));
        let tensors = state
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.view()))
            .chain([("0.weight".to_string(), weights.view())]);
        tegaki_tensor::io::write_safetensors(&path, tensors, &meta).unwrap();
        assert_eq!(load_state(&path).unwrap(), state);
        let err = load_state(&dir.path().join("missing.safetensors")).unwrap_err();
        assert!(err.to_string().contains("missing.safetensors"), "{err}");
    }
}
