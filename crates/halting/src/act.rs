//! Adaptive Computation Time, after Graves (2016), "Adaptive Computation Time for Recurrent
//! Neural Networks", arXiv:1603.08983.
//!
//! Given the halting values hₙ = σ(W sₙ + b) of steps n = 1..M, a sample halts at
//! N = min{n : Σ_{i≤n} hᵢ ≥ 1 − ε}, or at N = M when the sum never reaches 1 − ε. The step
//! weights are hₙ for n < N, the remainder R = 1 − Σ_{n<N} hₙ at N, and 0 after N, so they sum
//! to 1. The output is the weighted *sum* of the step outputs (Graves' accumulation), not the
//! running interpolation y ← (1 − w) y + w yₙ that many Universal Transformer implementations
//! use; the two differ whenever the weights are not a single one-hot step. The ponder cost is
//! ρ = N + R per sample, with N held constant in the gradient.

use burn::tensor::{Bool, Int, Tensor};

use crate::HaltingError;

/// ε of Graves (2016), section 2: a sample may halt after one step when h₁ ≥ 1 − ε.
pub const DEFAULT_EPSILON: f64 = 0.01;

/// Checks that ε lies in the open interval (0, 1), where the halting threshold 1 − ε is a
/// reachable, positive amount of halting mass.
pub fn check_epsilon(epsilon: f64) -> Result<(), HaltingError> {
    if epsilon > 0.0 && epsilon < 1.0 {
        Ok(())
    } else {
        Err(HaltingError::InvalidParameter {
            name: "epsilon",
            value: epsilon,
            expected: "a value in the open interval (0, 1), such as 0.01",
        })
    }
}

/// The ACT halting decision for a batch.
///
/// # Shapes
/// `batch` samples and `steps` computed steps, as in the halting values given to
/// [`act_halting`].
#[derive(Debug, Clone)]
pub struct ActHalting {
    /// Step weights: hₙ for n < N, R at n = N and 0 after N. `[batch, steps]`
    pub weights: Tensor<2>,
    /// Steps that a sample computes, n ≤ N. `[batch, steps]`
    pub active: Tensor<2, Bool>,
    /// Halting step N, counted from 1. `[batch]`
    pub halting_step: Tensor<1, Int>,
    /// Remainder R = 1 − Σ_{n<N} hₙ. `[batch]`
    pub remainder: Tensor<1>,
    /// Ponder cost ρ = N + R; only R carries a gradient. `[batch]`
    pub ponder_cost: Tensor<1>,
}

impl ActHalting {
    /// Computes the weighted sum Σₙ wₙ yₙ of the step outputs (Graves' accumulation).
    ///
    /// Outputs of steps after a sample's halting step are replaced by 0 before weighting, so an
    /// infinite or NaN value there cannot turn into NaN through a multiplication by a zero
    /// weight.
    ///
    /// # Shapes
    /// `step_outputs`: `[batch, steps, features]`; returns `[batch, features]`.
    pub fn accumulate(&self, step_outputs: Tensor<3>) -> Tensor<2> {
        let [batch, steps, features] = step_outputs.dims();
        let inactive = self
            .active
            .clone()
            .bool_not()
            .unsqueeze_dim::<3>(2)
            .expand([batch, steps, features]);
        let finite_outputs = step_outputs.mask_fill(inactive, 0.0);
        let weights = self.weights.clone().unsqueeze_dim::<3>(2); // [batch, steps, 1]
        (finite_outputs * weights)
            .sum_dim(1)
            .reshape([batch, features])
    }
}

/// Computes the ACT halting step, step weights, remainder and ponder cost of each sample.
///
/// `halting` holds hₙ for every sample and computed step. Its last column is treated as step M:
/// a sample that has not reached 1 − ε by then halts there, so pass all M steps, or stop
/// early only once every sample has halted (then the forced halt changes nothing). The
/// threshold comparison is inclusive: Σhᵢ = 1 − ε halts.
///
/// # Shapes
/// `halting`: `[batch, steps]` with values in [0, 1].
pub fn act_halting(halting: Tensor<2>, epsilon: f64) -> Result<ActHalting, HaltingError> {
    check_epsilon(epsilon)?;
    let [batch, steps] = halting.dims();
    if steps == 0 {
        return Err(HaltingError::InvalidShape {
            name: "halting",
            problem: format!("[{batch}, 0] has no steps; ACT needs at least one step"),
        });
    }

    // 1 where the cumulative halting mass has reached 1 − ε; the last step always counts.
    let reached = halting
        .clone()
        .cumsum(1)
        .greater_equal_elem(1.0 - epsilon)
        .float()
        .slice_fill([0..batch, steps - 1..steps], 1.0);

    // How many steps up to and including n have reached the threshold: 0 before N, 1 at N.
    let reached_count = reached.clone().cumsum(1);
    let before = reached_count.clone().lower_elem(0.5);
    let at_halt = reached_count
        .equal_elem(1.0)
        .bool_and(reached.greater_elem(0.5));

    // Masking, not multiplying by 0/1, keeps a non-finite hₙ after N out of the sums.
    let halting_before = halting.mask_fill(before.clone().bool_not(), 0.0);
    let remainder = halting_before.clone().sum_dim(1).neg().add_scalar(1.0); // [batch, 1]
    let weights =
        halting_before.mask_where(at_halt.clone(), remainder.clone().expand([batch, steps]));

    // N − 1 is the count of steps before N; it comes from comparisons, so it has no gradient.
    let halting_step = before.clone().float().sum_dim(1).add_scalar(1.0); // [batch, 1]
    let ponder_cost = halting_step.clone() + remainder.clone();

    Ok(ActHalting {
        weights,
        active: before.bool_or(at_halt),
        halting_step: halting_step.reshape([batch]).int(),
        remainder: remainder.reshape([batch]),
        ponder_cost: ponder_cost.reshape([batch]),
    })
}

/// Returns whether every sample's cumulative halting mass has reached 1 − ε, the point where a
/// step-by-step ACT loop may stop before M.
///
/// # Shapes
/// `cumulative_halting`: `[batch]`, the sums Σ_{i≤n} hᵢ after the latest step.
pub fn all_halted(cumulative_halting: Tensor<1>, epsilon: f64) -> bool {
    cumulative_halting
        .greater_equal_elem(1.0 - epsilon)
        .all()
        .into_scalar::<bool>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, device, tensor2, to_vec};
    use burn::tensor::{Tensor, TensorData};

    /// Step outputs s = [1, 2, 3] (one feature) for each row of a batch.
    fn outputs(rows: usize, values: &[f32]) -> Tensor<3> {
        let data: Vec<f32> = (0..rows).flat_map(|_| values.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows, values.len(), 1]), &device())
    }

    fn int_vec(tensor: Tensor<1, Int>) -> Vec<i64> {
        tensor
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("int tensor")
    }

    // h = [0.995, 0.5, 0.5], ε = 0.01: h₁ = 0.995 ≥ 0.99, so N = 1, R = 1 − 0 = 1,
    // weights [1, 0, 0], output 1·1 = 1, ponder N + R = 2.
    #[test]
    fn act_halts_at_first_step() {
        let halting = act_halting(tensor2(&[&[0.995, 0.5, 0.5]]), 0.01).unwrap();
        assert_close(&to_vec(halting.weights.clone()), &[1.0, 0.0, 0.0], 1e-6);
        assert_close(
            &to_vec(halting.accumulate(outputs(1, &[1.0, 2.0, 3.0]))),
            &[1.0],
            1e-6,
        );
        assert_close(&to_vec(halting.ponder_cost), &[2.0], 1e-6);
        assert_eq!(int_vec(halting.halting_step), vec![1]);
    }

    // h = [0.1, 0.1, 0.1]: the sums 0.1, 0.2, 0.3 never reach 0.99, so N = M = 3,
    // R = 1 − 0.2 = 0.8, weights [0.1, 0.1, 0.8], output 0.1 + 0.2 + 2.4 = 2.7, ponder 3.8.
    #[test]
    fn act_reaches_max_steps() {
        let halting = act_halting(tensor2(&[&[0.1, 0.1, 0.1]]), 0.01).unwrap();
        assert_close(&to_vec(halting.weights.clone()), &[0.1, 0.1, 0.8], 1e-6);
        assert_close(
            &to_vec(halting.accumulate(outputs(1, &[1.0, 2.0, 3.0]))),
            &[2.7],
            1e-5,
        );
        assert_close(&to_vec(halting.ponder_cost), &[3.8], 1e-6);
        assert_eq!(int_vec(halting.halting_step), vec![3]);
    }

    #[test]
    fn act_batch_matches_single_samples() {
        let steps = [1.0, 2.0, 3.0];
        let batch = act_halting(tensor2(&[&[0.995, 0.5, 0.5], &[0.1, 0.1, 0.1]]), 0.01).unwrap();
        assert_close(
            &to_vec(batch.weights.clone()),
            &[1.0, 0.0, 0.0, 0.1, 0.1, 0.8],
            1e-6,
        );
        assert_close(
            &to_vec(batch.accumulate(outputs(2, &steps))),
            &[1.0, 2.7],
            1e-5,
        );
        assert_close(&to_vec(batch.ponder_cost), &[2.0, 3.8], 1e-6);
        assert_eq!(int_vec(batch.halting_step), vec![1, 3]);
    }

    // h = [0.5, 0.6], s = [1, 3]: 0.5 < 0.99 but 1.1 ≥ 0.99, so N = 2, R = 1 − 0.5 = 0.5,
    // output 0.5·1 + 0.5·3 = 2.0, ponder 2 + 0.5 = 2.5.
    #[test]
    fn act_halts_at_second_step() {
        let halting = act_halting(tensor2(&[&[0.5, 0.6]]), 0.01).unwrap();
        assert_close(
            &to_vec(halting.accumulate(outputs(1, &[1.0, 3.0]))),
            &[2.0],
            1e-6,
        );
        assert_close(&to_vec(halting.ponder_cost), &[2.5], 1e-6);
    }

    // Σh = 0.4 + 0.59 = 0.99 exactly at ε = 0.01 halts at step 2 (inclusive threshold).
    #[test]
    fn act_threshold_is_inclusive() {
        let halting = act_halting(tensor2(&[&[0.5, 0.49, 0.3]]), 0.01).unwrap();
        assert_eq!(int_vec(halting.halting_step), vec![2]);
        assert_close(&to_vec(halting.weights), &[0.5, 0.5, 0.0], 1e-6);
    }

    #[test]
    fn act_weights_sum_to_one() {
        let rows: [&[f32]; 4] = [
            &[0.3, 0.3, 0.3, 0.3],
            &[0.0, 0.0, 0.0, 0.0],
            &[1.0, 1.0, 1.0, 1.0],
            &[0.2, 0.7, 0.05, 0.9],
        ];
        let halting = act_halting(tensor2(&rows), 0.01).unwrap();
        let sums = to_vec(halting.weights.sum_dim(1).reshape([4]));
        assert_close(&sums, &[1.0, 1.0, 1.0, 1.0], 1e-6);
    }

    #[test]
    fn act_ignores_infinite_outputs_after_halting() {
        let halting = act_halting(tensor2(&[&[0.995, 0.5, 0.5]]), 0.01).unwrap();
        let step_outputs = outputs(1, &[1.0, f32::INFINITY, f32::NAN]);
        let output = to_vec(halting.accumulate(step_outputs));
        assert_close(&output, &[1.0], 1e-6);
    }

    #[test]
    fn act_ponder_gradient_is_minus_one() {
        // dρ/dhₙ = −1 for every n < N (through R) and 0 at and after N, because N is constant.
        let device = device().autodiff();
        let h = Tensor::<2>::from_data(
            TensorData::new(vec![0.2f32, 0.3, 0.9, 0.1], [1, 4]),
            &device,
        )
        .require_grad();
        let halting = act_halting(h.clone(), 0.01).unwrap();
        let grads = halting.ponder_cost.sum().backward();
        let grad = to_vec(h.grad(&grads).expect("gradient of h"));
        assert_close(&grad, &[-1.0, -1.0, 0.0, 0.0], 1e-6);
    }

    #[test]
    fn act_rejects_bad_epsilon() {
        for epsilon in [0.0, 1.0, -0.1, f64::NAN] {
            let error = act_halting(tensor2(&[&[0.5]]), epsilon).unwrap_err();
            assert!(matches!(
                error,
                HaltingError::InvalidParameter {
                    name: "epsilon",
                    ..
                }
            ));
        }
    }

    #[test]
    fn all_halted_checks_every_sample() {
        let t =
            |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device());
        assert!(all_halted(t(vec![0.99, 1.2]), 0.01));
        assert!(!all_halted(t(vec![0.99, 0.5]), 0.01));
    }
}
