use tegaki_tensor::io::TensorIoError;

/// What can go wrong configuring an optimizer or restoring its state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A configuration value is out of range, e.g.
    /// `optimizer.beta1 = 1.2: expected a value in [0, 1)`.
    #[error("{field} = {value}: expected {expected}")]
    Config {
        /// The full field path (`optimizer.beta1`, `schedule.gamma`).
        field: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A saved state belongs to another optimizer.
    #[error("optimizer state is for `{found}`, but this optimizer is `{expected}`")]
    WrongOptimizer {
        /// This optimizer's name.
        expected: String,
        /// The name stored in the state.
        found: String,
    },
    /// A state tensor does not have the shape of its parameter.
    #[error("optimizer state tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The tensor name (`optim.0.weight.m`).
        tensor: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The shape found in the state.
        found: Vec<usize>,
    },
    /// A state tensor this optimizer needs is absent.
    #[error("optimizer state has no tensor `{tensor}`")]
    MissingTensor {
        /// The tensor name.
        tensor: String,
    },
    /// A state tensor matches no parameter or slot of this optimizer.
    #[error("optimizer state tensor `{tensor}` matches no parameter of this optimizer")]
    UnexpectedTensor {
        /// The tensor name.
        tensor: String,
    },
    /// A metadata entry is missing or unreadable.
    #[error("optimizer state metadata `{key}`: {problem}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading or writing the state file failed.
    #[error(transparent)]
    Io(#[from] TensorIoError),
}

impl OptimError {
    pub(crate) fn config(field: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Self::Config {
            field: field.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}
