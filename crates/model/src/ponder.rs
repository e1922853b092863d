//! A recurrent cell applied repeatedly to the same input, as in the parity experiments of
//! Graves (2016): step n sees the input with a first-step flag (1 at n = 1, 0 after) and the
//! previous state, and emits output logits and a halting logit.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};
use haltlab_halting::HaltingError;
use haltlab_halting::act::{ActHalting, act_halting, all_halted};
use haltlab_halting::hard::{ChaCha8Rng, CompactStep, HardRule, HardRun, run_hard};

/// The recurrent cell of a [`PonderNetwork`].
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Gated recurrent unit, with the reset gate applied after the hidden projection (the
    /// PyTorch convention).
    Gru,
    /// Plain tanh RNN, sₙ = tanh(W xₙ + U sₙ₋₁ + b), the cell of the ACT paper.
    Rnn,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Gru => 3,
            CellKind::Rnn => 1,
        }
    }
}

/// Configuration of a [`PonderNetwork`].
#[derive(Config, Debug)]
pub struct PonderConfig {
    /// Features of the task input, without the first-step flag.
    pub input_size: usize,
    /// Size of the recurrent state.
    pub hidden_size: usize,
    /// Number of output classes.
    pub classes: usize,
    /// Recurrent cell.
    #[config(default = "CellKind::Gru")]
    pub cell: CellKind,
    /// Initial bias b of the halting unit σ(W sₙ + b). Graves (2016) uses +1, which halts
    /// early at the start of training; a negative value starts deep.
    #[config(default = 1.0)]
    pub halting_bias: f64,
}

impl PonderConfig {
    /// Creates the network with random weights and the configured halting bias.
    pub fn init(&self, device: &Device) -> PonderNetwork {
        let gates = self.cell.gates();
        let mut halting = LinearConfig::new(self.hidden_size, 1).init(device);
        halting.bias = Some(Param::from_tensor(Tensor::full(
            [1],
            self.halting_bias,
            device,
        )));
        PonderNetwork {
            input_gates: LinearConfig::new(self.input_size + 1, gates * self.hidden_size)
                .init(device),
            hidden_gates: LinearConfig::new(self.hidden_size, gates * self.hidden_size)
                .init(device),
            halting,
            output: LinearConfig::new(self.hidden_size, self.classes).init(device),
            cell: self.cell,
            hidden_size: self.hidden_size,
        }
    }
}

/// A recurrent cell with a halting unit and an output layer.
#[derive(Module, Debug)]
pub struct PonderNetwork {
    input_gates: Linear,
    hidden_gates: Linear,
    halting: Linear,
    output: Linear,
    #[module(skip)]
    cell: CellKind,
    hidden_size: usize,
}

/// Outputs of one pondering step.
#[derive(Debug, Clone)]
pub struct PonderStep {
    /// State sₙ. `[batch, hidden]`
    pub state: Tensor<2>,
    /// Output logits yₙ. `[batch, classes]`
    pub logits: Tensor<2>,
    /// Halting logit W sₙ + b, before the sigmoid. `[batch]`
    pub halting_logit: Tensor<1>,
}

/// The input projections of a batch, computed once and reused at every step.
#[derive(Debug, Clone)]
pub struct ProjectedInput {
    first: Tensor<2>,
    later: Tensor<2>,
}

impl ProjectedInput {
    /// Keeps only the rows at `indices`, for batch compaction.
    pub fn select(&self, indices: Tensor<1, burn::tensor::Int>) -> Self {
        Self {
            first: self.first.clone().select(0, indices.clone()),
            later: self.later.clone().select(0, indices),
        }
    }
}

/// Result of an ACT forward pass.
#[derive(Debug, Clone)]
pub struct ActForward {
    /// Σₙ wₙ yₙ, the ACT-weighted output logits. `[batch, classes]`
    pub logits: Tensor<2>,
    /// Halting decision, weights and ponder cost.
    pub halting: ActHalting,
    /// Steps computed for the batch: the largest halting step in it.
    pub steps_run: usize,
}

impl PonderNetwork {
    /// Size of the recurrent state.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Recurrent cell.
    pub fn cell(&self) -> CellKind {
        self.cell
    }

    /// Returns the layers in the order input gates, hidden gates, halting unit, output, for the
    /// fused CPU kernel in [`crate::ponder_cpu`].
    pub(crate) fn layers(&self) -> [&Linear; 4] {
        [
            &self.input_gates,
            &self.hidden_gates,
            &self.halting,
            &self.output,
        ]
    }

    /// Projects the input once with the first-step flag set and once with it cleared.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]`.
    pub fn project_input(&self, inputs: Tensor<2>) -> ProjectedInput {
        let [batch, _] = inputs.dims();
        let device = inputs.device();
        let flag_on = Tensor::<2>::ones([batch, 1], &device);
        let flag_off = Tensor::<2>::zeros([batch, 1], &device);
        ProjectedInput {
            first: self
                .input_gates
                .forward(Tensor::cat(vec![flag_on, inputs.clone()], 1)),
            later: self
                .input_gates
                .forward(Tensor::cat(vec![flag_off, inputs], 1)),
        }
    }

    /// Returns the zero state s₀ for a batch.
    pub fn initial_state(&self, batch: usize, device: &Device) -> Tensor<2> {
        Tensor::zeros([batch, self.hidden_size], device)
    }

    /// Runs step `step` (counted from 1) from state sₙ₋₁.
    pub fn step(&self, input: &ProjectedInput, state: Tensor<2>, step: usize) -> PonderStep {
        let projected = if step == 1 {
            input.first.clone()
        } else {
            input.later.clone()
        };
        let state = self.cell_update(projected, state);
        let [batch, _] = state.dims();
        PonderStep {
            logits: self.output.forward(state.clone()),
            halting_logit: self.halting.forward(state.clone()).reshape([batch]),
            state,
        }
    }

    fn cell_update(&self, projected: Tensor<2>, state: Tensor<2>) -> Tensor<2> {
        let hidden = self.hidden_size;
        let recurrent = self.hidden_gates.forward(state.clone());
        match self.cell {
            CellKind::Rnn => tanh(projected + recurrent),
            CellKind::Gru => {
                let [batch, _] = state.dims();
                let gate_input = projected.clone().slice([0..batch, 0..2 * hidden])
                    + recurrent.clone().slice([0..batch, 0..2 * hidden]);
                let gates = sigmoid(gate_input);
                let reset = gates.clone().slice([0..batch, 0..hidden]);
                let update = gates.slice([0..batch, hidden..2 * hidden]);
                let candidate = tanh(
                    projected.slice([0..batch, 2 * hidden..3 * hidden])
                        + reset * recurrent.slice([0..batch, 2 * hidden..3 * hidden]),
                );
                // sₙ = (1 − z) ⊙ candidate + z ⊙ sₙ₋₁ = candidate + z ⊙ (sₙ₋₁ − candidate)
                candidate.clone() + update * (state - candidate)
            }
        }
    }

    /// Ponders every sample with ACT until it halts or reaches `max_steps`.
    ///
    /// The loop stops as soon as every sample in the batch has halted; samples that halted
    /// earlier still run (the batch is not compacted during training) but their later steps get
    /// weight 0 and are masked out of the output.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]`.
    pub fn forward_act(
        &self,
        inputs: Tensor<2>,
        max_steps: usize,
        epsilon: f64,
    ) -> Result<ActForward, HaltingError> {
        haltlab_halting::act::check_epsilon(epsilon)?;
        if max_steps == 0 {
            return Err(HaltingError::InvalidParameter {
                name: "max_steps",
                value: 0.0,
                expected: "at least 1",
            });
        }
        let [batch, _] = inputs.dims();
        let device = inputs.device();
        let projected = self.project_input(inputs);
        let mut state = self.initial_state(batch, &device);
        let mut halting_values = Vec::with_capacity(max_steps);
        let mut step_logits = Vec::with_capacity(max_steps);
        let mut cumulative = Tensor::<1>::zeros([batch], &device);

        for step in 1..=max_steps {
            let output = self.step(&projected, state, step);
            let halting = sigmoid(output.halting_logit);
            state = output.state;
            step_logits.push(output.logits);
            halting_values.push(halting.clone());
            if step == max_steps {
                break;
            }
            cumulative = cumulative + halting.detach();
            if all_halted(cumulative.clone(), epsilon) {
                break;
            }
        }

        let steps_run = halting_values.len();
        let halting = act_halting(Tensor::stack(halting_values, 1), epsilon)?;
        let logits = halting.accumulate(Tensor::stack(step_logits, 1));
        Ok(ActForward {
            logits,
            halting,
            steps_run,
        })
    }
}

/// Step outputs of a forward pass that runs all M steps for every sample, as the soft and
/// trained-hard methods need.
#[derive(Debug, Clone)]
pub struct AllSteps {
    /// Output logits yₙ of every step. `[batch, steps, classes]`
    pub logits: Tensor<3>,
    /// Halting logits zₙ, before the sigmoid. `[batch, steps]`
    pub halting_logits: Tensor<2>,
}

impl PonderNetwork {
    /// Runs `max_steps` steps for every sample and returns every step's output and halting
    /// logit.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]`.
    pub fn forward_all_steps(&self, inputs: Tensor<2>, max_steps: usize) -> AllSteps {
        let [batch, _] = inputs.dims();
        let device = inputs.device();
        let projected = self.project_input(inputs);
        let mut state = self.initial_state(batch, &device);
        let mut logits = Vec::with_capacity(max_steps);
        let mut halting = Vec::with_capacity(max_steps);
        for step in 1..=max_steps {
            let output = self.step(&projected, state, step);
            state = output.state;
            logits.push(output.logits);
            halting.push(output.halting_logit);
        }
        AllSteps {
            logits: Tensor::stack(logits, 1),
            halting_logits: Tensor::stack(halting, 1),
        }
    }

    /// Runs the network with hard halting: each sample stops at the step where `rule` fires on
    /// its halting signal σ(zₙ), and later steps compute only the samples still running.
    /// `outputs` of the result are each sample's logits at its own halting step.
    ///
    /// # Shapes
    /// `inputs`: `[batch, input_size]` with batch ≥ 1.
    pub fn forward_hard(
        &self,
        inputs: Tensor<2>,
        max_steps: usize,
        rule: HardRule,
        rng: &mut ChaCha8Rng,
    ) -> Result<HardRun, HaltingError> {
        let [batch, _] = inputs.dims();
        let device = inputs.device();
        let mut stepper = CompactPonder {
            network: self,
            input: self.project_input(inputs),
            state: self.initial_state(batch, &device),
        };
        run_hard(&mut stepper, batch, max_steps, rule, rng)
    }
}

/// A ponder network's running batch during a hard-halting pass.
struct CompactPonder<'a> {
    network: &'a PonderNetwork,
    input: ProjectedInput,
    state: Tensor<2>,
}

impl CompactStep for CompactPonder<'_> {
    fn step(&mut self, step: usize) -> (Tensor<2>, Tensor<1>) {
        let output = self.network.step(&self.input, self.state.clone(), step);
        self.state = output.state;
        (output.logits, sigmoid(output.halting_logit))
    }

    fn retain(&mut self, keep: Tensor<1, burn::tensor::Int>) {
        self.input = self.input.select(keep.clone());
        self.state = self.state.clone().select(0, keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn inputs(device: &Device) -> Tensor<2> {
        let values = vec![1.0f32, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0, -1.0];
        Tensor::from_data(TensorData::new(values, [2, 4]), device)
    }

    #[test]
    fn ponder_shapes_for_both_cells() {
        // Unseeded, but its draws would shift those of a seeded test running beside it.
        let _generator = crate::testing::generator_lock();
        let device = Device::flex();
        for cell in [CellKind::Gru, CellKind::Rnn] {
            let network = PonderConfig::new(4, 16, 2).with_cell(cell).init(&device);
            let forward = network.forward_act(inputs(&device), 5, 0.01).unwrap();
            assert_eq!(forward.logits.dims(), [2, 2]);
            assert_eq!(forward.halting.weights.dims(), [2, forward.steps_run]);
            assert!(forward.steps_run >= 1);
            assert!(forward.steps_run <= 5);
        }
    }

    #[test]
    fn halting_bias_sets_first_step() {
        let _generator = crate::testing::generator_lock();
        let device = Device::flex();
        // A bias of +10 gives h₁ ≈ 1 for any state, so every sample halts at step 1; a bias of
        // −10 gives hₙ ≈ 0, so every sample runs to M.
        let early = PonderConfig::new(4, 8, 2)
            .with_halting_bias(10.0)
            .init(&device);
        let mut early_weights = early.halting.weight.val().mul_scalar(0.0);
        early_weights = early_weights.detach();
        let early = PonderNetwork {
            halting: Linear {
                weight: Param::from_tensor(early_weights),
                bias: early.halting.bias.clone(),
            },
            ..early
        };
        assert_eq!(
            early
                .forward_act(inputs(&device), 6, 0.01)
                .unwrap()
                .steps_run,
            1
        );

        let deep = PonderConfig::new(4, 8, 2)
            .with_halting_bias(-10.0)
            .init(&device);
        assert_eq!(
            deep.forward_act(inputs(&device), 6, 0.01)
                .unwrap()
                .steps_run,
            6
        );
    }

    #[test]
    fn hard_forward_matches_all_steps() {
        // The output of each sample under hard halting equals its logits at its halting step
        // in an uncompacted pass, so dropping rows changes nothing for the rows that remain.
        use burn::tensor::Int;
        use haltlab_halting::hard::ChaCha8Rng;
        use rand::SeedableRng;
        let (device, _generator) = crate::testing::seeded_flex(5);
        let network = PonderConfig::new(4, 8, 2)
            .with_halting_bias(0.0)
            .init(&device);
        let all = network.forward_all_steps(inputs(&device), 6);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let hard = network
            .forward_hard(inputs(&device), 6, HardRule::Sampled, &mut rng)
            .unwrap();
        let steps: Vec<i64> = hard.halting_steps.iter().map(|&n| n as i64 - 1).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(steps, [2]), &device);
        let expected = all
            .logits
            .gather(1, index.reshape([2, 1, 1]).expand([2, 1, 2]))
            .reshape([2, 2]);
        let difference = (hard.outputs - expected).abs().max().into_scalar::<f32>();
        assert!(difference < 1e-5, "hard output differs by {difference}");
    }
}
