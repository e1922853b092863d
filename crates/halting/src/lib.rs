//! Halting mechanisms for adaptive computation, as functions over Burn tensors.
//!
//! Every function here takes and returns tensors on the caller's device and holds no model
//! state, so the same code runs on each backend that `--backend` selects. Each rule's doc
//! comment states it in the field's symbols and names the paper it follows.

pub mod act;
pub mod exits;
pub mod hard;
pub mod pondernet;
pub mod reinforce;
pub mod relaxation;

mod error;

pub use error::HaltingError;

#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::{Device, Tensor, TensorData};

    pub fn device() -> Device {
        Device::flex()
    }

    pub fn tensor2(rows: &[&[f32]]) -> Tensor<2> {
        let cols = rows[0].len();
        let values: Vec<f32> = rows.iter().flat_map(|row| row.iter().copied()).collect();
        Tensor::from_data(TensorData::new(values, [rows.len(), cols]), &device())
    }

    pub fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor
            .into_data()
            .try_into_vec::<f32>()
            .expect("float tensor")
    }

    pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
        assert_eq!(
            actual.len(),
            expected.len(),
            "length of {actual:?} vs {expected:?}"
        );
        for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= tolerance,
                "element {index}: {a} differs from {e} by more than {tolerance} ({actual:?} vs {expected:?})"
            );
        }
    }
}
