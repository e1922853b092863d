//! A multilayer perceptron with a classifier head after every hidden layer.
//!
//! Training is soft: every head's loss counts, weighted. Inference is hard, through
//! [`crate::exit_engine::infer_hard`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor};

use crate::exit_engine::{ExitStages, read_floats};

/// Configuration of an [`ExitMlp`].
#[derive(Config, Debug)]
pub struct ExitMlpConfig {
    /// Input features (784 for 28×28 images).
    pub input_size: usize,
    /// Width of each hidden layer; one exit head follows each.
    pub hidden_sizes: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Whether each hidden layer also gets a learned exit gate (one sigmoid unit).
    #[config(default = false)]
    pub gated: bool,
}

impl ExitMlpConfig {
    /// Creates the network with random weights.
    pub fn init(&self, device: &Device) -> ExitMlp {
        let mut layers = Vec::with_capacity(self.hidden_sizes.len());
        let mut heads = Vec::with_capacity(self.hidden_sizes.len());
        let mut gates = Vec::new();
        let mut width = self.input_size;
        for &hidden in &self.hidden_sizes {
            layers.push(LinearConfig::new(width, hidden).init(device));
            heads.push(LinearConfig::new(hidden, self.classes).init(device));
            if self.gated {
                gates.push(LinearConfig::new(hidden, 1).init(device));
            }
            width = hidden;
        }
        ExitMlp {
            layers,
            heads,
            gates,
        }
    }
}

/// An MLP whose hidden layer l (counted from 1) feeds both layer l + 1 and exit head l.
#[derive(Module, Debug)]
pub struct ExitMlp {
    layers: Vec<Linear>,
    heads: Vec<Linear>,
    /// One halting unit per hidden layer, or none for an ungated network.
    gates: Vec<Linear>,
}

/// One parameter tensor of a network, copied to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Path of the parameter, such as `layers.0.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

impl ExitMlp {
    /// Copies the weight and bias of every hidden layer, head and gate to the host, named
    /// `layers.<l>.weight`, `heads.<l>.bias` and so on (l from 0). Weights keep Burn's
    /// `[in, out]` layout, the transpose of PyTorch's `nn.Linear.weight`.
    pub fn linear_parameters(&self) -> Vec<NamedArray> {
        let groups = [
            ("layers", &self.layers),
            ("heads", &self.heads),
            ("gates", &self.gates),
        ];
        let mut arrays = Vec::new();
        for (group, linears) in groups {
            for (index, linear) in linears.iter().enumerate() {
                let weight = linear.weight.val();
                arrays.push(NamedArray {
                    name: format!("{group}.{index}.weight"),
                    shape: weight.dims().to_vec(),
                    values: read_floats(weight),
                });
                if let Some(bias) = &linear.bias {
                    let bias = bias.val();
                    arrays.push(NamedArray {
                        name: format!("{group}.{index}.bias"),
                        shape: bias.dims().to_vec(),
                        values: read_floats(bias),
                    });
                }
            }
        }
        arrays
    }
}

/// An [`ExitMlp`] prepared for inference on Burn's CPU backends: every weight copied to
/// PyTorch's `[out, in]` layout, and the hidden states kept feature-major, `[features, rows]`,
/// so that each layer computes W·hᵀ from two contiguous operands.
///
/// flex's matrix product pays a fixed cost per call that grows with how the operands are laid
/// out, and the rows left after compaction are few. On a 2-core Xeon one 1024 → 1024 layer took
/// 3.5 ms for 48 rows in `Linear`'s `x·W` form and 1.2 ms in this one (the `exit_mlp_stage`
/// criterion group). Outputs equal the source network's up to floating-point rounding. Stage
/// 0 takes `[rows, features]` inputs; later stages take and return `[features, rows]` hidden
/// states, which [`ExitStages::select_rows`] compacts along dimension 1.
#[derive(Debug, Clone)]
pub struct ExitMlpInference {
    layers: Vec<TransposedLinear>,
    heads: Vec<TransposedLinear>,
    gates: Vec<TransposedLinear>,
}

#[derive(Debug, Clone)]
struct TransposedLinear {
    /// `[out, in]`, contiguous.
    weight: Tensor<2>,
    /// `[out, 1]`, added to every column.
    bias: Option<Tensor<2>>,
}

impl TransposedLinear {
    fn new(linear: &Linear) -> Self {
        let weight = linear.weight.val();
        let device = weight.device();
        let [_, out] = weight.dims();
        Self {
            weight: Tensor::from_data(weight.transpose().into_data(), &device),
            bias: linear
                .bias
                .as_ref()
                .map(|bias| bias.val().reshape([out, 1])),
        }
    }

    /// Computes W·xᵀ + b for feature-major `columns` (`[in, rows]`); returns `[out, rows]`.
    fn forward(&self, columns: Tensor<2>) -> Tensor<2> {
        let output = self.weight.clone().matmul(columns);
        match &self.bias {
            Some(bias) => output + bias.clone(),
            None => output,
        }
    }
}

impl ExitMlp {
    /// Copies the network into the inference form of [`ExitMlpInference`].
    pub fn for_inference(&self) -> ExitMlpInference {
        let convert = |linears: &[Linear]| linears.iter().map(TransposedLinear::new).collect();
        ExitMlpInference {
            layers: convert(&self.layers),
            heads: convert(&self.heads),
            gates: convert(&self.gates),
        }
    }
}

impl ExitStages for ExitMlpInference {
    fn depth(&self) -> usize {
        self.layers.len()
    }

    fn forward_stage(&self, stage: usize, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let columns = if stage == 0 {
            // A contiguous copy of the row-major input: the product runs faster on it than on
            // the transposed view.
            let device = input.device();
            Tensor::from_data(input.transpose().into_data(), &device)
        } else {
            input
        };
        let hidden = relu(self.layers[stage].forward(columns));
        let logits = self.heads[stage].forward(hidden.clone()).transpose();
        (hidden, logits)
    }

    fn gate(&self, stage: usize, hidden: Tensor<2>) -> Option<Tensor<2>> {
        self.gates
            .get(stage)
            .map(|gate| sigmoid(gate.forward(hidden).transpose()))
    }

    fn select_rows(&self, hidden: Tensor<2>, indices: Tensor<1, Int>) -> Tensor<2> {
        hidden.select(1, indices)
    }
}

impl ExitStages for ExitMlp {
    fn depth(&self) -> usize {
        self.layers.len()
    }

    fn inference_form(&self) -> Option<Box<dyn ExitStages>> {
        Some(Box::new(self.for_inference()))
    }

    /// Runs hidden layer `stage` + 1 (with ReLU) and its head.
    fn forward_stage(&self, stage: usize, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let hidden = relu(self.layers[stage].forward(input));
        let logits = self.heads[stage].forward(hidden.clone());
        (hidden, logits)
    }

    fn gate(&self, stage: usize, hidden: Tensor<2>) -> Option<Tensor<2>> {
        self.gates
            .get(stage)
            .map(|gate| sigmoid(gate.forward(hidden)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_engine::{infer_hard, read_floats, replay_exits};
    use crate::testing::seeded_flex;
    use burn::tensor::Distribution;
    use haltlab_halting::exits::{ConfidenceRule, GateRule, NeverExit, row_argmax};

    /// Builds the test network on a device that `seeded_flex(7)` returned.
    fn network(device: &Device) -> ExitMlp {
        ExitMlpConfig::new(12, vec![16, 16, 16], 4).init(device)
    }

    #[test]
    fn batch_of_seven_matches_single_rows() {
        let (device, _generator) = seeded_flex(7);
        let model = network(&device);
        let inputs = Tensor::<2>::random([7, 12], Distribution::Normal(0.0, 2.0), &device);
        // A threshold near the median confidence sends samples to different heads.
        let mut rule = ConfidenceRule { threshold: 0.4 };
        let batch = infer_hard(&model, inputs.clone(), &mut rule);
        for row in 0..7 {
            let single = infer_hard(
                &model,
                inputs.clone().slice([row..row + 1, 0..12]),
                &mut rule,
            );
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
    fn linear_parameters_name_every_tensor() {
        let (device, _generator) = seeded_flex(7);
        let model = network(&device);
        let arrays = model.linear_parameters();
        let names: Vec<&str> = arrays.iter().map(|array| array.name.as_str()).collect();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "layers.0.weight");
        assert_eq!(names[11], "heads.2.bias");
        assert_eq!(arrays[0].shape, vec![12, 16]);
        assert_eq!(arrays[0].values.len(), 12 * 16);
        // The exported first layer reproduces the network's first hidden layer.
        let inputs = Tensor::<2>::random([3, 12], Distribution::Default, &device);
        let hidden = read_floats(model.forward_stage(0, inputs.clone()).0);
        let rows = read_floats(inputs);
        let (weight, bias) = (&arrays[0].values, &arrays[1].values);
        for row in 0..3 {
            for unit in 0..16 {
                let sum: f32 = (0..12)
                    .map(|feature| rows[row * 12 + feature] * weight[feature * 16 + unit])
                    .sum::<f32>()
                    + bias[unit];
                let expected = sum.max(0.0);
                let found = hidden[row * 16 + unit];
                assert!((expected - found).abs() < 1e-5, "{expected} vs {found}");
            }
        }
    }

    #[test]
    fn inference_layout_matches_network() {
        let (device, _generator) = seeded_flex(5);
        let model = ExitMlpConfig::new(12, vec![16, 16, 16], 4)
            .with_gated(true)
            .init(&device);
        let prepared = model.for_inference();
        let inputs = Tensor::<2>::random([9, 12], Distribution::Normal(0.0, 2.0), &device);
        let (logits, gates) = model.forward_with_gates(inputs.clone());
        let (prepared_logits, prepared_gates) = prepared.forward_with_gates(inputs.clone());
        for (expected, found) in logits.into_iter().zip(prepared_logits) {
            let (expected, found) = (read_floats(expected), read_floats(found));
            assert_eq!(expected.len(), found.len());
            for (a, b) in expected.iter().zip(&found) {
                assert!((a - b).abs() < 1e-5, "logit {a} against {b}");
            }
        }
        assert_eq!(gates.len(), prepared_gates.len());
        for (expected, found) in gates.into_iter().zip(prepared_gates) {
            for (a, b) in read_floats(expected).iter().zip(&read_floats(found)) {
                assert!((a - b).abs() < 1e-6, "gate {a} against {b}");
            }
        }
        let mut rule = ConfidenceRule { threshold: 0.4 };
        let expected = infer_hard(&model, inputs.clone(), &mut rule);
        let found = infer_hard(&prepared, inputs, &mut rule);
        assert_eq!(expected.exit_layer, found.exit_layer);
        assert_eq!(expected.predictions, found.predictions);
    }

    #[test]
    fn threshold_zero_runs_one_layer() {
        let (device, _generator) = seeded_flex(7);
        let model = network(&device);
        let inputs = Tensor::<2>::random([5, 12], Distribution::Default, &device);
        let result = infer_hard(&model, inputs, &mut ConfidenceRule { threshold: 0.0 });
        assert_eq!(result.exit_layer, vec![1; 5]);
        assert_eq!(result.rows_per_layer, vec![5]);
    }

    #[test]
    fn never_exit_uses_last_head() {
        let (device, _generator) = seeded_flex(7);
        let model = network(&device);
        let inputs = Tensor::<2>::random([5, 12], Distribution::Default, &device);
        let last = model.forward_all(inputs.clone()).pop().unwrap();
        let expected: Vec<usize> = read_floats(last).chunks_exact(4).map(row_argmax).collect();
        let result = infer_hard(&model, inputs, &mut NeverExit);
        assert_eq!(result.exit_layer, vec![3; 5]);
        assert_eq!(result.predictions, expected);
        assert_eq!(result.rows_per_layer, vec![5, 5, 5]);
    }

    #[test]
    fn gated_engine_matches_replay() {
        let (device, _generator) = seeded_flex(11);
        let model = ExitMlpConfig::new(12, vec![16, 16, 16], 4)
            .with_gated(true)
            .init(&device);
        let inputs = Tensor::<2>::random([9, 12], Distribution::Normal(0.0, 2.0), &device);
        let (logits, gates) = model.forward_with_gates(inputs.clone());
        assert_eq!(gates.len(), 3);
        let head_logits: Vec<Vec<f32>> = logits.into_iter().map(read_floats).collect();
        let gates: Vec<Vec<f32>> = gates.into_iter().map(read_floats).collect();
        // A threshold halfway between the 5th and 6th smallest λ of the first gate sends some
        // samples on. It must not equal a sample's λ: the engine computes the gates of a
        // compacted batch, whose values may differ from the full batch's in the last bit.
        let mut first = gates[0].clone();
        first.sort_by(f32::total_cmp);
        let threshold = (first[4] + first[5]) / 2.0;
        let engine = infer_hard(&model, inputs, &mut GateRule::new(threshold));
        let replay = replay_exits(&head_logits, &gates, 4, &mut GateRule::new(threshold));
        assert_eq!(engine, replay);
        assert_eq!(engine.rows_per_layer[0], 9);
        assert!(engine.rows_per_layer.len() > 1, "{engine:?}");
        assert!(engine.rows_per_layer[1] < 9, "{engine:?}");
    }
}
