//! Networks with halting points: a recurrent ponder cell that repeats on one input, and
//! classifiers with an exit head after each hidden layer.

pub mod exit_cnn;
pub mod exit_engine;
pub mod exit_mlp;
pub mod parameters;
pub mod ponder;
pub mod ponder_cpu;
#[cfg(test)]
mod testing;

pub use exit_cnn::{ExitLenet, ExitLenetConfig};
pub use exit_engine::{ExitStages, HardExits, infer_full, infer_hard};
pub use exit_mlp::{ExitMlp, ExitMlpConfig, ExitMlpInference};
pub use parameters::draw_parameters;
pub use ponder::{ActForward, AllSteps, CellKind, PonderConfig, PonderNetwork, PonderStep};
