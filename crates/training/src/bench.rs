//! Timed workloads of `haltlab bench`, run through the same training loops and inference
//! engine as `haltlab run`: parity training steps timed from the loop's per-step progress, and
//! hard early-exit inference timed against full-depth inference on the same inputs.

use std::collections::BTreeSet;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use haltlab_eval::bench::{BatchTiming, RssSample, TrainingThroughput, resident_memory_mib};
use haltlab_eval::latency::LatencySummary;
use haltlab_eval::sweep::flop_fraction_of_exits;
use haltlab_halting::exits::ExitRule;
use haltlab_model::exit_engine::{ExitStages, infer_full, infer_hard};

use crate::{Monitor, Recipe, RunContext, TrainingError, TrainingOutcome, pondering};

/// A monitor that records the wall-clock time at the end of every optimiser step and the
/// resident memory at chosen steps.
#[derive(Debug)]
pub struct StepClock {
    started: Instant,
    /// Seconds from `started` at the end of each step, in step order.
    pub marks: Vec<f64>,
    rss_steps: BTreeSet<u64>,
    /// Resident memory at the steps in `rss_steps` that were reached.
    pub rss: Vec<RssSample>,
}

impl StepClock {
    /// Creates a clock that also reads resident memory after each step in `rss_steps`.
    pub fn new(rss_steps: impl IntoIterator<Item = u64>) -> Self {
        Self {
            started: Instant::now(),
            marks: Vec::new(),
            rss_steps: rss_steps.into_iter().collect(),
            rss: Vec::new(),
        }
    }
}

impl Monitor for StepClock {
    fn step(&mut self, step: u64, _loss: f64) {
        self.marks.push(self.started.elapsed().as_secs_f64());
        if self.rss_steps.contains(&step)
            && let Some((rss_mib, _)) = resident_memory_mib()
        {
            self.rss.push(RssSample { step, rss_mib });
        }
    }
}

/// Trains a parity recipe without checkpoints and times its steps after `warmup` steps.
///
/// The recipe should train one epoch, so that the validation pass at the epoch's end falls
/// after the last timed step. Returns the training outcome and the throughput, with the mean
/// halting step of the epoch and the resident memory at `rss_steps`.
pub fn time_parity_training(
    recipe: &Recipe,
    device: Device,
    warmup: usize,
    rss_steps: &[u64],
) -> Result<(TrainingOutcome, TrainingThroughput), TrainingError> {
    let mut clock = StepClock::new(rss_steps.iter().copied());
    let outcome = pondering::train(
        recipe,
        RunContext {
            device,
            monitor: &mut clock,
            checkpoints: None,
            resume: false,
        },
    )?;
    let mut throughput =
        TrainingThroughput::from_step_marks(&clock.marks, warmup, recipe.training.batch_size)
            .ok_or(TrainingError::BenchTooShort {
                steps: clock.marks.len(),
                warmup,
            })?;
    throughput.mean_halting_step = outcome
        .history
        .last()
        .map_or(0.0, |record| record.mean_halting_step);
    throughput.rss = clock.rss;
    throughput.peak_rss_mib = resident_memory_mib().map(|(_, peak)| peak);
    Ok((outcome, throughput))
}

/// Returns the form of `model` to time inference with: its faster inference form on flex, where
/// that form was measured (the `exit_mlp_stage` criterion group), and `None` on other backends.
/// The form's first stage copies its input through the host, which would distort GPU timings.
pub fn timed_form(
    model: &(impl ExitStages + ?Sized),
    device: &Device,
) -> Option<Box<dyn ExitStages>> {
    if device.clone().without_autodiff() == Device::flex() {
        model.inference_form()
    } else {
        None
    }
}

/// Wall times of hard early exits and of full-depth inference, call by call.
#[derive(Debug, Clone, Default)]
pub struct ExitCallTimes {
    /// Seconds of each [`infer_hard`] call.
    pub exits: Vec<f64>,
    /// Seconds of each [`infer_full`] call on the same input.
    pub full: Vec<f64>,
    /// Exit head of every sample of the first timed round, in input order.
    pub exit_layer: Vec<usize>,
}

/// Times `rounds` passes over `batches`, each batch through [`infer_hard`] and then through
/// [`infer_full`]. The first `warmup_calls` batches run once before timing, because the first
/// calls allocate buffers.
pub fn time_exit_calls(
    model: &(impl ExitStages + ?Sized),
    batches: &[Tensor<2>],
    rule: &mut dyn ExitRule,
    rounds: usize,
    warmup_calls: usize,
) -> ExitCallTimes {
    for inputs in batches.iter().take(warmup_calls) {
        infer_hard(model, inputs.clone(), rule);
        infer_full(model, inputs.clone());
    }
    let mut times = ExitCallTimes::default();
    for round in 0..rounds {
        for inputs in batches {
            let started = Instant::now();
            let hard = infer_hard(model, inputs.clone(), rule);
            times.exits.push(started.elapsed().as_secs_f64());
            let started = Instant::now();
            infer_full(model, inputs.clone());
            times.full.push(started.elapsed().as_secs_f64());
            if round == 0 {
                times.exit_layer.extend(hard.exit_layer);
            }
        }
    }
    times
}

impl ExitCallTimes {
    /// Summarises the calls of batches with `batch_size` rows each, with the counted FLOP
    /// fraction of the exits taken.
    pub fn summary(
        &self,
        batch_size: usize,
        layer_flops: &[u64],
        head_flops: &[u64],
    ) -> BatchTiming {
        let samples = (self.exits.len() * batch_size) as f64;
        let per_second = |times: &[f64]| samples / times.iter().sum::<f64>().max(1e-12);
        let mean_exit_layer = if self.exit_layer.is_empty() {
            0.0
        } else {
            self.exit_layer.iter().sum::<usize>() as f64 / self.exit_layer.len() as f64
        };
        BatchTiming {
            exits: LatencySummary::from_seconds(&self.exits),
            full: LatencySummary::from_seconds(&self.full),
            exit_samples_per_second: per_second(&self.exits),
            full_samples_per_second: per_second(&self.full),
            mean_exit_layer,
            flop_fraction: Some(flop_fraction_of_exits(
                layer_flops,
                head_flops,
                &self.exit_layer,
            )),
            exit_layer_agreement: None,
        }
    }
}
