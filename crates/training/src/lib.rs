//! Recipes and training loops for haltlab experiments.
//!
//! The loops take a [`Device`](burn::tensor::Device) chosen by the caller and a [`Monitor`]
//! for progress, and return the history and evaluations that the caller writes to a result
//! file.

pub mod bench;
pub mod checkpoint;
pub mod exit_analysis;
pub mod failure;
pub mod guard;
pub mod loss;
pub mod mnist_exits;
pub mod monitor;
pub mod parity_act;
pub mod pondering;
pub mod recipe;
pub mod schedule;

mod error;

pub use checkpoint::Checkpointer;
pub use error::TrainingError;
pub use monitor::{Monitor, SilentMonitor};
pub use recipe::{Recipe, RecipeError};

use std::collections::BTreeMap;

use burn::tensor::Device;
use haltlab_eval::{EpochRecord, Evaluation};

/// Outcome of a finished training run, which the caller writes to its result file.
#[derive(Debug, Clone)]
pub struct TrainingOutcome {
    pub history: Vec<EpochRecord>,
    /// Evaluations keyed by split name.
    pub evaluation: BTreeMap<String, Evaluation>,
    /// Wall time of training alone, in seconds.
    pub training_seconds: f64,
}

/// Inputs of a training loop besides the recipe.
pub struct RunContext<'a> {
    /// Device to train and evaluate on; the loop adds autodiff for training itself.
    pub device: Device,
    /// Progress reporting and the stop request (Ctrl-C).
    pub monitor: &'a mut dyn Monitor,
    /// Checkpoint directory and schedule. `None` trains without checkpoints.
    pub checkpoints: Option<Checkpointer>,
    /// Continue from the checkpoint in `checkpoints` instead of starting afresh.
    pub resume: bool,
}
