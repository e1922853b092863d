//! Training a ponder network on parity with PonderNet, straight-through, Gumbel-sigmoid or
//! REINFORCE halting, and evaluating it with hard halting that drops halted samples.
//!
//! Every method runs all M steps in training and builds a halting distribution pₙ over them:
//! PonderNet and Gumbel from relaxed λₙ, straight-through and REINFORCE from hard 0/1
//! decisions, which make p one-hot at the halting step. At evaluation the soft model is
//! λₙ = σ(zₙ) with pₙ = λₙ ∏_{j<n} (1 − λⱼ); its accuracy and expected steps are reported next
//! to the hard run's.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_data::parity::{ParityBatch, ParityStream};
use haltlab_eval::{EpochRecord, Evaluation, Histogram};
use haltlab_halting::hard::{ChaCha8Rng, HardRule};
use haltlab_halting::pondernet::{
    expected_loss, expected_steps, halting_distribution, kl_to_geometric_prior,
};
use haltlab_halting::reinforce::{MovingAverageBaseline, log_policy, surrogate_loss};
use haltlab_halting::relaxation::{gumbel_sigmoid, logistic_from_uniform, straight_through};
use haltlab_model::PonderNetwork;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_or_stop, restore};
use crate::failure::{FailureCriteria, RunEvidence, ThresholdProbe, detect};
use crate::guard::{check_finite, check_finite_gradients};
use crate::loss::cross_entropy_per_sample;
use crate::parity_act::{
    EVAL_BATCH, EVALUATION_STREAM, EpochSums, VALIDATION_STREAM, argmax, batch_tensors,
    count_correct, host_initialised, init_network, learning_rate_log, parity_sections, slice_rows,
    summarise,
};
use crate::recipe::{Baseline, HaltingMethod, Recipe};
use crate::{RunContext, TrainingError, TrainingOutcome, parity_act};

/// Seed offset of the Bernoulli draws of sampled hard halting at evaluation.
const SAMPLING_STREAM: u64 = 0x5341_4d50_4c49_4e47;

/// Seed offset of the training noise: Gumbel's logistic noise and REINFORCE's Bernoulli draws.
const NOISE_STREAM: u64 = 0x4e4f_4953_4520_5354;

/// Seed offset of the initial weights of REINFORCE's learned baseline.
const BASELINE_STREAM: u64 = 0x4241_5345_4c49_4e45;

/// Distance on each side of the inference threshold at which threshold sensitivity is probed.
const PROBE_STEP: f64 = 0.05;

/// Accuracy of guessing on parity.
const CHANCE: f64 = 0.5;

/// Trains any parity recipe: ACT through [`parity_act::train`], the other methods here. Each
/// evaluation gets the failure flags that its numbers show.
pub fn train(recipe: &Recipe, context: RunContext<'_>) -> Result<TrainingOutcome, TrainingError> {
    let halting = recipe
        .halting
        .as_ref()
        .ok_or(TrainingError::MissingSection("halting"))?;
    if let HaltingMethod::Act { max_steps, .. } = halting {
        let mut outcome = parity_act::train(recipe, context)?;
        for evaluation in outcome.evaluation.values_mut() {
            evaluation.flags = detect(
                &RunEvidence {
                    histogram: &evaluation.halting_histogram,
                    max_steps: *max_steps,
                    accuracy: evaluation.accuracy,
                    chance: CHANCE,
                    soft_accuracy: None,
                    expected_steps: None,
                    threshold_probe: None,
                },
                &FailureCriteria::default(),
            );
        }
        return Ok(outcome);
    }
    train_pondering(recipe, halting, context)
}

/// The hard rule used at inference: the recipe's `[inference]` rule, or the method's default.
/// PonderNet and REINFORCE sample, as their policies do in training; straight-through and
/// Gumbel use the signal threshold 0.5, the decision z ≥ 0 that their hard forward passes make.
pub fn inference_rule(recipe: &Recipe, method: &HaltingMethod) -> HardRule {
    if let Some(rule) = recipe.inference.as_ref().and_then(|i| i.hard_rule()) {
        return rule;
    }
    match method {
        HaltingMethod::Pondernet { .. } | HaltingMethod::Reinforce { .. } => HardRule::Sampled,
        HaltingMethod::Act { epsilon, .. } => HardRule::CumulativeSum {
            threshold: 1.0 - epsilon,
        },
        HaltingMethod::StraightThrough { .. } | HaltingMethod::Gumbel { .. } => {
            HardRule::Signal { threshold: 0.5 }
        }
    }
}

/// Outputs of one training step besides the loss.
struct StepOutput {
    loss: Tensor<1>,
    /// Halting distribution used in the loss. `[batch, steps]`
    distribution: Tensor<2>,
    /// Mean regulariser (ponder cost or KL) before its weight.
    regulariser: f64,
}

/// The trained parameters: the ponder network, and the reward baseline that REINFORCE with
/// `baseline = "learned"` fits (the other methods never update it). One module keeps both
/// under one optimiser and in one checkpoint. Adam updates each parameter from its own
/// gradient only, so this equals two optimisers with the same rate.
#[derive(Module, Debug)]
struct Trainee {
    network: PonderNetwork,
    baseline: Linear,
}

/// Progress of a run, saved in checkpoints so that a resumed run continues exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    step: u64,
    history: Vec<EpochRecord>,
    epoch: EpochSums,
    /// REINFORCE's moving-average baseline, or `None` before the first step.
    moving_baseline: Option<MovingAverageBaseline>,
    /// Training seconds spent before the latest resume.
    seconds_before: f64,
}

/// Draws uniform values on [0, 1) for the noise of the update after `step` earlier updates,
/// from stream `step` of a ChaCha8 generator seeded with `seed`. The draws depend only on the
/// seed and the step, so a resumed run uses the same noise as an uninterrupted one, on every
/// backend.
///
/// # Shapes
/// Returns `shape`.
fn step_uniform(seed: u64, step: u64, shape: [usize; 2], device: &Device) -> Tensor<2> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ NOISE_STREAM);
    rng.set_stream(step);
    let values: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| rng.random::<f32>())
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn train_pondering(
    recipe: &Recipe,
    method: &HaltingMethod,
    context: RunContext<'_>,
) -> Result<TrainingOutcome, TrainingError> {
    let RunContext {
        device,
        monitor,
        checkpoints,
        resume,
    } = context;
    let (parity, ponder) = parity_sections(recipe)?;
    let training = &recipe.training;
    let steps_per_epoch = training.steps_per_epoch.unwrap_or(1) as u64;
    let total_steps = training.epochs as u64 * steps_per_epoch;
    let max_steps = method.max_steps();
    let schedules = recipe.schedule.clone().unwrap_or_default();

    let train_device = device.clone().autodiff();
    let network = init_network(parity, ponder, recipe.seed, &train_device);
    let baseline = host_initialised(recipe.seed ^ BASELINE_STREAM, &train_device, |host| {
        LinearConfig::new(parity.length, 1).init(host)
    });
    let (mut trainee, mut optimizer, mut progress) = restore::<_, Progress>(
        checkpoints.as_ref(),
        resume,
        Trainee { network, baseline },
        AdamConfig::new().init(),
    )?;
    let mut moving_baseline = progress
        .moving_baseline
        .unwrap_or(MovingAverageBaseline::new(match method {
            HaltingMethod::Reinforce { baseline_decay, .. } => *baseline_decay,
            _ => 0.0,
        }));

    let stream = ParityStream::new(recipe.seed, parity.length, parity.train_range())?;
    let validation = ParityStream::new(
        recipe.seed ^ VALIDATION_STREAM,
        parity.length,
        parity.train_range(),
    )?
    .batch(0, parity.validation_samples)?;
    let mut rule = inference_rule(recipe, method);

    let started = Instant::now();
    monitor.start(progress.step, total_steps);

    while progress.step < total_steps {
        let epoch = (progress.step / steps_per_epoch) as usize + 1;
        let step = progress.step + 1;
        if progress.epoch.steps == 0 {
            progress.epoch = EpochSums {
                histogram: Histogram::with_steps(max_steps),
                ..EpochSums::default()
            };
        }
        let temperature = match (method, &schedules.temperature) {
            (_, Some(schedule)) => schedule.value(progress.step),
            (HaltingMethod::Gumbel { temperature, .. }, None) => *temperature,
            _ => 1.0,
        };
        let regulariser_weight = schedules
            .regulariser
            .map_or(1.0, |schedule| schedule.value(progress.step));
        let learning_rate = training.learning_rate_at(progress.step, total_steps);

        let batch = stream.batch(progress.step, training.batch_size)?;
        let (inputs, targets) = batch_tensors(&batch, &train_device);
        let all = trainee.network.forward_all_steps(inputs.clone(), max_steps);
        let step_losses = step_cross_entropy(all.logits.clone(), targets);
        let noise_shape = all.halting_logits.dims();

        let output = match *method {
            HaltingMethod::Pondernet {
                lambda_prior,
                kl_weight,
                ..
            } => {
                let p = halting_distribution(sigmoid(all.halting_logits));
                let kl = kl_to_geometric_prior(p.clone(), lambda_prior)?.mean();
                let task = expected_loss(p.clone(), step_losses).mean();
                StepOutput {
                    loss: task + kl.clone().mul_scalar(kl_weight * regulariser_weight),
                    distribution: p,
                    regulariser: kl.into_scalar::<f32>() as f64,
                }
            }
            HaltingMethod::StraightThrough { ponder_weight, .. } => {
                let p = halting_distribution(straight_through(all.halting_logits));
                relaxed_loss(p, step_losses, ponder_weight * regulariser_weight)
            }
            HaltingMethod::Gumbel {
                ponder_weight,
                hard,
                ..
            } => {
                let uniform = step_uniform(recipe.seed, progress.step, noise_shape, &train_device);
                let noise = logistic_from_uniform(uniform);
                let lambda = gumbel_sigmoid(all.halting_logits, noise, temperature, hard)?;
                let p = halting_distribution(lambda);
                relaxed_loss(p, step_losses, ponder_weight * regulariser_weight)
            }
            HaltingMethod::Reinforce {
                ponder_weight,
                baseline,
                ..
            } => {
                let rows = noise_shape[0];
                let lambda = sigmoid(all.halting_logits.clone()).detach();
                let uniform = step_uniform(recipe.seed, progress.step, noise_shape, &train_device);
                let p = halting_distribution(uniform.lower(lambda).float()).detach();
                let halting_steps = expected_steps(p.clone());
                let task = expected_loss(p.clone(), step_losses);
                let reward = (task.clone().detach()
                    + halting_steps
                        .clone()
                        .mul_scalar(ponder_weight * regulariser_weight))
                .neg();
                let mean_reward = reward.clone().mean().into_scalar::<f32>() as f64;
                let (baseline_value, baseline_loss) = match baseline {
                    Baseline::MovingAverage => {
                        let value =
                            Tensor::<1>::full([rows], moving_baseline.value(), &train_device);
                        moving_baseline.update(mean_reward);
                        (value, None)
                    }
                    Baseline::Learned => {
                        let predicted = trainee.baseline.forward(inputs).reshape([rows]);
                        let error = (predicted.clone() - reward.clone()).powi_scalar(2).mean();
                        (predicted, Some(error))
                    }
                };
                let log_pi = log_policy(all.halting_logits, halting_steps.clone().int());
                let mut loss = task.mean() + surrogate_loss(log_pi, reward, baseline_value).mean();
                if let Some(error) = baseline_loss {
                    loss = loss + error;
                }
                StepOutput {
                    loss,
                    distribution: p,
                    regulariser: halting_steps.mean().into_scalar::<f32>() as f64,
                }
            }
            HaltingMethod::Act { .. } => unreachable!("ACT trains in parity_act"),
        };

        let loss_value = output.loss.clone().into_scalar::<f32>() as f64;
        check_finite("training loss", loss_value, epoch, step)?;
        let gradients = GradientsParams::from_grads(output.loss.backward(), &trainee);
        check_finite_gradients(&trainee, &gradients, epoch, step)?;
        trainee = optimizer.step(learning_rate, trainee, gradients);
        progress.step = step;

        let p = output.distribution.detach();
        let predictions = mixture_predictions(all.logits.detach(), p.clone());
        let sums = &mut progress.epoch;
        sums.correct += count_correct(&predictions, &batch.targets);
        sums.seen += batch.targets.len();
        sums.compute += expected_steps(p.clone()).mean().into_scalar::<f32>() as f64;
        sums.histogram.extend(median_steps(p));
        sums.loss += loss_value;
        sums.regulariser += output.regulariser;
        sums.steps += 1;
        monitor.step(step, loss_value);

        if step % steps_per_epoch == 0 {
            let sums = std::mem::take(&mut progress.epoch);
            let validation_result = evaluate(
                &trainee.network.valid(),
                &validation,
                max_steps,
                rule,
                recipe.seed ^ VALIDATION_STREAM,
                &device,
            )?;
            // The schedule values of the epoch's last update, which is this step's.
            let mut schedule = learning_rate_log(training, learning_rate);
            if schedules.temperature.is_some() {
                schedule.insert("temperature".to_owned(), temperature);
            }
            if schedules.regulariser.is_some() {
                schedule.insert("regulariser_weight".to_owned(), regulariser_weight);
            }
            let regulariser = sums.regulariser / sums.steps.max(1) as f64;
            schedule.insert("regulariser".to_owned(), regulariser);
            let record = sums.record(
                epoch,
                step,
                validation_result.accuracy,
                progress.seconds_before + started.elapsed().as_secs_f64(),
                schedule,
            );
            monitor.epoch(&record);
            progress.history.push(record);
        }

        progress.moving_baseline = Some(moving_baseline);
        checkpoint_or_stop(
            checkpoints.as_ref(),
            monitor,
            epoch,
            step,
            total_steps,
            &trainee,
            &optimizer,
            || Progress {
                seconds_before: progress.seconds_before + started.elapsed().as_secs_f64(),
                ..progress.clone()
            },
        )?;
    }
    monitor.finish();
    let training_seconds = progress.seconds_before + started.elapsed().as_secs_f64();

    let model = trainee.network.valid();
    let validation_seed = recipe.seed ^ VALIDATION_STREAM;
    if let Some(inference) = &recipe.inference
        && !inference.tune_thresholds.is_empty()
    {
        rule = tune_threshold(
            &model,
            &validation,
            max_steps,
            rule,
            &inference.tune_thresholds,
            validation_seed,
            &device,
        )?;
    }
    let probe = match rule.threshold() {
        Some(threshold) => Some(probe_threshold(
            &model,
            &validation,
            max_steps,
            rule,
            threshold,
            validation_seed,
            &device,
        )?),
        None => None,
    };

    let mut evaluation = BTreeMap::new();
    for (split, range) in [
        ("test", parity.eval_range()),
        ("interpolation", parity.train_range()),
    ] {
        if split == "interpolation" && parity.eval_range() == parity.train_range() {
            continue;
        }
        let data = ParityStream::new(recipe.seed ^ EVALUATION_STREAM, parity.length, range)?
            .batch(0, parity.eval_samples)?;
        let mut result = evaluate(
            &model,
            &data,
            max_steps,
            rule,
            recipe.seed ^ SAMPLING_STREAM,
            &device,
        )?;
        result.flags = detect(
            &RunEvidence {
                histogram: &result.halting_histogram,
                max_steps,
                accuracy: result.accuracy,
                chance: CHANCE,
                soft_accuracy: result.soft_accuracy,
                expected_steps: result.expected_steps,
                threshold_probe: probe.clone(),
            },
            &FailureCriteria::default(),
        );
        evaluation.insert(split.to_owned(), result);
    }

    Ok(TrainingOutcome {
        history: progress.history,
        evaluation,
        training_seconds,
    })
}

/// Loss Σₙ pₙ·Lₙ + τ·Σₙ n·pₙ of the straight-through and Gumbel methods.
fn relaxed_loss(p: Tensor<2>, step_losses: Tensor<2>, ponder_weight: f64) -> StepOutput {
    let ponder = expected_steps(p.clone()).mean();
    let task = expected_loss(p.clone(), step_losses).mean();
    StepOutput {
        loss: task + ponder.clone().mul_scalar(ponder_weight),
        distribution: p,
        regulariser: ponder.into_scalar::<f32>() as f64,
    }
}

/// Cross-entropy of every step's output.
///
/// # Shapes
/// `logits`: `[batch, steps, classes]`, `targets`: `[batch]`; returns `[batch, steps]`.
fn step_cross_entropy(logits: Tensor<3>, targets: Tensor<1, Int>) -> Tensor<2> {
    let [batch, steps, classes] = logits.dims();
    let targets = targets
        .reshape([batch, 1])
        .expand([batch, steps])
        .reshape([batch * steps]);
    cross_entropy_per_sample(logits.reshape([batch * steps, classes]), targets)
        .reshape([batch, steps])
}

/// Class with the largest Σₙ pₙ·softmax(yₙ).
///
/// # Shapes
/// `logits`: `[batch, steps, classes]`, `p`: `[batch, steps]`.
fn mixture_predictions(logits: Tensor<3>, p: Tensor<2>) -> Vec<usize> {
    let [batch, _, classes] = logits.dims();
    let mixture = (softmax(logits, 2) * p.unsqueeze_dim::<3>(2))
        .sum_dim(1)
        .reshape([batch, classes]);
    argmax(mixture)
}

/// Median halting step of each sample, the first n with Σ_{j≤n} pⱼ ≥ 0.5; for a one-hot p it
/// is the halting step itself.
fn median_steps(p: Tensor<2>) -> Vec<usize> {
    let [_, steps] = p.dims();
    let values = p
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("a float tensor converts to f32");
    values
        .chunks(steps)
        .map(|row| {
            let mut cumulative = 0.0;
            for (index, value) in row.iter().enumerate() {
                cumulative += value;
                if cumulative >= 0.5 {
                    return index + 1;
                }
            }
            steps
        })
        .collect()
}

/// Evaluates the hard run under `rule` and the soft model on `data`, in chunks.
fn evaluate(
    model: &PonderNetwork,
    data: &ParityBatch,
    max_steps: usize,
    rule: HardRule,
    seed: u64,
    device: &Device,
) -> Result<Evaluation, TrainingError> {
    let device = device.clone().without_autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut predictions = Vec::with_capacity(data.batch_size());
    let mut steps = Vec::with_capacity(data.batch_size());
    let mut soft_predictions = Vec::with_capacity(data.batch_size());
    let mut expected_total = 0.0;
    for start in (0..data.batch_size()).step_by(EVAL_BATCH) {
        let chunk = slice_rows(data, start, (start + EVAL_BATCH).min(data.batch_size()));
        let (inputs, _) = batch_tensors(&chunk, &device);
        let hard = model.forward_hard(inputs.clone(), max_steps, rule, &mut rng)?;
        predictions.extend(argmax(hard.outputs));
        steps.extend(hard.halting_steps);

        let all = model.forward_all_steps(inputs, max_steps);
        let p = halting_distribution(sigmoid(all.halting_logits));
        expected_total += expected_steps(p.clone()).sum().into_scalar::<f32>() as f64;
        soft_predictions.extend(mixture_predictions(all.logits, p));
    }
    let samples = data.batch_size().max(1) as f64;
    let mut evaluation = summarise(&predictions, &steps, data);
    evaluation.soft_accuracy =
        Some(count_correct(&soft_predictions, &data.targets) as f64 / samples);
    evaluation.expected_steps = Some(expected_total / samples);
    evaluation.threshold = rule.threshold();
    Ok(evaluation)
}

/// Picks the most accurate candidate threshold on the validation data, the one with fewer
/// mean halting steps on a tie.
fn tune_threshold(
    model: &PonderNetwork,
    validation: &ParityBatch,
    max_steps: usize,
    rule: HardRule,
    candidates: &[f64],
    seed: u64,
    device: &Device,
) -> Result<HardRule, TrainingError> {
    let mut best: Option<(HardRule, f64, f64)> = None;
    for &candidate in candidates {
        let candidate_rule = rule.with_threshold(candidate);
        let result = evaluate(model, validation, max_steps, candidate_rule, seed, device)?;
        let better = match best {
            None => true,
            Some((_, accuracy, steps)) => {
                result.accuracy > accuracy
                    || (result.accuracy == accuracy && result.mean_halting_step < steps)
            }
        };
        if better {
            best = Some((candidate_rule, result.accuracy, result.mean_halting_step));
        }
    }
    Ok(best.map_or(rule, |(best_rule, _, _)| best_rule))
}

/// Validation accuracy at the threshold and [`PROBE_STEP`] on each side of it (the lower side
/// only when it stays positive).
fn probe_threshold(
    model: &PonderNetwork,
    validation: &ParityBatch,
    max_steps: usize,
    rule: HardRule,
    threshold: f64,
    seed: u64,
    device: &Device,
) -> Result<ThresholdProbe, TrainingError> {
    let mut accuracies = Vec::new();
    for candidate in [threshold - PROBE_STEP, threshold, threshold + PROBE_STEP] {
        if candidate <= 0.0 {
            continue;
        }
        let result = evaluate(
            model,
            validation,
            max_steps,
            rule.with_threshold(candidate),
            seed,
            device,
        )?;
        accuracies.push((candidate, result.accuracy));
    }
    Ok(ThresholdProbe { accuracies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SilentMonitor;
    use std::path::Path;

    /// A tiny parity recipe with the given `[halting]` body and extra sections.
    fn recipe(halting: &str, extra: &str, bias: f64) -> Result<Recipe, crate::RecipeError> {
        let text = format!(
            r#"
[parity]
length = 4
train_nonzeros = [1, 4]
eval_nonzeros = [3, 4]
eval_samples = 64
validation_samples = 32

[ponder]
hidden_size = 8
halting_bias = {bias}

[halting]
{halting}

[training]
epochs = 2
steps_per_epoch = 3
batch_size = 16
learning_rate = 0.01
{extra}
"#
        );
        let path = Path::new("test.toml");
        let recipe = Recipe::parse(&text, path)?;
        recipe.validate(path)?;
        Ok(recipe)
    }

    fn run(recipe: &Recipe) -> TrainingOutcome {
        let context = RunContext {
            device: Device::flex(),
            monitor: &mut SilentMonitor,
            checkpoints: None,
            resume: false,
        };
        train(recipe, context).expect("training runs")
    }

    #[test]
    fn every_method_trains_and_evaluates() {
        let methods = [
            "method = \"pondernet\"\nmax_steps = 4\nlambda_prior = 0.3\nkl_weight = 0.01",
            "method = \"straight_through\"\nmax_steps = 4\nponder_weight = 0.01",
            "method = \"gumbel\"\nmax_steps = 4\nponder_weight = 0.01\ntemperature = 0.5",
            "method = \"gumbel\"\nmax_steps = 4\nponder_weight = 0.01\nhard = true",
            "method = \"reinforce\"\nmax_steps = 4\nponder_weight = 0.01",
            "method = \"reinforce\"\nmax_steps = 4\nponder_weight = 0.01\nbaseline = \"learned\"",
        ];
        for halting in methods {
            let outcome = run(&recipe(halting, "", 1.0).unwrap());
            assert_eq!(outcome.history.len(), 2, "{halting}");
            let test = &outcome.evaluation["test"];
            assert_eq!(test.samples, 64, "{halting}");
            assert!(test.soft_accuracy.is_some(), "{halting}");
            let expected = test.expected_steps.unwrap();
            assert!((1.0..=4.0).contains(&expected), "{halting}: {expected}");
            assert!(test.max_halting_step <= 4, "{halting}");
            assert!(
                outcome.evaluation.contains_key("interpolation"),
                "{halting}"
            );
            assert_eq!(outcome.history[1].step, 6);
        }
    }

    #[test]
    fn schedules_are_logged_per_epoch() {
        let extra = r#"
[schedule.temperature]
shape = "linear"
start = 1.0
end = 0.2
start_step = 0
end_step = 6

[schedule.regulariser]
shape = "linear"
start = 0.0
end = 1.0
start_step = 2
end_step = 4

[inference]
rule = "cumulative_mass"
threshold = 0.5
tune_thresholds = [0.3, 0.5, 0.7]
"#;
        let halting = "method = \"gumbel\"\nmax_steps = 4\nponder_weight = 0.01";
        let outcome = run(&recipe(halting, extra, 1.0).unwrap());
        // The value logged for an epoch is the one used by its last step: step 2 of 6 gives
        // T = 1 − 0.8·2/6 and step 5 gives T = 1 − 0.8·5/6; the regulariser is 0 up to step 2
        // and 1 from step 4.
        let first = &outcome.history[0].schedule;
        let second = &outcome.history[1].schedule;
        assert!((first["temperature"] - (1.0 - 0.8 * 2.0 / 6.0)).abs() < 1e-12);
        assert!((second["temperature"] - (1.0 - 0.8 * 5.0 / 6.0)).abs() < 1e-12);
        assert_eq!(first["regulariser_weight"], 0.0);
        assert_eq!(second["regulariser_weight"], 1.0);
        let threshold = outcome.evaluation["test"].threshold.unwrap();
        assert!([0.3, 0.5, 0.7].contains(&threshold), "{threshold}");
    }

    // A +10 bias halts almost surely at step 1 (σ(10) ≈ 0.99995); a −10 bias runs to M, so the
    // soft model's expected steps start near 1 and near M = 4 respectively.
    #[test]
    fn halting_bias_positive_and_negative() {
        let halting = "method = \"pondernet\"\nmax_steps = 4\nlambda_prior = 0.3\nkl_weight = 0.0";
        let mut shallow = recipe(halting, "", 10.0).unwrap();
        shallow.training.learning_rate = 1e-6;
        let mut deep = recipe(halting, "", -10.0).unwrap();
        deep.training.learning_rate = 1e-6;
        let shallow = run(&shallow).evaluation["test"].expected_steps.unwrap();
        let deep = run(&deep).evaluation["test"].expected_steps.unwrap();
        assert!(shallow < 1.01, "expected steps with bias +10: {shallow}");
        assert!(deep > 3.99, "expected steps with bias −10: {deep}");
    }

    #[test]
    fn recipe_rejects_bad_method_values() {
        let cases = [
            (
                "method = \"pondernet\"\nmax_steps = 4\nlambda_prior = 0.0\nkl_weight = 0.01",
                "",
            ),
            (
                "method = \"pondernet\"\nmax_steps = 0\nlambda_prior = 0.2\nkl_weight = 0.01",
                "",
            ),
            (
                "method = \"gumbel\"\nmax_steps = 4\nponder_weight = 0.01\ntemperature = 0.0",
                "",
            ),
            (
                "method = \"reinforce\"\nmax_steps = 4\nponder_weight = -1.0",
                "",
            ),
            (
                "method = \"reinforce\"\nmax_steps = 4\nponder_weight = 0.1\nbaseline_decay = 1.0",
                "",
            ),
            (
                "method = \"straight_through\"\nmax_steps = 4\nponder_weight = 0.01",
                "[inference]\nrule = \"signal\"",
            ),
            (
                "method = \"straight_through\"\nmax_steps = 4\nponder_weight = 0.01",
                "[inference]\nrule = \"sampled\"\ntune_thresholds = [0.5]",
            ),
            (
                "method = \"straight_through\"\nmax_steps = 4\nponder_weight = 0.01",
                "[schedule.temperature]\nshape = \"linear\"\nstart = 1.0\nend = 0.1\nend_step = 5",
            ),
            (
                "method = \"act\"\nmax_steps = 4\nponder_weight = 0.01",
                "[inference]\nrule = \"sampled\"",
            ),
        ];
        for (halting, extra) in cases {
            assert!(
                recipe(halting, extra, 1.0).is_err(),
                "accepted {halting} with {extra}"
            );
        }
    }

    #[test]
    fn act_recipe_gets_failure_flags_checked() {
        let halting = "method = \"act\"\nmax_steps = 4\nponder_weight = 0.01";
        let outcome = run(&recipe(halting, "", -10.0).unwrap());
        let test = &outcome.evaluation["test"];
        // With bias −10 nearly every sample runs to M = 4 after two tiny epochs.
        assert!(
            test.flags
                .iter()
                .any(|flag| flag.kind == haltlab_eval::FailureKind::NeverStops),
            "{:?} with histogram {:?}",
            test.flags,
            test.halting_histogram
        );
    }
}
