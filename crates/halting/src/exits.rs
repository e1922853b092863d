//! Exit rules for early-exit networks: per-sample decisions on a classifier head's logits.
//!
//! The tensor functions ([`max_softmax_confidence`], [`softmax_entropy`], [`confidence_exits`],
//! [`entropy_exits`]) work on the device. The [`ExitRule`] trait decides on logits already read
//! back to the host, once per head, so an inference engine needs one device read per layer and
//! a stateful rule such as patience can keep per-sample state between heads.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Tensor};

use crate::HaltingError;

/// Checks that a confidence threshold lies in [0, 1], the range of a softmax probability.
pub fn check_confidence_threshold(threshold: f64) -> Result<(), HaltingError> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(HaltingError::InvalidParameter {
            name: "threshold",
            value: threshold,
            expected: "a probability in [0, 1]",
        })
    }
}

/// Checks that an entropy threshold (in nats) is a non-negative finite number.
pub fn check_entropy_threshold(threshold: f64) -> Result<(), HaltingError> {
    if threshold >= 0.0 && threshold.is_finite() {
        Ok(())
    } else {
        Err(HaltingError::InvalidParameter {
            name: "entropy threshold",
            value: threshold,
            expected: "a non-negative finite entropy in nats, at most ln(classes)",
        })
    }
}

/// Computes the maximum softmax probability of each sample, the confidence of
/// Shallow-Deep Networks (Kaya et al. 2019).
///
/// # Shapes
/// `logits`: `[batch, classes]`; returns `[batch]`.
pub fn max_softmax_confidence(logits: Tensor<2>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    softmax(logits, 1).max_dim(1).reshape([batch])
}

/// Marks the samples whose maximum softmax probability reaches `threshold`.
///
/// The comparison is inclusive: a confidence equal to the threshold exits, so threshold 0
/// exits every sample and threshold 1 exits only samples whose softmax is one-hot in f32.
///
/// # Shapes
/// `logits`: `[batch, classes]`; returns `[batch]`.
pub fn confidence_exits(logits: Tensor<2>, threshold: f64) -> Tensor<1, Bool> {
    max_softmax_confidence(logits).greater_equal_elem(threshold)
}

/// Computes the entropy H = −Σ pᵢ ln pᵢ (in nats) of each sample's softmax, the exit score of
/// BranchyNet (Teerapittayanon et al. 2016).
///
/// `log_softmax` subtracts the row maximum first, so large logits such as [100, 0] stay finite.
/// Classes with p = 0 (a logit of −∞, or one far below the maximum) contribute 0, the limit of
/// p ln p, instead of 0 · (−∞) = NaN. A single class has entropy 0. Each row needs at least one
/// finite logit.
///
/// # Shapes
/// `logits`: `[batch, classes]`; returns `[batch]`.
pub fn softmax_entropy(logits: Tensor<2>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let log_probabilities = log_softmax(logits, 1);
    let probabilities = log_probabilities.clone().exp();
    let zero = probabilities.clone().equal_elem(0.0);
    let terms = probabilities.mul(log_probabilities).mask_fill(zero, 0.0);
    terms.sum_dim(1).reshape([batch]).neg()
}

/// Marks the samples whose softmax entropy is at most `threshold` nats.
///
/// The comparison is inclusive: an entropy equal to the threshold exits, so threshold 0 exits
/// only one-hot softmaxes and threshold ln(classes) exits every sample.
///
/// # Shapes
/// `logits`: `[batch, classes]`; returns `[batch]`.
pub fn entropy_exits(logits: Tensor<2>, threshold: f64) -> Tensor<1, Bool> {
    softmax_entropy(logits).lower_equal_elem(threshold)
}

/// Returns the maximum softmax probability of one row of logits, computed on the host in f32
/// like [`max_softmax_confidence`]. A row needs at least one finite logit.
pub fn row_confidence(logits: &[f32]) -> f32 {
    let max = row_max(logits);
    let sum: f32 = logits.iter().map(|&logit| (logit - max).exp()).sum();
    1.0 / sum
}

/// Returns the softmax entropy in nats of one row of logits, on the host, with the conventions
/// of [`softmax_entropy`]: max-shifted logits, and 0 for classes of probability 0.
pub fn row_entropy(logits: &[f32]) -> f32 {
    let max = row_max(logits);
    let log_sum = logits
        .iter()
        .map(|&logit| (logit - max).exp())
        .sum::<f32>()
        .ln();
    let mut entropy = 0.0f32;
    for &logit in logits {
        let log_probability = logit - max - log_sum;
        let probability = log_probability.exp();
        if probability > 0.0 {
            entropy -= probability * log_probability;
        }
    }
    entropy.max(0.0)
}

/// Returns the index of the largest logit; the first one on ties, like Burn's `argmax`.
pub fn row_argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (index, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = index;
        }
    }
    best
}

fn row_max(logits: &[f32]) -> f32 {
    logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// A per-sample exit decision taken at each head on the host.
///
/// An engine calls [`ExitRule::start`] once per batch, then [`ExitRule::decide`] at every head
/// but the last, in head order, with the rows still running. The last head predicts for every
/// sample that reaches it, so the rule is not called there.
pub trait ExitRule {
    /// Resets per-sample state for a batch of `batch` samples.
    fn start(&mut self, batch: usize);

    /// Returns, for each running row, whether it exits at `head` (counted from 0).
    ///
    /// `logits` contains `samples.len()` rows of `classes` values, row-major; `samples[i]` is the
    /// index in the batch (0..batch) of row i, so state stays with its sample when other
    /// samples leave the batch.
    fn decide(
        &mut self,
        head: usize,
        logits: &[f32],
        classes: usize,
        samples: &[usize],
    ) -> Vec<bool>;

    /// Returns whether the rule reads a learned exit gate. An engine then calls
    /// [`ExitRule::set_gates`] before each [`ExitRule::decide`].
    fn uses_gate(&self) -> bool {
        false
    }

    /// Stores the gate's halting probability λ of each running row at the next head.
    fn set_gates(&mut self, _gates: &[f32]) {}
}

/// Maximum softmax confidence (Shallow-Deep Networks, Kaya et al. 2019): a sample exits when
/// its confidence is at least `threshold` (inclusive, like [`confidence_exits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceRule {
    pub threshold: f32,
}

impl ExitRule for ConfidenceRule {
    fn start(&mut self, _batch: usize) {}

    fn decide(&mut self, _head: usize, logits: &[f32], classes: usize, _: &[usize]) -> Vec<bool> {
        logits
            .chunks_exact(classes)
            .map(|row| row_confidence(row) >= self.threshold)
            .collect()
    }
}

/// Softmax entropy (BranchyNet, Teerapittayanon et al. 2016): a sample exits when its entropy
/// in nats is at most `threshold` (inclusive, like [`entropy_exits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyRule {
    pub threshold: f32,
}

impl ExitRule for EntropyRule {
    fn start(&mut self, _batch: usize) {}

    fn decide(&mut self, _head: usize, logits: &[f32], classes: usize, _: &[usize]) -> Vec<bool> {
        logits
            .chunks_exact(classes)
            .map(|row| row_entropy(row) <= self.threshold)
            .collect()
    }
}

/// Patience (PABEE, Zhou et al. 2020): a sample exits once its prediction has stayed the same
/// for `patience` consecutive heads.
///
/// The counter of a sample is c₁ = 0 at the first head and, at head l > 1, cₗ = cₗ₋₁ + 1 when
/// the argmax equals that of head l − 1, else 0. The sample exits at the first head where
/// cₗ ≥ `patience` (inclusive). So predictions [1, 1, 1, 1] with patience 2 exit at head 3
/// with head 3's prediction, and patience 0 exits every sample at head 1.
#[derive(Debug, Clone, PartialEq)]
pub struct PatienceRule {
    pub patience: usize,
    /// Last prediction and counter of each sample in the batch.
    state: Vec<(usize, usize)>,
}

impl PatienceRule {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            state: Vec::new(),
        }
    }
}

impl ExitRule for PatienceRule {
    fn start(&mut self, batch: usize) {
        self.state = vec![(usize::MAX, 0); batch];
    }

    fn decide(
        &mut self,
        head: usize,
        logits: &[f32],
        classes: usize,
        samples: &[usize],
    ) -> Vec<bool> {
        logits
            .chunks_exact(classes)
            .zip(samples)
            .map(|(row, &sample)| {
                let prediction = row_argmax(row);
                let (previous, count) = self.state[sample];
                let count = if head > 0 && prediction == previous {
                    count + 1
                } else {
                    0
                };
                self.state[sample] = (prediction, count);
                count >= self.patience
            })
            .collect()
    }
}

/// A learned exit gate: a sample exits at head l when the gate's halting probability λₗ is at
/// least `threshold` (inclusive). The gate is trained with PonderNet over depth (Banino et al.
/// 2021), where λₗ is the probability of halting at layer l given that no earlier layer halted.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRule {
    pub threshold: f32,
    gates: Vec<f32>,
}

impl GateRule {
    pub fn new(threshold: f32) -> Self {
        Self {
            threshold,
            gates: Vec::new(),
        }
    }
}

impl ExitRule for GateRule {
    fn start(&mut self, _batch: usize) {}

    /// Rows without a stored gate value (the network has no gate) never exit.
    fn decide(&mut self, _head: usize, logits: &[f32], classes: usize, _: &[usize]) -> Vec<bool> {
        let rows = logits.len() / classes.max(1);
        (0..rows)
            .map(|row| {
                self.gates
                    .get(row)
                    .is_some_and(|&gate| gate >= self.threshold)
            })
            .collect()
    }

    fn uses_gate(&self) -> bool {
        true
    }

    fn set_gates(&mut self, gates: &[f32]) {
        self.gates = gates.to_vec();
    }
}

/// A rule that never exits early, so every sample runs the whole network.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NeverExit;

impl ExitRule for NeverExit {
    fn start(&mut self, _batch: usize) {}

    fn decide(&mut self, _head: usize, logits: &[f32], classes: usize, _: &[usize]) -> Vec<bool> {
        vec![false; logits.len() / classes.max(1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, tensor2, to_vec};

    fn bools(tensor: Tensor<1, Bool>) -> Vec<bool> {
        tensor
            .into_data()
            .try_into_vec::<bool>()
            .expect("bool tensor")
    }

    // softmax([ln 3, 0]) = [3/4, 1/4], so the confidence is 0.75.
    #[test]
    fn confidence_of_two_classes() {
        let logits = tensor2(&[&[3f32.ln(), 0.0], &[0.0, 0.0]]);
        assert_close(&to_vec(max_softmax_confidence(logits)), &[0.75, 0.5], 1e-6);
    }

    #[test]
    fn confidence_threshold_is_inclusive() {
        // Both rows have confidence exactly 0.5 in f32.
        let logits = tensor2(&[&[0.0, 0.0], &[1.0, 1.0]]);
        assert_eq!(
            bools(confidence_exits(logits.clone(), 0.5)),
            vec![true, true]
        );
        assert_eq!(
            bools(confidence_exits(logits, 0.500001)),
            vec![false, false]
        );
    }

    #[test]
    fn confidence_threshold_range() {
        assert!(check_confidence_threshold(0.0).is_ok());
        assert!(check_confidence_threshold(1.0).is_ok());
        assert!(check_confidence_threshold(1.01).is_err());
        assert!(check_confidence_threshold(f64::NAN).is_err());
    }
    fn rows(logits: &[&[f32]]) -> Vec<f32> {
        logits.iter().flat_map(|row| row.iter().copied()).collect()
    }

    // [100, 0]: p = [1, e^-100], H ≈ 0. [0, −∞]: one-hot, H = 0. [5, 5, −∞]: H = ln 2.
    #[test]
    fn entropy_of_hard_logits() {
        let inf = f32::NEG_INFINITY;
        let logits = tensor2(&[&[100.0, 0.0, 0.0], &[0.0, inf, inf], &[5.0, 5.0, inf]]);
        let entropy = to_vec(softmax_entropy(logits));
        assert!(entropy.iter().all(|h| h.is_finite()), "{entropy:?}");
        assert_close(&entropy, &[0.0, 0.0, 2f32.ln()], 1e-6);
        assert_close(&[row_entropy(&[100.0, 0.0])], &[0.0], 1e-6);
        assert_close(&[row_entropy(&[0.0, inf])], &[0.0], 0.0);
        assert_close(&[row_entropy(&[5.0, 5.0, inf])], &[2f32.ln()], 1e-6);
        assert_close(&[row_confidence(&[0.0, inf])], &[1.0], 0.0);
    }

    #[test]
    fn entropy_of_single_class() {
        let entropy = to_vec(softmax_entropy(tensor2(&[&[3.0], &[-7.0]])));
        assert_eq!(entropy, vec![0.0, 0.0]);
        assert_eq!(row_entropy(&[3.0]), 0.0);
        assert_eq!(row_confidence(&[3.0]), 1.0);
    }

    // Uniform over 4 classes: H = ln 4 exactly in f32 arithmetic up to rounding.
    #[test]
    fn entropy_matches_uniform() {
        let entropy = to_vec(softmax_entropy(tensor2(&[&[2.0, 2.0, 2.0, 2.0]])));
        assert_close(&entropy, &[4f32.ln()], 1e-6);
    }

    #[test]
    fn entropy_threshold_is_inclusive() {
        let logits = [5.0f32, 5.0, f32::NEG_INFINITY];
        let entropy = row_entropy(&logits);
        let mut rule = EntropyRule { threshold: entropy };
        assert_eq!(rule.decide(0, &logits, 3, &[0]), vec![true]);
        let mut rule = EntropyRule {
            threshold: entropy.next_down(),
        };
        assert_eq!(rule.decide(0, &logits, 3, &[0]), vec![false]);
        let tensor_entropy = to_vec(softmax_entropy(tensor2(&[&logits])))[0];
        let exits = entropy_exits(tensor2(&[&logits]), tensor_entropy as f64);
        assert_eq!(bools(exits), vec![true]);
    }

    #[test]
    fn confidence_rule_boundary() {
        let logits = [3f32.ln(), 0.0];
        let confidence = row_confidence(&logits);
        let mut rule = ConfidenceRule {
            threshold: confidence,
        };
        assert_eq!(rule.decide(0, &logits, 2, &[0]), vec![true]);
        rule.threshold = confidence.next_up();
        assert_eq!(rule.decide(0, &logits, 2, &[0]), vec![false]);
    }

    #[test]
    fn host_confidence_matches_tensor() {
        let logits = [[0.3f32, -1.2, 2.5, 0.0], [4.0, 4.0, -3.0, 1.0]];
        let device_values = to_vec(max_softmax_confidence(tensor2(&[&logits[0], &logits[1]])));
        let host: Vec<f32> = logits.iter().map(|row| row_confidence(row)).collect();
        assert_close(&host, &device_values, 1e-6);
        let device_entropy = to_vec(softmax_entropy(tensor2(&[&logits[0], &logits[1]])));
        let host_entropy: Vec<f32> = logits.iter().map(|row| row_entropy(row)).collect();
        assert_close(&host_entropy, &device_entropy, 1e-5);
    }

    // Sample 0 predicts [1, 1, 1, 1] and sample 1 predicts [0, 1, 0, 1] over heads 1..4.
    #[test]
    fn patience_counts_per_sample() {
        let one = [0.0f32, 1.0];
        let zero = [1.0f32, 0.0];
        let mut rule = PatienceRule::new(2);
        rule.start(2);
        assert_eq!(
            rule.decide(0, &rows(&[&one, &zero]), 2, &[0, 1]),
            vec![false, false]
        );
        assert_eq!(
            rule.decide(1, &rows(&[&one, &one]), 2, &[0, 1]),
            vec![false, false]
        );
        assert_eq!(
            rule.decide(2, &rows(&[&one, &zero]), 2, &[0, 1]),
            vec![true, false]
        );
        // Only sample 1 is still running at head 4; its state is found by its batch index.
        assert_eq!(rule.decide(3, &rows(&[&one]), 2, &[1]), vec![false]);
    }

    #[test]
    fn patience_zero_exits_at_once() {
        let mut rule = PatienceRule::new(0);
        rule.start(1);
        assert_eq!(rule.decide(0, &[0.0, 1.0], 2, &[0]), vec![true]);
    }

    #[test]
    fn gate_threshold_is_inclusive() {
        let mut rule = GateRule::new(0.75);
        assert!(rule.uses_gate());
        rule.set_gates(&[0.75, 0.7499, 1.0]);
        let logits = [0.0f32; 6];
        assert_eq!(
            rule.decide(0, &logits, 2, &[0, 1, 2]),
            vec![true, false, true]
        );
        rule.set_gates(&[]);
        assert_eq!(rule.decide(1, &logits[..2], 2, &[0]), vec![false]);
    }
}
