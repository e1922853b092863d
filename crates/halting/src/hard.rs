//! Hard halting at inference: each sample stops at one step and later steps are not computed
//! for it.
//!
//! A step returns, for every sample still running, its output and its halting signal
//! λₙ ∈ [0, 1] (the conditional halting probability of PonderNet, or the halting unit hₙ of
//! ACT). A [`HardRule`] turns the signal into a yes/no decision per sample. Samples that halt
//! leave the batch (batch compaction), so step n + 1 computes only the samples still running,
//! and the loop ends once every sample has halted or step M has run.

use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
pub use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::HaltingError;

/// How a running sample decides to halt after step n. Every sample halts at step M.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum HardRule {
    /// Halt with probability λₙ: a Bernoulli(λₙ) draw from the caller's seeded generator,
    /// PonderNet's inference rule (Banino et al. 2021).
    Sampled,
    /// Halt when λₙ ≥ `threshold`.
    Signal { threshold: f64 },
    /// Halt when the halting mass 1 − ∏_{j≤n} (1 − λⱼ), the probability of having halted by
    /// step n under PonderNet's distribution, is ≥ `threshold`.
    CumulativeMass { threshold: f64 },
    /// Halt when Σ_{j≤n} λⱼ ≥ `threshold`, ACT's rule (Graves 2016) with threshold 1 − ε.
    CumulativeSum { threshold: f64 },
}

impl HardRule {
    /// Returns the threshold of a threshold rule, or `None` for [`HardRule::Sampled`].
    pub fn threshold(&self) -> Option<f64> {
        match *self {
            HardRule::Sampled => None,
            HardRule::Signal { threshold }
            | HardRule::CumulativeMass { threshold }
            | HardRule::CumulativeSum { threshold } => Some(threshold),
        }
    }

    /// Returns the same rule with another threshold; [`HardRule::Sampled`] stays unchanged.
    pub fn with_threshold(self, threshold: f64) -> Self {
        match self {
            HardRule::Sampled => HardRule::Sampled,
            HardRule::Signal { .. } => HardRule::Signal { threshold },
            HardRule::CumulativeMass { .. } => HardRule::CumulativeMass { threshold },
            HardRule::CumulativeSum { .. } => HardRule::CumulativeSum { threshold },
        }
    }

    /// Checks that a threshold is finite and positive. A threshold of 0 or below would halt
    /// every sample at step 1 whatever the signal.
    pub fn check(&self) -> Result<(), HaltingError> {
        match self.threshold() {
            Some(threshold) if !(threshold > 0.0 && threshold.is_finite()) => {
                Err(HaltingError::InvalidParameter {
                    name: "threshold",
                    value: threshold,
                    expected: "a positive finite number, such as 0.5",
                })
            }
            _ => Ok(()),
        }
    }
}

/// A model that runs one step on the samples still in its batch and can drop samples.
pub trait CompactStep {
    /// Runs step `step` (counted from 1) for the running rows and returns their outputs,
    /// `[rows, features]`, and halting signals λₙ, `[rows]`.
    fn step(&mut self, step: usize) -> (Tensor<2>, Tensor<1>);
    /// Keeps the running rows at `keep` (positions in the current running batch, ascending)
    /// and drops the others.
    fn retain(&mut self, keep: Tensor<1, Int>);
}

/// Result of a hard-halting run.
#[derive(Debug, Clone)]
pub struct HardRun {
    /// Each sample's output at its own halting step, in the original order. `[batch, features]`
    pub outputs: Tensor<2>,
    /// Halting step of each sample, counted from 1, in the original order.
    pub halting_steps: Vec<usize>,
    /// Steps run: the largest halting step in the batch.
    pub steps_run: usize,
    /// Sample-steps computed, Σₙ (samples running at step n); equals Σ halting_steps.
    pub sample_steps: usize,
}

/// Per-sample running totals that the threshold rules compare against.
struct Running {
    /// Original index of each running row.
    index: Vec<usize>,
    /// ∏ (1 − λⱼ) so far.
    survival: Vec<f64>,
    /// Σ λⱼ so far.
    sum: Vec<f64>,
}

/// Runs `model` with hard halting and batch compaction for a batch of `batch` samples.
///
/// `rng` draws the Bernoulli decisions of [`HardRule::Sampled`], one uniform number per running
/// sample and step in row order; the other rules do not use it. The model's `step` is never
/// called with zero rows, and `retain` only when some rows halted and some run on.
pub fn run_hard(
    model: &mut impl CompactStep,
    batch: usize,
    max_steps: usize,
    rule: HardRule,
    rng: &mut ChaCha8Rng,
) -> Result<HardRun, HaltingError> {
    rule.check()?;
    if max_steps == 0 {
        return Err(HaltingError::InvalidParameter {
            name: "max_steps",
            value: 0.0,
            expected: "at least 1",
        });
    }
    if batch == 0 {
        return Err(HaltingError::InvalidShape {
            name: "batch",
            problem: "0 samples; hard halting needs at least one sample to run".to_owned(),
        });
    }

    let mut running = Running {
        index: (0..batch).collect(),
        survival: vec![1.0; batch],
        sum: vec![0.0; batch],
    };
    let mut halting_steps = vec![0; batch];
    let mut pieces = Vec::new();
    let mut piece_order = Vec::with_capacity(batch);
    let mut sample_steps = 0;
    let mut steps_run = 0;

    for step in 1..=max_steps {
        let (outputs, signal) = model.step(step);
        steps_run = step;
        sample_steps += running.index.len();
        let signal = signal
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("a float tensor converts to f32");

        let mut halted = Vec::new();
        let mut kept = Vec::new();
        for (row, &lambda) in signal.iter().enumerate() {
            let lambda = f64::from(lambda);
            running.survival[row] *= 1.0 - lambda;
            running.sum[row] += lambda;
            let halts = step == max_steps
                || match rule {
                    HardRule::Sampled => rng.random::<f64>() < lambda,
                    HardRule::Signal { threshold } => lambda >= threshold,
                    HardRule::CumulativeMass { threshold } => {
                        1.0 - running.survival[row] >= threshold
                    }
                    HardRule::CumulativeSum { threshold } => running.sum[row] >= threshold,
                };
            if halts {
                halted.push(row);
            } else {
                kept.push(row);
            }
        }

        let device = outputs.device();
        let positions = |rows: &[usize]| {
            let rows: Vec<i64> = rows.iter().map(|&row| row as i64).collect();
            let len = rows.len();
            Tensor::<1, Int>::from_data(TensorData::new(rows, [len]), &device)
        };
        if !halted.is_empty() {
            let halted_outputs = if kept.is_empty() {
                outputs
            } else {
                outputs.select(0, positions(&halted))
            };
            pieces.push(halted_outputs);
            for &row in &halted {
                halting_steps[running.index[row]] = step;
                piece_order.push(running.index[row]);
            }
        }
        if kept.is_empty() {
            break;
        }
        if !halted.is_empty() {
            model.retain(positions(&kept));
            running = Running {
                index: kept.iter().map(|&row| running.index[row]).collect(),
                survival: kept.iter().map(|&row| running.survival[row]).collect(),
                sum: kept.iter().map(|&row| running.sum[row]).collect(),
            };
        }
    }

    // pieces hold the outputs in halting order; put each sample back at its original row.
    let stacked = Tensor::cat(pieces, 0);
    let mut position_of = vec![0i64; batch];
    for (position, &index) in piece_order.iter().enumerate() {
        position_of[index] = position as i64;
    }
    let device = stacked.device();
    let order = Tensor::<1, Int>::from_data(TensorData::new(position_of, [batch]), &device);
    Ok(HardRun {
        outputs: stacked.select(0, order),
        halting_steps,
        steps_run,
        sample_steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{device, to_vec};
    use rand::SeedableRng;

    /// A fake model whose sample i emits output 10·i + n at step n and halting signal
    /// `signal(i, n)`. It records how many rows each step computed.
    struct Scripted<F: Fn(usize, usize) -> f32> {
        rows: Vec<usize>,
        signal: F,
        rows_per_step: Vec<usize>,
    }

    impl<F: Fn(usize, usize) -> f32> Scripted<F> {
        fn new(batch: usize, signal: F) -> Self {
            Self {
                rows: (0..batch).collect(),
                signal,
                rows_per_step: Vec::new(),
            }
        }
    }

    impl<F: Fn(usize, usize) -> f32> CompactStep for Scripted<F> {
        fn step(&mut self, step: usize) -> (Tensor<2>, Tensor<1>) {
            assert!(
                !self.rows.is_empty(),
                "step {step} called on an empty batch"
            );
            self.rows_per_step.push(self.rows.len());
            let n = self.rows.len();
            let outputs: Vec<f32> = self.rows.iter().map(|&i| (10 * i + step) as f32).collect();
            let signal: Vec<f32> = self.rows.iter().map(|&i| (self.signal)(i, step)).collect();
            (
                Tensor::from_data(TensorData::new(outputs, [n, 1]), &device()),
                Tensor::from_data(TensorData::new(signal, [n]), &device()),
            )
        }

        fn retain(&mut self, keep: Tensor<1, Int>) {
            let keep = keep
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap();
            self.rows = keep.iter().map(|&k| self.rows[k as usize]).collect();
        }
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    // Samples 0, 1, 2 emit λ = 1 at steps 1, 2 and 4 (0 elsewhere); M = 5. Each output is
    // 10·i + n at its own halting step: 1, 12, 24. Step 1 runs 3 rows, step 2 runs 2, steps 3
    // and 4 run 1, and step 5 never runs: 7 sample-steps = 1 + 2 + 4.
    #[test]
    fn compaction_returns_own_step_outputs() {
        let halt_at = [1usize, 2, 4];
        let mut model = Scripted::new(3, |i, n| if n == halt_at[i] { 1.0 } else { 0.0 });
        let run = run_hard(
            &mut model,
            3,
            5,
            HardRule::Signal { threshold: 0.5 },
            &mut rng(),
        )
        .unwrap();
        assert_eq!(to_vec(run.outputs), vec![1.0, 12.0, 24.0]);
        assert_eq!(run.halting_steps, vec![1, 2, 4]);
        assert_eq!(run.steps_run, 4);
        assert_eq!(model.rows_per_step, vec![3, 2, 1, 1]);
        assert_eq!(run.sample_steps, 7);
    }

    // The order is restored when a later row halts first: halting at steps 4, 1, 2.
    #[test]
    fn compaction_keeps_original_order() {
        let halt_at = [4usize, 1, 2];
        let mut model = Scripted::new(3, |i, n| if n == halt_at[i] { 1.0 } else { 0.0 });
        let rule = HardRule::Signal { threshold: 0.5 };
        let run = run_hard(&mut model, 3, 5, rule, &mut rng()).unwrap();
        assert_eq!(to_vec(run.outputs), vec![4.0, 11.0, 22.0]);
        assert_eq!(run.halting_steps, vec![4, 1, 2]);
    }

    #[test]
    fn all_halting_at_first_step_runs_once() {
        let mut model = Scripted::new(4, |_, _| 0.9);
        let rule = HardRule::Signal { threshold: 0.5 };
        let run = run_hard(&mut model, 4, 5, rule, &mut rng()).unwrap();
        assert_eq!(run.steps_run, 1);
        assert_eq!(model.rows_per_step, vec![4]);
        assert_eq!(run.halting_steps, vec![1; 4]);
    }

    #[test]
    fn never_halting_stops_at_max_steps() {
        let mut model = Scripted::new(2, |_, _| 0.0);
        let run = run_hard(&mut model, 2, 3, HardRule::Sampled, &mut rng()).unwrap();
        assert_eq!(run.halting_steps, vec![3, 3]);
        assert_eq!(to_vec(run.outputs), vec![3.0, 13.0]);
    }

    // λ = 0.5 at every step: P(N = 2) = (1 − 0.5)·0.5 = 0.25. With 20,000 draws the standard
    // error of the frequency is √(0.25·0.75 / 20000) ≈ 0.0031, so 0.25 ± 0.015 is about five
    // standard errors. P(N = 1) = 0.5 is checked the same way.
    #[test]
    fn sampled_halting_frequencies() {
        let samples = 20_000;
        let mut model = Scripted::new(samples, |_, _| 0.5);
        let run = run_hard(&mut model, samples, 6, HardRule::Sampled, &mut rng()).unwrap();
        let share = |step: usize| {
            run.halting_steps.iter().filter(|&&n| n == step).count() as f64 / samples as f64
        };
        assert!((share(2) - 0.25).abs() < 0.015, "P(N = 2) = {}", share(2));
        assert!((share(1) - 0.5).abs() < 0.015, "P(N = 1) = {}", share(1));
    }

    // λ = [0.5, 0.5, ...]: the halting mass after n steps is 1 − 0.5ⁿ = 0.5, 0.75, 0.875, so a
    // threshold of 0.8 halts at step 3; the sum Σλ = 0.5, 1.0 reaches 0.8 at step 2, and the
    // signal 0.5 never reaches 0.8, so that rule halts at M = 4.
    #[test]
    fn cumulative_rules_by_hand() {
        let cases = [
            (HardRule::CumulativeMass { threshold: 0.8 }, 3),
            (HardRule::CumulativeSum { threshold: 0.8 }, 2),
            (HardRule::Signal { threshold: 0.8 }, 4),
        ];
        for (rule, expected) in cases {
            let mut model = Scripted::new(1, |_, _| 0.5);
            let run = run_hard(&mut model, 1, 4, rule, &mut rng()).unwrap();
            assert_eq!(run.halting_steps, vec![expected], "{rule:?}");
        }
    }

    #[test]
    fn rejects_empty_batch_and_bad_threshold() {
        let mut model = Scripted::new(0, |_, _| 0.5);
        assert!(run_hard(&mut model, 0, 3, HardRule::Sampled, &mut rng()).is_err());
        assert!(model.rows_per_step.is_empty());
        let mut model = Scripted::new(1, |_, _| 0.5);
        let bad = HardRule::Signal { threshold: 0.0 };
        assert!(run_hard(&mut model, 1, 3, bad, &mut rng()).is_err());
        let nan = HardRule::CumulativeMass {
            threshold: f64::NAN,
        };
        assert!(nan.check().is_err());
    }
}
