//! Training an early-exit MLP on MNIST: soft training on a weighted sum of every exit's loss,
//! hard evaluation where each sample leaves at the first confident exit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_data::images::{self, CsvLayout, ImageSet};
use haltlab_eval::{EpochRecord, Evaluation, Histogram, accuracy};
use haltlab_halting::exits::confidence_exits;
use haltlab_model::{ExitMlp, ExitMlpConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::loss::cross_entropy_per_sample;
use crate::parity_act::argmax;
use crate::recipe::{MnistFormat, Recipe};
use crate::{Monitor, TrainingError, TrainingOutcome};

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

/// Trains the recipe's early-exit MLP and evaluates it on the validation and test sets.
pub fn train(
    recipe: &Recipe,
    data: &MnistData,
    device: &Device,
    monitor: &mut dyn Monitor,
) -> Result<TrainingOutcome, TrainingError> {
    let exits = recipe
        .exits
        .as_ref()
        .ok_or(TrainingError::MissingSection("exits"))?;
    let training = &recipe.training;
    let depth = exits.hidden_sizes.len();
    let weights = exits
        .loss_weights
        .clone()
        .unwrap_or_else(|| vec![1.0; depth]);
    let weight_total: f64 = weights.iter().sum();
    let input_size = data.train.image_size();

    let train_device = device.clone().autodiff();
    train_device.seed(recipe.seed);
    let mut model = ExitMlpConfig::new(input_size, exits.hidden_sizes.clone(), data.train.classes)
        .init(&train_device);
    let mut optimizer = AdamConfig::new().init();

    let batches_per_epoch = data.train.len().div_ceil(training.batch_size) as u64;
    monitor.start(training.epochs as u64 * batches_per_epoch);
    let started = Instant::now();
    let mut history = Vec::with_capacity(training.epochs);
    let mut step = 0u64;
    let mut order: Vec<usize> = (0..data.train.len()).collect();

    for epoch in 1..=training.epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed.wrapping_add(epoch as u64));
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut correct = 0usize;

        for indices in order.chunks(training.batch_size) {
            step += 1;
            let (inputs, targets) = image_batch(&data.train, indices, &train_device);
            let all_logits = model.forward_all(inputs);
            let mut loss = Tensor::<1>::zeros([1], &train_device);
            for (logits, weight) in all_logits.iter().zip(&weights) {
                let exit_loss = cross_entropy_per_sample(logits.clone(), targets.clone()).mean();
                loss = loss + exit_loss.mul_scalar(weight / weight_total);
            }
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            if !loss_value.is_finite() {
                return Err(TrainingError::NonFinite {
                    quantity: "training loss",
                    value: loss_value,
                    epoch,
                    step,
                });
            }
            let gradients = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(training.learning_rate, model, gradients);

            let last = all_logits
                .last()
                .expect("an exit model has at least one layer");
            let predictions = argmax(last.clone().detach());
            correct += predictions
                .iter()
                .zip(indices)
                .filter(|(prediction, index)| **prediction == data.train.labels[**index] as usize)
                .count();
            loss_sum += loss_value * indices.len() as f64;
            monitor.step(step, loss_value);
        }

        let validation = evaluate(&model.valid(), &data.validation, exits.threshold, device);
        let record = EpochRecord {
            epoch,
            step,
            loss: loss_sum / data.train.len() as f64,
            accuracy: correct as f64 / data.train.len() as f64,
            validation_accuracy: validation.accuracy_per_exit.last().copied(),
            mean_halting_step: validation.mean_halting_step,
            halting_histogram: validation.halting_histogram.clone(),
            expected_compute: None,
            elapsed_seconds: started.elapsed().as_secs_f64(),
            ..EpochRecord::default()
        };
        monitor.epoch(&record);
        history.push(record);
    }
    monitor.finish();
    let training_seconds = started.elapsed().as_secs_f64();

    let model = model.valid();
    let mut evaluation = BTreeMap::new();
    for (name, set) in [("validation", &data.validation), ("test", &data.test)] {
        let mut result = evaluate(&model, set, exits.threshold, device);
        let (layer_flops, head_flops) = mlp_flops(input_size, &exits.hidden_sizes, set.classes);
        result.flop_fraction = Some(flop_fraction(
            &layer_flops,
            &head_flops,
            &result.halting_histogram,
        ));
        evaluation.insert(name.to_owned(), result);
    }
    Ok(TrainingOutcome {
        history,
        evaluation,
        training_seconds,
    })
}

/// Mean FLOPs per sample of a hard run, where a sample exiting at head l ran layers 1..=l and
/// heads 1..=l, divided by the FLOPs of a sample that exits at the last head.
pub fn flop_fraction(layer_flops: &[u64], head_flops: &[u64], exits: &Histogram) -> f64 {
    let mut cumulative = Vec::with_capacity(layer_flops.len());
    let mut total = 0u64;
    for (layer, head) in layer_flops.iter().zip(head_flops) {
        total += layer + head;
        cumulative.push(total);
    }
    let full = total.max(1) as f64;
    let samples = exits.total().max(1) as f64;
    let spent: f64 = exits
        .counts
        .iter()
        .zip(&cumulative)
        .map(|(&count, &flops)| count as f64 * flops as f64)
        .sum();
    spent / samples / full
}

/// Evaluates every exit's accuracy with the full network, and the hard early-exit predictions
/// at `threshold`.
pub fn evaluate(model: &ExitMlp, set: &ImageSet, threshold: f64, device: &Device) -> Evaluation {
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
        let hard = model.infer_hard(inputs, |logits| confidence_exits(logits, threshold));
        hard_predictions.extend(hard.predictions);
        histogram.extend(hard.exit_layer);
    }

    Evaluation {
        samples: set.len(),
        accuracy: accuracy(&hard_predictions, &targets),
        threshold: Some(threshold),
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
    let size = set.image_size();
    let mut pixels = Vec::with_capacity(indices.len() * size);
    let mut labels = Vec::with_capacity(indices.len());
    for &index in indices {
        pixels.extend_from_slice(&set.pixels[index * size..(index + 1) * size]);
        labels.push(set.labels[index] as i64);
    }
    (
        Tensor::from_data(TensorData::new(pixels, [indices.len(), size]), device),
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
    fn flop_fraction_of_mixed_exits() {
        // Costs to exit at heads 1 and 2: 10 + 1 = 11 and 11 + 8 + 1 = 20.
        let histogram = Histogram { counts: vec![1, 1] };
        let fraction = flop_fraction(&[10, 8], &[1, 1], &histogram);
        assert!((fraction - (11.0 + 20.0) / 2.0 / 20.0).abs() < 1e-12);
    }
}
