//! A fused CPU kernel for one ACT training step of a [`PonderNetwork`]: the forward pass of
//! [`PonderNetwork::forward_act`], the parity loss and its gradient with respect to every
//! parameter, computed on host copies of the weights without Burn's autodiff graph.
//!
//! The halting rule is that of Graves (2016), "Adaptive Computation Time for Recurrent Neural
//! Networks", as in [`haltlab_halting::act`]: sample b halts at N = min{n : Σ_{i≤n} hᵢ ≥ 1 − ε}
//! (inclusive threshold, f32 running sum), or at the last computed step when the sum never
//! reaches 1 − ε. The step weights are hₙ for n < N, R = 1 − Σ_{n<N} hₙ at N and 0 after N,
//! and the output is the weighted sum Σₙ wₙ yₙ (Graves' accumulation). The loss is
//! mean(cross-entropy) + ponder_weight · mean(N + R), with N constant in the gradient, the
//! loss of the parity ACT trainer. Like `forward_act`, the kernel stops once every sample of
//! the batch has halted and runs the halted samples along until then, with zero weight.
//!
//! The batch is split into chunks of 64 rows, which run forward and backward on their own,
//! because every sample's computation is independent, and `threads` threads share the chunks.
//! The chunks' weight gradients are summed in chunk order at the end, so results do not depend
//! on the thread count. The matrix products use the `gemm` crate single-threaded: its rayon
//! feature is off in this workspace's build of burn-flex, and enabling it would rebuild Burn.

mod math;
mod rows;
#[cfg(test)]
mod tests;

use std::fmt;

use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use haltlab_halting::HaltingError;

use crate::exit_engine::read_floats;
use crate::ponder::{CellKind, PonderNetwork};
use rows::{BackwardRows, ForwardRows};

/// An invalid argument to the fused ACT kernel.
#[derive(Debug, Clone, PartialEq)]
pub enum PonderCpuError {
    /// An ACT setting that the halting rule rejects, such as ε outside (0, 1).
    Halting(HaltingError),
    /// An input, target, setting or parameter that does not fit the network.
    InvalidArgument { name: &'static str, problem: String },
}

impl fmt::Display for PonderCpuError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PonderCpuError::Halting(error) => error.fmt(formatter),
            PonderCpuError::InvalidArgument { name, problem } => {
                write!(formatter, "invalid {name}: {problem}")
            }
        }
    }
}

impl std::error::Error for PonderCpuError {}

impl From<HaltingError> for PonderCpuError {
    fn from(error: HaltingError) -> Self {
        PonderCpuError::Halting(error)
    }
}

fn invalid(name: &'static str, problem: String) -> PonderCpuError {
    PonderCpuError::InvalidArgument { name, problem }
}

/// Host copies of a ponder network's parameters, or gradients with the same layout.
///
/// Matrices are row-major in Burn's `Linear` layout `[in, out]` (forward x·W + b). The input
/// weight has `input_size + 1` rows, the first for the first-step flag. The gate blocks of the
/// GRU are ordered reset, update, candidate along the output dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParameters {
    pub cell: CellKind,
    pub input_size: usize,
    pub hidden_size: usize,
    pub classes: usize,
    /// `[input_size + 1, gates · hidden]`
    pub input_weight: Vec<f32>,
    /// `[gates · hidden]`
    pub input_bias: Vec<f32>,
    /// `[hidden, gates · hidden]`
    pub hidden_weight: Vec<f32>,
    /// `[gates · hidden]`
    pub hidden_bias: Vec<f32>,
    /// `[hidden, 1]`
    pub halting_weight: Vec<f32>,
    /// `[1]`
    pub halting_bias: Vec<f32>,
    /// `[hidden, classes]`
    pub output_weight: Vec<f32>,
    /// `[classes]`
    pub output_bias: Vec<f32>,
}

impl HostParameters {
    /// Copies the parameters of `network` to host memory.
    pub fn from_network(network: &PonderNetwork) -> Result<Self, PonderCpuError> {
        let [input, hidden, halting, output] = network.layers();
        let names = ["input_gates", "hidden_gates", "halting", "output"];
        let mut values = Vec::with_capacity(8);
        for (layer, name) in [input, hidden, halting, output].into_iter().zip(names) {
            let bias = layer.bias.as_ref().ok_or_else(|| {
                invalid(
                    "network",
                    format!("layer {name} has no bias; the kernel needs every bias"),
                )
            })?;
            values.push(read_floats(layer.weight.val()));
            values.push(read_floats(bias.val()));
        }

        let [input_rows, gate_width] = input.weight.dims();
        let hidden_size = network.hidden_size();
        let [_, classes] = output.weight.dims();
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or_default();
        let parameters = Self {
            cell: network.cell(),
            input_size: input_rows.saturating_sub(1),
            hidden_size,
            classes,
            input_weight: next(),
            input_bias: next(),
            hidden_weight: next(),
            hidden_bias: next(),
            halting_weight: next(),
            halting_bias: next(),
            output_weight: next(),
            output_bias: next(),
        };

        parameters.check()?;
        if gate_width != parameters.gates() {
            return Err(invalid(
                "network",
                format!(
                    "input gates have {gate_width} outputs, the cell needs {}",
                    parameters.gates()
                ),
            ));
        }
        Ok(parameters)
    }

    /// Width of the gate projections: 3 · hidden for the GRU, hidden for the RNN.
    pub fn gates(&self) -> usize {
        match self.cell {
            CellKind::Gru => 3 * self.hidden_size,
            CellKind::Rnn => self.hidden_size,
        }
    }

    /// Returns the name and value of the first NaN or infinite value, in layer order, or
    /// `None` when every value is finite.
    pub fn first_non_finite(&self) -> Option<(&'static str, f32)> {
        self.fields().into_iter().find_map(|(name, values, _)| {
            values
                .iter()
                .find(|value| !value.is_finite())
                .map(|&value| (name, value))
        })
    }

    /// Number of f32 values allocated for the eight vectors.
    fn capacity(&self) -> usize {
        self.fields().iter().map(|field| field.1.capacity()).sum()
    }

    /// Returns the tensors of this layout in the order of [`PonderNetwork`]'s layers, each as
    /// (field name, values, expected length).
    fn fields(&self) -> [(&'static str, &Vec<f32>, usize); 8] {
        let (input, hidden, gates, classes) = (
            self.input_size,
            self.hidden_size,
            self.gates(),
            self.classes,
        );
        [
            ("input_weight", &self.input_weight, (input + 1) * gates),
            ("input_bias", &self.input_bias, gates),
            ("hidden_weight", &self.hidden_weight, hidden * gates),
            ("hidden_bias", &self.hidden_bias, gates),
            ("halting_weight", &self.halting_weight, hidden),
            ("halting_bias", &self.halting_bias, 1),
            ("output_weight", &self.output_weight, hidden * classes),
            ("output_bias", &self.output_bias, classes),
        ]
    }

    /// Checks that the sizes are positive and every vector has the length of its shape.
    fn check(&self) -> Result<(), PonderCpuError> {
        if self.input_size == 0 || self.hidden_size == 0 || self.classes == 0 {
            return Err(invalid(
                "parameters",
                format!(
                    "input_size {}, hidden_size {} and classes {} must all be at least 1",
                    self.input_size, self.hidden_size, self.classes
                ),
            ));
        }
        for (name, values, expected) in self.fields() {
            if values.len() != expected {
                return Err(invalid(
                    "parameters",
                    format!(
                        "{name} has {} values, expected {expected} for input_size {}, \
                         hidden_size {} and classes {}",
                        values.len(),
                        self.input_size,
                        self.hidden_size,
                        self.classes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Resizes every vector to the layout of `shape` and fills it with zeros.
    fn zero_like(&mut self, shape: &HostParameters) {
        self.cell = shape.cell;
        self.input_size = shape.input_size;
        self.hidden_size = shape.hidden_size;
        self.classes = shape.classes;
        for (target, source) in self.fields_mut().into_iter().zip(shape.fields()) {
            target.clear();
            target.resize(source.2, 0.0);
        }
    }

    fn fields_mut(&mut self) -> [&mut Vec<f32>; 8] {
        [
            &mut self.input_weight,
            &mut self.input_bias,
            &mut self.hidden_weight,
            &mut self.hidden_bias,
            &mut self.halting_weight,
            &mut self.halting_bias,
            &mut self.output_weight,
            &mut self.output_bias,
        ]
    }
}

impl Default for HostParameters {
    fn default() -> Self {
        Self {
            cell: CellKind::Gru,
            input_size: 0,
            hidden_size: 0,
            classes: 0,
            input_weight: Vec::new(),
            input_bias: Vec::new(),
            hidden_weight: Vec::new(),
            hidden_bias: Vec::new(),
            halting_weight: Vec::new(),
            halting_bias: Vec::new(),
            output_weight: Vec::new(),
            output_bias: Vec::new(),
        }
    }
}

/// Batch rows per chunk: each chunk runs the whole forward and backward pass on its own rows,
/// and the threads share the chunks.
const ROWS_PER_CHUNK: usize = 64;

/// Settings of an ACT training step, as in the `[halting]` section of an ACT recipe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActSettings {
    /// Maximum number of steps M, at least 1.
    pub max_steps: usize,
    /// ε of the halting threshold 1 − ε, in the open interval (0, 1).
    pub epsilon: f64,
    /// Weight of the mean ponder cost in the loss.
    pub ponder_weight: f64,
}

/// Buffers of the kernel, allocated at the first call and reused by later calls with the same
/// or smaller sizes, so repeated steps do not allocate.
#[derive(Debug, Default)]
pub struct ActWorkspace {
    chunks: Vec<Chunk>,
    /// Output and halting weights transposed to `[classes + 1, hidden]`.
    heads: Vec<f32>,
    head_bias: Vec<f32>,
    logits: Vec<f32>,
    predictions: Vec<usize>,
    halting_steps: Vec<usize>,
    gradients: HostParameters,
}

impl ActWorkspace {
    /// Creates an empty workspace; the first call of [`act_train_step`] allocates it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of f32 and usize values the workspace has allocated, for checks that repeated
    /// calls do not grow it.
    pub fn allocated_values(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(Chunk::allocated_values).sum();
        chunks
            + self.heads.capacity()
            + self.head_bias.capacity()
            + self.logits.capacity()
            + self.predictions.capacity()
            + self.halting_steps.capacity()
            + self.gradients.capacity()
    }
}

/// Result of [`act_train_step`], borrowed from the workspace.
#[derive(Debug)]
pub struct ActStepResult<'a> {
    /// Task loss + ponder_weight · ponder cost.
    pub loss: f32,
    /// Mean cross-entropy of the accumulated logits.
    pub task_loss: f32,
    /// Mean ponder cost N + R.
    pub ponder_cost: f32,
    /// Steps computed for the batch: the largest halting step in it.
    pub steps_run: usize,
    /// ACT-accumulated logits Σₙ wₙ yₙ. `[batch, classes]`, row-major.
    pub logits: &'a [f32],
    /// Arg max of each row of `logits` (the first one on ties). `[batch]`
    pub predictions: &'a [usize],
    /// Halting step N of each sample, counted from 1. `[batch]`
    pub halting_steps: &'a [usize],
    /// Gradient of `loss` with respect to every parameter.
    pub gradients: &'a HostParameters,
}

/// Computes one ACT training step of the parity trainer on the CPU: the forward pass of
/// [`PonderNetwork::forward_act`], the loss and its gradients.
///
/// `inputs` is row-major `[batch, input_size]`, `targets` contains one class id per sample, and
/// `threads` (at least 1) is the number of threads that share the chunks of 64 batch rows.
/// With 1, or with one chunk, everything runs on the calling thread.
///
/// # Errors
/// Checks every argument before any computation and returns an error for:
/// - ε outside (0, 1), `max_steps` 0, a ponder weight that is not finite or `threads` 0;
/// - an empty batch, an input length that is not a multiple of the input size, or a target
///   that is not below the class count;
/// - inconsistent `parameters`.
pub fn act_train_step<'a>(
    parameters: &HostParameters,
    inputs: &[f32],
    targets: &[u8],
    settings: ActSettings,
    threads: usize,
    workspace: &'a mut ActWorkspace,
) -> Result<ActStepResult<'a>, PonderCpuError> {
    check_arguments(parameters, inputs, targets, settings, threads)?;
    let batch = targets.len();
    let input_size = parameters.input_size;
    let classes = parameters.classes;
    let hidden = parameters.hidden_size;
    let head_count = classes + 1;

    // Output weights transposed to one row per class, then the halting weights as the last row.
    let heads = &mut workspace.heads;
    heads.clear();
    for class in 0..classes {
        heads.extend((0..hidden).map(|j| parameters.output_weight[j * classes + class]));
    }
    heads.extend_from_slice(&parameters.halting_weight);
    workspace.head_bias.clear();
    workspace
        .head_bias
        .extend_from_slice(&parameters.output_bias);
    workspace
        .head_bias
        .extend_from_slice(&parameters.halting_bias);
    debug_assert_eq!(workspace.heads.len(), head_count * hidden);

    // The chunks depend on the batch size alone, not on `threads`, so the gradient sums (and a
    // whole training run) come out the same on any number of threads.
    let chunk_count = batch.div_ceil(ROWS_PER_CHUNK);
    workspace.chunks.resize_with(chunk_count, Chunk::default);
    workspace.chunks.truncate(chunk_count);
    let job = Job {
        parameters,
        heads: &workspace.heads,
        head_bias: &workspace.head_bias,
        settings,
        threshold: (1.0 - settings.epsilon) as f32,
        batch,
    };
    let rows_of = |index: usize| {
        let start = index * ROWS_PER_CHUNK;
        let end = (start + ROWS_PER_CHUNK).min(batch);
        (
            &inputs[start * input_size..end * input_size],
            &targets[start..end],
        )
    };
    let workers = threads.min(chunk_count);
    if workers == 1 {
        for (index, chunk) in workspace.chunks.iter_mut().enumerate() {
            let (inputs, targets) = rows_of(index);
            chunk.run(&job, inputs, targets);
        }
    } else {
        // Worker w runs chunks w, w + workers, w + 2·workers and so on.
        let mut shares: Vec<Vec<(usize, &mut Chunk)>> = (0..workers).map(|_| Vec::new()).collect();
        for (index, chunk) in workspace.chunks.iter_mut().enumerate() {
            shares[index % workers].push((index, chunk));
        }
        std::thread::scope(|scope| {
            let mut shares = shares.into_iter();
            let own = shares.next().expect("workers is at least 2 here");
            for share in shares {
                let job = &job;
                let rows_of = &rows_of;
                scope.spawn(move || {
                    for (index, chunk) in share {
                        let (inputs, targets) = rows_of(index);
                        chunk.run(job, inputs, targets);
                    }
                });
            }
            for (index, chunk) in own {
                let (inputs, targets) = rows_of(index);
                chunk.run(&job, inputs, targets);
            }
        });
    }
    Ok(workspace.collect(parameters, settings, batch))
}

fn check_arguments(
    parameters: &HostParameters,
    inputs: &[f32],
    targets: &[u8],
    settings: ActSettings,
    threads: usize,
) -> Result<(), PonderCpuError> {
    haltlab_halting::act::check_epsilon(settings.epsilon)?;
    if settings.max_steps == 0 {
        return Err(HaltingError::InvalidParameter {
            name: "max_steps",
            value: 0.0,
            expected: "at least 1",
        }
        .into());
    }
    if !settings.ponder_weight.is_finite() {
        return Err(invalid(
            "ponder_weight",
            format!(
                "{} is not finite; pass a finite weight such as 0.01",
                settings.ponder_weight
            ),
        ));
    }
    if threads == 0 {
        return Err(invalid("threads", "0; pass at least 1".to_owned()));
    }
    parameters.check()?;
    if targets.is_empty() {
        return Err(invalid(
            "targets",
            "the batch is empty; pass at least one sample".to_owned(),
        ));
    }
    let expected = targets.len() * parameters.input_size;
    if inputs.len() != expected {
        return Err(invalid(
            "inputs",
            format!(
                "{} values, expected {expected}: {} targets times input size {}",
                inputs.len(),
                targets.len(),
                parameters.input_size
            ),
        ));
    }
    if let Some((index, &target)) = targets
        .iter()
        .enumerate()
        .find(|(_, target)| **target as usize >= parameters.classes)
    {
        return Err(invalid(
            "targets",
            format!(
                "target {target} of sample {index} is not a class id below {}",
                parameters.classes
            ),
        ));
    }
    Ok(())
}

/// Read-only data that every chunk of a step shares.
struct Job<'a> {
    parameters: &'a HostParameters,
    heads: &'a [f32],
    head_bias: &'a [f32],
    settings: ActSettings,
    /// 1 − ε in f32, as Burn compares an f32 tensor with the f64 value.
    threshold: f32,
    /// Rows of the whole batch, the divisor of the mean losses.
    batch: usize,
}

impl ActWorkspace {
    /// Gathers the chunks' results and sums their gradients.
    fn collect(
        &mut self,
        parameters: &HostParameters,
        settings: ActSettings,
        batch: usize,
    ) -> ActStepResult<'_> {
        self.logits.clear();
        self.predictions.clear();
        self.halting_steps.clear();
        self.gradients.zero_like(parameters);
        let mut cross_entropy = 0.0f64;
        let mut ponder = 0.0f64;
        let mut steps_run = 0;
        for chunk in &self.chunks {
            self.logits.extend_from_slice(&chunk.logits);
            self.halting_steps.extend_from_slice(&chunk.halting_steps);
            cross_entropy += chunk.cross_entropy_sum;
            ponder += chunk.ponder_sum;
            steps_run = steps_run.max(chunk.steps_run);
            for (sum, part) in self
                .gradients
                .fields_mut()
                .into_iter()
                .zip(chunk.gradients.fields())
            {
                for (total, value) in sum.iter_mut().zip(part.1) {
                    *total += value;
                }
            }
        }

        for row in self.logits.chunks_exact(parameters.classes) {
            let mut best = 0;
            for (class, &value) in row.iter().enumerate() {
                if value > row[best] {
                    best = class;
                }
            }
            self.predictions.push(best);
        }
        let task_loss = (cross_entropy / batch as f64) as f32;
        let ponder_cost = (ponder / batch as f64) as f32;
        ActStepResult {
            loss: task_loss + ponder_cost * settings.ponder_weight as f32,
            task_loss,
            ponder_cost,
            steps_run,
            logits: &self.logits,
            predictions: &self.predictions,
            halting_steps: &self.halting_steps,
            gradients: &self.gradients,
        }
    }
}

/// Buffers and results of one chunk of batch rows. Per-step buffers hold the steps one after
/// the other, each with `rows` rows.
#[derive(Debug, Default)]
struct Chunk {
    /// Input projections with the flag cleared and set. `[rows, gates]`
    projected_later: Vec<f32>,
    projected_first: Vec<f32>,
    /// s₀ … s_M. `[steps + 1, rows, hidden]`
    states: Vec<f32>,
    /// GRU activations r, z, candidate and recurrent candidate term. `[steps, rows, 4 · hidden]`
    saved: Vec<f32>,
    /// Recurrent projection of the current step. `[rows, gates]`
    recurrent: Vec<f32>,
    /// Output logits and halting logit of each step. `[steps, rows, classes + 1]`
    head_outputs: Vec<f32>,
    /// hₙ. `[steps, rows]`
    halting: Vec<f32>,
    cumulative: Vec<f32>,
    head_gradients: Vec<f32>,
    /// `[steps, rows, gates]`
    recurrent_gradients: Vec<f32>,
    /// Input projection gradient summed over steps. `[rows, gates]`
    projected_gradients: Vec<f32>,
    carry: Vec<f32>,
    previous_carry: Vec<f32>,
    /// `[hidden, classes + 1]`
    head_weight_gradient: Vec<f32>,
    logits: Vec<f32>,
    halting_steps: Vec<usize>,
    steps_run: usize,
    cross_entropy_sum: f64,
    ponder_sum: f64,
    gradients: HostParameters,
}

/// Sets the length of `buffer` without shrinking its allocation; new values are 0, old ones
/// keep stale data that the caller overwrites.
fn fit<T: Clone + Default>(buffer: &mut Vec<T>, length: usize) {
    buffer.resize(length, T::default());
}

impl Chunk {
    fn allocated_values(&self) -> usize {
        let buffers = [
            &self.projected_later,
            &self.projected_first,
            &self.states,
            &self.saved,
            &self.recurrent,
            &self.head_outputs,
            &self.halting,
            &self.cumulative,
            &self.head_gradients,
            &self.recurrent_gradients,
            &self.projected_gradients,
            &self.carry,
            &self.previous_carry,
            &self.head_weight_gradient,
            &self.logits,
        ];
        buffers
            .iter()
            .map(|buffer| buffer.capacity())
            .sum::<usize>()
            + self.halting_steps.capacity()
            + self.gradients.capacity()
    }

    fn run(&mut self, job: &Job<'_>, inputs: &[f32], targets: &[u8]) {
        let rows = targets.len();
        let p = job.parameters;
        let (hidden, gates, max_steps) = (p.hidden_size, p.gates(), job.settings.max_steps);
        let head_count = p.classes + 1;
        let saved_width = match p.cell {
            CellKind::Gru => 4 * hidden,
            CellKind::Rnn => 0,
        };
        fit(&mut self.projected_later, rows * gates);
        fit(&mut self.projected_first, rows * gates);
        fit(&mut self.states, (max_steps + 1) * rows * hidden);
        fit(&mut self.saved, max_steps * rows * saved_width);
        fit(&mut self.recurrent, rows * gates);
        fit(&mut self.head_outputs, max_steps * rows * head_count);
        fit(&mut self.halting, max_steps * rows);
        fit(&mut self.cumulative, rows);
        fit(&mut self.head_gradients, max_steps * rows * head_count);
        fit(&mut self.recurrent_gradients, max_steps * rows * gates);
        fit(&mut self.projected_gradients, rows * gates);
        fit(&mut self.carry, rows * hidden);
        fit(&mut self.previous_carry, rows * hidden);
        fit(&mut self.head_weight_gradient, hidden * head_count);
        fit(&mut self.logits, rows * p.classes);
        fit(&mut self.halting_steps, rows);
        self.gradients.zero_like(p);

        self.forward(job, inputs, rows);
        self.loss_gradients(job, targets);
        self.backward(job, inputs, rows);
    }

    /// Runs the steps until every row has halted or M is reached, and sets each row's
    /// halting step.
    fn forward(&mut self, job: &Job<'_>, inputs: &[f32], rows: usize) {
        let p = job.parameters;
        let (input_size, hidden, gates) = (p.input_size, p.hidden_size, p.gates());
        let head_count = p.classes + 1;
        let saved_width = self.saved.len() / (job.settings.max_steps * rows);

        // [1, x]·W + b = x·W[1..] + W[0] + b, and [0, x]·W + b = x·W[1..] + b.
        matmul(
            Shape {
                m: rows,
                n: gates,
                k: input_size,
            },
            Output {
                values: &mut self.projected_later,
                row_stride: gates,
                accumulate: false,
            },
            Operand {
                values: inputs,
                row_stride: input_size,
                column_stride: 1,
            },
            Operand {
                values: &p.input_weight[gates..],
                row_stride: gates,
                column_stride: 1,
            },
        );
        let flag_row = &p.input_weight[..gates];
        for (later, first) in self
            .projected_later
            .chunks_exact_mut(gates)
            .zip(self.projected_first.chunks_exact_mut(gates))
        {
            for g in 0..gates {
                later[g] += p.input_bias[g];
                first[g] = later[g] + flag_row[g];
            }
        }

        let block = rows * hidden;
        self.states[..block].fill(0.0);
        self.cumulative.fill(0.0);
        self.halting_steps.fill(0);
        let mut steps = 0;
        for n in 1..=job.settings.max_steps {
            let (before, after) = self.states.split_at_mut(n * block);
            let previous_state = &before[(n - 1) * block..];
            let state = &mut after[..block];
            let recurrent = if n > 1 {
                matmul(
                    Shape {
                        m: rows,
                        n: gates,
                        k: hidden,
                    },
                    Output {
                        values: &mut self.recurrent,
                        row_stride: gates,
                        accumulate: false,
                    },
                    Operand {
                        values: previous_state,
                        row_stride: hidden,
                        column_stride: 1,
                    },
                    Operand {
                        values: &p.hidden_weight,
                        row_stride: gates,
                        column_stride: 1,
                    },
                );
                Some(&self.recurrent[..])
            } else {
                None
            };
            let outputs =
                &mut self.head_outputs[(n - 1) * rows * head_count..n * rows * head_count];
            rows::forward(ForwardRows {
                cell: p.cell,
                hidden,
                projected: if n == 1 {
                    &self.projected_first
                } else {
                    &self.projected_later
                },
                recurrent,
                hidden_bias: &p.hidden_bias,
                previous_state,
                state,
                saved: &mut self.saved[(n - 1) * rows * saved_width..n * rows * saved_width],
                heads: job.heads,
                head_bias: job.head_bias,
                head_outputs: &mut *outputs,
            });
            steps = n;

            let halting = &mut self.halting[(n - 1) * rows..n * rows];
            let mut all_halted = true;
            for b in 0..rows {
                let h = math::sigmoid::<false>(outputs[b * head_count + p.classes]);
                halting[b] = h;
                if self.halting_steps[b] == 0 {
                    self.cumulative[b] += h;
                    if self.cumulative[b] >= job.threshold {
                        self.halting_steps[b] = n;
                    } else {
                        all_halted = false;
                    }
                }
            }
            if all_halted {
                break;
            }
        }
        // A row that never reached 1 − ε halts at the last step, which is M here because the
        // loop only stops early once every row has halted.
        for step in &mut self.halting_steps {
            if *step == 0 {
                *step = steps;
            }
        }
        self.steps_run = steps;
    }

    /// Computes the accumulated logits, the loss sums and the gradient of the loss with
    /// respect to every step's output logits and halting logit.
    fn loss_gradients(&mut self, job: &Job<'_>, targets: &[u8]) {
        let p = job.parameters;
        let (classes, head_count, rows) = (p.classes, p.classes + 1, targets.len());
        let scale = 1.0 / job.batch as f32;
        let ponder_gradient = job.settings.ponder_weight as f32 * scale;
        self.cross_entropy_sum = 0.0;
        self.ponder_sum = 0.0;
        let outputs_at = |n: usize, b: usize| {
            let start = ((n - 1) * rows + b) * head_count;
            start..start + classes
        };
        let mut logit_gradient = vec![0.0f32; classes];
        for (b, &target) in targets.iter().enumerate() {
            let halt = self.halting_steps[b];
            let halting_at = |n: usize| self.halting[(n - 1) * rows + b];
            let remainder = 1.0 - (1..halt).map(halting_at).sum::<f32>();

            let logits = &mut self.logits[b * classes..(b + 1) * classes];
            logits.fill(0.0);
            for n in 1..=halt {
                let weight = if n < halt { halting_at(n) } else { remainder };
                for (logit, output) in logits.iter_mut().zip(&self.head_outputs[outputs_at(n, b)]) {
                    *logit += weight * output;
                }
            }

            // Cross-entropy −log softmax(logits)[target] and its gradient softmax − one-hot.
            let max = logits.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let sum: f32 = logits.iter().map(|v| (v - max).exp()).sum();
            let log_sum = max + sum.ln();
            self.cross_entropy_sum += (log_sum - logits[target as usize]) as f64;
            self.ponder_sum += (halt as f32 + remainder) as f64;
            for (class, gradient) in logit_gradient.iter_mut().enumerate() {
                let one_hot = if class == target as usize { 1.0 } else { 0.0 };
                *gradient = ((logits[class] - log_sum).exp() - one_hot) * scale;
            }

            // dL/dwₙ = dL/dlogits · yₙ. For n < N, wₙ = hₙ and R = 1 − Σ_{n<N} hₙ, so
            // dL/dhₙ = dL/dwₙ − dL/dR − ponder_weight / batch (ρ = N + R, N constant).
            let dot_outputs = |n: usize| -> f32 {
                logit_gradient
                    .iter()
                    .zip(&self.head_outputs[outputs_at(n, b)])
                    .map(|(g, y)| g * y)
                    .sum()
            };
            let remainder_gradient = dot_outputs(halt);
            for n in 1..=self.steps_run {
                let start = ((n - 1) * rows + b) * head_count;
                let gradients = &mut self.head_gradients[start..start + head_count];
                if n > halt {
                    gradients.fill(0.0);
                    continue;
                }
                let (weight, halting_logit_gradient) = if n < halt {
                    let h = halting_at(n);
                    let dh = dot_outputs(n) - remainder_gradient - ponder_gradient;
                    (h, dh * h * (1.0 - h))
                } else {
                    (remainder, 0.0)
                };
                for (gradient, g) in gradients.iter_mut().zip(&logit_gradient) {
                    *gradient = weight * g;
                }
                gradients[classes] = halting_logit_gradient;
            }
        }
    }

    /// Back-propagates through the steps and sums the parameter gradients.
    fn backward(&mut self, job: &Job<'_>, inputs: &[f32], rows: usize) {
        let p = job.parameters;
        let (input_size, hidden, gates, classes) =
            (p.input_size, p.hidden_size, p.gates(), p.classes);
        let head_count = classes + 1;
        let steps = self.steps_run;
        let block = rows * hidden;
        let saved_width = self.saved.len() / (job.settings.max_steps * rows);
        self.carry.fill(0.0);
        self.projected_gradients.fill(0.0);

        for n in (1..=steps).rev() {
            let recurrent_gradients =
                &mut self.recurrent_gradients[(n - 1) * rows * gates..n * rows * gates];
            let (flag_row, _) = self.gradients.input_weight.split_at_mut(gates);
            rows::backward(BackwardRows {
                cell: p.cell,
                hidden,
                state: &self.states[n * block..(n + 1) * block],
                previous_state: &self.states[(n - 1) * block..n * block],
                saved: &self.saved[(n - 1) * rows * saved_width..n * rows * saved_width],
                heads: job.heads,
                head_gradients: &self.head_gradients
                    [(n - 1) * rows * head_count..n * rows * head_count],
                carry: &self.carry,
                previous_carry: &mut self.previous_carry,
                recurrent_gradients: &mut *recurrent_gradients,
                projected_gradients: &mut self.projected_gradients,
                hidden_bias_gradient: &mut self.gradients.hidden_bias,
                flag_gradient: (n == 1).then_some(flag_row),
            });
            if n > 1 {
                // dsₙ₋₁ += dRecurrent · Uᵀ, where U is [hidden, gates].
                matmul(
                    Shape {
                        m: rows,
                        n: hidden,
                        k: gates,
                    },
                    Output {
                        values: &mut self.previous_carry,
                        row_stride: hidden,
                        accumulate: true,
                    },
                    Operand {
                        values: recurrent_gradients,
                        row_stride: gates,
                        column_stride: 1,
                    },
                    Operand {
                        values: &p.hidden_weight,
                        row_stride: 1,
                        column_stride: gates,
                    },
                );
            }
            std::mem::swap(&mut self.carry, &mut self.previous_carry);
        }

        // dU = Σ_{n≥2} sₙ₋₁ᵀ dRecurrentₙ: one product over all steps, with k = (steps − 1)·rows
        // (s₀ = 0 contributes nothing).
        matmul(
            Shape {
                m: hidden,
                n: gates,
                k: (steps - 1) * rows,
            },
            Output {
                values: &mut self.gradients.hidden_weight,
                row_stride: gates,
                accumulate: false,
            },
            Operand {
                values: &self.states[block..steps * block],
                row_stride: 1,
                column_stride: hidden,
            },
            Operand {
                values: &self.recurrent_gradients[rows * gates..steps * rows * gates],
                row_stride: gates,
                column_stride: 1,
            },
        );

        // Output and halting weights: Σₙ sₙᵀ dHeadsₙ, then split into the two layers.
        matmul(
            Shape {
                m: hidden,
                n: head_count,
                k: steps * rows,
            },
            Output {
                values: &mut self.head_weight_gradient,
                row_stride: head_count,
                accumulate: false,
            },
            Operand {
                values: &self.states[block..(steps + 1) * block],
                row_stride: 1,
                column_stride: hidden,
            },
            Operand {
                values: &self.head_gradients[..steps * rows * head_count],
                row_stride: head_count,
                column_stride: 1,
            },
        );
        for j in 0..hidden {
            let row = &self.head_weight_gradient[j * head_count..(j + 1) * head_count];
            self.gradients.output_weight[j * classes..(j + 1) * classes]
                .copy_from_slice(&row[..classes]);
            self.gradients.halting_weight[j] = row[classes];
        }
        for row in self.head_gradients[..steps * rows * head_count].chunks_exact(head_count) {
            for (sum, value) in self.gradients.output_bias.iter_mut().zip(row) {
                *sum += value;
            }
            self.gradients.halting_bias[0] += row[classes];
        }

        // Input weight rows 1.. and input bias from the input projection gradient summed over
        // steps; row 0 (the flag) was summed at step 1.
        matmul(
            Shape {
                m: input_size,
                n: gates,
                k: rows,
            },
            Output {
                values: &mut self.gradients.input_weight[gates..],
                row_stride: gates,
                accumulate: false,
            },
            Operand {
                values: inputs,
                row_stride: 1,
                column_stride: input_size,
            },
            Operand {
                values: &self.projected_gradients,
                row_stride: gates,
                column_stride: 1,
            },
        );
        for row in self.projected_gradients.chunks_exact(gates) {
            for (sum, value) in self.gradients.input_bias.iter_mut().zip(row) {
                *sum += value;
            }
        }
    }
}

/// Sizes of a product: `[m, k] · [k, n]`.
struct Shape {
    m: usize,
    n: usize,
    k: usize,
}

/// A matrix read by [`matmul`], with strides in elements.
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    column_stride: usize,
}

/// A row-major `[m, n]` destination of [`matmul`]; `accumulate` adds the product to it
/// instead of overwriting it.
struct Output<'a> {
    values: &'a mut [f32],
    row_stride: usize,
    accumulate: bool,
}

/// Computes `out = lhs · rhs` or `out += lhs · rhs` with gemm, on the calling thread.
///
/// # Panics
/// Panics when an operand is too short for its shape and strides. The callers derive both from
/// the same checked sizes, so this only fires on a bug in this module.
fn matmul(shape: Shape, out: Output<'_>, lhs: Operand<'_>, rhs: Operand<'_>) {
    let Shape { m, n, k } = shape;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !out.accumulate {
            for row in 0..m {
                out.values[row * out.row_stride..row * out.row_stride + n].fill(0.0);
            }
        }
        return;
    }
    let last = |rows: usize, row_stride: usize, columns: usize, column_stride: usize| {
        (rows - 1) * row_stride + (columns - 1) * column_stride
    };
    assert!(
        last(m, out.row_stride, n, 1) < out.values.len(),
        "matmul output too short"
    );
    assert!(
        last(m, lhs.row_stride, k, lhs.column_stride) < lhs.values.len(),
        "lhs too short"
    );
    assert!(
        last(k, rhs.row_stride, n, rhs.column_stride) < rhs.values.len(),
        "rhs too short"
    );
    // SAFETY: the asserts above keep every index that gemm reads or writes inside the slices,
    // and `out` does not alias the operands because it is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.values.as_mut_ptr(),
            1,
            out.row_stride as isize,
            out.accumulate,
            lhs.values.as_ptr(),
            lhs.column_stride as isize,
            lhs.row_stride as isize,
            rhs.values.as_ptr(),
            rhs.column_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Converts host gradients into Burn gradients keyed by `network`'s parameter ids, for
/// `optimizer.step`.
///
/// The tensors are created on `device` without autodiff, where
/// `GradientsParams::from_grads` puts the gradients of an autodiff model.
///
/// # Errors
/// Returns an error when a gradient's length does not match its parameter's shape or a layer
/// of `network` has no bias.
pub fn gradients_params(
    network: &PonderNetwork,
    gradients: &HostParameters,
    device: &Device,
) -> Result<GradientsParams, PonderCpuError> {
    let device = device.clone().without_autodiff();
    let [input, hidden, halting, output] = network.layers();
    let pairs: [(&Linear, &Vec<f32>, &Vec<f32>, &str); 4] = [
        (
            input,
            &gradients.input_weight,
            &gradients.input_bias,
            "input_gates",
        ),
        (
            hidden,
            &gradients.hidden_weight,
            &gradients.hidden_bias,
            "hidden_gates",
        ),
        (
            halting,
            &gradients.halting_weight,
            &gradients.halting_bias,
            "halting",
        ),
        (
            output,
            &gradients.output_weight,
            &gradients.output_bias,
            "output",
        ),
    ];
    let mut params = GradientsParams::new();
    for (layer, weight, bias, name) in pairs {
        let shape = layer.weight.dims();
        if weight.len() != shape[0] * shape[1] {
            return Err(invalid(
                "gradients",
                format!(
                    "the weight gradient of layer {name} has {} values, the weight is {shape:?}",
                    weight.len()
                ),
            ));
        }
        let bias_param = layer.bias.as_ref().ok_or_else(|| {
            invalid(
                "network",
                format!("layer {name} has no bias; the kernel needs every bias"),
            )
        })?;
        let bias_shape = bias_param.dims();
        if bias.len() != bias_shape[0] {
            return Err(invalid(
                "gradients",
                format!(
                    "the bias gradient of layer {name} has {} values, the bias is {bias_shape:?}",
                    bias.len()
                ),
            ));
        }
        let weight = Tensor::<2>::from_data(TensorData::new(weight.clone(), shape), &device);
        params.register(layer.weight.id, weight);
        let bias = Tensor::<1>::from_data(TensorData::new(bias.clone(), bias_shape), &device);
        params.register(bias_param.id, bias);
    }
    Ok(params)
}
