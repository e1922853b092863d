//! Experiment recipes: TOML files that say which task, model, halting method and training
//! schedule a run uses.
//!
//! A recipe is checked completely before any work starts. Parsing rejects unknown keys and
//! wrong types; [`Recipe::validate`] rejects values outside their range. Both report the file,
//! the key and what was expected.

use std::path::{Path, PathBuf};

use haltlab_data::parity::NonzeroRange;
use haltlab_halting::hard::HardRule;

use crate::schedule::{Schedule, Schedules, Shape};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A recipe that could not be read or is invalid.
#[derive(Debug, Error)]
pub enum RecipeError {
    #[error("failed to read recipe {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid recipe {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid recipe {path}: key `{key}` = {value}: expected {expected}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        expected: String,
    },
}

/// A whole experiment recipe.
///
/// Exactly one task section is present: `[parity]` (with `[ponder]` and `[halting]`) or
/// `[mnist]` (with `[exits]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// One line on what the recipe is for.
    #[serde(default)]
    pub description: String,
    /// Seed of model initialisation, data generation, shuffling and splits.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub parity: Option<ParityTask>,
    pub ponder: Option<PonderModel>,
    pub halting: Option<HaltingMethod>,
    pub mnist: Option<MnistTask>,
    pub exits: Option<ExitModel>,
    pub training: Training,
    /// Hard-halting rule at inference for the ponder methods other than ACT.
    pub inference: Option<Inference>,
    /// Temperature and regulariser schedules of a ponder recipe.
    pub schedule: Option<Schedules>,
}

fn default_seed() -> u64 {
    1
}

/// The parity task: vectors of `length` entries, k of them ±1, target the parity of the +1s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParityTask {
    pub length: usize,
    /// Inclusive range of k, the number of non-zero entries, in training data.
    pub train_nonzeros: [usize; 2],
    /// Inclusive range of k in the held-out evaluation; a range above the training range tests
    /// extrapolation.
    pub eval_nonzeros: [usize; 2],
    /// Fresh vectors generated for the final evaluation.
    #[serde(default = "default_eval_samples")]
    pub eval_samples: usize,
    /// Fresh vectors generated for the validation accuracy recorded after every epoch.
    #[serde(default = "default_validation_samples")]
    pub validation_samples: usize,
}

fn default_eval_samples() -> usize {
    10_000
}

fn default_validation_samples() -> usize {
    2_000
}

impl ParityTask {
    pub fn train_range(&self) -> NonzeroRange {
        NonzeroRange {
            min: self.train_nonzeros[0],
            max: self.train_nonzeros[1],
        }
    }

    pub fn eval_range(&self) -> NonzeroRange {
        NonzeroRange {
            min: self.eval_nonzeros[0],
            max: self.eval_nonzeros[1],
        }
    }
}

/// Recurrent cell of the ponder model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Gru,
    Rnn,
}

/// The ponder model: a recurrent cell repeated on one input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PonderModel {
    #[serde(default = "default_cell")]
    pub cell: Cell,
    pub hidden_size: usize,
    /// Initial bias of the halting unit: +1 as in Graves (2016), negative to start deep.
    #[serde(default = "default_halting_bias")]
    pub halting_bias: f64,
}

fn default_cell() -> Cell {
    Cell::Gru
}

fn default_halting_bias() -> f64 {
    1.0
}

/// The halting method used to train and run the ponder model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum HaltingMethod {
    /// Adaptive Computation Time (Graves 2016).
    Act {
        /// ε: a sample halts once Σhₙ ≥ 1 − ε.
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// M, the maximum number of steps.
        max_steps: usize,
        /// τ, the weight of the ponder cost in the loss.
        ponder_weight: f64,
    },
    /// PonderNet (Banino et al. 2021): loss Σₙ pₙ·Lₙ + β·KL(p ‖ geometric(λ_p)).
    Pondernet {
        max_steps: usize,
        /// λ_p, the parameter of the geometric prior, in (0, 1].
        lambda_prior: f64,
        /// β, the weight of the KL term.
        kl_weight: f64,
    },
    /// Hard halting decisions 1[σ(zₙ) ≥ 0.5] trained with the straight-through estimator;
    /// loss L_N + τ·N.
    StraightThrough {
        max_steps: usize,
        ponder_weight: f64,
    },
    /// Gumbel-sigmoid relaxation λₙ = σ((zₙ + noise) / T); loss Σₙ pₙ·Lₙ + τ·Σₙ n·pₙ.
    /// `[schedule.temperature]` replaces the fixed temperature.
    Gumbel {
        max_steps: usize,
        ponder_weight: f64,
        #[serde(default = "default_temperature")]
        temperature: f64,
        /// Round λₙ to 0 or 1 in the forward pass (straight-through Gumbel).
        #[serde(default)]
        hard: bool,
    },
    /// Bernoulli halting policy trained with REINFORCE; reward −(L_N + τ·N).
    Reinforce {
        max_steps: usize,
        ponder_weight: f64,
        #[serde(default = "default_baseline")]
        baseline: Baseline,
        /// d of the moving-average baseline b ← d·b + (1 − d)·mean(R).
        #[serde(default = "default_baseline_decay")]
        baseline_decay: f64,
    },
}

/// Baseline of the REINFORCE halting policy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Exponential moving average of the batch's mean reward.
    MovingAverage,
    /// A linear function of the input, trained by squared error to predict the reward.
    Learned,
}

/// Which [`HardRule`] the `[inference]` section selects.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Sampled,
    Signal,
    CumulativeMass,
    CumulativeSum,
}

impl Inference {
    /// The hard rule, or `None` when a threshold rule has no threshold.
    pub fn hard_rule(&self) -> Option<HardRule> {
        let threshold = self.threshold;
        Some(match self.rule {
            RuleKind::Sampled => HardRule::Sampled,
            RuleKind::Signal => HardRule::Signal {
                threshold: threshold?,
            },
            RuleKind::CumulativeMass => HardRule::CumulativeMass {
                threshold: threshold?,
            },
            RuleKind::CumulativeSum => HardRule::CumulativeSum {
                threshold: threshold?,
            },
        })
    }
}

fn default_temperature() -> f64 {
    1.0
}

fn default_baseline() -> Baseline {
    Baseline::MovingAverage
}

fn default_baseline_decay() -> f64 {
    0.9
}

/// Hard halting at inference, `[inference]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inference {
    pub rule: RuleKind,
    /// Threshold of a threshold rule; required by them, rejected with `sampled`.
    pub threshold: Option<f64>,
    /// Candidate thresholds tried on the validation split; the most accurate one (fewest
    /// steps on a tie) replaces `threshold` for the test evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tune_thresholds: Vec<f64>,
}

fn default_epsilon() -> f64 {
    haltlab_halting::act::DEFAULT_EPSILON
}

impl HaltingMethod {
    /// M, the maximum number of pondering steps.
    pub fn max_steps(&self) -> usize {
        match self {
            HaltingMethod::Act { max_steps, .. }
            | HaltingMethod::Pondernet { max_steps, .. }
            | HaltingMethod::StraightThrough { max_steps, .. }
            | HaltingMethod::Gumbel { max_steps, .. }
            | HaltingMethod::Reinforce { max_steps, .. } => *max_steps,
        }
    }
}

/// Format of the MNIST data named by `path`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MnistFormat {
    /// One CSV file (784 pixel values, then the label, per line), split by seed into training,
    /// validation and test sets.
    Csv,
    /// A directory with the four standard IDX files; the training file is split into training
    /// and validation sets, and the t10k files are the test set.
    Idx,
}

/// The MNIST classification task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MnistTask {
    /// Data file or directory. `--data` overrides it; a relative path is relative to the
    /// working directory.
    pub path: Option<PathBuf>,
    #[serde(default = "default_mnist_format")]
    pub format: MnistFormat,
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// Share of a single CSV file held out as the test set; unused for IDX data.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// UCI optical digits CSV (8×8, values 0–16) for the shift report; that shift is skipped
    /// when absent. A relative path is relative to the working directory.
    pub uci_digits_path: Option<PathBuf>,
    /// Standard deviation of the Gaussian noise added to test pixels (in [0, 1] units) for
    /// the noise shift.
    #[serde(default = "default_noise_std")]
    pub shift_noise_std: f32,
    /// Largest rotation, in degrees either way, of the rotation shift.
    #[serde(default = "default_rotation_degrees")]
    pub shift_rotation_degrees: f32,
}

fn default_noise_std() -> f32 {
    0.3
}

fn default_rotation_degrees() -> f32 {
    15.0
}

fn default_mnist_format() -> MnistFormat {
    MnistFormat::Csv
}

fn default_validation_fraction() -> f64 {
    0.1
}

fn default_test_fraction() -> f64 {
    0.2
}

/// The early-exit model and its exit rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExitModel {
    /// Features per input sample; when set, it must match the data (784 for 28×28 images).
    pub input_size: Option<usize>,
    #[serde(default)]
    pub architecture: Architecture,
    /// Width of each hidden layer of the MLP; an exit head follows each. Unused by `lenet`.
    #[serde(default)]
    pub hidden_sizes: Vec<usize>,
    /// Exit rule of the recipe's own hard evaluation; the sweeps cover every rule.
    #[serde(default)]
    pub rule: ExitRuleKind,
    /// Threshold of `rule`: a probability for `confidence` and `gate`, nats for `entropy`, a
    /// whole number of heads for `patience`.
    pub threshold: f64,
    /// Weight of each exit's loss in training; equal weights when absent.
    pub loss_weights: Option<Vec<f64>>,
    /// Schedule of the exit loss weights during training.
    #[serde(default)]
    pub loss_schedule: LossSchedule,
    /// Epochs over which `linear_ramp` raises the early-exit weights to their final values.
    #[serde(default = "default_ramp_epochs")]
    pub ramp_epochs: usize,
    /// Training of a learned exit gate per layer (MLP only).
    #[serde(default)]
    pub gate: GateTraining,
    /// λ_p of the geometric prior over exit layers in PonderNet's KL term.
    #[serde(default = "default_gate_prior_lambda")]
    pub gate_prior_lambda: f64,
    /// β, the weight of PonderNet's KL term.
    #[serde(default = "default_gate_kl_weight")]
    pub gate_kl_weight: f64,
    /// δ of threshold calibration: the chosen threshold keeps validation accuracy at least
    /// the last exit's accuracy minus δ (a fraction, 0.01 = 1 point).
    #[serde(default = "default_accuracy_tolerance")]
    pub accuracy_tolerance: f64,
    /// FLOP budget of threshold calibration, as a fraction of the full network's FLOPs.
    #[serde(default = "default_flop_budget")]
    pub flop_budget: f64,
    /// ε of risk-controlled calibration: the tolerated rate at which the early prediction
    /// differs from the last exit's.
    #[serde(default = "default_risk_tolerance")]
    pub risk_tolerance: f64,
    /// α of risk-controlled calibration: the bound is met with probability 1 − α.
    #[serde(default = "default_risk_alpha")]
    pub risk_alpha: f64,
    /// Test samples timed one at a time for latency percentiles; 0 skips timing.
    #[serde(default = "default_latency_samples")]
    pub latency_samples: usize,
    /// Batch size of the per-batch latency measurement.
    #[serde(default = "default_latency_batch_size")]
    pub latency_batch_size: usize,
}

fn default_gate_prior_lambda() -> f64 {
    0.5
}

fn default_gate_kl_weight() -> f64 {
    0.01
}

/// Training method of the learned exit gates.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateTraining {
    /// No gates.
    #[default]
    None,
    /// PonderNet over depth: the gates' halting distribution weights the exit losses, with a
    /// KL term towards a geometric prior; added to the weighted exit losses.
    Pondernet,
}

fn default_ramp_epochs() -> usize {
    5
}

/// Exit rule, by the names the result file uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExitRuleKind {
    /// Maximum softmax probability ≥ threshold.
    #[default]
    Confidence,
    /// Softmax entropy ≤ threshold nats.
    Entropy,
    /// Prediction unchanged for `threshold` consecutive heads.
    Patience,
    /// Learned gate's halting probability ≥ threshold; needs `gate`.
    Gate,
}

impl ExitRuleKind {
    /// Returns the rule's name in result files and sweeps.
    pub fn name(self) -> &'static str {
        match self {
            ExitRuleKind::Confidence => "confidence",
            ExitRuleKind::Entropy => "entropy",
            ExitRuleKind::Patience => "patience",
            ExitRuleKind::Gate => "gate",
        }
    }
}

/// Network of an early-exit recipe.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// An MLP with an exit head after every hidden layer (`hidden_sizes`).
    #[default]
    Mlp,
    /// A LeNet-like CNN with a branch after the first convolution block, like B-LeNet: two
    /// exits.
    Lenet,
}

impl ExitModel {
    /// Number of exits of the network.
    pub fn depth(&self) -> usize {
        match self.architecture {
            Architecture::Mlp => self.hidden_sizes.len(),
            Architecture::Lenet => 2,
        }
    }
}

/// Schedule of the per-exit loss weights; the loss is Σ wₗ Lₗ / Σ wₗ.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LossSchedule {
    /// `loss_weights` (equal when absent) throughout.
    #[default]
    Fixed,
    /// Shallow-Deep Networks (Kaya et al. 2019): every exit but the last starts at weight 0.01
    /// and rises linearly to its `loss_weights` value over `ramp_epochs`; the last keeps its
    /// weight.
    LinearRamp,
    /// PABEE (Zhou et al. 2020): exit l (counted from 1) has weight l, so deeper exits count
    /// more; `loss_weights` is ignored.
    Depth,
}

fn default_accuracy_tolerance() -> f64 {
    0.01
}

fn default_flop_budget() -> f64 {
    0.5
}

fn default_risk_tolerance() -> f64 {
    0.05
}

fn default_risk_alpha() -> f64 {
    0.1
}

fn default_latency_samples() -> usize {
    300
}

fn default_latency_batch_size() -> usize {
    256
}

/// Optimisation settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    /// Batches per epoch for generated tasks; an epoch of a dataset is one pass over it.
    pub steps_per_epoch: Option<usize>,
    pub batch_size: usize,
    /// Adam learning rate, at the first step when it decays.
    pub learning_rate: f64,
    /// Learning-rate schedule over the run's optimiser steps.
    #[serde(default)]
    pub learning_rate_decay: LearningRateDecay,
    /// End point of a decaying schedule, reached one step after the last update; 0 when
    /// absent.
    pub final_learning_rate: Option<f64>,
    /// Save a checkpoint every this many optimiser steps; a checkpoint is also saved at the
    /// end and on Ctrl-C.
    pub checkpoint_every: Option<u64>,
    /// Implementation of the ACT training step.
    #[serde(default)]
    pub kernel: Kernel,
}

/// Implementation of the ACT training step, `training.kernel`. Both compute the same loss and
/// gradients, and the fused kernel's tests compare it with Burn's autodiff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    /// The fused kernel on the flex backend, Burn's autodiff on the others.
    #[default]
    Auto,
    /// Burn's autodiff graph on the run's device, the path of every backend and method.
    Burn,
    /// haltlab's fused CPU kernel for ACT with a GRU or RNN cell (`haltlab_model::ponder_cpu`).
    /// On a GPU backend it copies the weights to the host and the gradients back at every step.
    Fused,
}

/// Learning-rate schedule over a run, `training.learning_rate_decay`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearningRateDecay {
    /// `learning_rate` at every step.
    #[default]
    Constant,
    /// Straight line from `learning_rate` to `final_learning_rate`.
    Linear,
    /// Half a cosine period from `learning_rate` to `final_learning_rate` (SGDR of Loshchilov
    /// and Hutter 2017, without restarts).
    Cosine,
}

impl Training {
    /// Returns the learning rate of the update made after `step` earlier updates, in a run of
    /// `total_steps` updates. A decay runs from `learning_rate` at step 0 to the final rate at
    /// step `total_steps`, one step after the last update, so the last update uses
    /// final + (start − final)/`total_steps` under a linear decay. The decay follows the run's
    /// length, so a comparison that overrides the number of epochs keeps the same curve.
    pub fn learning_rate_at(&self, step: u64, total_steps: u64) -> f64 {
        let shape = match self.learning_rate_decay {
            LearningRateDecay::Constant => return self.learning_rate,
            LearningRateDecay::Linear => Shape::Linear,
            LearningRateDecay::Cosine => Shape::Cosine,
        };
        Schedule {
            shape,
            start: self.learning_rate,
            end: self.final_learning_rate.unwrap_or(0.0),
            start_step: 0,
            end_step: total_steps,
        }
        .value(step)
    }

    /// Returns whether the learning rate changes during the run, so it is logged per epoch.
    pub fn learning_rate_decays(&self) -> bool {
        self.learning_rate_decay != LearningRateDecay::Constant
    }
}

impl Recipe {
    /// Reads, parses and validates a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let recipe = Self::parse(&text, path)?;
        recipe.validate(path)?;
        Ok(recipe)
    }

    /// Parses recipe text; `path` is used only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        toml::from_str(text).map_err(|error| RecipeError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_owned(),
        })
    }

    /// Checks every value against its range; `path` is used only in error messages.
    pub fn validate(&self, path: &Path) -> Result<(), RecipeError> {
        let invalid = |key: &str, value: String, expected: &str| RecipeError::Invalid {
            path: path.to_path_buf(),
            key: key.to_owned(),
            value,
            expected: expected.to_owned(),
        };

        match (&self.parity, &self.mnist) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "parity, mnist",
                    "both sections".into(),
                    "exactly one task section, [parity] or [mnist]",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "parity, mnist",
                    "neither section".into(),
                    "exactly one task section, [parity] or [mnist]",
                ));
            }
            _ => {}
        }

        let training = &self.training;
        if training.epochs == 0 {
            return Err(invalid("training.epochs", "0".into(), "at least 1"));
        }
        if training.batch_size == 0 {
            return Err(invalid("training.batch_size", "0".into(), "at least 1"));
        }
        if !(training.learning_rate > 0.0 && training.learning_rate.is_finite()) {
            return Err(invalid(
                "training.learning_rate",
                training.learning_rate.to_string(),
                "a positive finite number, such as 0.001",
            ));
        }

        if let Some(rate) = training.final_learning_rate {
            if !training.learning_rate_decays() {
                return Err(invalid(
                    "training.final_learning_rate",
                    rate.to_string(),
                    "no final rate with a constant learning rate; set learning_rate_decay = \"linear\" or \"cosine\"",
                ));
            }
            if !(rate >= 0.0 && rate <= training.learning_rate) {
                return Err(invalid(
                    "training.final_learning_rate",
                    rate.to_string(),
                    &format!(
                        "a number from 0 to learning_rate ({})",
                        training.learning_rate
                    ),
                ));
            }
        }

        let act = matches!(self.halting, Some(HaltingMethod::Act { .. }));
        if training.kernel == Kernel::Fused && !act {
            return Err(invalid(
                "training.kernel",
                "\"fused\"".into(),
                "\"auto\" or \"burn\": the fused kernel trains method = \"act\" only",
            ));
        }

        if training.checkpoint_every == Some(0) {
            return Err(invalid(
                "training.checkpoint_every",
                "0".into(),
                "a positive number of steps, or no key for checkpoints only at the end",
            ));
        }

        if let Some(parity) = &self.parity {
            self.validate_parity(parity, &invalid)?;
        }
        if self.mnist.is_some() {
            if self.inference.is_some() {
                return Err(invalid(
                    "inference",
                    "present".into(),
                    "no [inference] section with [mnist]; the exit rule is set in [exits]",
                ));
            }
            if let Some(schedules) = &self.schedule {
                let gated = self
                    .exits
                    .as_ref()
                    .is_some_and(|exits| exits.gate != GateTraining::None);
                if schedules.temperature.is_some() {
                    return Err(invalid(
                        "schedule.temperature",
                        "present".into(),
                        "no temperature schedule with [mnist]; exit gates use no relaxation",
                    ));
                }
                if let Some(regulariser) = &schedules.regulariser {
                    if !gated {
                        return Err(invalid(
                            "schedule.regulariser",
                            "present".into(),
                            "a regulariser schedule only with gate = \"pondernet\", whose halting loss it scales",
                        ));
                    }
                    if let Some(problem) = regulariser.problem() {
                        return Err(invalid(
                            "schedule.regulariser",
                            format!("{regulariser:?}"),
                            &problem,
                        ));
                    }
                }
            }
            self.validate_mnist(&invalid)?;
        }
        Ok(())
    }

    fn validate_parity(
        &self,
        parity: &ParityTask,
        invalid: &impl Fn(&str, String, &str) -> RecipeError,
    ) -> Result<(), RecipeError> {
        if parity.length == 0 {
            return Err(invalid("parity.length", "0".into(), "at least 1"));
        }
        for (key, range) in [
            ("parity.train_nonzeros", parity.train_nonzeros),
            ("parity.eval_nonzeros", parity.eval_nonzeros),
        ] {
            if range[0] < 1 || range[0] > range[1] || range[1] > parity.length {
                return Err(invalid(
                    key,
                    format!("[{}, {}]", range[0], range[1]),
                    &format!(
                        "[min, max] with 1 <= min <= max <= parity.length ({})",
                        parity.length
                    ),
                ));
            }
        }
        if parity.eval_samples == 0 {
            return Err(invalid("parity.eval_samples", "0".into(), "at least 1"));
        }
        if parity.validation_samples == 0 {
            return Err(invalid(
                "parity.validation_samples",
                "0".into(),
                "at least 1",
            ));
        }
        let Some(ponder) = &self.ponder else {
            return Err(invalid(
                "ponder",
                "missing".into(),
                "a [ponder] section for the parity task",
            ));
        };
        if ponder.hidden_size == 0 {
            return Err(invalid("ponder.hidden_size", "0".into(), "at least 1"));
        }
        if !ponder.halting_bias.is_finite() {
            return Err(invalid(
                "ponder.halting_bias",
                ponder.halting_bias.to_string(),
                "a finite number, such as 1.0 (Graves) or -3.0 (deep start)",
            ));
        }
        let Some(halting) = &self.halting else {
            return Err(invalid(
                "halting",
                "missing".into(),
                "a [halting] section for the parity task",
            ));
        };
        match halting {
            HaltingMethod::Act {
                epsilon,
                max_steps,
                ponder_weight,
            } => {
                if !(*epsilon > 0.0 && *epsilon < 1.0) {
                    return Err(invalid(
                        "halting.epsilon",
                        epsilon.to_string(),
                        "a value in the open interval (0, 1), such as 0.01",
                    ));
                }
                if *max_steps == 0 {
                    return Err(invalid("halting.max_steps", "0".into(), "at least 1"));
                }
                check_weight("halting.ponder_weight", *ponder_weight, invalid)?;
            }
            HaltingMethod::Pondernet {
                lambda_prior,
                kl_weight,
                ..
            } => {
                if !(*lambda_prior > 0.0 && *lambda_prior <= 1.0) {
                    return Err(invalid(
                        "halting.lambda_prior",
                        lambda_prior.to_string(),
                        "a probability in (0, 1], such as 0.2",
                    ));
                }
                check_weight("halting.kl_weight", *kl_weight, invalid)?;
            }
            HaltingMethod::StraightThrough { ponder_weight, .. } => {
                check_weight("halting.ponder_weight", *ponder_weight, invalid)?;
            }
            HaltingMethod::Gumbel {
                ponder_weight,
                temperature,
                ..
            } => {
                check_weight("halting.ponder_weight", *ponder_weight, invalid)?;
                if !(*temperature > 0.0 && temperature.is_finite()) {
                    return Err(invalid(
                        "halting.temperature",
                        temperature.to_string(),
                        "a positive finite number, such as 1.0",
                    ));
                }
            }
            HaltingMethod::Reinforce {
                ponder_weight,
                baseline_decay,
                ..
            } => {
                check_weight("halting.ponder_weight", *ponder_weight, invalid)?;
                if !(0.0..1.0).contains(baseline_decay) {
                    return Err(invalid(
                        "halting.baseline_decay",
                        baseline_decay.to_string(),
                        "a value in [0, 1), such as 0.9",
                    ));
                }
            }
        }
        if halting.max_steps() == 0 {
            return Err(invalid("halting.max_steps", "0".into(), "at least 1"));
        }
        self.validate_ponder_extras(halting, invalid)?;
        if self.training.steps_per_epoch.unwrap_or(0) == 0 {
            return Err(invalid(
                "training.steps_per_epoch",
                format!("{:?}", self.training.steps_per_epoch),
                "at least 1 (batches generated per epoch of the parity task)",
            ));
        }
        Ok(())
    }

    fn validate_ponder_extras(
        &self,
        halting: &HaltingMethod,
        invalid: &impl Fn(&str, String, &str) -> RecipeError,
    ) -> Result<(), RecipeError> {
        let is_act = matches!(halting, HaltingMethod::Act { .. });
        if let Some(inference) = &self.inference {
            if is_act {
                return Err(invalid(
                    "inference",
                    "present".into(),
                    "no [inference] section with method = \"act\", whose halting rule is Σh ≥ 1 − ε",
                ));
            }
            let sampled = inference.rule == RuleKind::Sampled;
            match (sampled, inference.threshold) {
                (true, Some(threshold)) => {
                    return Err(invalid(
                        "inference.threshold",
                        threshold.to_string(),
                        "no threshold with rule = \"sampled\"",
                    ));
                }
                (false, None) => {
                    return Err(invalid(
                        "inference.threshold",
                        "missing".into(),
                        "a threshold for a threshold rule, such as 0.5",
                    ));
                }
                (false, Some(threshold)) if !(threshold > 0.0 && threshold.is_finite()) => {
                    return Err(invalid(
                        "inference.threshold",
                        threshold.to_string(),
                        "a positive finite number, such as 0.5",
                    ));
                }
                _ => {}
            }
            if !inference.tune_thresholds.is_empty() {
                if sampled {
                    return Err(invalid(
                        "inference.tune_thresholds",
                        format!("{:?}", inference.tune_thresholds),
                        "no candidates with rule = \"sampled\", which has no threshold",
                    ));
                }
                if inference
                    .tune_thresholds
                    .iter()
                    .any(|t| !(*t > 0.0 && t.is_finite()))
                {
                    return Err(invalid(
                        "inference.tune_thresholds",
                        format!("{:?}", inference.tune_thresholds),
                        "positive finite thresholds",
                    ));
                }
            }
        }
        if let Some(schedules) = &self.schedule {
            for (key, schedule) in [
                ("schedule.temperature", &schedules.temperature),
                ("schedule.regulariser", &schedules.regulariser),
            ] {
                if let Some(schedule) = schedule
                    && let Some(problem) = schedule.problem()
                {
                    return Err(invalid(key, format!("{schedule:?}"), &problem));
                }
            }
            if let Some(temperature) = &schedules.temperature {
                if !matches!(halting, HaltingMethod::Gumbel { .. }) {
                    return Err(invalid(
                        "schedule.temperature",
                        "present".into(),
                        "a temperature schedule only with method = \"gumbel\"",
                    ));
                }
                if !(temperature.start > 0.0 && temperature.end > 0.0) {
                    return Err(invalid(
                        "schedule.temperature",
                        format!("start {} end {}", temperature.start, temperature.end),
                        "positive temperatures",
                    ));
                }
            }
            if schedules.regulariser.is_some() && is_act {
                return Err(invalid(
                    "schedule.regulariser",
                    "present".into(),
                    "a regulariser schedule only with a method other than act",
                ));
            }
        }
        Ok(())
    }

    fn validate_mnist(
        &self,
        invalid: &impl Fn(&str, String, &str) -> RecipeError,
    ) -> Result<(), RecipeError> {
        let Some(mnist) = &self.mnist else {
            return Ok(());
        };
        for (key, value) in [
            ("mnist.validation_fraction", mnist.validation_fraction),
            ("mnist.test_fraction", mnist.test_fraction),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(invalid(key, value.to_string(), "a fraction in [0, 1)"));
            }
        }
        if mnist.format == MnistFormat::Csv
            && mnist.validation_fraction + mnist.test_fraction >= 1.0
        {
            return Err(invalid(
                "mnist.validation_fraction, mnist.test_fraction",
                format!("{} + {}", mnist.validation_fraction, mnist.test_fraction),
                "a sum below 1, leaving data to train on",
            ));
        }
        let Some(exits) = &self.exits else {
            return Err(invalid(
                "exits",
                "missing".into(),
                "an [exits] section for the mnist task",
            ));
        };
        let mlp = exits.architecture == Architecture::Mlp;
        if mlp && (exits.hidden_sizes.is_empty() || exits.hidden_sizes.contains(&0)) {
            return Err(invalid(
                "exits.hidden_sizes",
                format!("{:?}", exits.hidden_sizes),
                "a non-empty list of positive layer widths, such as [256, 256, 256]",
            ));
        }
        if exits.input_size == Some(0) {
            return Err(invalid(
                "exits.input_size",
                "0".into(),
                "the number of input features, such as 784",
            ));
        }
        let threshold = exits.threshold;
        let threshold_expected = match exits.rule {
            ExitRuleKind::Confidence | ExitRuleKind::Gate if !(0.0..=1.0).contains(&threshold) => {
                Some("a probability in [0, 1] for this rule")
            }
            ExitRuleKind::Entropy if !(threshold >= 0.0 && threshold.is_finite()) => {
                Some("a non-negative finite entropy in nats for rule = \"entropy\"")
            }
            ExitRuleKind::Patience
                if !(threshold >= 0.0 && threshold.is_finite() && threshold.fract() == 0.0) =>
            {
                Some("a whole number of heads, such as 2, for rule = \"patience\"")
            }
            _ => None,
        };
        if let Some(expected) = threshold_expected {
            return Err(invalid("exits.threshold", threshold.to_string(), expected));
        }
        if exits.rule == ExitRuleKind::Gate && exits.gate == GateTraining::None {
            return Err(invalid(
                "exits.rule",
                "\"gate\"".into(),
                "a rule other than \"gate\", or gate = \"pondernet\" to train gates",
            ));
        }
        let unit_checks = [
            (
                "exits.accuracy_tolerance",
                exits.accuracy_tolerance,
                "a fraction in [0, 1], such as 0.01 for one point",
            ),
            (
                "exits.flop_budget",
                exits.flop_budget,
                "a fraction of the full FLOPs in [0, 1], such as 0.5",
            ),
            (
                "exits.risk_tolerance",
                exits.risk_tolerance,
                "a rate in [0, 1], such as 0.05",
            ),
        ];
        for (key, value, expected) in unit_checks {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(key, value.to_string(), expected));
            }
        }
        if !(exits.risk_alpha > 0.0 && exits.risk_alpha < 1.0) {
            return Err(invalid(
                "exits.risk_alpha",
                exits.risk_alpha.to_string(),
                "a probability in the open interval (0, 1), such as 0.1",
            ));
        }
        if exits.loss_schedule == LossSchedule::LinearRamp && exits.ramp_epochs == 0 {
            return Err(invalid(
                "exits.ramp_epochs",
                "0".into(),
                "at least 1 epoch for loss_schedule = \"linear_ramp\"",
            ));
        }
        if exits.gate != GateTraining::None && !mlp {
            return Err(invalid(
                "exits.gate",
                format!("{:?}", exits.gate),
                "\"none\" for architecture = \"lenet\"; learned gates exist only in the MLP",
            ));
        }
        if !(exits.gate_prior_lambda > 0.0 && exits.gate_prior_lambda <= 1.0) {
            return Err(invalid(
                "exits.gate_prior_lambda",
                exits.gate_prior_lambda.to_string(),
                "a probability in (0, 1], such as 0.5",
            ));
        }
        if !(exits.gate_kl_weight >= 0.0 && exits.gate_kl_weight.is_finite()) {
            return Err(invalid(
                "exits.gate_kl_weight",
                exits.gate_kl_weight.to_string(),
                "a non-negative finite weight, such as 0.01",
            ));
        }
        if exits.latency_batch_size == 0 {
            return Err(invalid(
                "exits.latency_batch_size",
                "0".into(),
                "at least 1",
            ));
        }
        if !(mnist.shift_noise_std >= 0.0 && mnist.shift_noise_std.is_finite()) {
            return Err(invalid(
                "mnist.shift_noise_std",
                mnist.shift_noise_std.to_string(),
                "a non-negative finite standard deviation, such as 0.3",
            ));
        }
        if !(mnist.shift_rotation_degrees >= 0.0 && mnist.shift_rotation_degrees <= 180.0) {
            return Err(invalid(
                "mnist.shift_rotation_degrees",
                mnist.shift_rotation_degrees.to_string(),
                "an angle in [0, 180] degrees, such as 15",
            ));
        }
        if let Some(weights) = &exits.loss_weights {
            let valid = weights.len() == exits.depth()
                && weights.iter().all(|w| *w >= 0.0 && w.is_finite())
                && weights.iter().any(|w| *w > 0.0);
            if !valid {
                return Err(invalid(
                    "exits.loss_weights",
                    format!("{weights:?}"),
                    &format!(
                        "{} non-negative finite weights, one per exit, not all zero",
                        exits.depth()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod exit_recipe_tests {
    use super::*;

    fn exit_recipe(exits: &str) -> String {
        format!(
            "[mnist]\nformat = \"csv\"\n\n[exits]\n{exits}\n\n[training]\nepochs = 1\nbatch_size = 8\nlearning_rate = 0.001\n"
        )
    }

    fn error_of(exits: &str) -> String {
        let path = Path::new("test.toml");
        let recipe = Recipe::parse(&exit_recipe(exits), path).expect("recipe parses");
        match recipe.validate(path) {
            Ok(()) => panic!("recipe with {exits:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn shipped_exit_recipes_validate() {
        // Read at run time: a test binary reused from a shared build cache keeps the
        // compile-time path of the checkout that built it.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
            + "/../../experiments";
        for name in [
            "mnist_exits.toml",
            "mnist_lenet.toml",
            "mnist_lenet_idx.toml",
        ] {
            let path = Path::new(&dir).join(name);
            let recipe = Recipe::load(&path).unwrap_or_else(|error| panic!("{error}"));
            assert!(recipe.exits.is_some(), "{name} has no [exits]");
        }
    }

    #[test]
    fn exit_keys_rejected_one_by_one() {
        let base = "hidden_sizes = [8, 8]\nthreshold = 0.9";
        for (extra, key) in [
            ("accuracy_tolerance = 1.5", "exits.accuracy_tolerance"),
            ("flop_budget = -0.1", "exits.flop_budget"),
            ("risk_tolerance = 2.0", "exits.risk_tolerance"),
            ("risk_alpha = 1.0", "exits.risk_alpha"),
            ("latency_batch_size = 0", "exits.latency_batch_size"),
            (
                "loss_schedule = \"linear_ramp\"\nramp_epochs = 0",
                "exits.ramp_epochs",
            ),
            ("loss_weights = [1.0]", "exits.loss_weights"),
            ("gate_prior_lambda = 0.0", "exits.gate_prior_lambda"),
            ("gate_kl_weight = -1.0", "exits.gate_kl_weight"),
            ("rule = \"gate\"", "exits.rule"),
        ] {
            let message = error_of(&format!("{base}\n{extra}"));
            assert!(message.contains(key), "{extra}: {message}");
        }
        let message =
            error_of("architecture = \"lenet\"\nthreshold = 0.9\nloss_weights = [1.0, 1.0, 1.0]");
        assert!(message.contains("2 non-negative"), "{message}");
        let message = error_of("hidden_sizes = [8]\nrule = \"patience\"\nthreshold = 1.5");
        assert!(message.contains("whole number"), "{message}");
        let message = error_of("hidden_sizes = [8]\nrule = \"entropy\"\nthreshold = -0.1");
        assert!(message.contains("exits.threshold"), "{message}");
        let message = error_of("architecture = \"lenet\"\nthreshold = 0.9\ngate = \"pondernet\"");
        assert!(message.contains("exits.gate"), "{message}");
    }
}

fn check_weight(
    key: &str,
    weight: f64,
    invalid: &impl Fn(&str, String, &str) -> RecipeError,
) -> Result<(), RecipeError> {
    if weight >= 0.0 && weight.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            key,
            weight.to_string(),
            "a non-negative finite number, such as 0.001",
        ))
    }
}

#[cfg(test)]
mod learning_rate_tests {
    use super::*;

    fn training(decay: LearningRateDecay, end: Option<f64>) -> Training {
        Training {
            epochs: 1,
            steps_per_epoch: Some(100),
            batch_size: 8,
            learning_rate: 0.004,
            learning_rate_decay: decay,
            final_learning_rate: end,
            checkpoint_every: None,
            kernel: Kernel::Auto,
        }
    }

    // From 0.004 at step 0 to 0.0004 at step 100, the end of a 100-update run; the middle is
    // step 50 (t = 0.5). Linear: 0.004 + 0.5·(0.0004 − 0.004) = 0.0022. Cosine:
    // 0.0004 + 0.0036·(1 + cos(π/2))/2 = 0.0022 as well. At step 25 they differ: linear 0.0031,
    // cosine 0.0004 + 0.0036·(1 + √2/2)/2 ≈ 0.0034728. The last update (step 99) uses
    // 0.0004 + 0.0036/100 = 0.000436 under the linear decay.
    #[test]
    fn decay_start_middle_end() {
        let linear = training(LearningRateDecay::Linear, Some(0.0004));
        let cosine = training(LearningRateDecay::Cosine, Some(0.0004));
        for schedule in [&linear, &cosine] {
            assert_eq!(schedule.learning_rate_at(0, 100), 0.004);
            assert!((schedule.learning_rate_at(50, 100) - 0.0022).abs() < 1e-15);
            assert_eq!(schedule.learning_rate_at(100, 100), 0.0004);
            assert!(schedule.learning_rate_decays());
        }
        assert!((linear.learning_rate_at(25, 100) - 0.0031).abs() < 1e-15);
        assert!((linear.learning_rate_at(99, 100) - 0.000436).abs() < 1e-15);
        let quarter = 0.0004 + 0.0036 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
        assert!((cosine.learning_rate_at(25, 100) - quarter).abs() < 1e-15);
        // Without a final rate the decay ends at 0.
        let to_zero = training(LearningRateDecay::Linear, None);
        assert!((to_zero.learning_rate_at(75, 100) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn constant_rate_ignores_the_step() {
        let constant = training(LearningRateDecay::Constant, None);
        assert!(!constant.learning_rate_decays());
        for step in [0, 37, 100] {
            assert_eq!(constant.learning_rate_at(step, 100), 0.004);
        }
    }
}
