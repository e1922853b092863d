//! REINFORCE (Williams 1992, "Simple Statistical Gradient-Following Algorithms for
//! Connectionist Reinforcement Learning") for a Bernoulli halting policy.
//!
//! At step n the policy halts with probability λₙ = σ(zₙ); the sampled halting step N has
//! probability π(N) = λ_N ∏_{n<N} (1 − λₙ), with λ_M = 1 at the last step. With reward R and
//! baseline b the surrogate loss is −(R − b)·log π(N), whose gradient is the REINFORCE
//! estimate of −∇E[R].

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// Computes log π(N) = Σ_{n<N} log(1 − σ(zₙ)) + log σ(z_N) from the halting logits, with the
/// log σ(z_N) term dropped at N = M, where halting is forced. Uses log σ(−z) for
/// log(1 − σ(z)) so large logits stay finite.
///
/// # Shapes
/// `halting_logits`: `[batch, steps]`; `halting_step`: `[batch]`, counted from 1; returns
/// `[batch]`.
pub fn log_policy(halting_logits: Tensor<2>, halting_step: Tensor<1, Int>) -> Tensor<1> {
    let [batch, steps] = halting_logits.dims();
    let device = halting_logits.device();
    let step_numbers = Tensor::<1, Int>::arange(1..steps as i64 + 1, &device)
        .reshape([1, steps])
        .expand([batch, steps]);
    let halt = halting_step.reshape([batch, 1]).expand([batch, steps]);
    let before = step_numbers.clone().lower(halt.clone());
    let at = step_numbers
        .clone()
        .equal(halt)
        .bool_and(step_numbers.lower_elem(steps as i64));

    let keep_going = log_sigmoid(halting_logits.clone().neg()).mask_fill(before.bool_not(), 0.0);
    let stop = log_sigmoid(halting_logits).mask_fill(at.bool_not(), 0.0);
    (keep_going + stop).sum_dim(1).reshape([batch])
}

/// Computes the REINFORCE surrogate −(R − b)·log π(N) of each sample; the advantage R − b
/// carries no gradient.
///
/// # Shapes
/// All `[batch]`; returns `[batch]`.
pub fn surrogate_loss(log_policy: Tensor<1>, reward: Tensor<1>, baseline: Tensor<1>) -> Tensor<1> {
    let advantage = (reward - baseline).detach();
    (advantage * log_policy).neg()
}

/// An exponential moving average of the mean reward, b ← d·b + (1 − d)·mean(R), used as a
/// baseline that lowers the variance of REINFORCE without biasing it. The first update sets
/// b to the first mean. It serialises, so a checkpoint can hold its state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MovingAverageBaseline {
    decay: f64,
    value: Option<f64>,
}

impl MovingAverageBaseline {
    /// Creates a baseline with decay d ∈ [0, 1).
    pub fn new(decay: f64) -> Self {
        Self { decay, value: None }
    }

    /// Baseline before this batch's update; 0 before the first update.
    pub fn value(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }

    /// Folds in the mean reward of a batch.
    pub fn update(&mut self, mean_reward: f64) {
        self.value = Some(match self.value {
            None => mean_reward,
            Some(value) => self.decay * value + (1.0 - self.decay) * mean_reward,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, device, tensor2, to_vec};
    use burn::tensor::TensorData;

    fn steps(values: Vec<i64>) -> Tensor<1, Int> {
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), &device())
    }

    // z = 0 at every step gives λ = 0.5. N = 2 of M = 3: log(0.5) + log(0.5) = −2 ln 2.
    // N = 3 = M: log(0.5) + log(0.5) and no halting term, also −2 ln 2. N = 1: −ln 2.
    #[test]
    fn log_policy_by_hand() {
        let logits = tensor2(&[&[0.0, 0.0, 0.0], &[0.0, 0.0, 0.0], &[0.0, 0.0, 0.0]]);
        let log_pi = to_vec(log_policy(logits, steps(vec![2, 3, 1])));
        let ln2 = 2f32.ln();
        assert_close(&log_pi, &[-2.0 * ln2, -2.0 * ln2, -ln2], 1e-6);
    }

    // z₁ = ln 3 gives λ₁ = 0.75; N = 1 has log π = ln 0.75, and N = 2 = M has ln 0.25.
    #[test]
    fn log_policy_matches_halting_distribution() {
        let logits = tensor2(&[&[3f32.ln(), 5.0], &[3f32.ln(), 5.0]]);
        let log_pi = to_vec(log_policy(logits, steps(vec![1, 2])));
        assert_close(&log_pi, &[0.75f32.ln(), 0.25f32.ln()], 1e-6);
    }

    // d/dz of −(R − b)·log σ(z) at z = 0, N = 1 = M − 1, R − b = 2: −2·(1 − σ(0)) = −1.
    #[test]
    fn surrogate_gradient_by_hand() {
        let device = device().autodiff();
        let z = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0], [1, 2]), &device)
            .require_grad();
        let n = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &device);
        let reward = Tensor::<1>::from_data(TensorData::new(vec![3.0f32], [1]), &device);
        let baseline = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
        let loss = surrogate_loss(log_policy(z.clone(), n), reward, baseline);
        let grads = loss.sum().backward();
        assert_close(&to_vec(z.grad(&grads).unwrap()), &[-1.0, 0.0], 1e-6);
    }

    #[test]
    fn moving_average_baseline() {
        let mut baseline = MovingAverageBaseline::new(0.9);
        assert_eq!(baseline.value(), 0.0);
        baseline.update(2.0);
        assert_eq!(baseline.value(), 2.0);
        baseline.update(1.0);
        assert!((baseline.value() - 1.9).abs() < 1e-12);
    }
}
