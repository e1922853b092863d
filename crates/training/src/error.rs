use std::path::PathBuf;

use haltlab_data::DataError;
use haltlab_halting::HaltingError;
use thiserror::Error;

/// An error that stops a training run.
#[derive(Debug, Error)]
pub enum TrainingError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Halting(#[from] HaltingError),
    #[error("the recipe has no [{0}] section, which this experiment needs")]
    MissingSection(&'static str),
    #[error("{trainer} trains method = \"{expected}\" only; run the recipe with haltlab run")]
    WrongMethod {
        expected: &'static str,
        trainer: &'static str,
    },
    #[error("no data path: set `path` in the recipe's [mnist] section or pass --data PATH")]
    MissingDataPath,
    #[error("data {path} has {found} features per sample but the model expects {expected}")]
    InputSize {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error(
        "{quantity} became {value} at epoch {epoch}, step {step}; lower the learning rate or check the data"
    )]
    NonFinite {
        quantity: &'static str,
        value: f64,
        epoch: usize,
        step: u64,
    },
}
