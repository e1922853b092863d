//! Loss functions with one value per sample, which halting losses weight per sample.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Computes the cross-entropy −log softmax(logits)[target] of each sample.
///
/// # Shapes
/// `logits`: `[batch, classes]`, `targets`: `[batch]`; returns `[batch]`.
pub fn cross_entropy_per_sample(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([batch, 1]))
        .reshape([batch])
        .neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    // logits [0, ln 3] give softmax [1/4, 3/4]: the loss is ln 4 for target 0 and
    // ln(4/3) for target 1.
    #[test]
    fn cross_entropy_by_hand() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 3f32.ln(), 0.0, 3f32.ln()], [2, 2]),
            &device,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let loss = cross_entropy_per_sample(logits, targets)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!((loss[0] - 4f32.ln()).abs() < 1e-6, "{loss:?}");
        assert!((loss[1] - (4f32 / 3.0).ln()).abs() < 1e-6, "{loss:?}");
    }
}
