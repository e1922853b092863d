//! Checkpoints of a training run: model, optimiser state and the loop's own progress.
//!
//! A checkpoint is three files in `RUN_DIR/checkpoint/`: `model-<step>.bpk` and
//! `optimizer-<step>.bpk` (Burn's burnpack records), then `state.json`, which names the step and
//! contains the loop's progress (epoch, partial sums, history). Every file is written to a
//! temporary file and renamed into place, and `state.json` is renamed last, so a crash at any
//! moment leaves `state.json` pointing at the previous complete checkpoint. Record files of
//! older steps are removed only after the new `state.json` is in place.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use haltlab_eval::results::write_atomic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Monitor, TrainingError};

/// Name of the checkpoint directory inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Checkpoint location and schedule of a training loop.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
    every_steps: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct StateFile<S> {
    step: u64,
    model: String,
    optimizer: String,
    progress: S,
}

impl Checkpointer {
    /// Saves into `run_dir/checkpoint/`, every `every_steps` optimiser steps when set, and
    /// whenever the loop ends or is interrupted.
    pub fn new(run_dir: &Path, every_steps: Option<u64>) -> Self {
        Self {
            dir: run_dir.join(CHECKPOINT_DIR),
            every_steps: every_steps.filter(|&steps| steps > 0),
        }
    }

    /// Directory of the checkpoint files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns whether the periodic schedule requests a checkpoint after `step`.
    pub fn due(&self, step: u64) -> bool {
        self.every_steps.is_some_and(|every| step % every == 0)
    }

    /// Writes a checkpoint of `model`, `optimizer` and the loop's `progress` at `step`.
    pub fn save<M: Module, S: Serialize>(
        &self,
        step: u64,
        model: &M,
        optimizer: &ModuleOptimizer,
        progress: &S,
    ) -> Result<(), TrainingError> {
        fs::create_dir_all(&self.dir)
            .map_err(|source| self.io_error("create", &self.dir, source))?;
        let model_name = format!("model-{step}.bpk");
        let optimizer_name = format!("optimizer-{step}.bpk");
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|error| self.record_error("encode the model", error))?;
        write_atomic(&self.dir.join(&model_name), &model_bytes)?;
        let optimizer_bytes = optimizer
            .into_bytes()
            .map_err(|error| self.record_error("encode the optimiser state", error))?;
        write_atomic(&self.dir.join(&optimizer_name), &optimizer_bytes)?;

        let state = StateFile {
            step,
            model: model_name.clone(),
            optimizer: optimizer_name.clone(),
            progress,
        };
        let encode_error = |error: serde_json::Error| TrainingError::Checkpoint {
            path: self.dir.join("state.json"),
            problem: format!("failed to encode the training state: {error}"),
        };
        let mut value = serde_json::to_value(&state).map_err(encode_error)?;
        floats_to_text(&mut value);
        let json = serde_json::to_vec_pretty(&value).map_err(encode_error)?;
        write_atomic(&self.dir.join("state.json"), &json)?;
        self.remove_stale(&[model_name, optimizer_name]);
        tracing::debug!(step, dir = %self.dir.display(), "checkpoint saved");
        Ok(())
    }

    /// Loads the latest checkpoint into `model` and `optimizer`, or returns `None` when the
    /// directory contains no checkpoint.
    pub fn load<M: Module, S: DeserializeOwned>(
        &self,
        model: M,
        optimizer: ModuleOptimizer,
    ) -> Result<Option<(M, ModuleOptimizer, S, u64)>, TrainingError> {
        let state_path = self.dir.join("state.json");
        if !state_path.exists() {
            return Ok(None);
        }
        let text =
            fs::read(&state_path).map_err(|source| self.io_error("read", &state_path, source))?;
        let invalid = |error: serde_json::Error| TrainingError::Checkpoint {
            path: state_path.clone(),
            problem: format!("invalid checkpoint state: {error}"),
        };
        let mut value: serde_json::Value = serde_json::from_slice(&text).map_err(invalid)?;
        text_to_floats(&mut value);
        let state: StateFile<S> = serde_json::from_value(value).map_err(invalid)?;

        let model = self.load_model_file(model, &state.model)?;

        let optimizer_path = self.dir.join(&state.optimizer);
        let optimizer_bytes = fs::read(&optimizer_path)
            .map_err(|source| self.io_error("read", &optimizer_path, source))?;
        let optimizer = optimizer
            .from_bytes(Bytes::from_bytes_vec(optimizer_bytes))
            .map_err(|error| self.record_error("load the optimiser state", error))?;
        Ok(Some((model, optimizer, state.progress, state.step)))
    }

    /// Loads only the model of the latest checkpoint into `model`, for evaluation, or returns
    /// `None` when the directory contains no checkpoint.
    pub fn load_model<M: Module>(&self, model: M) -> Result<Option<M>, TrainingError> {
        let state_path = self.dir.join("state.json");
        if !state_path.exists() {
            return Ok(None);
        }
        let text =
            fs::read(&state_path).map_err(|source| self.io_error("read", &state_path, source))?;
        let state: StateFile<serde::de::IgnoredAny> =
            serde_json::from_slice(&text).map_err(|error| TrainingError::Checkpoint {
                path: state_path.clone(),
                problem: format!("invalid checkpoint state: {error}"),
            })?;
        self.load_model_file(model, &state.model).map(Some)
    }

    fn load_model_file<M: Module>(&self, model: M, name: &str) -> Result<M, TrainingError> {
        let model_path = self.dir.join(name);
        let model_bytes =
            fs::read(&model_path).map_err(|source| self.io_error("read", &model_path, source))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes))
            .map_err(|error| self.record_error("decode the model", error))?;
        model
            .try_load_record(record)
            .map_err(|error| self.record_error("load the model", error))
    }

    /// Removes record files other than `keep`; a failure only leaves an old file behind.
    fn remove_stale(&self, keep: &[String]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".bpk") && !keep.contains(&name) {
                if let Err(error) = fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), %error, "failed to remove an old checkpoint file");
                }
            }
        }
    }

    fn io_error(&self, action: &str, path: &Path, source: std::io::Error) -> TrainingError {
        TrainingError::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("failed to {action}: {source}"),
        }
    }

    fn record_error(&self, action: &str, error: impl std::fmt::Display) -> TrainingError {
        TrainingError::Checkpoint {
            path: self.dir.clone(),
            problem: format!("failed to {action}: {error}"),
        }
    }
}

/// Prefix of a float stored as text in `state.json`.
const FLOAT_PREFIX: &str = "f64:";

/// Replaces every float in `value` with the text `f64:<shortest decimal>`.
///
/// serde_json, as Burn builds it (without `float_roundtrip`), may parse a decimal to a float one
/// unit in the last place away from the written one. Rust's own parser is exact, so the floats
/// of the loop state go through text and come back bit for bit, as an exact resume needs.
fn floats_to_text(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                *value = Value::String(format!("{FLOAT_PREFIX}{float:?}"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(floats_to_text),
        Value::Object(map) => map.values_mut().for_each(floats_to_text),
        _ => {}
    }
}

/// Turns each text `f64:<decimal>` written by [`floats_to_text`] back into its float.
fn text_to_floats(value: &mut serde_json::Value) {
    use serde_json::{Number, Value};
    match value {
        Value::String(text) => {
            let float = text
                .strip_prefix(FLOAT_PREFIX)
                .and_then(|digits| digits.parse::<f64>().ok())
                .and_then(Number::from_f64);
            if let Some(number) = float {
                *value = Value::Number(number);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(text_to_floats),
        Value::Object(map) => map.values_mut().for_each(text_to_floats),
        _ => {}
    }
}

/// Returns the model, optimiser and progress to train from: fresh ones, or with `resume`, the
/// ones in the latest checkpoint. Resuming without a checkpoint is an error.
pub fn restore<M: Module, S: DeserializeOwned + Default>(
    checkpoints: Option<&Checkpointer>,
    resume: bool,
    model: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, S), TrainingError> {
    if !resume {
        return Ok((model, optimizer, S::default()));
    }
    let Some(checkpointer) = checkpoints else {
        return Err(TrainingError::Checkpoint {
            path: PathBuf::from(CHECKPOINT_DIR),
            problem: "resuming needs the run directory that holds the checkpoint".to_owned(),
        });
    };
    match checkpointer.load::<M, S>(model, optimizer)? {
        Some((model, optimizer, progress, step)) => {
            tracing::info!(step, dir = %checkpointer.dir().display(), "resuming from checkpoint");
            Ok((model, optimizer, progress))
        }
        None => Err(TrainingError::Checkpoint {
            path: checkpointer.dir().join("state.json"),
            problem: "not found, so there is nothing to resume from".to_owned(),
        }),
    }
}

/// Saves a checkpoint after `step` when the schedule requests one, at the last step, or when
/// the monitor requests a stop. A stop before the last step then ends the run with
/// [`TrainingError::Interrupted`].
///
/// `progress` builds the loop state to save; it is called only when a checkpoint is written.
#[allow(clippy::too_many_arguments)]
pub fn checkpoint_or_stop<M: Module, S: Serialize>(
    checkpoints: Option<&Checkpointer>,
    monitor: &mut dyn Monitor,
    epoch: usize,
    step: u64,
    total_steps: u64,
    model: &M,
    optimizer: &ModuleOptimizer,
    progress: impl FnOnce() -> S,
) -> Result<(), TrainingError> {
    let stop = monitor.stop_requested();
    if let Some(checkpointer) = checkpoints {
        if stop || checkpointer.due(step) || step == total_steps {
            checkpointer.save(step, model, optimizer, &progress())?;
        }
    }
    if stop && step < total_steps {
        monitor.finish();
        return Err(TrainingError::Interrupted { epoch, step });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // i / 4800 for i < 5000 gives decimals of up to 17 digits. serde_json 1.0.154's default
    // parser returned 460 of these 4,999 one unit in the last place off, so every one is
    // compared bit for bit after a trip through the text of a state file.
    #[test]
    fn state_floats_round_trip_exactly() {
        let floats: Vec<f64> = (1..5000).map(|i| f64::from(i) / 4800.0).collect();
        let progress = serde_json::json!({
            "floats": floats,
            "nested": { "loss": 3.2714583333333334, "count": 7, "name": "f64 is a type" },
        });
        let mut value = progress.clone();
        floats_to_text(&mut value);
        let text = serde_json::to_vec(&value).unwrap();
        let mut back: serde_json::Value = serde_json::from_slice(&text).unwrap();
        text_to_floats(&mut back);
        for (index, (read, written)) in back["floats"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&floats)
            .enumerate()
        {
            let read = read.as_f64().unwrap();
            assert_eq!(
                read.to_bits(),
                written.to_bits(),
                "float {index}: {read} != {written}"
            );
        }
        assert_eq!(back["nested"], progress["nested"]);
        assert!(back["nested"]["count"].is_u64());
    }
}
