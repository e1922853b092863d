//! A multilayer perceptron with a classifier head after every hidden layer.
//!
//! Training is soft: every head's loss counts, weighted. Inference is hard: each sample leaves
//! at the first head whose exit rule fires, and the rows that left are removed from the batch
//! before the next layer runs (batch compaction), so later layers compute fewer rows.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Configuration of an [`ExitMlp`].
#[derive(Config, Debug)]
pub struct ExitMlpConfig {
    /// Input features (784 for 28×28 images).
    pub input_size: usize,
    /// Width of each hidden layer; one exit head follows each.
    pub hidden_sizes: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl ExitMlpConfig {
    /// Creates the network with random weights.
    pub fn init(&self, device: &Device) -> ExitMlp {
        let mut layers = Vec::with_capacity(self.hidden_sizes.len());
        let mut heads = Vec::with_capacity(self.hidden_sizes.len());
        let mut width = self.input_size;
        for &hidden in &self.hidden_sizes {
            layers.push(LinearConfig::new(width, hidden).init(device));
            heads.push(LinearConfig::new(hidden, self.classes).init(device));
            width = hidden;
        }
        ExitMlp { layers, heads }
    }
}

/// An MLP whose hidden layer l (counted from 1) feeds both layer l + 1 and exit head l.
#[derive(Module, Debug)]
pub struct ExitMlp {
    layers: Vec<Linear>,
    heads: Vec<Linear>,
}

/// Per-sample results of hard early-exit inference, in the order of the input rows.
#[derive(Debug, Clone, PartialEq)]
pub struct HardExits {
    /// Predicted class of each sample, from the head where it exited.
    pub predictions: Vec<usize>,
    /// Exit head of each sample, counted from 1; the last head answers for every sample that no
    /// earlier head let go.
    pub exit_layer: Vec<usize>,
    /// Rows that each layer computed; it falls as samples exit.
    pub rows_per_layer: Vec<usize>,
}

impl ExitMlp {
    /// Number of hidden layers, which is also the number of exit heads.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Computes the logits of every exit head for the whole batch.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]`; returns `depth` tensors of `[batch, classes]`.
    pub fn forward_all(&self, inputs: Tensor<2>) -> Vec<Tensor<2>> {
        let mut hidden = inputs;
        let mut logits = Vec::with_capacity(self.depth());
        for (layer, head) in self.layers.iter().zip(&self.heads) {
            hidden = relu(layer.forward(hidden));
            logits.push(head.forward(hidden.clone()));
        }
        logits
    }

    /// Runs hard early-exit inference with batch compaction.
    ///
    /// `exits` gets the logits of the rows still running at a head and returns which of them
    /// exit there. Rows that exit are removed before the next layer runs; when no row is left,
    /// no later layer runs. The last head answers for all rows that reach it.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]`.
    pub fn infer_hard(
        &self,
        inputs: Tensor<2>,
        mut exits: impl FnMut(Tensor<2>) -> Tensor<1, Bool>,
    ) -> HardExits {
        let [batch, _] = inputs.dims();
        let device = inputs.device();
        let mut predictions = vec![0usize; batch];
        let mut exit_layer = vec![0usize; batch];
        let mut rows_per_layer = Vec::with_capacity(self.depth());
        // Original row index of each row still in the batch.
        let mut running: Vec<usize> = (0..batch).collect();
        let mut hidden = inputs;

        for (index, (layer, head)) in self.layers.iter().zip(&self.heads).enumerate() {
            if running.is_empty() {
                break;
            }
            rows_per_layer.push(running.len());
            hidden = relu(layer.forward(hidden));
            let logits = head.forward(hidden.clone());
            let is_last = index + 1 == self.depth();
            let leaving = if is_last {
                vec![true; running.len()]
            } else {
                read_bools(exits(logits.clone()))
            };
            let predicted = read_argmax(logits);

            let mut staying = Vec::with_capacity(running.len());
            for (row, &original) in running.iter().enumerate() {
                if leaving[row] {
                    predictions[original] = predicted[row];
                    exit_layer[original] = index + 1;
                } else {
                    staying.push(row);
                }
            }
            if staying.len() < running.len() && !staying.is_empty() {
                hidden = hidden.select(0, index_tensor(&staying, &device));
            }
            running = staying.iter().map(|&row| running[row]).collect();
        }

        HardExits {
            predictions,
            exit_layer,
            rows_per_layer,
        }
    }
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&index| index as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

fn read_bools(mask: Tensor<1, Bool>) -> Vec<bool> {
    mask.into_data()
        .try_into_vec::<bool>()
        .expect("a Bool tensor reads back as bool")
}

fn read_argmax(logits: Tensor<2>) -> Vec<usize> {
    let [batch, _] = logits.dims();
    logits
        .argmax(1)
        .reshape([batch])
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("an Int tensor converts to i64")
        .into_iter()
        .map(|class| class as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use haltlab_halting::exits::confidence_exits;

    fn network(device: &Device) -> ExitMlp {
        device.seed(7);
        ExitMlpConfig::new(12, vec![16, 16, 16], 4).init(device)
    }

    #[test]
    fn batch_of_seven_matches_single_rows() {
        let device = Device::flex();
        let model = network(&device);
        let inputs = Tensor::<2>::random([7, 12], Distribution::Normal(0.0, 2.0), &device);
        // A threshold near the median confidence sends samples to different heads.
        let threshold = 0.4;
        let batch = model.infer_hard(inputs.clone(), |logits| confidence_exits(logits, threshold));
        for row in 0..7 {
            let single = model.infer_hard(inputs.clone().slice([row..row + 1, 0..12]), |logits| {
                confidence_exits(logits, threshold)
            });
            assert_eq!(
                single.predictions[0], batch.predictions[row],
                "prediction of row {row}"
            );
            assert_eq!(
                single.exit_layer[0], batch.exit_layer[row],
                "exit layer of row {row}"
            );
        }
        let distinct: std::collections::BTreeSet<_> = batch.exit_layer.iter().collect();
        assert!(
            distinct.len() > 1,
            "all rows left at one head: {:?}",
            batch.exit_layer
        );
    }

    #[test]
    fn threshold_zero_runs_one_layer() {
        let device = Device::flex();
        let model = network(&device);
        let inputs = Tensor::<2>::random([5, 12], Distribution::Default, &device);
        let result = model.infer_hard(inputs, |logits| confidence_exits(logits, 0.0));
        assert_eq!(result.exit_layer, vec![1; 5]);
        assert_eq!(result.rows_per_layer, vec![5]);
    }

    #[test]
    fn threshold_one_uses_last_head() {
        let device = Device::flex();
        let model = network(&device);
        let inputs = Tensor::<2>::random([5, 12], Distribution::Default, &device);
        let all_logits = model.forward_all(inputs.clone());
        let last = read_argmax(all_logits[2].clone());
        // No softmax over 4 classes of these small logits reaches 1.
        let result = model.infer_hard(inputs, |logits| confidence_exits(logits, 1.0));
        assert_eq!(result.exit_layer, vec![3; 5]);
        assert_eq!(result.predictions, last);
        assert_eq!(result.rows_per_layer, vec![5, 5, 5]);
    }
}
