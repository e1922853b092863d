//! Networks with halting points: a recurrent ponder cell that repeats on one input, and
//! classifiers with an exit head after each hidden layer.

pub mod exit_mlp;
pub mod ponder;

pub use exit_mlp::{ExitMlp, ExitMlpConfig, HardExits};
pub use ponder::{ActForward, AllSteps, CellKind, PonderConfig, PonderNetwork, PonderStep};
