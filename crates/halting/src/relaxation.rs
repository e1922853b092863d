//! Ways to train a hard halting decision by gradient descent: the straight-through estimator
//! and the Gumbel-sigmoid (binary Concrete) relaxation.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Distribution, Tensor};

use crate::HaltingError;

/// Smallest and largest uniform draw used for logistic noise, so that log u and log(1 − u)
/// stay finite.
const UNIFORM_MARGIN: f64 = 1e-6;

/// Computes the straight-through halting decision of Bengio, Léonard and Courville (2013),
/// "Estimating or Propagating Gradients Through Stochastic Neurons", arXiv:1308.3432.
///
/// The forward value is exactly 1 where σ(z) ≥ 0.5 (z ≥ 0) and exactly 0 elsewhere; the
/// gradient is that of σ(z). It is built as σ(z) + stop_gradient(hard − σ(z)), which is exact
/// in floating point: for hard = 0 the sum is σ − σ, and for hard = 1 the difference 1 − σ is
/// exact because σ ≥ 0.5 (Sterbenz).
///
/// # Shapes
/// `logits`: any shape; returns the same shape.
pub fn straight_through<const D: usize>(logits: Tensor<D>) -> Tensor<D> {
    let soft = sigmoid(logits);
    let hard = soft.clone().greater_equal_elem(0.5).float();
    soft.clone() + (hard - soft).detach()
}

/// Checks that a relaxation temperature is positive and finite.
pub fn check_temperature(temperature: f64) -> Result<(), HaltingError> {
    if temperature > 0.0 && temperature.is_finite() {
        Ok(())
    } else {
        Err(HaltingError::InvalidParameter {
            name: "temperature",
            value: temperature,
            expected: "a positive finite number, such as 1.0",
        })
    }
}

/// Draws logistic noise log u − log(1 − u) with u uniform on the device's seeded generator.
///
/// # Shapes
/// Returns `shape`.
pub fn logistic_noise<const D: usize>(
    shape: [usize; D],
    device: &burn::tensor::Device,
) -> Tensor<D> {
    logistic_from_uniform(Tensor::<D>::random(
        shape,
        Distribution::Uniform(0.0, 1.0),
        device,
    ))
}

/// Turns uniform draws u ∈ [0, 1] into logistic noise log u − log(1 − u). Draws closer than
/// 1e-6 to 0 or 1 are moved to that margin, so the noise stays finite (|L| ≤ 13.9).
///
/// Training loops that must resume exactly draw u from their own seeded stream and call this.
///
/// # Shapes
/// `uniform`: any shape; returns the same shape.
pub fn logistic_from_uniform<const D: usize>(uniform: Tensor<D>) -> Tensor<D> {
    let uniform = uniform.clamp(UNIFORM_MARGIN, 1.0 - UNIFORM_MARGIN);
    uniform.clone().log() - uniform.neg().add_scalar(1.0).log()
}

/// Computes the Gumbel-sigmoid (binary Concrete) relaxation λ = σ((z + L) / T) of Maddison,
/// Mnih and Teh (2017), "The Concrete Distribution", arXiv:1611.00712, where L is logistic
/// noise. As T → 0 the value approaches a Bernoulli(σ(z)) draw; T = 1 with L = 0 is σ(z).
///
/// With `hard`, the forward value is rounded to 0 or 1 with the gradient of the relaxed value
/// (straight-through Gumbel).
///
/// # Shapes
/// `logits` and `noise`: the same shape; returns that shape.
pub fn gumbel_sigmoid<const D: usize>(
    logits: Tensor<D>,
    noise: Tensor<D>,
    temperature: f64,
    hard: bool,
) -> Result<Tensor<D>, HaltingError> {
    check_temperature(temperature)?;
    let scaled = (logits + noise).div_scalar(temperature);
    Ok(if hard {
        straight_through(scaled)
    } else {
        sigmoid(scaled)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, device, tensor2, to_vec};
    use burn::tensor::TensorData;

    #[test]
    fn straight_through_forward_is_binary() {
        let values = to_vec(straight_through(tensor2(&[&[
            -3.0, -1e-4, 0.0, 1e-4, 0.7, 9.0,
        ]])));
        assert_eq!(values, vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    // dσ/dz = σ(z)(1 − σ(z)): at z = 0 it is 0.25; at z = ln 3, σ = 0.75 and the slope is
    // 0.1875; at z = −ln 3 it is also 0.1875.
    #[test]
    fn straight_through_gradient_is_sigmoid() {
        let device = device().autodiff();
        let values = vec![0.0f32, 3f32.ln(), -(3f32.ln()), 2.0];
        let z = Tensor::<1>::from_data(TensorData::new(values, [4]), &device).require_grad();
        let grads = straight_through(z.clone()).sum().backward();
        let gradient = to_vec(z.grad(&grads).unwrap());
        let s2 = 1.0 / (1.0 + (-2.0f32).exp());
        assert_close(&gradient, &[0.25, 0.1875, 0.1875, s2 * (1.0 - s2)], 1e-6);
    }

    // z = 0, L = ln 3, T = 0.5: σ((0 + ln 3) / 0.5) = σ(ln 9) = 9/10.
    #[test]
    fn gumbel_sigmoid_by_hand() {
        let logits = tensor2(&[&[0.0, 1.0]]);
        let noise = tensor2(&[&[3f32.ln(), -1.0]]);
        let relaxed = to_vec(gumbel_sigmoid(logits.clone(), noise.clone(), 0.5, false).unwrap());
        assert_close(&relaxed, &[0.9, 0.5], 1e-6);
        let hard = to_vec(gumbel_sigmoid(logits, noise, 0.5, true).unwrap());
        assert_eq!(hard, vec![1.0, 1.0]);
    }

    #[test]
    fn gumbel_sigmoid_rejects_bad_temperature() {
        let logits = tensor2(&[&[0.0]]);
        for temperature in [0.0, -1.0, f64::INFINITY] {
            let result = gumbel_sigmoid(logits.clone(), logits.clone(), temperature, false);
            assert!(result.is_err(), "temperature {temperature}");
        }
    }

    // log u − log(1 − u): u = 0.5 gives 0, u = 0.25 gives ln(1/3) = −ln 3 and u = 0.75 gives
    // ln 3. u = 0 and u = 1 are moved to 1e-6 and 1 − 1e-6, giving ∓ln((1 − 1e-6) / 1e-6)
    // = ∓13.8155 instead of ∓inf.
    #[test]
    fn logistic_from_uniform_by_hand() {
        let noise = to_vec(logistic_from_uniform(tensor2(&[&[
            0.5, 0.25, 0.75, 0.0, 1.0,
        ]])));
        let edge = ((1.0 - 1e-6) / 1e-6f64).ln() as f32;
        // f32 rounds 1 − 1e-6 to within 6e-8, which moves the edge value by about 0.06.
        assert_close(&noise[..3], &[0.0, -(3f32.ln()), 3f32.ln()], 1e-5);
        assert!((noise[3] + edge).abs() < 0.1, "{}", noise[3]);
        assert!((noise[4] - edge).abs() < 0.1, "{}", noise[4]);
    }

    // Logistic noise has mean 0 and variance π²/3 ≈ 3.29; on 20,000 draws the sample mean has
    // standard error ≈ 0.013.
    #[test]
    fn logistic_noise_moments() {
        let device = device();
        device.seed(3);
        let noise = to_vec(logistic_noise([20_000], &device));
        let mean = noise.iter().sum::<f32>() / noise.len() as f32;
        let variance = noise.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / noise.len() as f32;
        assert!(mean.abs() < 0.07, "mean {mean}");
        assert!((variance - 3.29).abs() < 0.25, "variance {variance}");
    }
}
