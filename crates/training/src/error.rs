use std::path::PathBuf;

use haltlab_data::DataError;
use haltlab_eval::ResultError;
use haltlab_halting::HaltingError;
use haltlab_model::ponder_cpu::PonderCpuError;
use thiserror::Error;

/// An error that stops a training run.
#[derive(Debug, Error)]
pub enum TrainingError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Halting(#[from] HaltingError),
    #[error(transparent)]
    Write(#[from] ResultError),
    #[error("fused ACT kernel: {0}")]
    Kernel(#[from] PonderCpuError),
    #[error("the recipe has no [{0}] section, which this experiment needs")]
    MissingSection(&'static str),
    #[error("{trainer} trains method = \"{expected}\" only; run the recipe with haltlab run")]
    WrongMethod {
        expected: &'static str,
        trainer: &'static str,
    },
    #[error("no data path: set `path` in the recipe's [mnist] section or pass --data PATH")]
    MissingDataPath,
    #[error(
        "the LeNet-like exit network needs image sides divisible by 4, but the images are {height}x{width}; use architecture = \"mlp\""
    )]
    ImageSize { height: usize, width: usize },
    #[error(
        "data {path} has {found} features per sample but key `{key}` expects {expected}; \
         fix the recipe or pass the matching data"
    )]
    InputSize {
        path: PathBuf,
        key: &'static str,
        expected: usize,
        found: usize,
    },
    #[error(
        "{quantity} became {value} at epoch {epoch}, step {step}; the last good checkpoint is \
         kept; lower the learning rate or check the data"
    )]
    NonFinite {
        quantity: String,
        value: f64,
        epoch: usize,
        step: u64,
    },
    #[error("checkpoint {path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    #[error(
        "interrupted at epoch {epoch}, step {step}; a checkpoint was saved, resume with `haltlab run --resume RUN_DIR`"
    )]
    Interrupted { epoch: usize, step: u64 },
    #[error(
        "the benchmark trained {steps} steps, which leaves none to time after {warmup} warm-up steps; train more steps"
    )]
    BenchTooShort { steps: usize, warmup: usize },
}
