//! Recipes and training loops for haltlab experiments.
//!
//! The loops take a [`Device`](burn::tensor::Device) chosen by the caller and a [`Monitor`]
//! for progress, and return the history and evaluations that the caller writes to a result
//! file.

pub mod failure;
pub mod loss;
pub mod mnist_exits;
pub mod monitor;
pub mod parity_act;
pub mod pondering;
pub mod recipe;
pub mod schedule;

mod error;

pub use error::TrainingError;
pub use monitor::{Monitor, SilentMonitor};
pub use recipe::{Recipe, RecipeError};

use std::collections::BTreeMap;

use haltlab_eval::{EpochRecord, Evaluation};

/// What a finished training run hands back for its result file.
#[derive(Debug, Clone)]
pub struct TrainingOutcome {
    pub history: Vec<EpochRecord>,
    /// Evaluations keyed by split name.
    pub evaluation: BTreeMap<String, Evaluation>,
    /// Wall time of training alone, in seconds.
    pub training_seconds: f64,
}
