//! `haltlab bench`: times the training and inference workloads that the PyTorch reference in
//! `bench/` also runs, and compares the two.
//!
//! `bench act` and `bench exits` each write `haltlab-<workload>.json` into the output
//! directory, with a `spec` that the reference reads, so both sides run the same sizes.
//! `bench report` pairs those files with the reference's `pytorch-<workload>.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use haltlab_eval::bench::{
    BenchRecord, BenchReport, InferenceThroughput, TrainingThroughput, resident_memory_mib,
};
use haltlab_eval::results::write_atomic;
use haltlab_eval::write_json_atomic;
use haltlab_model::{ExitMlp, ExitMlpConfig, ExitStages};
use haltlab_training::bench::{time_exit_calls, time_parity_training, timed_form};
use haltlab_training::exit_analysis::{image_inputs, make_rule};
use haltlab_training::mnist_exits::{self, mlp_flops};
use haltlab_training::parity_act;
use haltlab_training::recipe::{Architecture, Cell, ExitRuleKind, GateTraining, HaltingMethod};
use haltlab_training::{Checkpointer, Recipe, RunContext, SilentMonitor};
use serde_json::json;

use crate::backend::{Backend, create_device};

/// Subcommands of `haltlab bench`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Time ACT training steps of a parity recipe (GRU cell, constant learning rate).
    Act(ActArgs),
    /// Train an early-exit MLP recipe briefly, then time hard exits against full depth.
    Exits(ExitArgs),
    /// Compare the haltlab and PyTorch records of a benchmark directory; writes bench.json.
    Report(ReportArgs),
}

/// Options shared by the workloads.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Directory for the benchmark records; created if missing.
    #[arg(long, default_value = "results/bench")]
    pub out: PathBuf,
    /// Backend to run on.
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: Backend,
    /// CPU threads for haltlab and for the reference (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Options of `haltlab bench act`.
#[derive(Debug, clap::Args)]
pub struct ActArgs {
    /// Parity recipe with method = "act" and a GRU cell, such as experiments/bench_act.toml.
    pub recipe: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Steps run before timing starts.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Steps timed.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
}

/// Options of `haltlab bench exits`.
#[derive(Debug, clap::Args)]
pub struct ExitArgs {
    /// Early-exit MLP recipe without gates, such as experiments/mnist_exits.toml.
    pub recipe: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Data file; overrides the path in the recipe's [mnist] section.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training epochs before timing; overrides `training.epochs`.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Confidence threshold of the hard exits (default: the recipe's `exits.threshold`).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Timed passes over the test split at each batch size.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// Options of `haltlab bench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Benchmark directory with haltlab-*.json and pytorch-*.json records.
    #[arg(default_value = "results/bench")]
    pub dir: PathBuf,
}

/// Calls of each batch size run before timing starts; the reference takes the same number.
const WARMUP_CALLS: usize = 20;

/// Batch sizes of the inference workload.
const BATCH_SIZES: [usize; 2] = [1, 256];

/// Steps at which the training workload reads resident memory, as fractions of the run.
const RSS_POINTS: [f64; 4] = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];

pub fn bench(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Act(args) => bench_act(args),
        BenchCommand::Exits(args) => bench_exits(args),
        BenchCommand::Report(args) => report(&args.dir),
    }
}

/// Returns the thread count of the benchmark: `--threads`, or all cores.
///
/// The fused ACT kernel uses this many threads. Burn's flex backend, as this workspace builds it
/// (without its `rayon` feature), runs on one thread whatever this count. The count reaches the
/// PyTorch reference through the record's spec.
fn thread_count(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => bail!("--threads 0 is invalid: pass at least 1"),
        Some(threads) => Ok(threads),
        None => Ok(std::thread::available_parallelism().map_or(1, |cores| cores.get())),
    }
}

fn prepare(common: &CommonArgs) -> Result<(Device, usize)> {
    if common.out.exists() && !common.out.is_dir() {
        bail!(
            "--out {} is a file; pass a directory for the benchmark records",
            common.out.display()
        );
    }
    let threads = thread_count(common.threads)?;
    parity_act::set_kernel_threads(threads);
    let device = create_device(common.backend)?;
    std::fs::create_dir_all(&common.out)
        .with_context(|| format!("failed to create {}", common.out.display()))?;
    Ok((device, threads))
}

fn bench_act(args: &ActArgs) -> Result<()> {
    if args.warmup == 0 {
        bail!("--warmup 0 is invalid: at least 1 warm-up step marks where timing starts");
    }
    if args.steps == 0 {
        bail!("--steps 0 is invalid: time at least 1 step");
    }
    let mut recipe = Recipe::load(&args.recipe)?;
    let spec = act_spec(&recipe, &args.recipe, args)?;
    recipe.training.epochs = 1;
    recipe.training.steps_per_epoch = Some(args.warmup + args.steps);
    recipe.validate(&args.recipe)?;
    let (device, threads) = prepare(&args.common)?;

    let total = (args.warmup + args.steps) as u64;
    let rss_steps: Vec<u64> = RSS_POINTS
        .iter()
        .map(|fraction| {
            (args.warmup as u64 + (fraction * args.steps as f64).round() as u64).min(total)
        })
        .collect();
    eprintln!(
        "timing {} ACT training steps on {} after {} warm-up steps",
        args.steps,
        args.common.backend.name(),
        args.warmup
    );
    let kernel = if parity_act::uses_fused_kernel(recipe.training.kernel, &device) {
        "fused"
    } else {
        "burn"
    };
    eprintln!("ACT steps run on the {kernel} kernel");
    let (_, throughput) = time_parity_training(&recipe, device, args.warmup, &rss_steps)?;
    let mut spec = spec;
    spec["threads"] = json!(threads);
    spec["rss_steps"] = json!(rss_steps);
    let record = BenchRecord {
        implementation: "haltlab".to_owned(),
        workload: "act".to_owned(),
        threads,
        backend: Some(args.common.backend.name().to_owned()),
        torch_version: None,
        kernel: Some(kernel.to_owned()),
        spec: Some(spec),
        result: throughput,
    };
    let path = args.common.out.join("haltlab-act.json");
    write_json_atomic(&path, &record)?;
    print_training(&record.result);
    println!("wrote {}", path.display());
    Ok(())
}

/// Returns the training workload's parameters, which the reference reads, or rejects a recipe
/// that the reference cannot reproduce.
fn act_spec(recipe: &Recipe, path: &Path, args: &ActArgs) -> Result<serde_json::Value> {
    let reject = |what: &str| {
        anyhow::anyhow!(
            "{}: {what}; the PyTorch reference implements ACT with a GRU cell and a constant learning rate (see experiments/bench_act.toml)",
            path.display()
        )
    };
    let parity = recipe
        .parity
        .as_ref()
        .ok_or_else(|| reject("no [parity] section"))?;
    let ponder = recipe
        .ponder
        .as_ref()
        .ok_or_else(|| reject("no [ponder] section"))?;
    let Some(HaltingMethod::Act {
        epsilon,
        max_steps,
        ponder_weight,
    }) = recipe.halting.clone()
    else {
        return Err(reject("halting.method is not \"act\""));
    };
    if ponder.cell != Cell::Gru {
        return Err(reject("ponder.cell is not \"gru\""));
    }
    if recipe.training.learning_rate_decays() {
        return Err(reject("training.learning_rate_decay is set"));
    }
    let range = parity.train_range();
    Ok(json!({
        "seed": recipe.seed,
        "length": parity.length,
        "nonzeros": [range.min, range.max],
        "hidden_size": ponder.hidden_size,
        "halting_bias": ponder.halting_bias,
        "batch_size": recipe.training.batch_size,
        "max_steps": max_steps,
        "epsilon": epsilon,
        "ponder_weight": ponder_weight,
        "learning_rate": recipe.training.learning_rate,
        "optimizer": "adam",
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
    }))
}

fn print_training(throughput: &TrainingThroughput) {
    println!(
        "{} steps in {:.2} s: {:.0} samples/s, median {:.2} ms per step, mean halting step {:.2}",
        throughput.timed_steps,
        throughput.seconds,
        throughput.samples_per_second,
        throughput.median_step_ms,
        throughput.mean_halting_step
    );
    for sample in &throughput.rss {
        println!(
            "resident memory after step {}: {:.1} MiB",
            sample.step, sample.rss_mib
        );
    }
}

fn bench_exits(args: &ExitArgs) -> Result<()> {
    if args.rounds == 0 {
        bail!("--rounds 0 is invalid: time at least 1 pass over the test split");
    }
    if args.epochs == 0 {
        bail!(
            "--epochs 0 is invalid: train at least 1 epoch, or the exits have nothing to learn from"
        );
    }
    if let Some(threshold) = args.threshold
        && !(0.0..=1.0).contains(&threshold)
    {
        bail!("--threshold {threshold} is invalid: a confidence threshold lies in [0, 1]");
    }
    let mut recipe = Recipe::load(&args.recipe)?;
    recipe.training.epochs = args.epochs;
    {
        let reject = |what: &str| {
            anyhow::anyhow!(
                "{}: {what}; the exit benchmark times an MLP without gates",
                args.recipe.display()
            )
        };
        let exits = recipe
            .exits
            .as_mut()
            .ok_or_else(|| reject("no [exits] section"))?;
        if exits.architecture != Architecture::Mlp {
            return Err(reject("exits.architecture is not \"mlp\""));
        }
        if exits.gate != GateTraining::None {
            return Err(reject("the exits have gates"));
        }
        if exits.rule != ExitRuleKind::Confidence {
            return Err(reject(
                "exits.rule is not \"confidence\", the rule the reference implements",
            ));
        }
        // The benchmark does its own timing and needs no shift report.
        exits.latency_samples = 0;
        if let Some(threshold) = args.threshold {
            exits.threshold = threshold;
        }
    }
    if let Some(mnist) = recipe.mnist.as_mut() {
        mnist.uci_digits_path = None;
        if let Some(data) = &args.data {
            mnist.path = Some(data.clone());
        }
    }
    recipe.validate(&args.recipe)?;
    let exits = recipe.exits.clone().context("validated above")?;
    let (device, threads) = prepare(&args.common)?;
    let data = mnist_exits::load_data(&recipe, None)?;

    eprintln!(
        "training {} for {} epochs",
        args.recipe.display(),
        args.epochs
    );
    let model_dir = args.common.out.join("exit-model");
    mnist_exits::train(
        &recipe,
        &data,
        RunContext {
            device: device.clone(),
            monitor: &mut SilentMonitor,
            checkpoints: Some(Checkpointer::new(&model_dir, None)),
            resume: false,
        },
    )?;
    let input_size = data.train.image_size();
    let classes = data.train.classes;
    let template =
        ExitMlpConfig::new(input_size, exits.hidden_sizes.clone(), classes).init(&device);
    let model: ExitMlp = Checkpointer::new(&model_dir, None)
        .load_model(template)?
        .context("training wrote no checkpoint")?;

    let spec_files = export_for_reference(&model, &data.test.pixels, &args.common.out)?;
    let (layer_flops, head_flops) = mlp_flops(input_size, &exits.hidden_sizes, classes);
    let test = &data.test;
    // Exits and the full-depth baseline run in the same form, the inference form on flex.
    let form = timed_form(&model, &device);
    let timed: &dyn ExitStages = match &form {
        Some(form) => form.as_ref(),
        None => &model,
    };
    let mut rule = make_rule(exits.rule.name(), exits.threshold);
    let mut batches_report = std::collections::BTreeMap::new();
    let mut exit_layer = Vec::new();
    for batch_size in BATCH_SIZES {
        let indices: Vec<usize> = (0..test.len()).collect();
        let batches: Vec<Tensor<2>> = indices
            .chunks(batch_size)
            .filter(|chunk| chunk.len() == batch_size)
            .map(|chunk| image_inputs(test, chunk, &device))
            .collect();
        if batches.is_empty() {
            bail!(
                "the test split has {} images, fewer than batch size {batch_size}",
                test.len()
            );
        }
        eprintln!(
            "timing batch size {batch_size}: {} calls per round",
            batches.len()
        );
        let warmup_calls = batches.len().min(WARMUP_CALLS);
        let times = time_exit_calls(timed, &batches, rule.as_mut(), args.rounds, warmup_calls);
        if batch_size == 1 {
            exit_layer = times.exit_layer.clone();
        }
        batches_report.insert(
            batch_size.to_string(),
            times.summary(batch_size, &layer_flops, &head_flops),
        );
    }

    let spec = json!({
        "threads": threads,
        "threshold": exits.threshold,
        "rule": exits.rule.name(),
        "batch_sizes": BATCH_SIZES,
        "rounds": args.rounds,
        "warmup_calls": WARMUP_CALLS,
        "samples": test.len(),
        "features": input_size,
        "weights_file": spec_files.weights,
        "inputs_file": spec_files.inputs,
        "tensors": spec_files.tensors,
        "exit_layer": exit_layer,
    });
    let record = BenchRecord {
        implementation: "haltlab".to_owned(),
        workload: "exits".to_owned(),
        threads,
        backend: Some(args.common.backend.name().to_owned()),
        torch_version: None,
        kernel: None,
        spec: Some(spec),
        result: InferenceThroughput {
            batches: batches_report,
            peak_rss_mib: resident_memory_mib().map(|(_, peak)| peak),
        },
    };
    let path = args.common.out.join("haltlab-exits.json");
    write_json_atomic(&path, &record)?;
    for (batch_size, timing) in &record.result.batches {
        println!(
            "batch {batch_size}: exits {:.0} samples/s, full depth {:.0} samples/s, mean exit head {:.2}, FLOP fraction {:.3}, time ÷ (full time × FLOP fraction) {}",
            timing.exit_samples_per_second,
            timing.full_samples_per_second,
            timing.mean_exit_layer,
            timing.flop_fraction.unwrap_or(0.0),
            timing
                .time_to_flop_ratio()
                .map_or("-".to_owned(), |ratio| format!("{ratio:.3}"))
        );
    }
    println!("wrote {}", path.display());
    Ok(())
}

/// Files that the reference loads: the weights and the test images as little-endian f32.
struct ExportedFiles {
    weights: String,
    inputs: String,
    tensors: Vec<serde_json::Value>,
}

fn export_for_reference(model: &ExitMlp, pixels: &[f32], out: &Path) -> Result<ExportedFiles> {
    let mut bytes = Vec::new();
    let mut tensors = Vec::new();
    let mut offset = 0usize;
    for array in model.linear_parameters() {
        tensors.push(json!({"name": array.name, "shape": array.shape, "offset": offset}));
        offset += array.values.len();
        bytes.extend(array.values.iter().flat_map(|value| value.to_le_bytes()));
    }
    let weights = "exit-mlp-weights.f32";
    write_atomic(&out.join(weights), &bytes)?;
    let inputs = "exit-mlp-test-inputs.f32";
    let pixel_bytes: Vec<u8> = pixels
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    write_atomic(&out.join(inputs), &pixel_bytes)?;
    Ok(ExportedFiles {
        weights: weights.to_owned(),
        inputs: inputs.to_owned(),
        tensors,
    })
}

fn report(dir: &Path) -> Result<()> {
    let report = BenchReport::from_directory(dir)?;
    print!("{}", report.to_text());
    let path = dir.join("bench.json");
    write_json_atomic(&path, &report)?;
    println!("wrote {}", path.display());
    Ok(())
}
