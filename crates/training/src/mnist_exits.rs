//! Training an early-exit MLP or LeNet-like CNN on MNIST: soft training on a weighted sum of every exit's loss,
//! hard evaluation where each sample leaves at the first confident exit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_data::images::{self, CsvLayout, ImageSet};
use haltlab_eval::sweep::flop_fraction_of_exits;
use haltlab_eval::{EpochRecord, Evaluation, Histogram, accuracy};
use haltlab_halting::pondernet::{expected_loss, halting_distribution, kl_to_geometric_prior};
use haltlab_model::{ExitLenetConfig, ExitMlpConfig, ExitStages, infer_hard};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{checkpoint_or_stop, restore};
use crate::exit_analysis::{analyse, image_inputs, make_rule};
use crate::guard::{check_finite, check_finite_gradients};
use crate::loss::cross_entropy_per_sample;
use crate::parity_act::{argmax, learning_rate_log};
use crate::recipe::{Architecture, ExitModel, GateTraining, LossSchedule, MnistFormat, Recipe};
use crate::{RunContext, TrainingError, TrainingOutcome};
use serde::{Deserialize, Serialize};

/// Batch size of evaluation passes; it changes speed, not results.
const EVAL_BATCH: usize = 500;

/// Training, validation and test images of a run.
#[derive(Debug, Clone)]
pub struct MnistData {
    pub train: ImageSet,
    pub validation: ImageSet,
    pub test: ImageSet,
}

/// Loads the recipe's MNIST data from `data_path` (or the recipe's own path) and splits it.
pub fn load_data(recipe: &Recipe, data_path: Option<&Path>) -> Result<MnistData, TrainingError> {
    let mnist = recipe
        .mnist
        .as_ref()
        .ok_or(TrainingError::MissingSection("mnist"))?;
    let path = data_path
        .or(mnist.path.as_deref())
        .ok_or(TrainingError::MissingDataPath)?;
    // The shift report reads the UCI digits after training; a missing file is rejected now,
    // before any work is done.
    if let Some(uci) = &mnist.uci_digits_path {
        if let Err(source) = std::fs::File::open(uci) {
            return Err(TrainingError::Data(haltlab_data::DataError::Io {
                path: uci.clone(),
                source,
            }));
        }
    }
    match mnist.format {
        MnistFormat::Csv => {
            let set = images::load_csv(path, CsvLayout::MNIST)?;
            let split = images::split(
                &set,
                recipe.seed,
                mnist.validation_fraction,
                mnist.test_fraction,
            )?;
            Ok(MnistData {
                train: split.train,
                validation: split.validation,
                test: split.test,
            })
        }
        MnistFormat::Idx => {
            let (train, test) = images::load_mnist_dir(path)?;
            let split = images::split(&train, recipe.seed, mnist.validation_fraction, 0.0)?;
            Ok(MnistData {
                train: split.train,
                validation: split.validation,
                test,
            })
        }
    }
}

/// Analytic multiply–add FLOPs (2 per multiply–add) of each hidden layer and each exit head of
/// an MLP: a linear map from m to n features costs 2·m·n.
pub fn mlp_flops(
    input_size: usize,
    hidden_sizes: &[usize],
    classes: usize,
) -> (Vec<u64>, Vec<u64>) {
    let mut width = input_size as u64;
    let mut layers = Vec::with_capacity(hidden_sizes.len());
    let mut heads = Vec::with_capacity(hidden_sizes.len());
    for &hidden in hidden_sizes {
        layers.push(2 * width * hidden as u64);
        heads.push(2 * hidden as u64 * classes as u64);
        width = hidden as u64;
    }
    (layers, heads)
}

/// Trains the recipe's early-exit network and evaluates it on the validation and test sets.
pub fn train(
    recipe: &Recipe,
    data: &MnistData,
    context: RunContext<'_>,
) -> Result<TrainingOutcome, TrainingError> {
    let device = &context.device.clone();
    let exits = recipe
        .exits
        .as_ref()
        .ok_or(TrainingError::MissingSection("exits"))?;
    let train_device = device.clone().autodiff();
    // NOTE: unlike the parity models (`parity_act::host_initialised`), these draw their initial
    // weights from the device's own generator, so each backend starts from different weights.
    train_device.seed(recipe.seed);
    let classes = data.train.classes;
    match exits.architecture {
        Architecture::Mlp => {
            let input_size = data.train.image_size();
            check_input_size(recipe, exits, input_size)?;
            let (layer_flops, head_flops) = mlp_flops(input_size, &exits.hidden_sizes, classes);
            let model = ExitMlpConfig::new(input_size, exits.hidden_sizes.clone(), classes)
                .with_gated(exits.gate != GateTraining::None)
                .init(&train_device);
            fit(recipe, data, model, &layer_flops, &head_flops, context)
        }
        Architecture::Lenet => {
            let (height, width) = (data.train.height, data.train.width);
            if height % 4 != 0 || width % 4 != 0 {
                return Err(TrainingError::ImageSize { height, width });
            }
            let config = ExitLenetConfig::new([height, width], classes);
            let (layer_flops, head_flops) = config.flops();
            let model = config.init(&train_device);
            fit(recipe, data, model, &layer_flops, &head_flops, context)
        }
    }
}

/// Returns an error when the recipe's `exits.input_size` differs from the data's features.
fn check_input_size(recipe: &Recipe, exits: &ExitModel, found: usize) -> Result<(), TrainingError> {
    match exits.input_size {
        Some(expected) if expected != found => Err(TrainingError::InputSize {
            path: recipe
                .mnist
                .as_ref()
                .and_then(|mnist| mnist.path.clone())
                .unwrap_or_default(),
            key: "exits.input_size",
            expected,
            found,
        }),
        _ => Ok(()),
    }
}

/// Sums over the batches of the epoch in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EpochSums {
    loss: f64,
    correct: usize,
    seen: usize,
}

/// Progress of an MNIST run, saved in checkpoints so that a resumed run continues exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    step: u64,
    history: Vec<EpochRecord>,
    epoch: EpochSums,
    /// Training seconds spent before the latest resume.
    seconds_before: f64,
}

/// Order of the training images in `epoch` (from 1): a shuffle seeded by the recipe seed and
/// the epoch, so a resumed run rebuilds the same order.
fn epoch_order(samples: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..samples).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(epoch as u64));
    order.shuffle(&mut rng);
    order
}

/// Trains `model` on the recipe's schedule, then evaluates it and writes its exit report.
///
/// Step s of the run uses batch s mod (batches per epoch) of its epoch's seeded shuffle, so a
/// run resumed from a checkpoint sees the same batches as an uninterrupted one.
fn fit<M: Module + ExitStages>(
    recipe: &Recipe,
    data: &MnistData,
    model: M,
    layer_flops: &[u64],
    head_flops: &[u64],
    context: RunContext<'_>,
) -> Result<TrainingOutcome, TrainingError> {
    let RunContext {
        device,
        monitor,
        checkpoints,
        resume,
    } = context;
    let device = &device;
    let exits = recipe
        .exits
        .as_ref()
        .ok_or(TrainingError::MissingSection("exits"))?;
    let training = &recipe.training;
    let depth = model.depth();
    let base_weights = exits
        .loss_weights
        .clone()
        .unwrap_or_else(|| vec![1.0; depth]);
    let train_device = device.clone().autodiff();
    let (mut model, mut optimizer, mut progress) = restore::<_, Progress>(
        checkpoints.as_ref(),
        resume,
        model,
        AdamConfig::new().init(),
    )?;

    let batches_per_epoch = data.train.len().div_ceil(training.batch_size) as u64;
    let total_steps = training.epochs as u64 * batches_per_epoch;
    monitor.start(progress.step, total_steps);
    let started = Instant::now();
    let mut order = Vec::new();
    let mut order_epoch = 0;

    while progress.step < total_steps {
        let epoch = (progress.step / batches_per_epoch) as usize + 1;
        if order_epoch != epoch {
            order = epoch_order(data.train.len(), recipe.seed, epoch);
            order_epoch = epoch;
        }
        let batch_index = (progress.step % batches_per_epoch) as usize;
        let start = batch_index * training.batch_size;
        let indices = &order[start..(start + training.batch_size).min(order.len())];
        let step = progress.step + 1;
        let weights =
            exit_loss_weights(exits.loss_schedule, &base_weights, exits.ramp_epochs, epoch);
        let weight_total: f64 = weights.iter().sum();

        let (inputs, targets) = image_batch(&data.train, indices, &train_device);
        let (all_logits, gates) = model.forward_with_gates(inputs);
        let mut loss = Tensor::<1>::zeros([1], &train_device);
        let mut exit_losses = Vec::with_capacity(depth);
        for (logits, weight) in all_logits.iter().zip(&weights) {
            let per_sample = cross_entropy_per_sample(logits.clone(), targets.clone());
            loss = loss + per_sample.clone().mean().mul_scalar(weight / weight_total);
            exit_losses.push(per_sample);
        }
        if let GateTraining::Pondernet = exits.gate {
            // Delayed activation: `[schedule.regulariser]` scales the gates' halting loss.
            let gate_weight = recipe
                .schedule
                .as_ref()
                .and_then(|schedules| schedules.regulariser)
                .map_or(1.0, |schedule| schedule.value(progress.step));
            loss = loss + pondernet_depth_loss(gates, exit_losses, exits)?.mul_scalar(gate_weight);
        }
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        check_finite("training loss", loss_value, epoch, step)?;
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        check_finite_gradients(&model, &gradients, epoch, step)?;
        let learning_rate = training.learning_rate_at(progress.step, total_steps);
        model = optimizer.step(learning_rate, model, gradients);
        progress.step = step;

        let last = all_logits
            .last()
            .expect("an exit model has at least one layer");
        let predictions = argmax(last.clone().detach());
        let sums = &mut progress.epoch;
        sums.correct += predictions
            .iter()
            .zip(indices)
            .filter(|(prediction, index)| **prediction == data.train.labels[**index] as usize)
            .count();
        sums.seen += indices.len();
        sums.loss += loss_value * indices.len() as f64;
        monitor.step(step, loss_value);

        if step % batches_per_epoch == 0 {
            let sums = std::mem::take(&mut progress.epoch);
            let validation = evaluate(&model.valid(), &data.validation, exits, device);
            let mut schedule = learning_rate_log(training, learning_rate);
            if let Some(regulariser) = recipe.schedule.as_ref().and_then(|s| s.regulariser) {
                // The weight that the epoch's last update used, as for the learning rate.
                schedule.insert("regulariser_weight".to_owned(), regulariser.value(step - 1));
            }
            let record = EpochRecord {
                epoch,
                step,
                loss: sums.loss / sums.seen.max(1) as f64,
                accuracy: sums.correct as f64 / sums.seen.max(1) as f64,
                validation_accuracy: validation.accuracy_per_exit.last().copied(),
                mean_halting_step: validation.mean_halting_step,
                halting_histogram: validation.halting_histogram.clone(),
                expected_compute: None,
                elapsed_seconds: progress.seconds_before + started.elapsed().as_secs_f64(),
                schedule,
            };
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
    let history = progress.history;

    let model = model.valid();
    let mut evaluation = BTreeMap::new();
    for (name, set) in [("validation", &data.validation), ("test", &data.test)] {
        let mut result = evaluate(&model, set, exits, device);
        result.flop_fraction = Some(flop_fraction_of_exits(
            layer_flops,
            head_flops,
            &exit_layers(&result.halting_histogram),
        ));
        evaluation.insert(name.to_owned(), result);
    }
    let mnist = recipe
        .mnist
        .as_ref()
        .ok_or(TrainingError::MissingSection("mnist"))?;
    let report = analyse(
        &model,
        &data.validation,
        &data.test,
        mnist,
        exits,
        layer_flops,
        head_flops,
        &device.clone().without_autodiff(),
    )?;
    if let Some(test) = evaluation.get_mut("test") {
        // The confidence rule's sweep is the accuracy–compute curve that `haltlab plot` draws.
        test.sweep = report
            .sweep
            .iter()
            .filter(|point| point.rule == "confidence")
            .map(|point| haltlab_eval::SweepPoint {
                threshold: point.threshold,
                accuracy: point.accuracy,
                flop_fraction: point.flop_fraction,
            })
            .collect();
        test.exit_report = Some(report);
    }
    Ok(TrainingOutcome {
        history,
        evaluation,
        training_seconds,
    })
}

/// PonderNet over depth (Banino et al. 2021): Σₗ pₗ Lₗ + β KL(p ‖ p_G(λ_p)), averaged over
/// the batch, where pₗ is the halting distribution of the gates' λ (the last layer takes the
/// remaining mass) and Lₗ is exit l's cross-entropy.
///
/// # Shapes
/// `gates`: `depth` tensors of `[batch, 1]`; `exit_losses`: `depth` tensors of `[batch]`.
fn pondernet_depth_loss(
    gates: Vec<Tensor<2>>,
    exit_losses: Vec<Tensor<1>>,
    exits: &ExitModel,
) -> Result<Tensor<1>, TrainingError> {
    let lambda = Tensor::cat(gates, 1);
    let probabilities = halting_distribution(lambda);
    let losses = Tensor::stack::<2>(exit_losses, 1);
    let reconstruction = expected_loss(probabilities.clone(), losses).mean();
    let kl = kl_to_geometric_prior(probabilities, exits.gate_prior_lambda)?.mean();
    Ok(reconstruction + kl.mul_scalar(exits.gate_kl_weight))
}

/// Returns the exit loss weights of `epoch` (counted from 1) under `schedule`.
pub fn exit_loss_weights(
    schedule: LossSchedule,
    base: &[f64],
    ramp_epochs: usize,
    epoch: usize,
) -> Vec<f64> {
    let depth = base.len();
    match schedule {
        LossSchedule::Fixed => base.to_vec(),
        LossSchedule::Depth => (1..=depth).map(|layer| layer as f64).collect(),
        LossSchedule::LinearRamp => {
            // Epoch 1 uses the start weight 0.01, epoch ramp_epochs + 1 and later the final one.
            let progress = ((epoch.saturating_sub(1)) as f64 / ramp_epochs.max(1) as f64).min(1.0);
            base.iter()
                .enumerate()
                .map(|(index, &weight)| {
                    if index + 1 == depth {
                        weight
                    } else {
                        0.01 + (weight - 0.01) * progress
                    }
                })
                .collect()
        }
    }
}

/// Expands a histogram of exit layers into one exit layer per sample.
fn exit_layers(histogram: &Histogram) -> Vec<usize> {
    histogram
        .counts
        .iter()
        .enumerate()
        .flat_map(|(index, &count)| std::iter::repeat_n(index + 1, count as usize))
        .collect()
}

/// Evaluates every exit's accuracy with the full network, and the hard early-exit predictions
/// of the recipe's rule at its threshold.
pub fn evaluate(
    model: &impl ExitStages,
    set: &ImageSet,
    exits: &ExitModel,
    device: &Device,
) -> Evaluation {
    let device = device.clone().without_autodiff();
    let targets: Vec<usize> = set.labels.iter().map(|&label| label as usize).collect();
    let mut per_exit: Vec<Vec<usize>> = vec![Vec::with_capacity(set.len()); model.depth()];
    let mut hard_predictions = Vec::with_capacity(set.len());
    let mut histogram = Histogram::with_steps(model.depth());
    let indices: Vec<usize> = (0..set.len()).collect();

    for chunk in indices.chunks(EVAL_BATCH) {
        let (inputs, _) = image_batch(set, chunk, &device);
        for (predictions, logits) in per_exit.iter_mut().zip(model.forward_all(inputs.clone())) {
            predictions.extend(argmax(logits));
        }
        let mut rule = make_rule(exits.rule.name(), exits.threshold);
        let hard = infer_hard(model, inputs, rule.as_mut());
        hard_predictions.extend(hard.predictions);
        histogram.extend(hard.exit_layer);
    }

    Evaluation {
        samples: set.len(),
        accuracy: accuracy(&hard_predictions, &targets),
        threshold: Some(exits.threshold),
        accuracy_per_exit: per_exit
            .iter()
            .map(|predictions| accuracy(predictions, &targets))
            .collect(),
        ..Evaluation::default()
    }
    .with_histogram(histogram)
}

/// Builds the input and target tensors of the images at `indices`.
///
/// # Shapes
/// Returns `[indices.len(), height * width]` and `[indices.len()]`.
pub fn image_batch(
    set: &ImageSet,
    indices: &[usize],
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let labels: Vec<i64> = indices
        .iter()
        .map(|&index| set.labels[index] as i64)
        .collect();
    (
        image_inputs(set, indices, device),
        Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 784–256–128 MLP with 10 classes: layers 2·784·256 = 401,408 and 2·256·128 = 65,536;
    // heads 2·256·10 = 5,120 and 2·128·10 = 2,560.
    #[test]
    fn flops_by_hand() {
        let (layers, heads) = mlp_flops(784, &[256, 128], 10);
        assert_eq!(layers, vec![401_408, 65_536]);
        assert_eq!(heads, vec![5_120, 2_560]);
    }

    #[test]
    fn loss_schedules_by_hand() {
        let base = [1.0, 1.0, 2.0];
        assert_eq!(
            exit_loss_weights(LossSchedule::Fixed, &base, 4, 3),
            vec![1.0, 1.0, 2.0]
        );
        assert_eq!(
            exit_loss_weights(LossSchedule::Depth, &base, 4, 3),
            vec![1.0, 2.0, 3.0]
        );
        let start = exit_loss_weights(LossSchedule::LinearRamp, &base, 4, 1);
        assert_eq!(start, vec![0.01, 0.01, 2.0]);
        // Epoch 3 of a 4-epoch ramp is halfway: 0.01 + 0.99 / 2.
        let middle = exit_loss_weights(LossSchedule::LinearRamp, &base, 4, 3);
        assert!((middle[0] - 0.505).abs() < 1e-12, "{middle:?}");
        assert_eq!(
            exit_loss_weights(LossSchedule::LinearRamp, &base, 4, 9),
            vec![1.0, 1.0, 2.0]
        );
    }

    /// 28×28 images whose class is written as a bright row band, so a few steps learn it.
    fn banded_set(samples: usize) -> ImageSet {
        let mut pixels = vec![0.0f32; samples * 784];
        let mut labels = Vec::with_capacity(samples);
        for sample in 0..samples {
            let label = (sample % 10) as u8;
            let row = 2 + 2 * label as usize;
            for column in 4..24 {
                pixels[sample * 784 + row * 28 + column] = 1.0;
            }
            labels.push(label);
        }
        ImageSet::new(28, 28, pixels, labels).expect("valid images")
    }

    fn tiny_run(exits: &str) -> TrainingOutcome {
        let text = format!(
            "[mnist]\nformat = \"csv\"\n\n[exits]\n{exits}\nthreshold = 0.9\nlatency_samples = 4\n\n\
             [training]\nepochs = 2\nbatch_size = 20\nlearning_rate = 0.01\n"
        );
        let path = Path::new("tiny.toml");
        let recipe = Recipe::parse(&text, path).expect("recipe parses");
        recipe.validate(path).expect("recipe is valid");
        let data = MnistData {
            train: banded_set(60),
            validation: banded_set(30),
            test: banded_set(30),
        };
        train(
            &recipe,
            &data,
            crate::RunContext {
                device: Device::flex(),
                monitor: &mut crate::SilentMonitor,
                checkpoints: None,
                resume: false,
            },
        )
        .expect("training runs")
    }

    fn check_report(outcome: &TrainingOutcome, depth: usize, rules: &[&str]) {
        let test = &outcome.evaluation["test"];
        let report = test
            .exit_report
            .as_ref()
            .expect("test split has an exit report");
        assert_eq!(report.layer_flops.len(), depth);
        assert_eq!(report.ece_per_exit.len(), depth);
        for rule in rules {
            assert!(
                report.sweep.iter().any(|point| point.rule == *rule),
                "no {rule} sweep"
            );
        }
        assert!(!report.calibrated.is_empty());
        let compute = report.compute.as_ref().expect("latency was measured");
        assert_eq!(compute.batch1_exits.count, 4);
        assert_eq!(compute.batch_size, 30);
        let shifts: Vec<&String> = report.shifts.keys().collect();
        assert_eq!(shifts, vec!["gaussian_noise", "rotation"]);
    }

    #[test]
    fn lenet_pipeline_reports() {
        let outcome = tiny_run("architecture = \"lenet\"");
        check_report(&outcome, 2, &["confidence", "entropy", "patience"]);
    }

    #[test]
    fn gated_mlp_pipeline_reports() {
        let outcome = tiny_run("hidden_sizes = [16, 16, 16]\ngate = \"pondernet\"");
        check_report(&outcome, 3, &["confidence", "entropy", "patience", "gate"]);
        let report = outcome.evaluation["test"].exit_report.as_ref().unwrap();
        let soft = report
            .soft_flop_fraction
            .expect("gated network has a soft fraction");
        assert!(soft > 0.0, "{soft}");
        assert!(soft <= 1.0, "{soft}");
    }
}
