//! `haltlab run`: train and evaluate one recipe, and write its result directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use haltlab_eval::results::{format_time, history_line, write_atomic};
use haltlab_eval::{RunResult, RunStatus, SCHEMA_VERSION, create_run_dir, write_json_atomic};
use haltlab_training::{Recipe, TrainingOutcome, mnist_exits, parity_act};

use crate::backend::{Backend, create_device};
use crate::history::HistoryMonitor;
use crate::progress::ProgressMonitor;

/// Options of `haltlab run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Recipe file (TOML), such as experiments/parity_act.toml.
    pub recipe: PathBuf,
    /// Backend to train and evaluate on.
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: Backend,
    /// Data file or directory; overrides the path in the recipe's [mnist] section.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory that holds one subdirectory per recipe and run.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Seed; overrides the recipe's `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of epochs; overrides `training.epochs`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Hide the progress bar and per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs a recipe end to end and returns the path of its result file.
pub fn run(args: &RunArgs) -> Result<PathBuf> {
    let started_at = SystemTime::now();
    let clock = Instant::now();

    // Everything that can reject the run happens before the run directory exists.
    let mut recipe = Recipe::load(&args.recipe)?;
    if let Some(seed) = args.seed {
        recipe.seed = seed;
    }
    if let Some(epochs) = args.epochs {
        recipe.training.epochs = epochs;
    }
    recipe.validate(&args.recipe)?;
    let device = create_device(args.backend)?;
    let mnist_data = if recipe.mnist.is_some() {
        Some(mnist_exits::load_data(&recipe, args.data.as_deref())?)
    } else {
        if args.data.is_some() {
            bail!(
                "--data was given but recipe {} has no [mnist] section that reads data",
                args.recipe.display()
            );
        }
        None
    };
    if let (Some(data), Some(mnist)) = (&args.data, recipe.mnist.as_mut()) {
        mnist.path = Some(data.clone());
    }

    let recipe_name = recipe_name(&args.recipe);
    let run_dir = create_run_dir(&args.results, &recipe_name, started_at, recipe.seed)?;
    let recipe_toml = toml::to_string_pretty(&recipe).context("failed to encode the recipe")?;
    write_atomic(&run_dir.join("recipe.toml"), recipe_toml.as_bytes())?;
    tracing::info!(run_dir = %run_dir.display(), backend = args.backend.name(), "run started");

    let mut progress = ProgressMonitor::new(args.quiet);
    let history_path = run_dir.join("history.jsonl");
    let mut monitor = HistoryMonitor::create(&history_path, &mut progress)?;
    let outcome = match &mnist_data {
        Some(data) => mnist_exits::train(&recipe, data, &device, &mut monitor),
        None => parity_act::train(&recipe, &device, &mut monitor),
    };

    let (status, outcome) = match outcome {
        Ok(outcome) => (RunStatus::Completed, outcome),
        Err(error) => (
            RunStatus::Failed {
                reason: error.to_string(),
            },
            TrainingOutcome {
                // The epochs that finished before the failure, as streamed to history.jsonl.
                history: std::mem::take(&mut monitor.records),
                evaluation: Default::default(),
                training_seconds: clock.elapsed().as_secs_f64(),
            },
        ),
    };
    drop(monitor);

    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        status: status.clone(),
        recipe_name,
        recipe_path: args.recipe.display().to_string(),
        recipe: serde_json::to_value(&recipe).context("failed to encode the recipe")?,
        haltlab_version: env!("CARGO_PKG_VERSION").to_owned(),
        burn_version: crate::BURN_VERSION.to_owned(),
        backend: args.backend.name().to_owned(),
        device: format!("{device:?}"),
        seed: recipe.seed,
        git_commit: git_commit(),
        started_at: format_time(started_at),
        wall_seconds: clock.elapsed().as_secs_f64(),
        training_seconds: outcome.training_seconds,
        history: outcome.history,
        evaluation: outcome.evaluation,
    };
    let result_path = run_dir.join("result.json");
    write_json_atomic(&result_path, &result)?;
    // The streamed file already holds these lines; rewriting it whole repairs it if an append
    // failed during training.
    write_history(&history_path, &result)?;

    print_summary(&result, &result_path);
    if let RunStatus::Failed { reason } = status {
        bail!(
            "run failed: {reason}; the result file {} records it",
            result_path.display()
        );
    }
    Ok(result_path)
}

/// The recipe's file stem, used as the name of its results subdirectory.
fn recipe_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recipe".to_owned())
}

/// Writes the training history as JSON Lines, one epoch per line.
fn write_history(path: &Path, result: &RunResult) -> Result<()> {
    let mut bytes = Vec::new();
    for record in &result.history {
        bytes.extend(history_line(record).context("failed to encode the history")?);
    }
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Commit of the git checkout in the working directory, if there is one.
fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!commit.is_empty()).then_some(commit)
}

fn print_summary(result: &RunResult, result_path: &Path) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n{} on {} (seed {})",
        result.recipe_name, result.backend, result.seed
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>10} {:>12} {:>10} {:>10}",
        "split", "samples", "accuracy", "mean steps", "max steps", "threshold"
    );
    for (split, evaluation) in &result.evaluation {
        let threshold = evaluation
            .threshold
            .map(|t| format!("{t:.3}"))
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>9.2}% {:>12.3} {:>10} {:>10}",
            split,
            evaluation.samples,
            evaluation.accuracy * 100.0,
            evaluation.mean_halting_step,
            evaluation.max_halting_step,
            threshold
        );
        if !evaluation.accuracy_per_exit.is_empty() {
            let per_exit: Vec<String> = evaluation
                .accuracy_per_exit
                .iter()
                .map(|accuracy| format!("{:.2}%", accuracy * 100.0))
                .collect();
            let _ = writeln!(out, "{:<14} accuracy per exit: {}", "", per_exit.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "wall time {:.1} s (training {:.1} s); result: {}",
        result.wall_seconds,
        result.training_seconds,
        result_path.display()
    );
}
