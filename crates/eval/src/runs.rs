//! Finding and reading the runs that tables and figures summarise.
//!
//! Inputs are result files, run directories, directories of run directories, or glob patterns.
//! A directory is searched recursively for `result.json`. A run directory that contains
//! `history.jsonl` and `recipe.toml` but no `result.json` yet is a run still training, which is
//! read for its training curves only.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::results::{EpochRecord, ResultError, RunResult, RunStatus, read_history};

/// An error while finding or reading runs.
#[derive(Debug, Error)]
pub enum RunsError {
    #[error("invalid glob pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{input}: no such file or directory, and no file matches it as a pattern")]
    NotFound { input: String },
    #[error("failed to list directory {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Result(#[from] ResultError),
    #[error("failed to read recipe {path}: {message}")]
    Recipe { path: PathBuf, message: String },
}

/// Whether a run has finished.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Completed,
    Failed {
        reason: String,
    },
    /// Only `history.jsonl` exists so far.
    Training,
}

/// A run as tables and figures see it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The result file, or the history file of a run still training.
    pub source: PathBuf,
    /// Recipe name without a trailing seed suffix such as `-seed3`.
    pub recipe: String,
    /// Task family: `parity`, `mnist` or the recipe name for other tasks.
    pub task: String,
    /// Halting method (`[halting] method`) or exit rule (`[exits] rule`, else `exits`).
    pub method: String,
    /// Task and model setting that runs must share to be aggregated, such as the parity
    /// non-zero ranges.
    pub setting: String,
    pub seed: u64,
    pub state: RunState,
    pub history: Vec<EpochRecord>,
    /// The parsed result file, absent while training.
    pub result: Option<RunResult>,
    /// The result file as JSON, for keys this build does not know; `Null` while training.
    pub raw: Value,
}

impl Run {
    /// Builds a run from a loaded result file.
    pub fn from_result(source: PathBuf, result: RunResult) -> Run {
        let raw = serde_json::to_value(&result).unwrap_or(Value::Null);
        Self::from_parts(
            source,
            &result.recipe_name.clone(),
            &result.recipe.clone(),
            result.seed,
            match &result.status {
                RunStatus::Completed => RunState::Completed,
                // An interrupted run has no final evaluation, so tables leave it out like a
                // failed one until it is resumed.
                RunStatus::Failed { reason } | RunStatus::Interrupted { reason } => {
                    RunState::Failed {
                        reason: reason.clone(),
                    }
                }
            },
            result.history.clone(),
            Some(result),
            raw,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        source: PathBuf,
        recipe_name: &str,
        recipe: &Value,
        seed: u64,
        state: RunState,
        history: Vec<EpochRecord>,
        result: Option<RunResult>,
        raw: Value,
    ) -> Run {
        Run {
            source,
            recipe: strip_seed_suffix(recipe_name).to_owned(),
            task: task_of(recipe, recipe_name),
            method: method_of(recipe),
            setting: setting_of(recipe),
            seed,
            state,
            history,
            result,
            raw,
        }
    }

    /// Looks up a number in the result file by a dotted path such as
    /// `evaluation.test.flop_fraction`. Absent keys, non-numbers and non-finite values give
    /// `None`.
    pub fn number(&self, path: &str) -> Option<f64> {
        let mut value = &self.raw;
        for key in path.split('.') {
            value = value.get(key)?;
        }
        value.as_f64().filter(|number| number.is_finite())
    }
}

/// Removes a trailing seed suffix (`-seed3`, `_seed3`, `-s3`) from a recipe name, so that
/// recipes copied once per seed aggregate together.
pub fn strip_seed_suffix(name: &str) -> &str {
    for marker in ["-seed", "_seed", "-s", "_s"] {
        if let Some(index) = name.rfind(marker) {
            let digits = &name[index + marker.len()..];
            if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) && index > 0 {
                return &name[..index];
            }
        }
    }
    name
}

fn task_of(recipe: &Value, recipe_name: &str) -> String {
    if recipe.get("parity").is_some_and(|v| !v.is_null()) {
        "parity".to_owned()
    } else if recipe.get("mnist").is_some_and(|v| !v.is_null()) {
        "mnist".to_owned()
    } else {
        strip_seed_suffix(recipe_name).to_owned()
    }
}

fn method_of(recipe: &Value) -> String {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let halting = recipe.get("halting");
    let exits = recipe.get("exits");
    text(halting.and_then(|h| h.get("method")))
        .or_else(|| text(exits.and_then(|e| e.get("rule"))))
        .or_else(|| text(exits.and_then(|e| e.get("rule").and_then(|r| r.get("kind")))))
        .or_else(|| exits.filter(|e| !e.is_null()).map(|_| "exits".to_owned()))
        .unwrap_or_else(|| "-".to_owned())
}

fn setting_of(recipe: &Value) -> String {
    let range = |value: Option<&Value>| -> Option<String> {
        let items = value?.as_array()?;
        Some(format!("{}-{}", items.first()?, items.get(1)?))
    };
    if let Some(parity) = recipe.get("parity").filter(|v| !v.is_null()) {
        let length = parity
            .get("length")
            .map(ToString::to_string)
            .unwrap_or_default();
        let train = range(parity.get("train_nonzeros")).unwrap_or_default();
        let eval = range(parity.get("eval_nonzeros")).unwrap_or_default();
        return format!("len {length}, k {train} / eval {eval}");
    }
    if let Some(exits) = recipe.get("exits").filter(|v| !v.is_null()) {
        let layers = exits
            .get("hidden_sizes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return match exits.get("threshold").and_then(Value::as_f64) {
            Some(threshold) => format!("{layers} exits, threshold {threshold}"),
            None => format!("{layers} exits"),
        };
    }
    String::new()
}

/// Reads every run named by `inputs`, sorted by source path. Each input is a `result.json`
/// file, a `history.jsonl` file, a directory (searched recursively) or a glob pattern.
pub fn collect_runs(inputs: &[String]) -> Result<Vec<Run>, RunsError> {
    let mut results = BTreeSet::new();
    let mut histories = BTreeSet::new();
    for input in inputs {
        let path = PathBuf::from(input);
        let mut matched: Vec<PathBuf> = Vec::new();
        if path.exists() {
            matched.push(path);
        } else if input.contains(['*', '?', '[']) {
            let paths = glob::glob(input).map_err(|error| RunsError::Pattern {
                pattern: input.clone(),
                message: error.to_string(),
            })?;
            matched.extend(paths.filter_map(Result::ok));
        }
        if matched.is_empty() {
            return Err(RunsError::NotFound {
                input: input.clone(),
            });
        }
        for path in matched {
            if path.is_dir() {
                walk(&path, &mut results, &mut histories)?;
            } else if path.file_name().is_some_and(|name| name == "history.jsonl") {
                histories.insert(path);
            } else {
                results.insert(path);
            }
        }
    }
    let mut runs = Vec::new();
    for path in &results {
        let result = RunResult::load(path)?;
        runs.push(Run::from_result(path.clone(), result));
    }
    for path in &histories {
        let has_result = path.with_file_name("result.json").exists();
        if !has_result {
            runs.push(training_run(path)?);
        }
    }
    runs.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(runs)
}

fn walk(
    dir: &Path,
    results: &mut BTreeSet<PathBuf>,
    histories: &mut BTreeSet<PathBuf>,
) -> Result<(), RunsError> {
    let entries = fs::read_dir(dir).map_err(|source| RunsError::List {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| RunsError::List {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            walk(&path, results, histories)?;
        } else if path.file_name().is_some_and(|name| name == "result.json") {
            results.insert(path);
        } else if path.file_name().is_some_and(|name| name == "history.jsonl") {
            histories.insert(path);
        }
    }
    Ok(())
}

/// A run still training: its history, and the recipe written beside it.
fn training_run(history_path: &Path) -> Result<Run, RunsError> {
    let history = read_history(history_path)?;
    let recipe_path = history_path.with_file_name("recipe.toml");
    let recipe: Value = fs::read_to_string(&recipe_path)
        .map_err(|error| error.to_string())
        .and_then(|text| toml::from_str(&text).map_err(|error| error.to_string()))
        .map_err(|message| RunsError::Recipe {
            path: recipe_path.clone(),
            message,
        })?;
    // results/<recipe>/<run-id>/history.jsonl
    let recipe_name = history_path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recipe".to_owned());
    let seed = recipe.get("seed").and_then(Value::as_u64).unwrap_or(0);
    Ok(Run::from_parts(
        history_path.to_path_buf(),
        &recipe_name,
        &recipe,
        seed,
        RunState::Training,
        history,
        None,
        Value::Null,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_suffixes_are_stripped() {
        assert_eq!(strip_seed_suffix("parity_act-seed3"), "parity_act");
        assert_eq!(strip_seed_suffix("parity_act_seed12"), "parity_act");
        assert_eq!(strip_seed_suffix("mnist-s2"), "mnist");
        assert_eq!(strip_seed_suffix("parity_act"), "parity_act");
        assert_eq!(strip_seed_suffix("pondernet-seed"), "pondernet-seed");
    }

    #[test]
    fn method_and_setting_come_from_the_recipe() {
        let parity = serde_json::json!({
            "parity": {"length": 8, "train_nonzeros": [1, 8], "eval_nonzeros": [1, 8]},
            "halting": {"method": "pondernet"}
        });
        assert_eq!(method_of(&parity), "pondernet");
        assert_eq!(setting_of(&parity), "len 8, k 1-8 / eval 1-8");
        assert_eq!(task_of(&parity, "x"), "parity");
        let exits = serde_json::json!({
            "mnist": {}, "exits": {"hidden_sizes": [4, 4], "threshold": 0.9}
        });
        assert_eq!(method_of(&exits), "exits");
        assert_eq!(setting_of(&exits), "2 exits, threshold 0.9");
        assert_eq!(task_of(&exits, "x"), "mnist");
    }
}
