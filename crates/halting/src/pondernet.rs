//! PonderNet, after Banino, Balaguer and Blundell (2021), "PonderNet: Learning to Ponder",
//! arXiv:2107.05407.
//!
//! Step n has a conditional halting probability λₙ. The unconditional probability of halting
//! at step n is pₙ = λₙ ∏_{j<n} (1 − λⱼ); at the last step M all remaining mass goes to M
//! (λ_M = 1), so the pₙ sum to 1. The loss is Σₙ pₙ·L(y, ŷₙ) + β·KL(p ‖ p_G), with the halting
//! distribution p first, as in the paper, against a geometric prior p_G(n) ∝ λ_p (1 − λ_p)^{n−1}
//! truncated to n ≤ M and renormalised to sum to 1.

use burn::tensor::{Device, Tensor, TensorData};

use crate::HaltingError;

/// Smallest probability used inside a logarithm. Terms with pₙ = 0 are masked to 0
/// (0·log 0 = 0), so this floor only keeps the gradient of log pₙ finite.
const PROBABILITY_FLOOR: f32 = 1e-30;

/// Checks that λ_p lies in (0, 1], where the geometric prior is defined.
pub fn check_prior_lambda(lambda_prior: f64) -> Result<(), HaltingError> {
    if lambda_prior > 0.0 && lambda_prior <= 1.0 {
        Ok(())
    } else {
        Err(HaltingError::InvalidParameter {
            name: "lambda_prior",
            value: lambda_prior,
            expected: "a probability in (0, 1], such as 0.2",
        })
    }
}

/// Computes pₙ = λₙ ∏_{j<n} (1 − λⱼ) with λ_M = 1.
///
/// The last column of `lambda` is step M and is replaced by 1, whatever it holds, so each row
/// sums to 1. The products are built step by step rather than with a cumulative product,
/// whose gradient divides by 1 − λⱼ and fails when a λⱼ is 1.
///
/// # Shapes
/// `lambda`: `[batch, steps]` with values in [0, 1]; returns `[batch, steps]`.
pub fn halting_distribution(lambda: Tensor<2>) -> Tensor<2> {
    let [batch, steps] = lambda.dims();
    let device = lambda.device();
    let mut survival = Tensor::<2>::ones([batch, 1], &device);
    let mut probabilities = Vec::with_capacity(steps);
    for step in 0..steps {
        if step + 1 == steps {
            probabilities.push(survival.clone());
            break;
        }
        let lambda_n = lambda.clone().slice([0..batch, step..step + 1]);
        probabilities.push(lambda_n.clone() * survival.clone());
        survival = survival * lambda_n.neg().add_scalar(1.0);
    }
    Tensor::cat(probabilities, 1)
}

/// Computes log p_G(n) for n = 1..=steps: the geometric prior with parameter λ_p, truncated to
/// `steps` steps and renormalised.
///
/// For λ_p = 1 the prior puts all mass on step 1; log p_G(n) for n > 1 is then −∞, which is
/// returned as the log of the smallest positive f32 so that a KL against it is large but
/// finite.
pub fn geometric_log_prior(lambda_prior: f64, steps: usize) -> Result<Vec<f64>, HaltingError> {
    check_prior_lambda(lambda_prior)?;
    let floor = (f32::MIN_POSITIVE as f64).ln();
    let log_lambda = lambda_prior.ln();
    let log_keep = (1.0 - lambda_prior).ln().max(floor);
    let unnormalised: Vec<f64> = (0..steps)
        .map(|n| (log_lambda + n as f64 * log_keep).max(floor))
        .collect();
    // log Z by log-sum-exp over the truncated support.
    let max = unnormalised
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let log_normaliser = max
        + unnormalised
            .iter()
            .map(|v| (v - max).exp())
            .sum::<f64>()
            .ln();
    Ok(unnormalised
        .into_iter()
        .map(|v| (v - log_normaliser).max(floor))
        .collect())
}

/// Computes KL(p ‖ p_G) = Σₙ pₙ (log pₙ − log p_G(n)) for each sample.
///
/// Terms with pₙ = 0 contribute 0, so a sample that halts with certainty at step 1 has the
/// finite KL −log p_G(1). The result is clamped at 0 to remove negative rounding error.
///
/// # Shapes
/// `probabilities`: `[batch, steps]`; returns `[batch]`.
pub fn kl_to_geometric_prior(
    probabilities: Tensor<2>,
    lambda_prior: f64,
) -> Result<Tensor<1>, HaltingError> {
    let [batch, steps] = probabilities.dims();
    let device = probabilities.device();
    let log_prior = log_prior_tensor(lambda_prior, steps, &device)?;
    let zero = probabilities.clone().lower_equal_elem(0.0);
    let log_p = probabilities.clone().clamp_min(PROBABILITY_FLOOR).log();
    let terms = (probabilities * (log_p - log_prior.expand([batch, steps]))).mask_fill(zero, 0.0);
    Ok(terms.sum_dim(1).reshape([batch]).clamp_min(0.0))
}

fn log_prior_tensor(
    lambda_prior: f64,
    steps: usize,
    device: &Device,
) -> Result<Tensor<2>, HaltingError> {
    let values: Vec<f32> = geometric_log_prior(lambda_prior, steps)?
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Ok(Tensor::from_data(
        TensorData::new(values, [1, steps]),
        device,
    ))
}

/// Expected step loss Σₙ pₙ·Lₙ of each sample, PonderNet's reconstruction term.
///
/// # Shapes
/// `probabilities`, `step_losses`: `[batch, steps]`; returns `[batch]`.
pub fn expected_loss(probabilities: Tensor<2>, step_losses: Tensor<2>) -> Tensor<1> {
    let [batch, _] = probabilities.dims();
    let zero = probabilities.clone().lower_equal_elem(0.0);
    // Masking keeps an infinite loss at a step with pₙ = 0 from turning into NaN.
    (probabilities * step_losses.mask_fill(zero, 0.0))
        .sum_dim(1)
        .reshape([batch])
}

/// Expected number of steps Σₙ n·pₙ of each sample.
///
/// # Shapes
/// `probabilities`: `[batch, steps]`; returns `[batch]`.
pub fn expected_steps(probabilities: Tensor<2>) -> Tensor<1> {
    let [batch, steps] = probabilities.dims();
    let device = probabilities.device();
    let step_numbers: Vec<f32> = (1..=steps).map(|n| n as f32).collect();
    let step_numbers = Tensor::<2>::from_data(TensorData::new(step_numbers, [1, steps]), &device);
    (probabilities * step_numbers.expand([batch, steps]))
        .sum_dim(1)
        .reshape([batch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, tensor2, to_vec};

    // λ = [0.5, 0.5, 0.9] with M = 3: p₁ = 0.5, p₂ = 0.5·0.5 = 0.25, and λ₃ is replaced by 1,
    // so p₃ = 1·0.5·0.5 = 0.25. The rows sum to 1.
    #[test]
    fn distribution_by_hand() {
        let p = halting_distribution(tensor2(&[&[0.5, 0.5, 0.9], &[1.0, 0.3, 0.3]]));
        assert_close(&to_vec(p), &[0.5, 0.25, 0.25, 1.0, 0.0, 0.0], 1e-7);
    }

    // λ_p = 0.5, M = 3: unnormalised 0.5, 0.25, 0.125 with Z = 0.875, so
    // p_G = [4/7, 2/7, 1/7].
    #[test]
    fn prior_truncated_and_renormalised() {
        let prior: Vec<f64> = geometric_log_prior(0.5, 3)
            .unwrap()
            .into_iter()
            .map(f64::exp)
            .collect();
        for (actual, expected) in prior.iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
            assert!((actual - expected).abs() < 1e-12, "{prior:?}");
        }
    }

    // p = [0.5, 0.25, 0.25] against p_G = [4/7, 2/7, 1/7]:
    // KL(p ‖ p_G) = 0.5 ln(0.5·7/4) + 0.25 ln(0.25·7/2) + 0.25 ln(0.25·7)
    //             = 0.75 ln(7/8) + 0.25 ln(7/4) ≈ 0.0397561.
    // The reverse direction KL(p_G ‖ p) = (4/7) ln(8/7) + (2/7) ln(8/7) + (1/7) ln(4/7)
    //             ≈ 0.0345 differs, so this test also pins the direction.
    #[test]
    fn kl_by_hand() {
        let p = tensor2(&[&[0.5, 0.25, 0.25]]);
        let kl = to_vec(kl_to_geometric_prior(p, 0.5).unwrap());
        let expected = 0.75 * (7.0f64 / 8.0).ln() + 0.25 * (7.0f64 / 4.0).ln();
        assert_close(&kl, &[expected as f32], 1e-6);
    }

    // Certain halting at step 1: p = [1, 0, 0]. Only n = 1 contributes:
    // KL = 1·ln(1 / (4/7)) = ln(7/4) ≈ 0.5596, finite although log p₂ = log p₃ = −∞.
    // (The reverse direction would be infinite, because p_G puts mass where p has none.)
    #[test]
    fn kl_finite_for_certain_first_step() {
        let p = halting_distribution(tensor2(&[&[1.0, 0.5, 0.5]]));
        let kl = to_vec(kl_to_geometric_prior(p, 0.5).unwrap());
        assert_close(&kl, &[(7.0f32 / 4.0).ln()], 1e-6);
    }

    // λ_p → 1 puts the prior's mass on step 1: with λ_p = 0.999 and M = 2,
    // p_G = [0.999, 0.000999] / 0.999999, so for p = [1, 0] the KL is
    // ln(0.999999 / 0.999) ≈ 0.0009995; for λ_p = 1 exactly it is 0.
    #[test]
    fn kl_with_prior_near_one() {
        let p = tensor2(&[&[1.0, 0.0]]);
        let near = to_vec(kl_to_geometric_prior(p.clone(), 0.999).unwrap());
        assert_close(&near, &[(0.999999f64 / 0.999).ln() as f32], 1e-6);
        let exact = to_vec(kl_to_geometric_prior(p, 1.0).unwrap());
        assert_close(&exact, &[0.0], 1e-6);
        // A spread p against the λ_p = 1 prior is penalised heavily but stays finite.
        let spread = to_vec(kl_to_geometric_prior(tensor2(&[&[0.5, 0.5]]), 1.0).unwrap());
        assert!(spread[0].is_finite() && spread[0] > 10.0, "{spread:?}");
    }

    // λ_p → 0 makes the truncated prior uniform: with λ_p = 1e−6 and M = 4, p_G ≈ 1/4 each,
    // so KL(p ‖ p_G) for p = [1, 0, 0, 0] is ln 4 ≈ 1.3863 and for uniform p it is ≈ 0.
    #[test]
    fn kl_with_prior_near_zero() {
        let certain =
            to_vec(kl_to_geometric_prior(tensor2(&[&[1.0, 0.0, 0.0, 0.0]]), 1e-6).unwrap());
        assert_close(&certain, &[4f32.ln()], 1e-4);
        let uniform =
            to_vec(kl_to_geometric_prior(tensor2(&[&[0.25, 0.25, 0.25, 0.25]]), 1e-6).unwrap());
        assert!(uniform[0] >= 0.0 && uniform[0] < 1e-4, "{uniform:?}");
    }

    #[test]
    fn kl_never_negative() {
        let p = halting_distribution(tensor2(&[&[0.2, 0.3, 0.4, 0.0], &[0.9, 0.9, 0.9, 0.9]]));
        for value in to_vec(kl_to_geometric_prior(p, 0.3).unwrap()) {
            assert!(value >= 0.0, "negative KL {value}");
        }
    }

    #[test]
    fn prior_lambda_range() {
        assert!(check_prior_lambda(1.0).is_ok());
        assert!(check_prior_lambda(0.0).is_err());
        assert!(check_prior_lambda(1.5).is_err());
        assert!(check_prior_lambda(f64::NAN).is_err());
    }

    // p = [0.5, 0.25, 0.25] and losses [2, 4, ∞·0]: 0.5·2 + 0.25·4 + 0.25·8 = 4; expected
    // steps 0.5·1 + 0.25·2 + 0.25·3 = 1.75.
    #[test]
    fn expected_loss_and_steps() {
        let p = tensor2(&[&[0.5, 0.25, 0.25]]);
        let losses = tensor2(&[&[2.0, 4.0, 8.0]]);
        assert_close(&to_vec(expected_loss(p.clone(), losses)), &[4.0], 1e-6);
        assert_close(&to_vec(expected_steps(p)), &[1.75], 1e-6);
        let certain = tensor2(&[&[1.0, 0.0]]);
        let infinite = tensor2(&[&[1.0, f32::INFINITY]]);
        assert_close(&to_vec(expected_loss(certain, infinite)), &[1.0], 1e-6);
    }
}
