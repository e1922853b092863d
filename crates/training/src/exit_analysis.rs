//! Analysis of a trained early-exit network: threshold sweeps per exit rule, calibration on
//! the validation split, counted and measured compute, confidence calibration, and
//! distribution shift.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use haltlab_data::images::{self, CsvLayout, ImageSet};
use haltlab_data::shift;
use haltlab_eval::calibration::{
    CalibratedThreshold, choose_risk_controlled, choose_within_accuracy, choose_within_budget,
};
use haltlab_eval::latency::{LatencySummary, expected_calibration_error};
use haltlab_eval::sweep::{SweepPoint, flop_fraction_of_exits, mark_pareto};
use haltlab_eval::{ComputeReport, ExitReport, Histogram, ShiftReport, accuracy};
use haltlab_halting::exits::{
    ConfidenceRule, EntropyRule, ExitRule, GateRule, PatienceRule, row_argmax, row_confidence,
};
use haltlab_model::exit_engine::{ExitStages, read_floats, replay_exits};

use crate::TrainingError;
use crate::bench::{time_exit_calls, timed_form};
use crate::recipe::{ExitModel, MnistTask};

/// Batch size of evaluation passes; it changes speed, not results.
const EVAL_BATCH: usize = 500;

/// Bins of the expected calibration error.
const ECE_BINS: usize = 15;

/// Seed of the random shifts, fixed so that every run gets the same shifted images.
const SHIFT_SEED: u64 = 17;

/// Rules swept, in report order; `gate` only for a gated network.
pub const RULES: [&str; 4] = ["confidence", "entropy", "patience", "gate"];

/// Logits of every head for every sample of a set, read back to the host.
#[derive(Debug, Clone)]
pub struct HeadOutputs {
    pub classes: usize,
    /// `head_logits[s]` contains `samples` rows of `classes` logits of head s, row-major.
    pub head_logits: Vec<Vec<f32>>,
    /// `gates[s]` contains the halting probability λ of gate s for every sample; empty for an
    /// ungated network.
    pub gates: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

impl HeadOutputs {
    /// Runs the whole network on every image of `set`, in batches.
    pub fn compute(model: &impl ExitStages, set: &ImageSet, device: &Device) -> Self {
        let mut head_logits = vec![Vec::new(); model.depth()];
        let mut gates: Vec<Vec<f32>> = Vec::new();
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(EVAL_BATCH) {
            let inputs = image_inputs(set, chunk, device);
            let (logits, chunk_gates) = model.forward_with_gates(inputs);
            for (all, logits) in head_logits.iter_mut().zip(logits) {
                all.extend(read_floats(logits));
            }
            gates.resize(chunk_gates.len(), Vec::new());
            for (all, gate) in gates.iter_mut().zip(chunk_gates) {
                all.extend(read_floats(gate));
            }
        }
        Self {
            classes: set.classes,
            head_logits,
            gates,
            labels: set.labels.iter().map(|&label| label as usize).collect(),
        }
    }

    pub fn samples(&self) -> usize {
        self.labels.len()
    }

    /// Rules that apply to this network: all of [`RULES`], less `gate` without gates.
    pub fn rules(&self) -> Vec<&'static str> {
        RULES
            .into_iter()
            .filter(|&rule| rule != "gate" || !self.gates.is_empty())
            .collect()
    }

    /// Mean soft expected FLOPs per sample over the gates' halting distribution
    /// pₗ = λₗ ∏_{j<l} (1 − λⱼ), with the last layer taking the remaining mass, divided by the
    /// full network's FLOPs; `None` for an ungated network.
    pub fn soft_flop_fraction(&self, layer_flops: &[u64], head_flops: &[u64]) -> Option<f64> {
        if self.gates.is_empty() {
            return None;
        }
        let mut cumulative = Vec::with_capacity(layer_flops.len());
        let mut total = 0.0;
        for (layer, head) in layer_flops.iter().zip(head_flops) {
            total += (layer + head) as f64;
            cumulative.push(total);
        }
        let depth = cumulative.len();
        let mut expected = 0.0;
        for sample in 0..self.samples() {
            let mut remaining = 1.0f64;
            for (layer, cost) in cumulative.iter().enumerate() {
                let halt = if layer + 1 == depth {
                    1.0
                } else {
                    self.gates[layer][sample] as f64
                };
                expected += remaining * halt * cost;
                remaining *= 1.0 - halt;
            }
        }
        Some(expected / self.samples().max(1) as f64 / total.max(1.0))
    }

    /// Argmax of head `head` for every sample.
    pub fn predictions(&self, head: usize) -> Vec<usize> {
        self.head_logits[head]
            .chunks_exact(self.classes)
            .map(row_argmax)
            .collect()
    }
}

/// Builds a rule by name: `confidence` (threshold a probability), `entropy` (nats),
/// `patience` (heads, rounded down) or `gate` (a halting probability).
pub fn make_rule(rule: &str, threshold: f64) -> Box<dyn ExitRule> {
    match rule {
        "gate" => Box::new(GateRule::new(threshold as f32)),
        "entropy" => Box::new(EntropyRule {
            threshold: threshold as f32,
        }),
        "patience" => Box::new(PatienceRule::new(threshold.max(0.0) as usize)),
        _ => Box::new(ConfidenceRule {
            threshold: threshold as f32,
        }),
    }
}

/// Candidate thresholds of a rule, from the most conservative (most compute) to the least.
pub fn candidate_thresholds(rule: &str, depth: usize, classes: usize) -> Vec<f64> {
    match rule {
        "entropy" => {
            let max = (classes.max(2) as f64).ln();
            let mut values = vec![0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.03, 0.05, 0.07];
            values.extend((1..=40).map(|step| step as f64 * 0.1).filter(|&h| h < max));
            values.push(max);
            values
        }
        "patience" => (0..depth.max(1)).rev().map(|t| t as f64).collect(),
        // Confidence and gate thresholds are probabilities.
        _ => {
            let mut values = vec![1.0, 0.9999, 0.9995, 0.999, 0.998, 0.995, 0.99, 0.985];
            values.extend((0..=45).map(|step| 0.98 - step as f64 * 0.02));
            values.push(0.0);
            values
        }
    }
}

/// Replays one rule at one threshold on precomputed head outputs.
pub fn sweep_point(
    outputs: &HeadOutputs,
    rule: &str,
    threshold: f64,
    layer_flops: &[u64],
    head_flops: &[u64],
) -> SweepPoint {
    let hard = replay_exits(
        &outputs.head_logits,
        &outputs.gates,
        outputs.classes,
        make_rule(rule, threshold).as_mut(),
    );
    let last = outputs.predictions(outputs.head_logits.len() - 1);
    let disagreements = hard
        .predictions
        .iter()
        .zip(&last)
        .filter(|(early, full)| early != full)
        .count();
    let mut histogram = Histogram::with_steps(outputs.head_logits.len());
    histogram.extend(hard.exit_layer.iter().copied());
    SweepPoint {
        rule: rule.to_owned(),
        threshold,
        accuracy: accuracy(&hard.predictions, &outputs.labels),
        flop_fraction: flop_fraction_of_exits(layer_flops, head_flops, &hard.exit_layer),
        mean_exit_layer: histogram.mean(),
        disagreement: disagreements as f64 / outputs.samples().max(1) as f64,
        exit_shares: histogram.shares(),
        pareto: false,
    }
}

fn sweep(outputs: &HeadOutputs, layer_flops: &[u64], head_flops: &[u64]) -> Vec<SweepPoint> {
    let depth = outputs.head_logits.len();
    let mut points = Vec::new();
    for rule in outputs.rules() {
        for threshold in candidate_thresholds(rule, depth, outputs.classes) {
            points.push(sweep_point(
                outputs,
                rule,
                threshold,
                layer_flops,
                head_flops,
            ));
        }
    }
    mark_pareto(&mut points);
    points
}

/// Chooses thresholds on the validation sweep by each criterion, for every rule.
///
/// The first entry is normally the confidence rule within `accuracy_tolerance` of the last
/// exit. The compute and shift reports use the first entry, whichever rule it has.
fn calibrate(
    validation: &HeadOutputs,
    points: &[SweepPoint],
    exits: &ExitModel,
) -> Vec<CalibratedThreshold> {
    let last_accuracy = accuracy(
        &validation.predictions(validation.head_logits.len() - 1),
        &validation.labels,
    );
    let mut chosen = Vec::new();
    for rule in validation.rules() {
        let indices: Vec<usize> = (0..points.len())
            .filter(|&index| points[index].rule == rule)
            .collect();
        let subset: Vec<SweepPoint> = indices.iter().map(|&index| points[index].clone()).collect();
        let order: Vec<usize> = (0..subset.len()).collect();
        let picks = [
            (
                "accuracy_within",
                exits.accuracy_tolerance,
                choose_within_accuracy(&subset, last_accuracy, exits.accuracy_tolerance),
            ),
            (
                "flop_budget",
                exits.flop_budget,
                choose_within_budget(&subset, exits.flop_budget),
            ),
            (
                "risk_controlled",
                exits.risk_tolerance,
                choose_risk_controlled(
                    &subset,
                    &order,
                    validation.samples(),
                    exits.risk_tolerance,
                    exits.risk_alpha,
                ),
            ),
        ];
        for (criterion, target, pick) in picks {
            if let Some(index) = pick {
                chosen.push(CalibratedThreshold {
                    criterion: criterion.to_owned(),
                    target,
                    rule: rule.to_owned(),
                    threshold: subset[index].threshold,
                    validation: subset[index].clone(),
                    test: None,
                });
            }
        }
    }
    chosen
}

/// Runs every analysis of a trained network: sweeps and calibration, ECE per exit, measured
/// latency, and shifted test sets.
#[allow(clippy::too_many_arguments)]
pub fn analyse(
    model: &impl ExitStages,
    validation_set: &ImageSet,
    test_set: &ImageSet,
    mnist: &MnistTask,
    exits: &ExitModel,
    layer_flops: &[u64],
    head_flops: &[u64],
    device: &Device,
) -> Result<ExitReport, TrainingError> {
    let validation = HeadOutputs::compute(model, validation_set, device);
    let test = HeadOutputs::compute(model, test_set, device);
    let validation_points = sweep(&validation, layer_flops, head_flops);
    let test_points = sweep(&test, layer_flops, head_flops);

    let mut calibrated = calibrate(&validation, &validation_points, exits);
    for choice in &mut calibrated {
        choice.test = Some(sweep_point(
            &test,
            &choice.rule,
            choice.threshold,
            layer_flops,
            head_flops,
        ));
    }

    let ece_per_exit = (0..test.head_logits.len())
        .map(|head| {
            let confidences: Vec<f64> = test.head_logits[head]
                .chunks_exact(test.classes)
                .map(|row| row_confidence(row) as f64)
                .collect();
            let correct: Vec<bool> = test
                .predictions(head)
                .iter()
                .zip(&test.labels)
                .map(|(prediction, label)| prediction == label)
                .collect();
            expected_calibration_error(&confidences, &correct, ECE_BINS)
        })
        .collect();

    let mut report = ExitReport {
        layer_flops: layer_flops.to_vec(),
        head_flops: head_flops.to_vec(),
        sweep: test_points,
        calibrated,
        ece_per_exit,
        soft_flop_fraction: test.soft_flop_fraction(layer_flops, head_flops),
        compute: None,
        shifts: BTreeMap::new(),
    };
    if let Some(choice) = report.calibrated.first().cloned() {
        if exits.latency_samples > 0 {
            report.compute = Some(measure_compute(model, test_set, &choice, exits, device));
        }
        report.shifts = shift_reports(
            model,
            test_set,
            mnist,
            &choice,
            exits.rule.name(),
            exits.threshold,
            layer_flops,
            head_flops,
            device,
        )?;
    }
    Ok(report)
}

/// Times early exits at `choice` against the full network, at batch size 1 and batched.
pub fn measure_compute(
    model: &impl ExitStages,
    test_set: &ImageSet,
    choice: &CalibratedThreshold,
    exits: &ExitModel,
    device: &Device,
) -> ComputeReport {
    // Both the exits and the full-depth baseline run in the same form.
    let form = timed_form(model, device);
    let model: &dyn ExitStages = match &form {
        Some(form) => form.as_ref(),
        None => model,
    };
    let mut rule = make_rule(&choice.rule, choice.threshold);
    let samples = exits.latency_samples.min(test_set.len());
    let single: Vec<Tensor<2>> = (0..samples)
        .map(|index| image_inputs(test_set, &[index], device))
        .collect();
    let single_times = time_exit_calls(model, &single, rule.as_mut(), 1, 10);

    let batch_size = exits.latency_batch_size.min(test_set.len().max(1));
    let indices: Vec<usize> = (0..test_set.len()).collect();
    let batches: Vec<Tensor<2>> = indices
        .chunks(batch_size)
        .filter(|chunk| chunk.len() == batch_size)
        .map(|chunk| image_inputs(test_set, chunk, device))
        .collect();
    // One pass over all batches warms up, then five are timed.
    let batched_times = time_exit_calls(model, &batches, rule.as_mut(), 5, batches.len());

    let ratio = |numerator: &LatencySummary, denominator: &LatencySummary| {
        if denominator.p50_ms > 0.0 {
            numerator.p50_ms / denominator.p50_ms
        } else {
            0.0
        }
    };
    let batch1_exits = LatencySummary::from_seconds(&single_times.exits);
    let batch1_full = LatencySummary::from_seconds(&single_times.full);
    let batched_exits = LatencySummary::from_seconds(&batched_times.exits);
    let batched_full = LatencySummary::from_seconds(&batched_times.full);
    let mut histogram = Histogram::with_steps(model.depth());
    histogram.extend(single_times.exit_layer.iter().copied());
    ComputeReport {
        rule: choice.rule.clone(),
        threshold: choice.threshold,
        validation_flop_fraction: choice.validation.flop_fraction,
        counted_flop_fraction: choice
            .test
            .as_ref()
            .map_or(choice.validation.flop_fraction, |test| test.flop_fraction),
        mean_layers: choice
            .test
            .as_ref()
            .map_or(histogram.mean(), |test| test.mean_exit_layer),
        batch1_time_fraction: ratio(&batch1_exits, &batch1_full),
        batched_time_fraction: ratio(&batched_exits, &batched_full),
        batch1_exits,
        batch1_full,
        batch_size,
        batched_exits,
        batched_full,
    }
}

#[allow(clippy::too_many_arguments)]
fn shift_reports(
    model: &impl ExitStages,
    test_set: &ImageSet,
    mnist: &MnistTask,
    choice: &CalibratedThreshold,
    recipe_rule: &str,
    recipe_threshold: f64,
    layer_flops: &[u64],
    head_flops: &[u64],
    device: &Device,
) -> Result<BTreeMap<String, ShiftReport>, TrainingError> {
    let mut sets = vec![
        (
            "gaussian_noise".to_owned(),
            format!(
                "Gaussian noise, std {} on [0, 1] pixels",
                mnist.shift_noise_std
            ),
            shift::add_gaussian_noise(test_set, mnist.shift_noise_std, SHIFT_SEED)?,
        ),
        (
            "rotation".to_owned(),
            format!(
                "rotation by up to ±{} degrees",
                mnist.shift_rotation_degrees
            ),
            shift::rotate(test_set, mnist.shift_rotation_degrees, SHIFT_SEED)?,
        ),
    ];
    if let Some(path) = &mnist.uci_digits_path {
        sets.push((
            "uci_digits".to_owned(),
            uci_description(path),
            load_uci(path, test_set)?,
        ));
    }
    let mut reports = BTreeMap::new();
    for (name, description, set) in sets {
        let outputs = HeadOutputs::compute(model, &set, device);
        let points = [
            (choice.rule.as_str(), choice.threshold),
            (recipe_rule, recipe_threshold),
        ]
        .into_iter()
        .map(|(rule, threshold)| sweep_point(&outputs, rule, threshold, layer_flops, head_flops))
        .collect();
        let accuracy_per_exit = (0..outputs.head_logits.len())
            .map(|head| accuracy(&outputs.predictions(head), &outputs.labels))
            .collect();
        reports.insert(
            name,
            ShiftReport {
                description,
                samples: set.len(),
                accuracy_per_exit,
                points,
            },
        );
    }
    Ok(reports)
}

fn uci_description(path: &Path) -> String {
    format!(
        "UCI optical digits from {}, 8x8 resized bilinearly to 28x28, values 0–16 scaled to [0, 1]",
        path.display()
    )
}

/// Loads UCI digits and resizes them to the MNIST test images' size.
fn load_uci(path: &Path, like: &ImageSet) -> Result<ImageSet, TrainingError> {
    let digits = images::load_csv(path, CsvLayout::UCI_DIGITS)?;
    Ok(shift::resize(&digits, like.height, like.width)?)
}

/// Builds the `[indices.len(), height * width]` input tensor of the images at `indices`.
pub fn image_inputs(set: &ImageSet, indices: &[usize], device: &Device) -> Tensor<2> {
    let size = set.image_size();
    let mut pixels = Vec::with_capacity(indices.len() * size);
    for &index in indices {
        pixels.extend_from_slice(&set.pixels[index * size..(index + 1) * size]);
    }
    Tensor::from_data(TensorData::new(pixels, [indices.len(), size]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three samples, two heads, two classes. Head 1 confidences: 0.88 (right), 0.5 (tie,
    // argmax 0, wrong), 0.73 (right); head 2 predicts class 1 for every sample.
    fn outputs() -> HeadOutputs {
        HeadOutputs {
            classes: 2,
            head_logits: vec![
                vec![2.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                vec![0.0, 3.0, 0.0, 3.0, 0.0, 3.0],
            ],
            gates: vec![vec![0.5, 1.0, 0.0], vec![0.2, 0.2, 0.2]],
            labels: vec![0, 1, 1],
        }
    }

    #[test]
    fn sweep_point_by_hand() {
        let outputs = outputs();
        // Threshold 0.7: samples 0 and 2 exit at head 1, sample 1 runs to head 2.
        let point = sweep_point(&outputs, "confidence", 0.7, &[10, 8], &[1, 1]);
        assert!((point.accuracy - 1.0).abs() < 1e-12);
        assert!((point.flop_fraction - (11.0 + 20.0 + 11.0) / 3.0 / 20.0).abs() < 1e-12);
        assert_eq!(point.exit_shares, vec![2.0 / 3.0, 1.0 / 3.0]);
        // Sample 0 predicts 0 at head 1 where head 2 predicts 1.
        assert!((point.disagreement - 1.0 / 3.0).abs() < 1e-12);

        let never = sweep_point(&outputs, "confidence", 1.0, &[10, 8], &[1, 1]);
        assert_eq!(never.flop_fraction, 1.0);
        assert_eq!(never.disagreement, 0.0);
    }

    // Costs 11 and 20 of 20: λ₁ = 0.5, 1, 0 give expected costs 15.5, 11 and 20.
    #[test]
    fn soft_flop_fraction_by_hand() {
        let fraction = outputs().soft_flop_fraction(&[10, 8], &[1, 1]).unwrap();
        assert!((fraction - (15.5 + 11.0 + 20.0) / 3.0 / 20.0).abs() < 1e-12);
        let mut ungated = outputs();
        ungated.gates.clear();
        assert_eq!(ungated.soft_flop_fraction(&[10, 8], &[1, 1]), None);
        assert_eq!(ungated.rules(), vec!["confidence", "entropy", "patience"]);
    }

    #[test]
    fn candidates_run_conservative_first() {
        for rule in RULES {
            let thresholds = candidate_thresholds(rule, 4, 10);
            let first = sweep_point(&outputs(), rule, thresholds[0], &[10, 8], &[1, 1]);
            let last = sweep_point(
                &outputs(),
                rule,
                *thresholds.last().unwrap(),
                &[10, 8],
                &[1, 1],
            );
            assert!(first.flop_fraction >= last.flop_fraction, "{rule}");
        }
    }
}
