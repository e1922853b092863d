//! Training a ponder network with ACT on the parity task.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_data::parity::{ParityBatch, ParityStream};
use haltlab_eval::{EpochRecord, Evaluation, Histogram};
use haltlab_model::ponder_cpu::{
    ActSettings, ActWorkspace, HostParameters, act_train_step, gradients_params,
};
use haltlab_model::{CellKind, PonderConfig, PonderNetwork, draw_parameters};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_or_stop, restore};
use crate::guard::{check_finite, check_finite_gradients};
use crate::loss::cross_entropy_per_sample;
use crate::recipe::{Cell, HaltingMethod, Kernel, ParityTask, PonderModel, Recipe, Training};
use crate::{RunContext, TrainingError, TrainingOutcome};

/// Seed offsets that keep the validation and evaluation streams apart from the training stream
/// of the same recipe seed.
pub(crate) const VALIDATION_STREAM: u64 = 0x5641_4c49_4441_5445;
pub(crate) const EVALUATION_STREAM: u64 = 0x4556_414c_5541_5445;

/// Batch size of evaluation passes; it changes speed, not results.
pub(crate) const EVAL_BATCH: usize = 1000;

/// Sums over the steps of the epoch in progress of a parity loop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct EpochSums {
    pub loss: f64,
    pub correct: usize,
    pub seen: usize,
    /// Sum of the per-step mean compute: ACT's ponder cost, other methods' expected steps.
    pub compute: f64,
    /// Sum of the per-step mean halting regulariser (pondering loop only).
    pub regulariser: f64,
    pub steps: u64,
    pub histogram: Histogram,
}

impl EpochSums {
    /// Returns the epoch's record: per-step means of the sums, with the schedule values that
    /// the epoch's last update used.
    pub(crate) fn record(
        self,
        epoch: usize,
        step: u64,
        validation_accuracy: f64,
        elapsed_seconds: f64,
        schedule: BTreeMap<String, f64>,
    ) -> EpochRecord {
        let steps = self.steps.max(1) as f64;
        EpochRecord {
            epoch,
            step,
            loss: self.loss / steps,
            accuracy: self.correct as f64 / self.seen.max(1) as f64,
            validation_accuracy: Some(validation_accuracy),
            mean_halting_step: self.histogram.mean(),
            halting_histogram: self.histogram,
            expected_compute: Some(self.compute / steps),
            elapsed_seconds,
            schedule,
        }
    }
}

/// Progress of a parity run, saved in checkpoints so that a resumed run continues exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    step: u64,
    history: Vec<EpochRecord>,
    epoch: EpochSums,
    /// Training seconds spent before the latest resume.
    seconds_before: f64,
}

/// Trains the recipe's ponder network with ACT and evaluates it on fresh vectors.
///
/// Evaluations: `test` draws k from `parity.eval_nonzeros`; when that range differs from the
/// training range, `interpolation` repeats the evaluation on the training range so both are
/// in one result. Training data for step s is batch s of a seeded stream, so a run resumed
/// from a checkpoint sees the same batches as an uninterrupted one.
pub fn train(recipe: &Recipe, context: RunContext<'_>) -> Result<TrainingOutcome, TrainingError> {
    let RunContext {
        device,
        monitor,
        checkpoints,
        resume,
    } = context;
    let (parity, ponder) = parity_sections(recipe)?;
    let halting = recipe
        .halting
        .as_ref()
        .ok_or(TrainingError::MissingSection("halting"))?;
    let HaltingMethod::Act {
        epsilon,
        max_steps,
        ponder_weight,
    } = halting.clone()
    else {
        return Err(TrainingError::WrongMethod {
            expected: "act",
            trainer: "parity_act::train",
        });
    };
    let settings = ActSettings {
        epsilon,
        max_steps,
        ponder_weight,
    };
    let training = &recipe.training;
    let steps_per_epoch = training.steps_per_epoch.unwrap_or(1) as u64;
    let total_steps = training.epochs as u64 * steps_per_epoch;

    let fused = uses_fused_kernel(training.kernel, &device);
    let train_device = device.clone().autodiff();
    let model = init_network(parity, ponder, recipe.seed, &train_device);
    let (mut model, mut optimizer, mut progress) = restore::<_, Progress>(
        checkpoints.as_ref(),
        resume,
        model,
        AdamConfig::new().init(),
    )?;

    let stream = ParityStream::new(recipe.seed, parity.length, parity.train_range())?;
    let validation = ParityStream::new(
        recipe.seed ^ VALIDATION_STREAM,
        parity.length,
        parity.train_range(),
    )?
    .batch(0, parity.validation_samples)?;

    let mut workspace = ActWorkspace::new();
    let started = Instant::now();
    monitor.start(progress.step, total_steps);

    while progress.step < total_steps {
        let epoch = (progress.step / steps_per_epoch) as usize + 1;
        let batch = stream.batch(progress.step, training.batch_size)?;
        let step = progress.step + 1;
        let outputs = if fused {
            fused_step(
                &model,
                &batch,
                settings,
                &mut workspace,
                &train_device,
                epoch,
                step,
            )?
        } else {
            burn_step(&model, &batch, settings, &train_device, epoch, step)?
        };
        let learning_rate = training.learning_rate_at(progress.step, total_steps);
        model = optimizer.step(learning_rate, model, outputs.gradients);
        if fused {
            release_autodiff_graphs(&train_device);
        }
        progress.step = step;

        let sums = &mut progress.epoch;
        sums.correct += count_correct(&outputs.predictions, &batch.targets);
        sums.seen += batch.targets.len();
        sums.histogram.extend(outputs.halting_steps);
        sums.loss += outputs.loss;
        sums.compute += outputs.ponder_cost;
        sums.steps += 1;
        monitor.step(step, outputs.loss);

        if step % steps_per_epoch == 0 {
            let sums = std::mem::take(&mut progress.epoch);
            let validation_result = evaluate(&model.valid(), &validation, settings, &device);
            let record = sums.record(
                epoch,
                step,
                validation_result.accuracy,
                progress.seconds_before + started.elapsed().as_secs_f64(),
                learning_rate_log(training, learning_rate),
            );
            monitor.epoch(&record);
            progress.history.push(record);
        }

        checkpoint_or_stop(
            checkpoints.as_ref(),
            monitor,
            epoch,
            step,
            total_steps,
            &model,
            &optimizer,
            || Progress {
                seconds_before: progress.seconds_before + started.elapsed().as_secs_f64(),
                ..progress.clone()
            },
        )?;
    }
    monitor.finish();
    let training_seconds = progress.seconds_before + started.elapsed().as_secs_f64();

    let model = model.valid();
    let mut evaluation = BTreeMap::new();
    let test = ParityStream::new(
        recipe.seed ^ EVALUATION_STREAM,
        parity.length,
        parity.eval_range(),
    )?
    .batch(0, parity.eval_samples)?;
    evaluation.insert(
        "test".to_owned(),
        evaluate(&model, &test, settings, &device),
    );
    if parity.eval_range() != parity.train_range() {
        let interpolation = ParityStream::new(
            recipe.seed ^ EVALUATION_STREAM,
            parity.length,
            parity.train_range(),
        )?
        .batch(0, parity.eval_samples)?;
        evaluation.insert(
            "interpolation".to_owned(),
            evaluate(&model, &interpolation, settings, &device),
        );
    }

    Ok(TrainingOutcome {
        history: progress.history,
        evaluation,
        training_seconds,
    })
}

/// Results of one training step, for the optimiser and the epoch's sums.
struct StepOutputs {
    gradients: GradientsParams,
    loss: f64,
    /// Mean ponder cost N + R of the batch.
    ponder_cost: f64,
    predictions: Vec<usize>,
    halting_steps: Vec<usize>,
}

/// Thread count of the fused kernel; 0 means one thread per core.
static KERNEL_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads the fused ACT kernel uses in this process; 0 (the default) uses one
/// per core. Results do not depend on it, because the kernel splits a batch into fixed chunks.
pub fn set_kernel_threads(threads: usize) {
    KERNEL_THREADS.store(threads, Ordering::Relaxed);
}

fn kernel_threads() -> usize {
    match KERNEL_THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        threads => threads,
    }
}

/// Returns whether ACT steps run on the fused CPU kernel: always for `fused`, on flex for
/// `auto`.
pub fn uses_fused_kernel(kernel: Kernel, device: &Device) -> bool {
    match kernel {
        Kernel::Fused => true,
        Kernel::Burn => false,
        Kernel::Auto => device.clone().without_autodiff() == Device::flex(),
    }
}

/// Frees the autodiff graph entries of tensors that no longer exist.
///
/// Burn's optimiser needs the model on an autodiff device, and each of its steps registers the
/// new parameters with the autodiff graph. Burn 0.22.1 removes entries of dropped tensors only
/// at the end of a backward pass, which the fused kernel never runs. Without this call memory
/// grew by about 15 KiB per step on the benchmark recipe (29 MiB over 2,000 steps). A backward
/// pass through a one-element tensor runs that clean-up.
fn release_autodiff_graphs(device: &Device) {
    let probe = Tensor::<1>::zeros([1], device).require_grad();
    let _ = probe.sum().backward();
}

/// Runs one ACT step through Burn's autodiff graph on the training device.
fn burn_step(
    model: &PonderNetwork,
    batch: &ParityBatch,
    settings: ActSettings,
    device: &Device,
    epoch: usize,
    step: u64,
) -> Result<StepOutputs, TrainingError> {
    let (inputs, targets) = batch_tensors(batch, device);
    let forward = model.forward_act(inputs, settings.max_steps, settings.epsilon)?;
    let task_loss = cross_entropy_per_sample(forward.logits.clone(), targets).mean();
    let ponder_cost = forward.halting.ponder_cost.clone().mean();
    let loss = task_loss + ponder_cost.clone().mul_scalar(settings.ponder_weight);

    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    check_finite("training loss", loss_value, epoch, step)?;
    let gradients = GradientsParams::from_grads(loss.backward(), model);
    check_finite_gradients(model, &gradients, epoch, step)?;
    Ok(StepOutputs {
        gradients,
        loss: loss_value,
        ponder_cost: ponder_cost.into_scalar::<f32>() as f64,
        predictions: argmax(forward.logits.detach()),
        halting_steps: read_ints(forward.halting.halting_step),
    })
}

/// Runs one ACT step on the fused CPU kernel from host copies of the weights, and returns the
/// gradients on the training device for Burn's optimiser.
fn fused_step(
    model: &PonderNetwork,
    batch: &ParityBatch,
    settings: ActSettings,
    workspace: &mut ActWorkspace,
    device: &Device,
    epoch: usize,
    step: u64,
) -> Result<StepOutputs, TrainingError> {
    let parameters = HostParameters::from_network(model)?;
    let result = act_train_step(
        &parameters,
        &batch.inputs,
        &batch.targets,
        settings,
        kernel_threads(),
        workspace,
    )?;
    check_finite("training loss", result.loss as f64, epoch, step)?;
    if let Some((name, value)) = result.gradients.first_non_finite() {
        return Err(TrainingError::NonFinite {
            quantity: format!("gradient of {name}"),
            value: value as f64,
            epoch,
            step,
        });
    }
    Ok(StepOutputs {
        gradients: gradients_params(model, result.gradients, device)?,
        loss: result.loss as f64,
        ponder_cost: result.ponder_cost as f64,
        predictions: result.predictions.to_vec(),
        halting_steps: result.halting_steps.to_vec(),
    })
}

/// Creates the recipe's ponder network for a parity task with two classes, with the initial
/// weights of [`host_initialised`].
pub(crate) fn init_network(
    parity: &ParityTask,
    ponder: &PonderModel,
    seed: u64,
    device: &Device,
) -> PonderNetwork {
    let config = PonderConfig::new(parity.length, ponder.hidden_size, 2)
        .with_cell(match ponder.cell {
            Cell::Gru => CellKind::Gru,
            Cell::Rnn => CellKind::Rnn,
        })
        .with_halting_bias(ponder.halting_bias);
    host_initialised(seed, device, |host| config.init(host))
}

/// Builds a module with `init` on a flex device seeded with `seed`, then moves it to `device`.
///
/// Every backend has its own random generator, so the same seed gives different initial
/// weights on flex, ndarray and wgpu. Drawing them on flex makes a run start from the same
/// weights on every backend. Burn draws a parameter's values lazily, at its first use, so
/// every parameter is read here, in module order, while the seeded generator is held.
pub(crate) fn host_initialised<M: Module>(
    seed: u64,
    device: &Device,
    init: impl FnOnce(&Device) -> M,
) -> M {
    // flex has one random generator per process: hold it from seeding to the last draw, so
    // that runs trained on parallel threads (`haltlab compare --jobs`) get their own weights.
    static FLEX_GENERATOR: Mutex<()> = Mutex::new(());
    let _generator = FLEX_GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let host = if device.is_autodiff() {
        Device::flex().autodiff()
    } else {
        Device::flex()
    };
    host.seed(seed);
    let module = init(&host);
    draw_parameters(&module);
    // `fork`, not `to_device`: it makes each parameter a fresh leaf of `device`'s autodiff
    // graph instead of the output of a transfer node, which the first backward pass consumes.
    module.fork(device)
}

/// Returns the schedule values to log for an epoch whose last update used `learning_rate`:
/// the rate itself when it decays, nothing otherwise.
pub(crate) fn learning_rate_log(training: &Training, learning_rate: f64) -> BTreeMap<String, f64> {
    let mut log = BTreeMap::new();
    if training.learning_rate_decays() {
        log.insert("learning_rate".to_owned(), learning_rate);
    }
    log
}

/// Returns the `[parity]` and `[ponder]` sections that every parity method needs.
pub(crate) fn parity_sections(
    recipe: &Recipe,
) -> Result<(&ParityTask, &PonderModel), TrainingError> {
    let parity = recipe
        .parity
        .as_ref()
        .ok_or(TrainingError::MissingSection("parity"))?;
    let ponder = recipe
        .ponder
        .as_ref()
        .ok_or(TrainingError::MissingSection("ponder"))?;
    Ok((parity, ponder))
}

/// Evaluates ACT predictions on a batch of vectors, in chunks of [`EVAL_BATCH`].
fn evaluate(
    model: &PonderNetwork,
    data: &ParityBatch,
    settings: ActSettings,
    device: &Device,
) -> Evaluation {
    let device = device.clone().without_autodiff();
    let mut predictions = Vec::with_capacity(data.batch_size());
    let mut steps = Vec::with_capacity(data.batch_size());
    for start in (0..data.batch_size()).step_by(EVAL_BATCH) {
        let chunk = slice_rows(data, start, (start + EVAL_BATCH).min(data.batch_size()));
        let (inputs, _) = batch_tensors(&chunk, &device);
        // The settings were validated with the recipe, so ACT cannot reject them here.
        let forward = model
            .forward_act(inputs, settings.max_steps, settings.epsilon)
            .expect("ACT settings were validated with the recipe");
        predictions.extend(argmax(forward.logits));
        steps.extend(read_ints(forward.halting.halting_step));
    }
    summarise(&predictions, &steps, data)
}

/// Builds an [`Evaluation`] with accuracy and halting steps overall and by number of
/// non-zero entries.
pub(crate) fn summarise(predictions: &[usize], steps: &[usize], data: &ParityBatch) -> Evaluation {
    let mut histogram = Histogram::default();
    histogram.extend(steps.iter().copied());
    let mut by_difficulty: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
    for ((&prediction, &step), (&target, &nonzeros)) in predictions
        .iter()
        .zip(steps)
        .zip(data.targets.iter().zip(&data.nonzeros))
    {
        let entry = by_difficulty.entry(nonzeros).or_default();
        entry.0 += 1;
        entry.1 += usize::from(prediction == target as usize);
        entry.2 += step;
    }
    Evaluation {
        samples: predictions.len(),
        accuracy: count_correct(predictions, &data.targets) as f64
            / predictions.len().max(1) as f64,
        accuracy_by_difficulty: by_difficulty
            .iter()
            .map(|(&k, &(count, correct, _))| (k, correct as f64 / count as f64))
            .collect(),
        halting_step_by_difficulty: by_difficulty
            .iter()
            .map(|(&k, &(count, _, steps))| (k, steps as f64 / count as f64))
            .collect(),
        ..Evaluation::default()
    }
    .with_histogram(histogram)
}

/// Copies rows `start..end` of a batch.
pub(crate) fn slice_rows(batch: &ParityBatch, start: usize, end: usize) -> ParityBatch {
    ParityBatch {
        length: batch.length,
        inputs: batch.inputs[start * batch.length..end * batch.length].to_vec(),
        targets: batch.targets[start..end].to_vec(),
        nonzeros: batch.nonzeros[start..end].to_vec(),
    }
}

pub(crate) fn batch_tensors(batch: &ParityBatch, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let size = batch.batch_size();
    let inputs = Tensor::from_data(
        TensorData::new(batch.inputs.clone(), [size, batch.length]),
        device,
    );
    let targets: Vec<i64> = batch.targets.iter().map(|&t| t as i64).collect();
    let targets = Tensor::from_data(TensorData::new(targets, [size]), device);
    (inputs, targets)
}

pub(crate) fn argmax(logits: Tensor<2>) -> Vec<usize> {
    let [batch, _] = logits.dims();
    read_ints(logits.argmax(1).reshape([batch]))
}

pub(crate) fn read_ints(tensor: Tensor<1, Int>) -> Vec<usize> {
    tensor
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("an Int tensor converts to i64")
        .into_iter()
        .map(|value| value.max(0) as usize)
        .collect()
}

pub(crate) fn count_correct(predictions: &[usize], targets: &[u8]) -> usize {
    predictions
        .iter()
        .zip(targets)
        .filter(|(prediction, target)| **prediction == **target as usize)
        .count()
}
