//! Experiment recipes: TOML files that say which task, model, halting method and training
//! schedule a run uses.
//!
//! A recipe is checked completely before any work starts. Parsing rejects unknown keys and
//! wrong types; [`Recipe::validate`] rejects values outside their range. Both report the file,
//! the key and what was expected.

use std::path::{Path, PathBuf};

use haltlab_data::parity::NonzeroRange;
use haltlab_halting::hard::HardRule;

use crate::schedule::Schedules;
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
    /// Width of each hidden layer; an exit head follows each.
    pub hidden_sizes: Vec<usize>,
    /// A sample exits at the first head whose maximum softmax probability reaches this value.
    pub threshold: f64,
    /// Weight of each exit's loss in training; equal weights when absent.
    pub loss_weights: Option<Vec<f64>>,
}

/// Optimisation settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    /// Batches per epoch for generated tasks; an epoch of a dataset is one pass over it.
    pub steps_per_epoch: Option<usize>,
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
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

        if let Some(parity) = &self.parity {
            self.validate_parity(parity, &invalid)?;
        }
        if self.mnist.is_some() {
            if self.inference.is_some() || self.schedule.is_some() {
                return Err(invalid(
                    "inference, schedule",
                    "present".into(),
                    "no [inference] or [schedule] section with [mnist]; they apply to parity pondering",
                ));
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
        if exits.hidden_sizes.is_empty() || exits.hidden_sizes.contains(&0) {
            return Err(invalid(
                "exits.hidden_sizes",
                format!("{:?}", exits.hidden_sizes),
                "a non-empty list of positive layer widths, such as [256, 256, 256]",
            ));
        }
        if !(0.0..=1.0).contains(&exits.threshold) {
            return Err(invalid(
                "exits.threshold",
                exits.threshold.to_string(),
                "a probability in [0, 1]",
            ));
        }
        if let Some(weights) = &exits.loss_weights {
            let valid = weights.len() == exits.hidden_sizes.len()
                && weights.iter().all(|w| *w >= 0.0 && w.is_finite())
                && weights.iter().any(|w| *w > 0.0);
            if !valid {
                return Err(invalid(
                    "exits.loss_weights",
                    format!("{weights:?}"),
                    &format!(
                        "{} non-negative finite weights, one per exit, not all zero",
                        exits.hidden_sizes.len()
                    ),
                ));
            }
        }
        Ok(())
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
