//! Hard early-exit inference that stops computing for samples that have exited.
//!
//! At every head the engine reads the running rows' logits back to the host once, has an
//! [`ExitRule`] decide which rows exit, and removes those rows from the batch before the next layer
//! runs (batch compaction). Later layers therefore compute fewer rows, and no layer runs once
//! the batch is empty. Results come back in the order of the input rows.

use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_halting::exits::{ExitRule, row_argmax};

/// A network cut into stages, each a block of layers followed by an exit head.
///
/// Inputs and hidden states travel as `[rows, features]` tensors; a convolutional stage
/// reshapes them inside.
pub trait ExitStages {
    /// Number of stages, which is also the number of exit heads.
    fn depth(&self) -> usize;

    /// Runs stage `stage` (counted from 0) and its head.
    ///
    /// # Shapes
    /// `input`: `[rows, features]` at stage 0, then the previous stage's hidden state. Returns
    /// the hidden state and the head's logits `[rows, classes]`. The hidden state is
    /// `[rows, features']` unless the network overrides [`ExitStages::select_rows`].
    fn forward_stage(&self, stage: usize, input: Tensor<2>) -> (Tensor<2>, Tensor<2>);

    /// Keeps the rows (samples) at `indices` of a hidden state from
    /// [`ExitStages::forward_stage`], for batch compaction. The default selects along
    /// dimension 0; a network that keeps its hidden states feature-major overrides it.
    fn select_rows(&self, hidden: Tensor<2>, indices: Tensor<1, Int>) -> Tensor<2> {
        hidden.select(0, indices)
    }

    /// Returns a copy of the network in a form that runs inference faster, such as
    /// [`crate::ExitMlpInference`], or `None` when the network has none. Timed inference uses
    /// it; outputs agree up to floating-point rounding.
    fn inference_form(&self) -> Option<Box<dyn ExitStages>> {
        None
    }

    /// Computes the halting probability λ of stage `stage`'s learned exit gate from that
    /// stage's hidden state, or `None` when the network has no gates.
    ///
    /// # Shapes
    /// `hidden`: `[rows, features']`; returns `[rows, 1]` with values in [0, 1].
    fn gate(&self, _stage: usize, _hidden: Tensor<2>) -> Option<Tensor<2>> {
        None
    }

    /// Computes every head's logits and, for a gated network, every gate's λ.
    ///
    /// # Shapes
    /// `inputs`: `[batch, features]`; returns `depth` tensors of `[batch, classes]` and either
    /// no gates or `depth` tensors of `[batch, 1]`.
    fn forward_with_gates(&self, inputs: Tensor<2>) -> (Vec<Tensor<2>>, Vec<Tensor<2>>) {
        let mut hidden = inputs;
        let mut all_logits = Vec::with_capacity(self.depth());
        let mut gates = Vec::new();
        for stage in 0..self.depth() {
            let (next, logits) = self.forward_stage(stage, hidden);
            gates.extend(self.gate(stage, next.clone()));
            hidden = next;
            all_logits.push(logits);
        }
        (all_logits, gates)
    }

    /// Computes the logits of every exit head for the whole batch.
    ///
    /// # Shapes
    /// `inputs`: `[batch, features]`; returns `depth` tensors of `[batch, classes]`.
    fn forward_all(&self, inputs: Tensor<2>) -> Vec<Tensor<2>> {
        let mut hidden = inputs;
        let mut all_logits = Vec::with_capacity(self.depth());
        for stage in 0..self.depth() {
            let (next, logits) = self.forward_stage(stage, hidden);
            hidden = next;
            all_logits.push(logits);
        }
        all_logits
    }
}

/// Per-sample results of hard early-exit inference, in the order of the input rows.
#[derive(Debug, Clone, PartialEq)]
pub struct HardExits {
    /// Predicted class of each sample, from the head where it exited.
    pub predictions: Vec<usize>,
    /// Exit head of each sample, counted from 1; the last head predicts for every sample that no
    /// earlier head let go.
    pub exit_layer: Vec<usize>,
    /// Rows that each stage computed; it falls as samples exit, and it is shorter than the
    /// depth when every sample exited before the last stage.
    pub rows_per_layer: Vec<usize>,
}

/// Runs hard early-exit inference with batch compaction.
///
/// The rule decides at every head but the last; the last head predicts for all rows that reach
/// it. Each stage costs one device read (its logits) and, when some rows exit and some stay,
/// one row gather. An empty batch runs nothing.
///
/// # Shapes
/// `inputs`: `[batch, features]`.
pub fn infer_hard(
    model: &(impl ExitStages + ?Sized),
    inputs: Tensor<2>,
    rule: &mut dyn ExitRule,
) -> HardExits {
    let [batch, _] = inputs.dims();
    let device = inputs.device();
    let depth = model.depth();
    let mut tracker = ExitTracker::new(batch, depth, rule);
    let mut hidden = inputs;

    for stage in 0..depth {
        if tracker.running.is_empty() {
            break;
        }
        let (next, logits) = model.forward_stage(stage, hidden);
        let [rows, classes] = logits.dims();
        if rule.uses_gate() && stage + 1 < depth {
            if let Some(gate) = model.gate(stage, next.clone()) {
                rule.set_gates(&read_floats(gate));
            }
        }
        let staying = tracker.step(stage, &read_floats(logits), classes, rule);
        hidden = if staying.len() == rows || staying.is_empty() {
            next
        } else {
            model.select_rows(next, index_tensor(&staying, &device))
        };
    }
    tracker.finish()
}

/// Replays hard early-exit inference on logits computed beforehand for every head, as if
/// [`infer_hard`] had run; used to sweep thresholds without running the network again.
///
/// `head_logits[s]` contains `batch` rows of `classes` logits of head s, row-major, and
/// `gates[s]` the `batch` halting probabilities of gate s; `gates` is empty for an ungated
/// network.
pub fn replay_exits(
    head_logits: &[Vec<f32>],
    gates: &[Vec<f32>],
    classes: usize,
    rule: &mut dyn ExitRule,
) -> HardExits {
    let depth = head_logits.len();
    let batch = head_logits
        .first()
        .map_or(0, |logits| logits.len() / classes.max(1));
    let mut tracker = ExitTracker::new(batch, depth, rule);
    let mut rows = Vec::new();
    for (stage, logits) in head_logits.iter().enumerate() {
        if tracker.running.is_empty() {
            break;
        }
        rows.clear();
        for &sample in &tracker.running {
            rows.extend_from_slice(&logits[sample * classes..(sample + 1) * classes]);
        }
        if let Some(stage_gates) = gates.get(stage).filter(|_| rule.uses_gate()) {
            let running: Vec<f32> = tracker
                .running
                .iter()
                .map(|&sample| stage_gates[sample])
                .collect();
            rule.set_gates(&running);
        }
        tracker.step(stage, &rows, classes, rule);
    }
    tracker.finish()
}

/// Samples of a batch that still run, and the predictions of those that exited.
struct ExitTracker {
    depth: usize,
    /// Batch index of each row still running.
    running: Vec<usize>,
    predictions: Vec<usize>,
    exit_layer: Vec<usize>,
    rows_per_layer: Vec<usize>,
}

impl ExitTracker {
    fn new(batch: usize, depth: usize, rule: &mut dyn ExitRule) -> Self {
        rule.start(batch);
        Self {
            depth,
            running: (0..batch).collect(),
            predictions: vec![0; batch],
            exit_layer: vec![0; batch],
            rows_per_layer: Vec::with_capacity(depth),
        }
    }

    /// Applies the rule to the running rows' logits at `stage` and returns the positions (in
    /// the running rows) of the rows that stay.
    fn step(
        &mut self,
        stage: usize,
        logits: &[f32],
        classes: usize,
        rule: &mut dyn ExitRule,
    ) -> Vec<usize> {
        self.rows_per_layer.push(self.running.len());
        let leaving = if stage + 1 == self.depth {
            vec![true; self.running.len()]
        } else {
            rule.decide(stage, logits, classes, &self.running)
        };
        let mut staying = Vec::with_capacity(self.running.len());
        for (row, (&sample, row_logits)) in self
            .running
            .iter()
            .zip(logits.chunks_exact(classes))
            .enumerate()
        {
            if leaving[row] {
                self.predictions[sample] = row_argmax(row_logits);
                self.exit_layer[sample] = stage + 1;
            } else {
                staying.push(row);
            }
        }
        self.running = staying.iter().map(|&row| self.running[row]).collect();
        staying
    }

    fn finish(self) -> HardExits {
        HardExits {
            predictions: self.predictions,
            exit_layer: self.exit_layer,
            rows_per_layer: self.rows_per_layer,
        }
    }
}

/// Runs every stage and reads back only the last head's predictions: the cost of the network
/// without any exit logic, the baseline for measured speed-ups.
///
/// # Shapes
/// `inputs`: `[batch, features]`; returns `batch` class indices.
pub fn infer_full(model: &(impl ExitStages + ?Sized), inputs: Tensor<2>) -> Vec<usize> {
    let logits = model
        .forward_all(inputs)
        .pop()
        .expect("an exit network has at least one stage");
    let [_, classes] = logits.dims();
    read_floats(logits)
        .chunks_exact(classes)
        .map(row_argmax)
        .collect()
}

fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&index| index as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// Reads a float tensor back to the host as f32, row-major.
pub fn read_floats<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("a float tensor converts to f32")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use haltlab_halting::exits::{ConfidenceRule, NeverExit, PatienceRule};

    /// A network whose head at stage s gives sample k (stored as the input value k) a one-hot
    /// logit for class `predictions[k][s]`, scaled by 1 + s so heads differ. It logs the rows
    /// every stage computes.
    struct Scripted {
        predictions: Vec<Vec<usize>>,
        classes: usize,
        stages_run: RefCell<Vec<(usize, usize)>>,
    }

    impl Scripted {
        fn new(predictions: Vec<Vec<usize>>, classes: usize) -> Self {
            Self {
                predictions,
                classes,
                stages_run: RefCell::new(Vec::new()),
            }
        }

        fn inputs(samples: &[usize]) -> Tensor<2> {
            let values: Vec<f32> = samples.iter().map(|&sample| sample as f32).collect();
            Tensor::from_data(TensorData::new(values, [samples.len(), 1]), &Device::flex())
        }
    }

    impl ExitStages for Scripted {
        fn depth(&self) -> usize {
            self.predictions[0].len()
        }

        fn forward_stage(&self, stage: usize, input: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
            let samples: Vec<usize> = read_floats(input.clone())
                .into_iter()
                .map(|value| value as usize)
                .collect();
            self.stages_run.borrow_mut().push((stage, samples.len()));
            let mut logits = vec![0.0f32; samples.len() * self.classes];
            for (row, &sample) in samples.iter().enumerate() {
                logits[row * self.classes + self.predictions[sample][stage]] = 1.0 + stage as f32;
            }
            let logits = Tensor::from_data(
                TensorData::new(logits, [samples.len(), self.classes]),
                &input.device(),
            );
            (input, logits)
        }
    }

    #[test]
    fn patience_two_samples_in_one_batch() {
        let model = Scripted::new(vec![vec![1, 1, 1, 1], vec![0, 1, 0, 1]], 2);
        let together = infer_hard(&model, Scripted::inputs(&[0, 1]), &mut PatienceRule::new(2));
        assert_eq!(together.exit_layer, vec![3, 4]);
        assert_eq!(together.predictions, vec![1, 1]);
        assert_eq!(together.rows_per_layer, vec![2, 2, 2, 1]);

        for sample in 0..2 {
            let alone = infer_hard(
                &model,
                Scripted::inputs(&[sample]),
                &mut PatienceRule::new(2),
            );
            assert_eq!(
                alone.exit_layer[0], together.exit_layer[sample],
                "sample {sample}"
            );
            assert_eq!(
                alone.predictions[0], together.predictions[sample],
                "sample {sample}"
            );
        }
    }

    #[test]
    fn order_is_kept_after_compaction() {
        let model = Scripted::new(vec![vec![0, 1, 3], vec![2, 2, 2], vec![1, 0, 1]], 4);
        let mut confidence = ConfidenceRule { threshold: 0.9 };
        // A one-hot logit of 1 over 4 classes has confidence e/(e+3) ≈ 0.475, of 2 about 0.711,
        // of 3 about 0.870: no sample reaches 0.9 before the last head.
        let result = infer_hard(&model, Scripted::inputs(&[0, 1, 2]), &mut confidence);
        assert_eq!(result.exit_layer, vec![3, 3, 3]);
        assert_eq!(result.predictions, vec![3, 2, 1]);
    }

    #[test]
    fn never_exiting_samples_get_last_output() {
        let model = Scripted::new(vec![vec![0, 1, 2], vec![3, 2, 1]], 4);
        let result = infer_hard(&model, Scripted::inputs(&[1, 0]), &mut NeverExit);
        assert_eq!(result.predictions, vec![1, 2]);
        assert_eq!(result.exit_layer, vec![3, 3]);
        assert_eq!(*model.stages_run.borrow(), vec![(0, 2), (1, 2), (2, 2)]);
    }

    #[test]
    fn all_exit_at_first_head() {
        let model = Scripted::new(vec![vec![0, 1, 2], vec![3, 2, 1]], 4);
        let result = infer_hard(&model, Scripted::inputs(&[0, 1]), &mut PatienceRule::new(0));
        assert_eq!(result.exit_layer, vec![1, 1]);
        assert_eq!(result.predictions, vec![0, 3]);
        assert_eq!(result.rows_per_layer, vec![2]);
        assert_eq!(*model.stages_run.borrow(), vec![(0, 2)]);
    }

    #[test]
    fn empty_batch_runs_nothing() {
        let model = Scripted::new(vec![vec![0, 1]], 2);
        let result = infer_hard(&model, Scripted::inputs(&[]), &mut NeverExit);
        assert!(result.predictions.is_empty());
        assert!(result.rows_per_layer.is_empty());
        assert!(model.stages_run.borrow().is_empty());
    }

    // Sample 0 exits at head 2 by patience 1; sample 1 keeps running and must keep its own
    // rows after the gather.
    #[test]
    fn mixed_exits_keep_rows() {
        let model = Scripted::new(vec![vec![2, 2, 0], vec![1, 3, 0]], 4);
        let result = infer_hard(&model, Scripted::inputs(&[0, 1]), &mut PatienceRule::new(1));
        assert_eq!(result.exit_layer, vec![2, 3]);
        assert_eq!(result.predictions, vec![2, 0]);
        assert_eq!(*model.stages_run.borrow(), vec![(0, 2), (1, 2), (2, 1)]);
    }

    #[test]
    fn replay_matches_engine() {
        let predictions = vec![vec![0, 1, 3], vec![2, 2, 2], vec![1, 0, 1], vec![3, 3, 0]];
        let model = Scripted::new(predictions.clone(), 4);
        let engine = infer_hard(
            &model,
            Scripted::inputs(&[0, 1, 2, 3]),
            &mut PatienceRule::new(1),
        );
        let head_logits: Vec<Vec<f32>> = (0..3)
            .map(|stage| {
                let (_, logits) = model.forward_stage(stage, Scripted::inputs(&[0, 1, 2, 3]));
                read_floats(logits)
            })
            .collect();
        let replay = replay_exits(&head_logits, &[], 4, &mut PatienceRule::new(1));
        assert_eq!(replay, engine);
        assert_eq!(engine.exit_layer, vec![3, 2, 3, 2]);
    }
}
