//! `haltlab compare`: train several parity recipes over several seeds, on interpolation and on
//! extrapolation, and write a comparison table in Markdown and JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use haltlab_eval::results::{format_time, write_atomic};
use haltlab_eval::{Evaluation, FailureKind, write_json_atomic};
use haltlab_training::recipe::HaltingMethod;
use haltlab_training::{Recipe, RunContext, SilentMonitor, TrainingOutcome, parity_act, pondering};
use serde::{Deserialize, Serialize};

use burn::tensor::Device;

use crate::backend::{Backend, create_device};

/// Validation accuracy at which a run counts as trained.
const TARGET_ACCURACY: f64 = 0.99;

/// Options of `haltlab compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Comparison set (TOML) listing recipes, seeds and size overrides, such as
    /// experiments/parity_compare.toml.
    pub set: PathBuf,
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: Backend,
    /// Directory under which `<set name>/<start time>/` receives the table.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Number of seeds; overrides the set's `seeds` with 1..=N.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Number of epochs; overrides the set's `epochs` and every method's own.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Runs trained at the same time, each on one thread; defaults to the number of CPU
    /// cores. Results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// A comparison set file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSet {
    /// Methods in table order.
    pub methods: Vec<MethodEntry>,
    pub seeds: Vec<u64>,
    /// Overrides of `training.epochs`, `parity.length` and `halting.max_steps` in every recipe.
    pub epochs: Option<usize>,
    pub length: Option<usize>,
    pub max_steps: Option<usize>,
    /// Overrides of `parity.eval_samples` and `parity.validation_samples`.
    pub eval_samples: Option<usize>,
    pub validation_samples: Option<usize>,
}

/// A method of a comparison set: its name in the table and its recipe, relative to the set
/// file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodEntry {
    pub name: String,
    pub recipe: PathBuf,
    /// Epochs of this method; overrides the set's `epochs`.
    pub epochs: Option<usize>,
}

/// One trained run of the comparison.
#[derive(Debug, Clone, Serialize)]
struct RunSummary {
    seed: u64,
    accuracy: f64,
    /// Expected steps for soft methods, the hard run's mean steps otherwise.
    halting_steps: f64,
    /// Optimiser steps until validation accuracy first reached 99%.
    steps_to_target: Option<u64>,
    flags: Vec<FailureKind>,
    halting_by_nonzeros: BTreeMap<usize, f64>,
    /// Optimiser steps the run trained for.
    training_steps: u64,
    training_seconds: f64,
}

/// Mean and sample standard deviation; the deviation is 0 for a single value.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
struct MeanStd {
    mean: f64,
    std: f64,
    count: usize,
}

fn mean_std(values: &[f64]) -> Option<MeanStd> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some(MeanStd {
        mean,
        std: variance.sqrt(),
        count: values.len(),
    })
}

/// A row of the table.
#[derive(Debug, Clone, Serialize)]
struct MethodRow {
    method: String,
    soft: bool,
    accuracy: Option<MeanStd>,
    halting_steps: Option<MeanStd>,
    /// Over the seeds that reached 99%; `reached` says how many did.
    steps_to_target: Option<MeanStd>,
    reached: usize,
    extrapolation_accuracy: Option<MeanStd>,
    extrapolation_steps: Option<MeanStd>,
    /// Failure kind and the number of runs (either setting) that showed it.
    flags: BTreeMap<String, usize>,
    /// Mean halting steps by number of non-zeros, over seeds and both settings.
    halting_by_nonzeros: BTreeMap<usize, f64>,
    interpolation: Vec<RunSummary>,
    extrapolation: Vec<RunSummary>,
}

#[derive(Debug, Serialize)]
struct Comparison {
    set: String,
    started_at: String,
    wall_seconds: f64,
    backend: String,
    device: String,
    machine: String,
    seeds: Vec<u64>,
    rows: Vec<MethodRow>,
}

/// Runs the comparison and returns the path of the Markdown table.
pub fn compare(args: &CompareArgs) -> Result<PathBuf> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let text = std::fs::read_to_string(&args.set)
        .with_context(|| format!("failed to read comparison set {}", args.set.display()))?;
    let mut set: CompareSet = toml::from_str(&text)
        .with_context(|| format!("invalid comparison set {}", args.set.display()))?;
    if let Some(seeds) = args.seeds {
        set.seeds = (1..=seeds).collect();
    }
    if set.seeds.is_empty() || set.methods.is_empty() {
        bail!(
            "comparison set {} needs at least one method and one seed",
            args.set.display()
        );
    }
    let mut distinct = set.seeds.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != set.seeds.len() {
        bail!(
            "comparison set {} lists a seed twice ({:?}); give each seed once, as it would \
             otherwise count twice in mean ± std",
            args.set.display(),
            set.seeds
        );
    }
    if args.jobs == Some(0) {
        bail!("--jobs 0 trains nothing; give at least 1, or leave it out to use every core");
    }
    let base = args.set.parent().unwrap_or(Path::new("."));

    // Load and check every recipe of both settings before training anything.
    let mut plans = Vec::new();
    for entry in &set.methods {
        let path = base.join(&entry.recipe);
        let recipe = Recipe::load(&path)?;
        let epochs = args.epochs.or(entry.epochs).or(set.epochs);
        let interpolation = with_overrides(&recipe, &set, epochs, false);
        let extrapolation = with_overrides(&recipe, &set, epochs, true);
        for recipe in [&interpolation, &extrapolation] {
            recipe.validate(&path).with_context(|| {
                format!(
                    "method {} of comparison set {} is invalid after the set's overrides \
                     (epochs, length, max_steps) and --epochs",
                    entry.name,
                    args.set.display()
                )
            })?;
        }
        plans.push((entry.name.clone(), interpolation, extrapolation));
    }
    let device = create_device(args.backend)?;
    let set_name = args.set.file_stem().map_or_else(
        || "compare".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let stamp: String = format_time(started)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    let dir = args.results.join(set_name).join(stamp);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;
    let table_path = dir.join("comparison.md");
    let comparison = Comparison {
        set: args.set.display().to_string(),
        started_at: format_time(started),
        wall_seconds: 0.0,
        backend: args.backend.name().to_owned(),
        device: format!("{device:?}"),
        machine: machine_description(),
        seeds: set.seeds.clone(),
        rows: Vec::new(),
    };

    // Every (method, seed, setting) run is a task, and `jobs` threads take tasks in table order.
    let tasks: Vec<Task> = plans
        .iter()
        .enumerate()
        .flat_map(|(index, (_, interpolation, extrapolation))| {
            set.seeds.iter().flat_map(move |&seed| {
                [(false, interpolation), (true, extrapolation)]
                    .into_iter()
                    .map(move |(extrapolate, recipe)| {
                        let mut recipe = recipe.clone();
                        recipe.seed = seed;
                        Task {
                            method: index,
                            extrapolate,
                            seed,
                            recipe,
                        }
                    })
            })
        })
        .collect();
    let soft: Vec<bool> = plans
        .iter()
        .map(|(_, interpolation, _)| {
            matches!(
                interpolation.halting,
                Some(HaltingMethod::Act { .. } | HaltingMethod::Pondernet { .. })
            )
        })
        .collect();
    let names: Vec<String> = plans.iter().map(|(name, _, _)| name.clone()).collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, tasks.len());
    // Parallel runs share the cores, so each run's fused ACT kernel gets its share of them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    parity_act::set_kernel_threads((cores / jobs).max(1));
    let runs_per_method = 2 * set.seeds.len();
    let state = Mutex::new(Finished {
        runs: vec![Vec::new(); plans.len()],
        written: 0,
        comparison,
        error: None,
    });
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(task) = tasks.get(index) else {
                        break;
                    };
                    if state.lock().expect("no worker panicked").error.is_some() {
                        break;
                    }
                    let name = &names[task.method];
                    // A panic in one run becomes that run's error, so the other threads stop
                    // taking tasks and the rows finished so far stay written.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_task(task, name, soft[task.method], &device)
                    }))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("unknown panic");
                        Err(anyhow::anyhow!(
                            "{name} panicked with seed {}: {message}",
                            task.seed
                        ))
                    });
                    let mut state = state.lock().expect("no worker panicked");
                    match result {
                        Ok(summary) => {
                            state.runs[task.method].push((task.extrapolate, summary));
                            // Rows are written in table order as soon as a method's runs are
                            // all done, so an interrupted comparison keeps the finished rows.
                            if let Err(error) = state.write_finished_rows(
                                &names,
                                &soft,
                                runs_per_method,
                                &dir,
                                &table_path,
                                &clock,
                            ) {
                                state.error.get_or_insert(error);
                            }
                        }
                        Err(error) => {
                            state.error.get_or_insert(error);
                        }
                    }
                }
            });
        }
    });
    let state = state.into_inner().expect("no worker panicked");
    if let Some(error) = state.error {
        return Err(error);
    }
    let comparison = state.comparison;
    let markdown = render_markdown(&comparison);
    println!("{markdown}");
    println!("table: {}", table_path.display());
    Ok(table_path)
}

/// One training run of a comparison.
struct Task {
    method: usize,
    extrapolate: bool,
    seed: u64,
    recipe: Recipe,
}

/// Results shared by the worker threads.
struct Finished {
    /// Per method: (extrapolation setting, summary) of each finished run.
    runs: Vec<Vec<(bool, RunSummary)>>,
    /// Number of methods whose rows are in `comparison`.
    written: usize,
    comparison: Comparison,
    error: Option<anyhow::Error>,
}

impl Finished {
    /// Adds the rows of the next methods in table order whose runs have all finished, and
    /// rewrites the table files when it added any.
    fn write_finished_rows(
        &mut self,
        names: &[String],
        soft: &[bool],
        runs_per_method: usize,
        dir: &Path,
        table_path: &Path,
        clock: &Instant,
    ) -> Result<()> {
        let before = self.written;
        while self.written < names.len() && self.runs[self.written].len() == runs_per_method {
            let method = self.written;
            let mut runs = std::mem::take(&mut self.runs[method]);
            runs.sort_by_key(|(extrapolate, summary)| (*extrapolate, summary.seed));
            let (extrapolation, interpolation): (Vec<_>, Vec<_>) =
                runs.into_iter().partition(|(extrapolate, _)| *extrapolate);
            self.comparison.rows.push(method_row(
                &names[method],
                soft[method],
                interpolation.into_iter().map(|(_, run)| run).collect(),
                extrapolation.into_iter().map(|(_, run)| run).collect(),
            ));
            self.written += 1;
        }
        if self.written > before {
            self.comparison.wall_seconds = clock.elapsed().as_secs_f64();
            write_json_atomic(&dir.join("comparison.json"), &self.comparison)?;
            write_atomic(table_path, render_markdown(&self.comparison).as_bytes())?;
        }
        Ok(())
    }
}

/// Trains one run and prints a line about it.
fn run_task(task: &Task, method: &str, soft: bool, device: &Device) -> Result<RunSummary> {
    let label = if task.extrapolate {
        "extrapolation"
    } else {
        "interpolation"
    };
    let seed = task.seed;
    let run_clock = Instant::now();
    let context = RunContext {
        device: device.clone(),
        monitor: &mut SilentMonitor,
        checkpoints: None,
        resume: false,
    };
    let outcome = pondering::train(&task.recipe, context)
        .with_context(|| format!("{method} failed on {label} with seed {seed}"))?;
    let summary = summarise_run(seed, &outcome, soft)?;
    eprintln!(
        "{method} seed {seed} {label}: accuracy {:.2}%, steps {:.2}, {:.0} s",
        summary.accuracy * 100.0,
        summary.halting_steps,
        run_clock.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// The recipe with the set's overrides and `epochs`; `extrapolation` trains on 1..=n/2
/// non-zeros and tests
/// on n/2+1..=n, the interpolation setting trains and tests on 1..=n.
fn with_overrides(
    recipe: &Recipe,
    set: &CompareSet,
    epochs: Option<usize>,
    extrapolation: bool,
) -> Recipe {
    let mut recipe = recipe.clone();
    if let Some(epochs) = epochs {
        recipe.training.epochs = epochs;
    }
    if let Some(parity) = recipe.parity.as_mut() {
        if let Some(length) = set.length {
            parity.length = length;
        }
        if let Some(samples) = set.eval_samples {
            parity.eval_samples = samples;
        }
        if let Some(samples) = set.validation_samples {
            parity.validation_samples = samples;
        }
        let n = parity.length;
        if extrapolation {
            parity.train_nonzeros = [1, (n / 2).max(1)];
            parity.eval_nonzeros = [(n / 2 + 1).min(n), n];
        } else {
            parity.train_nonzeros = [1, n];
            parity.eval_nonzeros = [1, n];
        }
    }
    if let (Some(steps), Some(halting)) = (set.max_steps, recipe.halting.as_mut()) {
        match halting {
            HaltingMethod::Act { max_steps, .. }
            | HaltingMethod::Pondernet { max_steps, .. }
            | HaltingMethod::StraightThrough { max_steps, .. }
            | HaltingMethod::Gumbel { max_steps, .. }
            | HaltingMethod::Reinforce { max_steps, .. } => *max_steps = steps,
        }
    }
    recipe
}

fn summarise_run(seed: u64, outcome: &TrainingOutcome, soft: bool) -> Result<RunSummary> {
    let test: &Evaluation = outcome
        .evaluation
        .get("test")
        .context("the run returned no test evaluation")?;
    let halting_steps = if soft {
        test.expected_steps.unwrap_or(test.mean_halting_step)
    } else {
        test.mean_halting_step
    };
    let steps_to_target = outcome
        .history
        .iter()
        .find(|record| record.validation_accuracy.unwrap_or(0.0) >= TARGET_ACCURACY)
        .map(|record| record.step);
    Ok(RunSummary {
        seed,
        accuracy: test.accuracy,
        halting_steps,
        steps_to_target,
        flags: test.flags.iter().map(|flag| flag.kind).collect(),
        halting_by_nonzeros: test.halting_step_by_difficulty.clone(),
        training_steps: outcome.history.last().map_or(0, |record| record.step),
        training_seconds: outcome.training_seconds,
    })
}

fn method_row(
    method: &str,
    soft: bool,
    interpolation: Vec<RunSummary>,
    extrapolation: Vec<RunSummary>,
) -> MethodRow {
    let collect = |runs: &[RunSummary], value: fn(&RunSummary) -> Option<f64>| {
        mean_std(&runs.iter().filter_map(value).collect::<Vec<_>>())
    };
    let mut flags = BTreeMap::new();
    let mut by_nonzeros: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for run in interpolation.iter().chain(&extrapolation) {
        for kind in &run.flags {
            let name = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{kind:?}"));
            *flags.entry(name).or_insert(0) += 1;
        }
        for (&k, &steps) in &run.halting_by_nonzeros {
            let entry = by_nonzeros.entry(k).or_default();
            entry.0 += steps;
            entry.1 += 1;
        }
    }
    MethodRow {
        method: method.to_owned(),
        soft,
        accuracy: collect(&interpolation, |r| Some(r.accuracy)),
        halting_steps: collect(&interpolation, |r| Some(r.halting_steps)),
        steps_to_target: collect(&interpolation, |r| r.steps_to_target.map(|s| s as f64)),
        reached: interpolation
            .iter()
            .filter(|r| r.steps_to_target.is_some())
            .count(),
        extrapolation_accuracy: collect(&extrapolation, |r| Some(r.accuracy)),
        extrapolation_steps: collect(&extrapolation, |r| Some(r.halting_steps)),
        flags,
        halting_by_nonzeros: by_nonzeros
            .into_iter()
            .map(|(k, (sum, count))| (k, sum / count as f64))
            .collect(),
        interpolation,
        extrapolation,
    }
}

fn format_mean_std(value: Option<MeanStd>, scale: f64, decimals: usize) -> String {
    value.map_or_else(
        || "–".to_owned(),
        |v| {
            format!(
                "{:.*} ± {:.*}",
                decimals,
                v.mean * scale,
                decimals,
                v.std * scale
            )
        },
    )
}

fn render_markdown(comparison: &Comparison) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Parity comparison over seeds {:?}, backend {} on {}; wall time {:.0} s.\n\n",
        comparison.seeds, comparison.backend, comparison.machine, comparison.wall_seconds
    ));
    out.push_str("| method | accuracy (%) | halting steps | steps to 99% (reached) | extrapolation accuracy (%) | extrapolation steps | failure flags |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for row in &comparison.rows {
        let flags = if row.flags.is_empty() {
            "none".to_owned()
        } else {
            row.flags
                .iter()
                .map(|(kind, count)| format!("{kind} ({count})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} {} | {} ({}/{}) | {} | {} | {} |\n",
            row.method,
            format_mean_std(row.accuracy, 100.0, 2),
            format_mean_std(row.halting_steps, 1.0, 2),
            if row.soft { "(expected)" } else { "(actual)" },
            format_mean_std(row.steps_to_target, 1.0, 0),
            row.reached,
            row.interpolation.len(),
            format_mean_std(row.extrapolation_accuracy, 100.0, 2),
            format_mean_std(row.extrapolation_steps, 1.0, 2),
            flags
        ));
    }
    out.push_str(
        "\nMean halting steps by number of non-zero entries (hard run; both settings):\n\n",
    );
    let columns: Vec<usize> = comparison
        .rows
        .iter()
        .flat_map(|row| row.halting_by_nonzeros.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    out.push_str("| method |");
    for k in &columns {
        out.push_str(&format!(" {k} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for row in &comparison.rows {
        out.push_str(&format!("| {} |", row.method));
        for k in &columns {
            match row.halting_by_nonzeros.get(k) {
                Some(steps) => out.push_str(&format!(" {steps:.2} |")),
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

/// CPU model and core count from /proc/cpuinfo, where readable.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{model}, {cores} cores")
}

#[cfg(test)]
mod tests {
    use super::*;

    // [1, 2, 3]: mean 2, sample variance ((1 + 0 + 1) / 2) = 1.
    #[test]
    fn mean_std_by_hand() {
        let value = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(value.mean, 2.0);
        assert_eq!(value.std, 1.0);
        assert_eq!(mean_std(&[5.0]).unwrap().std, 0.0);
        assert!(mean_std(&[]).is_none());
    }

    // Both shipped sets parse, list the five methods, and every recipe passes validation with
    // the overrides; extrapolation trains on 1..=n/2 and tests on n/2+1..=n.
    #[test]
    fn shipped_sets_load_and_split() {
        // Read at run time: a test binary reused from a shared build cache keeps the
        // compile-time path of the checkout that built it.
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let experiments = Path::new(&manifest).join("../../experiments");
        for (file, length) in [("parity_compare.toml", 8), ("parity_compare_full.toml", 64)] {
            let path = experiments.join(file);
            let set: CompareSet = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(set.methods.len(), 5, "{file}");
            assert!(set.seeds.len() >= 3, "{file}");
            for entry in &set.methods {
                let recipe_path = experiments.join(&entry.recipe);
                let recipe = Recipe::load(&recipe_path).unwrap();
                let extrapolation = with_overrides(&recipe, &set, set.epochs, true);
                extrapolation.validate(&recipe_path).unwrap();
                let parity = extrapolation.parity.as_ref().unwrap();
                assert_eq!(parity.length, length);
                assert_eq!(parity.train_nonzeros, [1, length / 2]);
                assert_eq!(parity.eval_nonzeros, [length / 2 + 1, length]);
                let interpolation = with_overrides(&recipe, &set, set.epochs, false);
                let parity = interpolation.parity.as_ref().unwrap();
                assert_eq!(parity.train_nonzeros, [1, length]);
                assert_eq!(parity.eval_nonzeros, [1, length]);
            }
        }
    }
}
