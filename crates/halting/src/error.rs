use thiserror::Error;

/// An invalid argument to a halting function.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum HaltingError {
    /// A parameter is outside the range the rule is defined on.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// A tensor has a shape the function cannot use.
    #[error("invalid shape for {name}: {problem}")]
    InvalidShape { name: &'static str, problem: String },
}
