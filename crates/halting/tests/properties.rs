//! Property tests of the halting math on random halting values and step outputs, and checks on
//! extreme inputs.

use burn::tensor::Int;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use haltlab_halting::act::act_halting;
use haltlab_halting::hard::{CompactStep, HardRule, run_hard};
use haltlab_halting::pondernet::{halting_distribution, kl_to_geometric_prior};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn device() -> Device {
    Device::flex()
}

fn tensor2(values: &[f32], rows: usize, cols: usize) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [rows, cols]), &device())
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .expect("float tensor")
}

/// Generates a batch of halting values in [0, 1]: `rows` samples of `steps` steps.
fn halting_batch() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..5, 1usize..7).prop_flat_map(|(rows, steps)| {
        (
            Just(rows),
            Just(steps),
            proptest::collection::vec(0.0f32..=1.0, rows * steps),
        )
    })
}

/// A model over a fixed table of halting signals: row i emits output 100·i + n and signal
/// `signals[i][n − 1]` at step n, computing only the rows still in its batch.
struct TableModel {
    signals: Vec<Vec<f32>>,
    rows: Vec<usize>,
}

impl CompactStep for TableModel {
    fn step(&mut self, step: usize) -> (Tensor<2>, Tensor<1>) {
        let rows = self.rows.len();
        let outputs: Vec<f32> = self.rows.iter().map(|&i| (100 * i + step) as f32).collect();
        let signal: Vec<f32> = self
            .rows
            .iter()
            .map(|&i| self.signals[i][step - 1])
            .collect();
        (
            Tensor::from_data(TensorData::new(outputs, [rows, 1]), &device()),
            Tensor::from_data(TensorData::new(signal, [rows]), &device()),
        )
    }

    fn retain(&mut self, keep: Tensor<1, Int>) {
        let keep = keep
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("int tensor");
        self.rows = keep.iter().map(|&k| self.rows[k as usize]).collect();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compaction_equals_masked_computation(
        (rows, steps, signals) in halting_batch(),
        threshold in 0.05f64..0.95,
    ) {
        let table: Vec<Vec<f32>> = signals.chunks(steps).map(<[f32]>::to_vec).collect();
        // The uncompacted computation: every row runs all M steps, and a mask keeps the output
        // of its first step whose signal reaches the threshold (or of step M).
        let expected_steps: Vec<usize> = table
            .iter()
            .map(|row| row.iter().position(|&s| s as f64 >= threshold).map_or(steps, |n| n + 1))
            .collect();
        let expected_outputs: Vec<f32> = expected_steps
            .iter()
            .enumerate()
            .map(|(i, &n)| (100 * i + n) as f32)
            .collect();

        let mut model = TableModel { signals: table, rows: (0..rows).collect() };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let run = run_hard(&mut model, rows, steps, HardRule::Signal { threshold }, &mut rng).unwrap();
        prop_assert_eq!(&run.halting_steps, &expected_steps);
        prop_assert_eq!(values(run.outputs), expected_outputs);
        prop_assert_eq!(run.sample_steps, expected_steps.iter().sum::<usize>());
    }

    #[test]
    fn act_weights_form_distribution((rows, steps, h) in halting_batch(), epsilon in 0.001f64..0.5) {
        let halting = act_halting(tensor2(&h, rows, steps), epsilon).unwrap();
        let weights = values(halting.weights.clone());
        for row in weights.chunks(steps) {
            prop_assert!(row.iter().all(|&w| w >= -1e-6), "negative weight in {row:?}");
            let sum: f32 = row.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-5, "weights {row:?} sum to {sum}");
        }
        for cost in values(halting.ponder_cost) {
            prop_assert!((1.0 - 1e-5..=steps as f32 + 1.0 + 1e-5).contains(&cost), "ponder cost {cost} outside [1, {}]", steps + 1);
        }
    }

    #[test]
    fn act_output_is_convex_combination(
        (rows, steps, h) in halting_batch(),
        seed_outputs in proptest::collection::vec(-10.0f32..10.0, 48),
    ) {
        let outputs: Vec<f32> = (0..rows * steps).map(|i| seed_outputs[i % seed_outputs.len()]).collect();
        let halting = act_halting(tensor2(&h, rows, steps), 0.01).unwrap();
        let step_outputs = Tensor::<3>::from_data(TensorData::new(outputs.clone(), [rows, steps, 1]), &device());
        let combined = values(halting.accumulate(step_outputs));
        for (row, value) in combined.iter().enumerate() {
            let row_outputs = &outputs[row * steps..(row + 1) * steps];
            let low = row_outputs.iter().copied().fold(f32::INFINITY, f32::min);
            let high = row_outputs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            prop_assert!(*value >= low - 1e-4 && *value <= high + 1e-4, "{value} outside [{low}, {high}]");
        }
    }

    #[test]
    fn pondernet_distribution_sums_to_one((rows, steps, lambda) in halting_batch(), lambda_prior in 0.01f64..=1.0) {
        let p = halting_distribution(tensor2(&lambda, rows, steps));
        let p_values = values(p.clone());
        for row in p_values.chunks(steps) {
            prop_assert!(row.iter().all(|&v| v >= 0.0), "negative probability in {row:?}");
            let sum: f32 = row.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-5, "{row:?} sums to {sum}");
        }
        for kl in values(kl_to_geometric_prior(p, lambda_prior).unwrap()) {
            prop_assert!(kl.is_finite() && kl >= 0.0, "KL {kl}");
        }
    }
}

#[test]
fn extreme_halting_logits_stay_finite() {
    // Halting logits of ±1e4 saturate the sigmoid to exactly 0 and 1 in f32.
    let logits = tensor2(&[1e4, -1e4, 1e4, -1e4, -1e4, -1e4], 2, 3);
    let h = sigmoid(logits);
    let act = act_halting(h.clone(), 0.01).unwrap();
    assert!(values(act.weights).iter().all(|w| w.is_finite()));
    assert!(values(act.ponder_cost).iter().all(|c| c.is_finite()));
    let p = halting_distribution(h);
    assert!(values(p.clone()).iter().all(|v| v.is_finite()));
    for kl in values(kl_to_geometric_prior(p, 0.2).unwrap()) {
        assert!(kl.is_finite(), "KL {kl}");
        assert!(kl >= 0.0, "KL {kl}");
    }
}

#[test]
fn extreme_logit_gradients_stay_finite() {
    let device = device().autodiff();
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![1e4f32, -1e4, 3.0, -1e4], [2, 2]),
        &device,
    )
    .require_grad();
    let p = halting_distribution(sigmoid(logits.clone()));
    let loss = kl_to_geometric_prior(p, 0.3).unwrap().sum()
        + act_halting(sigmoid(logits.clone()), 0.01)
            .unwrap()
            .ponder_cost
            .sum();
    let gradients = loss.backward();
    let gradient = values(logits.grad(&gradients).expect("gradient of the logits"));
    assert!(gradient.iter().all(|g| g.is_finite()), "{gradient:?}");
}
