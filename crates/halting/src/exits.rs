//! Exit rules for early-exit networks: per-sample decisions on a classifier head's logits.

use burn::tensor::activation::softmax;
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
}
