//! The result file of a run and how it is written.
//!
//! A run directory is `results/<recipe>/<run-id>/`. It is created with `create_dir`, so a run
//! never writes into another run's directory. Every file in it is written to a temporary file
//! in the same directory and renamed into place, so a crash leaves either the previous complete
//! file or the new complete file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::metrics::Histogram;

/// Version of the result schema written by this build. Version 1 is the first.
pub const SCHEMA_VERSION: u32 = 1;

/// Oldest result schema version this build still reads.
pub const OLDEST_READABLE_SCHEMA: u32 = 1;

/// An error while writing or reading result files.
#[derive(Debug, Error)]
pub enum ResultError {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to encode {path} as JSON: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("failed to read {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error(
        "{path} has result schema version {found}, but this haltlab reads versions {oldest} to \
         {newest}; read it with the haltlab version that wrote it, or rerun the recipe"
    )]
    UnsupportedSchema {
        path: PathBuf,
        found: String,
        oldest: u32,
        newest: u32,
    },
}

/// Whether a run finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    /// Training and evaluation finished.
    Completed,
    /// The run stopped on an error, such as a non-finite loss or a failed write, named in `reason`.
    Failed { reason: String },
    /// The run was interrupted (Ctrl-C) after saving a checkpoint; `haltlab run --resume`
    /// continues it.
    Interrupted { reason: String },
}

/// Metrics of one training epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, counted from 1.
    pub epoch: usize,
    /// Optimiser steps taken by the end of this epoch.
    pub step: u64,
    /// Mean training loss over the epoch, including the halting regulariser.
    pub loss: f64,
    /// Training accuracy over the epoch (of the combined output, or of the last exit).
    pub accuracy: f64,
    /// Accuracy on the validation data at the end of the epoch.
    pub validation_accuracy: Option<f64>,
    /// Mean halting step (pondering) or exit layer (early exit) of the training samples.
    pub mean_halting_step: f64,
    /// Training samples by halting step or exit layer.
    pub halting_histogram: Histogram,
    /// Mean expected compute in steps or layers: the mean ponder cost N + R for ACT.
    pub expected_compute: Option<f64>,
    /// Seconds since the start of training.
    pub elapsed_seconds: f64,
    /// Scheduled hyperparameters at the end of the epoch, such as `temperature` or
    /// `regulariser_weight`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedule: BTreeMap<String, f64>,
}

/// Metrics of an evaluation split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Accuracy of the hard (halted or exited) predictions.
    pub accuracy: f64,
    /// Mean halting step or exit layer.
    pub mean_halting_step: f64,
    /// Largest halting step or exit layer reached.
    pub max_halting_step: usize,
    /// Samples by halting step or exit layer.
    pub halting_histogram: Histogram,
    /// Exit threshold the hard predictions used, for early-exit models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Accuracy of each exit head when every sample runs the whole network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy_per_exit: Vec<f64>,
    /// Accuracy by task difficulty (number of non-zero parity inputs), keyed by difficulty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accuracy_by_difficulty: BTreeMap<usize, f64>,
    /// Mean halting step by task difficulty, keyed by difficulty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub halting_step_by_difficulty: BTreeMap<usize, f64>,
    /// Mean FLOPs per sample of the hard run divided by the FLOPs of the full network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flop_fraction: Option<f64>,
    /// Threshold sweeps, calibrated thresholds, compute, latency and shift results of an
    /// early-exit model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_report: Option<crate::exit_report::ExitReport>,
    /// Accuracy of the soft model on the same samples: the prediction of Σₙ pₙ·softmax(yₙ),
    /// for ponder methods with a halting distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_accuracy: Option<f64>,
    /// Expected halting step Σₙ n·pₙ of the soft model, averaged over samples. The hard run's
    /// actual compute is `mean_halting_step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_steps: Option<f64>,
    /// Failure modes detected in this run, each with its evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<FailureFlag>,
    /// Accuracy–compute points of the same trained model under several exit settings (such as
    /// a threshold sweep), in any order; `haltlab plot` draws them with the Pareto frontier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepPoint>,
}

/// A failure mode of a halting run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Most samples run to the maximum number of steps.
    NeverStops,
    /// Almost all samples halt at step 1 while accuracy stays near chance.
    CollapseToShallow,
    /// Soft expected compute or accuracy differs from the hard run's.
    TrainingInferenceMismatch,
    /// Accuracy changes markedly over a small neighbourhood of the halting threshold.
    ThresholdSensitivity,
}

/// A detected failure mode and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureFlag {
    pub kind: FailureKind,
    /// What was measured, in words and numbers.
    pub evidence: String,
}

/// One operating point of a sweep over an exit setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Value of the swept setting, such as the confidence threshold.
    pub threshold: f64,
    /// Accuracy of the hard predictions at this setting, as a fraction in [0, 1].
    pub accuracy: f64,
    /// Mean FLOPs per sample divided by the FLOPs of the full network, in [0, 1].
    pub flop_fraction: f64,
}

impl Evaluation {
    /// Fills the halting fields from a histogram.
    pub fn with_histogram(mut self, histogram: Histogram) -> Self {
        self.mean_halting_step = histogram.mean();
        self.max_halting_step = histogram.max();
        self.halting_histogram = histogram;
        self
    }
}

/// The result file of one run, `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Result schema version, [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    pub status: RunStatus,
    /// Recipe name: the recipe file's stem.
    pub recipe_name: String,
    /// Recipe path as given on the command line.
    pub recipe_path: String,
    /// The recipe with every default filled in and command-line overrides applied.
    pub recipe: serde_json::Value,
    pub haltlab_version: String,
    pub burn_version: String,
    /// Backend name as given to `--backend`.
    pub backend: String,
    /// Device description, as Burn prints it.
    pub device: String,
    /// Implementation of the ACT training step that ran, `fused` or `burn` (the recipe's
    /// `training.kernel` resolved for the backend); absent for other methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_kernel: Option<String>,
    pub seed: u64,
    /// Commit of the working tree the binary ran in, when it is a git checkout.
    pub git_commit: Option<String>,
    /// Start time, RFC 3339 in UTC.
    pub started_at: String,
    /// Wall time of the whole run in seconds, including data loading and evaluation.
    pub wall_seconds: f64,
    /// Wall time of training alone in seconds.
    pub training_seconds: f64,
    pub history: Vec<EpochRecord>,
    /// Evaluations keyed by split name, such as `test` or `extrapolation`.
    pub evaluation: BTreeMap<String, Evaluation>,
}

impl RunResult {
    /// Reads a `result.json` file. A file without `schema_version`, or with a version outside
    /// [`OLDEST_READABLE_SCHEMA`]..=[`SCHEMA_VERSION`], is rejected with a message naming the
    /// version found. Keys this build does not know are ignored, so files with optional
    /// fields added later within the same version still load.
    pub fn load(path: &Path) -> Result<RunResult, ResultError> {
        let text = fs::read_to_string(path).map_err(|source| ResultError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a result file; `path` is used only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<RunResult, ResultError> {
        let decode = |message: String| ResultError::Decode {
            path: path.to_path_buf(),
            message,
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| decode(format!("not valid JSON: {error}")))?;
        let unsupported = |found: String| ResultError::UnsupportedSchema {
            path: path.to_path_buf(),
            found,
            oldest: OLDEST_READABLE_SCHEMA,
            newest: SCHEMA_VERSION,
        };
        match value.get("schema_version") {
            None => {
                return Err(unsupported(
                    "(none: the key `schema_version` is missing)".into(),
                ));
            }
            Some(version) => match version.as_u64() {
                Some(v) if (OLDEST_READABLE_SCHEMA as u64..=SCHEMA_VERSION as u64).contains(&v) => {
                }
                _ => return Err(unsupported(version.to_string())),
            },
        }
        serde_json::from_value(value).map_err(|error| decode(error.to_string()))
    }
}

/// Reads a training history written as JSON Lines, one [`EpochRecord`] per line.
///
/// The file grows while a run trains; a final line without its newline is a write in progress
/// or cut short by a crash, and is ignored. Any other line that does not parse is an error.
pub fn read_history(path: &Path) -> Result<Vec<EpochRecord>, ResultError> {
    let text = fs::read_to_string(path).map_err(|source| ResultError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    parse_history(&text, path)
}

/// Parses the text of a history file; `path` is used only in error messages.
pub fn parse_history(text: &str, path: &Path) -> Result<Vec<EpochRecord>, ResultError> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| ResultError::Decode {
                path: path.to_path_buf(),
                message: format!("line {}: {error}", index + 1),
            })
        })
        .collect()
}

/// Encodes one history record as a JSON line, newline included.
pub fn history_line(record: &EpochRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec(record)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Formats a time as RFC 3339 in UTC, to the second.
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Creates a new run directory under `results_root/<recipe_name>/`, named from the start time
/// and the seed. A directory of that name that already exists is never reused: a numeric
/// suffix is added instead.
pub fn create_run_dir(
    results_root: &Path,
    recipe_name: &str,
    started: SystemTime,
    seed: u64,
) -> Result<PathBuf, ResultError> {
    let parent = results_root.join(recipe_name);
    fs::create_dir_all(&parent).map_err(|source| ResultError::Io {
        action: "create directory",
        path: parent.clone(),
        source,
    })?;
    // "2026-12-04T20:21:13Z" becomes "20261204-202113".
    let stamp: String = format_time(started)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    let base = format!("{stamp}-seed{seed}");
    for attempt in 0..1000 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let candidate = parent.join(name);
        match fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(ResultError::Io {
                    action: "create directory",
                    path: candidate,
                    source,
                });
            }
        }
    }
    Err(ResultError::Io {
        action: "create a unique run directory in",
        path: parent,
        source: std::io::Error::other("1000 run directories with this name already exist"),
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory that is synced and
/// then renamed over `path`, so readers see either the old or the new complete file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultError> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let temporary = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
    let written = file
        .write_all(bytes)
        .map_err(io_error("write", &temporary))
        .and_then(|()| file.sync_all().map_err(io_error("sync", &temporary)));
    drop(file);
    let result = written
        .and_then(|()| fs::rename(&temporary, path).map_err(io_error("rename into place", path)));
    if result.is_err() {
        // The temporary file is of no use once the write failed.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Serialises `value` as pretty JSON and writes it with [`write_atomic`].
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), ResultError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| ResultError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_never_collide() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let first = create_run_dir(root.path(), "recipe", now, 3).unwrap();
        let second = create_run_dir(root.path(), "recipe", now, 3).unwrap();
        assert_ne!(first, second);
        assert!(first.is_dir());
        assert!(second.is_dir());
        assert!(
            first
                .file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-seed3")
        );
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("result.json");
        write_json_atomic(&path, &vec![1, 2, 3]).unwrap();
        write_json_atomic(&path, &vec![4]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<Vec<i32>>(&text).unwrap(), vec![4]);
        let leftovers: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }

    fn minimal_result(version: &str) -> String {
        format!(
            r#"{{"schema_version": {version}, "status": {{"state": "completed"}},
            "recipe_name": "r", "recipe_path": "r.toml", "recipe": {{}},
            "haltlab_version": "0.1.0", "burn_version": "0.22.1", "backend": "flex",
            "device": "cpu", "seed": 1, "git_commit": null, "started_at": "x",
            "wall_seconds": 1.0, "training_seconds": 1.0, "history": [], "evaluation": {{}},
            "a_key_from_the_future": 3}}"#
        )
    }

    #[test]
    fn current_schema_loads_and_ignores_new_optional_keys() {
        let result = RunResult::parse(&minimal_result("1"), Path::new("r.json")).unwrap();
        assert_eq!(result.schema_version, 1);
        assert_eq!(result.status, RunStatus::Completed);
    }

    #[test]
    fn unknown_schema_version_is_rejected_by_name() {
        let error = RunResult::parse(&minimal_result("99"), Path::new("old/result.json"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("old/result.json"), "{error}");
        assert!(error.contains("schema version 99"), "{error}");
        assert!(error.contains("versions 1 to 1"), "{error}");
        let missing = RunResult::parse(r#"{"status": 1}"#, Path::new("x.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("`schema_version` is missing"), "{missing}");
        let wrong_type = RunResult::parse(&minimal_result("\"one\""), Path::new("x.json"))
            .unwrap_err()
            .to_string();
        assert!(
            wrong_type.contains("schema version \"one\""),
            "{wrong_type}"
        );
    }

    #[test]
    fn history_reader_ignores_only_a_truncated_last_line() {
        let record = EpochRecord {
            epoch: 1,
            loss: 0.5,
            ..EpochRecord::default()
        };
        let mut text = String::from_utf8(history_line(&record).unwrap()).unwrap();
        text.push_str(&String::from_utf8(history_line(&record).unwrap()).unwrap());
        let whole = parse_history(&text, Path::new("h")).unwrap();
        assert_eq!(whole.len(), 2);
        text.push_str("{\"epoch\": 3, \"lo");
        assert_eq!(parse_history(&text, Path::new("h")).unwrap(), whole);
        let broken = "{\"epoch\": 3}\n".to_owned() + &text;
        let error = parse_history(&broken, Path::new("h"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn time_format_is_rfc3339() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 61);
        assert_eq!(format_time(time), "1970-01-02T00:01:01Z");
    }
}
