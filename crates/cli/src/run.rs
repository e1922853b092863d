//! `haltlab run`: train and evaluate one recipe, and write its result directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use haltlab_eval::results::{format_time, write_atomic};
use haltlab_eval::{
    EpochRecord, RunResult, RunStatus, SCHEMA_VERSION, create_run_dir, write_json_atomic,
};
use haltlab_training::recipe::HaltingMethod;
use haltlab_training::{
    Checkpointer, Recipe, RunContext, TrainingError, TrainingOutcome, mnist_exits, parity_act,
    pondering,
};

use crate::backend::{Backend, create_device};
use crate::progress::ProgressMonitor;

/// Options of `haltlab run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Recipe file (TOML), such as experiments/parity_act.toml.
    #[arg(required_unless_present = "resume")]
    pub recipe: Option<PathBuf>,
    /// Continue the interrupted run in this directory from its checkpoint, with the recipe
    /// saved there.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["recipe", "seed", "epochs", "data"])]
    pub resume: Option<PathBuf>,
    /// Backend to train and evaluate on.
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: Backend,
    /// Data file or directory; overrides the path in the recipe's [mnist] section.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory with one subdirectory per recipe and run.
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

/// Outcome of a run, which sets the process exit code.
pub enum RunEnd {
    Completed,
    Interrupted,
}

/// A run's recipe, where it came from and where it writes.
struct Plan {
    recipe: Recipe,
    recipe_path: PathBuf,
    recipe_name: String,
    /// Run directory: new for a fresh run, the given one when resuming.
    run_dir: Option<PathBuf>,
}

/// Loads and checks the recipe of a fresh run (with command-line overrides) or of a resumed
/// one. Nothing is written here.
fn plan(args: &RunArgs) -> Result<Plan> {
    if let Some(run_dir) = &args.resume {
        let recipe_path = run_dir.join("recipe.toml");
        if !recipe_path.is_file() {
            bail!(
                "cannot resume {}: it has no recipe.toml, so it is not a haltlab run directory",
                run_dir.display()
            );
        }
        let recipe = Recipe::load(&recipe_path)?;
        let recipe_name = run_dir
            .parent()
            .and_then(|parent| parent.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recipe".to_owned());
        return Ok(Plan {
            recipe,
            recipe_path,
            recipe_name,
            run_dir: Some(run_dir.clone()),
        });
    }
    let recipe_path = args
        .recipe
        .clone()
        .context("a recipe file or --resume RUN_DIR is required")?;
    let mut recipe = Recipe::load(&recipe_path)?;
    if let Some(seed) = args.seed {
        recipe.seed = seed;
    }
    if let Some(epochs) = args.epochs {
        recipe.training.epochs = epochs;
    }
    recipe.validate(&recipe_path)?;
    if let (Some(data), Some(mnist)) = (&args.data, recipe.mnist.as_mut()) {
        mnist.path = Some(data.clone());
    } else if args.data.is_some() {
        bail!(
            "--data was given but recipe {} has no [mnist] section that reads data",
            recipe_path.display()
        );
    }
    Ok(Plan {
        recipe_name: recipe_name(&recipe_path),
        recipe,
        recipe_path,
        run_dir: None,
    })
}

/// Runs a recipe end to end, or resumes one, and writes its result file; returns how the run
/// ended and the path of `result.json`.
pub fn run(args: &RunArgs) -> Result<(RunEnd, PathBuf)> {
    let started_at = SystemTime::now();
    let clock = Instant::now();

    // Everything that can reject the run happens before the run directory exists.
    let plan = plan(args)?;
    let recipe = &plan.recipe;
    let device = create_device(args.backend)?;
    let mnist_data = match recipe.mnist {
        Some(_) => Some(mnist_exits::load_data(recipe, None)?),
        None => None,
    };

    let resume = plan.run_dir.is_some();
    let run_dir = match &plan.run_dir {
        Some(run_dir) => run_dir.clone(),
        None => {
            let run_dir =
                create_run_dir(&args.results, &plan.recipe_name, started_at, recipe.seed)?;
            let recipe_toml =
                toml::to_string_pretty(recipe).context("failed to encode the recipe")?;
            write_atomic(&run_dir.join("recipe.toml"), recipe_toml.as_bytes())?;
            run_dir
        }
    };
    tracing::info!(run_dir = %run_dir.display(), backend = args.backend.name(), resume, "run started");

    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = Arc::clone(&stop);
    if let Err(error) = ctrlc::set_handler(move || {
        handler_flag.store(true, Ordering::Relaxed);
        eprintln!("\ninterrupt received: saving a checkpoint after this step");
    }) {
        tracing::warn!(%error, "failed to install the Ctrl-C handler; Ctrl-C will not save a checkpoint");
    }
    let history_path = run_dir.join("history.jsonl");
    let earlier_history = if resume {
        read_history(&history_path)
    } else {
        Vec::new()
    };
    let mut monitor = ProgressMonitor::new(args.quiet, history_path.clone(), earlier_history, stop);
    let context = RunContext {
        device: device.clone(),
        monitor: &mut monitor,
        checkpoints: Some(Checkpointer::new(
            &run_dir,
            recipe.training.checkpoint_every,
        )),
        resume,
    };
    let outcome = match &mnist_data {
        Some(data) => mnist_exits::train(recipe, data, context),
        None => pondering::train(recipe, context),
    };

    let (status, outcome) = match outcome {
        Ok(outcome) => (RunStatus::Completed, outcome),
        Err(error) => {
            let reason = error.to_string();
            let status = match error {
                TrainingError::Interrupted { .. } => RunStatus::Interrupted { reason },
                _ => RunStatus::Failed { reason },
            };
            let partial = TrainingOutcome {
                history: monitor.history().to_vec(),
                evaluation: Default::default(),
                training_seconds: clock.elapsed().as_secs_f64(),
            };
            (status, partial)
        }
    };

    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        status: status.clone(),
        recipe_name: plan.recipe_name.clone(),
        recipe_path: plan.recipe_path.display().to_string(),
        recipe: serde_json::to_value(recipe).context("failed to encode the recipe")?,
        haltlab_version: env!("CARGO_PKG_VERSION").to_owned(),
        burn_version: crate::BURN_VERSION.to_owned(),
        backend: args.backend.name().to_owned(),
        device: format!("{device:?}"),
        act_kernel: act_kernel(recipe, &device),
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
    // Rewrite the history whole, so a line cut short by an earlier crash does not remain.
    write_history(&history_path, &result)?;

    print_summary(&result, &result_path);
    match status {
        RunStatus::Completed => Ok((RunEnd::Completed, result_path)),
        RunStatus::Interrupted { reason } => {
            eprintln!("{reason}; run directory: {}", run_dir.display());
            Ok((RunEnd::Interrupted, result_path))
        }
        RunStatus::Failed { reason } => {
            bail!(
                "run failed: {reason}; the result file {} records it",
                result_path.display()
            )
        }
    }
}

/// Returns the ACT training step that the recipe runs on `device`, or `None` for other methods.
fn act_kernel(recipe: &Recipe, device: &burn::tensor::Device) -> Option<String> {
    let act = matches!(recipe.halting, Some(HaltingMethod::Act { .. }));
    act.then(|| {
        if parity_act::uses_fused_kernel(recipe.training.kernel, device) {
            "fused".to_owned()
        } else {
            "burn".to_owned()
        }
    })
}

/// Reads the epoch records of an earlier part of a resumed run, skipping an incomplete last
/// line.
fn read_history(path: &Path) -> Vec<EpochRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
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
        serde_json::to_writer(&mut bytes, record).context("failed to encode the history")?;
        bytes.push(b'\n');
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
