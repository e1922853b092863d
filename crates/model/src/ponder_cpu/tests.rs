//! Checks of the fused kernel against Burn autodiff on the flex backend.

use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_halting::hard::ChaCha8Rng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::draw_parameters;
use crate::ponder::PonderConfig;

const LENGTH: usize = 4;
const HIDDEN: usize = 16;
/// Three chunks of rows: 64, 64 and 22.
const BATCH: usize = 150;
const MAX_STEPS: usize = 6;

/// Tolerance on each gradient, relative to the largest absolute value of Burn's gradient.
const GRADIENT_TOLERANCE: f32 = 1e-4;

fn settings() -> ActSettings {
    ActSettings {
        max_steps: MAX_STEPS,
        epsilon: 0.01,
        ponder_weight: 0.05,
    }
}

/// Builds a network on a seeded flex autodiff device. flex has one random generator per
/// process, so the lock keeps parallel tests from drawing from it at the same time.
fn network(cell: CellKind, halting_bias: f64, seed: u64) -> PonderNetwork {
    let _generator = crate::testing::generator_lock();
    let device = Device::flex().autodiff();
    device.seed(seed);
    let network = PonderConfig::new(LENGTH, HIDDEN, 2)
        .with_cell(cell)
        .with_halting_bias(halting_bias)
        .init(&device);
    draw_parameters(&network);
    network
}

/// Draws parity vectors with entries in {−1, 0, +1}; the target is 1 when the count of +1
/// entries is odd.
fn parity_batch(seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs: Vec<f32> = (0..BATCH * LENGTH)
        .map(|_| rng.random_range(-1i32..=1) as f32)
        .collect();
    let targets = inputs
        .chunks_exact(LENGTH)
        .map(|row| (row.iter().filter(|&&v| v > 0.0).count() % 2) as u8)
        .collect();
    (inputs, targets)
}

fn floats<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// What the parity ACT trainer computes with Burn autodiff for one batch.
struct Reference {
    loss: f32,
    task_loss: f32,
    ponder_cost: f32,
    logits: Vec<f32>,
    halting_steps: Vec<usize>,
    steps_run: usize,
    gradients: GradientsParams,
}

fn burn_reference(network: &PonderNetwork, inputs: &[f32], targets: &[u8]) -> Reference {
    let device = Device::flex().autodiff();
    let settings = settings();
    let x = Tensor::<2>::from_data(TensorData::new(inputs.to_vec(), [BATCH, LENGTH]), &device);
    let target_ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let t = Tensor::<1, Int>::from_data(TensorData::new(target_ids, [BATCH]), &device);
    let forward = network
        .forward_act(x, settings.max_steps, settings.epsilon)
        .expect("valid ACT settings");
    let cross_entropy = log_softmax(forward.logits.clone(), 1)
        .gather(1, t.reshape([BATCH, 1]))
        .reshape([BATCH])
        .neg();
    let task_loss = cross_entropy.mean();
    let ponder_cost = forward.halting.ponder_cost.clone().mean();
    let loss = task_loss.clone() + ponder_cost.clone().mul_scalar(settings.ponder_weight);
    let loss_value = loss.clone().into_scalar::<f32>();
    let gradients = GradientsParams::from_grads(loss.backward(), network);
    let halting_steps = forward
        .halting
        .halting_step
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("int tensor")
        .into_iter()
        .map(|n| n as usize)
        .collect();
    Reference {
        loss: loss_value,
        task_loss: task_loss.into_scalar::<f32>(),
        ponder_cost: ponder_cost.into_scalar::<f32>(),
        logits: floats(forward.logits.detach()),
        halting_steps,
        steps_run: forward.steps_run,
        gradients,
    }
}

/// Names and parameter ids of the network's weights and biases, in layer order.
fn parameter_ids(network: &PonderNetwork) -> Vec<(String, burn::module::ParamId, bool)> {
    let names = ["input_gates", "hidden_gates", "halting", "output"];
    let mut ids = Vec::new();
    for (layer, name) in network.layers().into_iter().zip(names) {
        ids.push((format!("{name}.weight"), layer.weight.id, true));
        let bias = layer.bias.as_ref().expect("every layer has a bias");
        ids.push((format!("{name}.bias"), bias.id, false));
    }
    ids
}

fn gradient_values(
    gradients: &GradientsParams,
    id: burn::module::ParamId,
    matrix: bool,
) -> Vec<f32> {
    if matrix {
        floats(gradients.get::<2>(id).expect("gradient of a weight"))
    } else {
        floats(gradients.get::<1>(id).expect("gradient of a bias"))
    }
}

/// Returns the largest absolute difference and Burn's largest absolute value.
fn max_difference(ours: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), reference.len(), "gradient lengths differ");
    let difference = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let scale = reference.iter().map(|v| v.abs()).fold(0.0, f32::max);
    (difference, scale)
}

/// Which halting pattern a test case needs, so that a change of the drawn weights that makes
/// a case trivial fails the test instead of silently testing less.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Halting {
    /// Halting steps differ between samples and the batch stops before M.
    MixedEarlyStop,
    /// Every sample runs M steps.
    AllMaxSteps,
}

fn check_against_burn(cell: CellKind, halting_bias: f64, seed: u64, pattern: Halting) {
    let network = network(cell, halting_bias, seed);
    let (inputs, targets) = parity_batch(seed);
    let reference = burn_reference(&network, &inputs, &targets);
    match pattern {
        Halting::MixedEarlyStop => {
            let first = reference.halting_steps[0];
            assert!(
                reference.halting_steps.iter().any(|&n| n != first),
                "{cell:?}: halting steps {:?} are all equal",
                reference.halting_steps
            );
            assert!(
                reference.steps_run < MAX_STEPS,
                "{cell:?}: the batch ran all {MAX_STEPS} steps"
            );
        }
        Halting::AllMaxSteps => {
            assert!(reference.halting_steps.iter().all(|&n| n == MAX_STEPS));
        }
    }

    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let mut workspace = ActWorkspace::new();
    let mut first_run = None;
    for threads in [1, 2, 3] {
        let result = act_train_step(
            &parameters,
            &inputs,
            &targets,
            settings(),
            threads,
            &mut workspace,
        )
        .expect("valid arguments");
        let context = format!("{cell:?}, bias {halting_bias}, {threads} threads");
        let first_result = first_run.get_or_insert_with(|| (result.loss, result.gradients.clone()));
        assert_eq!(
            result.loss.to_bits(),
            first_result.0.to_bits(),
            "{context}: loss depends on threads"
        );
        assert!(
            result.gradients == &first_result.1,
            "{context}: gradients depend on threads"
        );
        assert_eq!(result.halting_steps, reference.halting_steps, "{context}");
        assert_eq!(result.steps_run, reference.steps_run, "{context}");
        assert!(
            (result.loss - reference.loss).abs() < 1e-5,
            "{context}: loss {} against {}",
            result.loss,
            reference.loss
        );
        assert!(
            (result.task_loss - reference.task_loss).abs() < 1e-5,
            "{context}: task loss"
        );
        assert!(
            (result.ponder_cost - reference.ponder_cost).abs() < 1e-5,
            "{context}: ponder cost"
        );
        let (difference, _) = max_difference(result.logits, &reference.logits);
        assert!(
            difference < 1e-5,
            "{context}: logits differ by {difference}"
        );
        for (b, row) in reference.logits.chunks_exact(2).enumerate() {
            let expected = usize::from(row[1] > row[0]);
            assert_eq!(
                result.predictions[b], expected,
                "{context}: prediction of sample {b}"
            );
        }

        let device = Device::flex().autodiff();
        let ours = gradients_params(&network, result.gradients, &device).expect("gradients");
        assert_eq!(
            ours.len(),
            reference.gradients.len(),
            "{context}: gradient count"
        );
        for (name, id, matrix) in parameter_ids(&network) {
            let expected = gradient_values(&reference.gradients, id, matrix);
            let actual = gradient_values(&ours, id, matrix);
            let (difference, scale) = max_difference(&actual, &expected);
            eprintln!(
                "{context}: {name} max difference {difference:.2e}, max |gradient| {scale:.2e}"
            );
            assert!(
                difference <= GRADIENT_TOLERANCE * scale.max(1e-6),
                "{context}: {name} differs by {difference:e}, max |gradient| {scale:e}"
            );
        }
    }
}

#[test]
fn gru_mixed_halting_matches_burn() {
    check_against_burn(CellKind::Gru, 0.0, 3, Halting::MixedEarlyStop);
}

#[test]
fn gru_max_steps_matches_burn() {
    check_against_burn(CellKind::Gru, -10.0, 4, Halting::AllMaxSteps);
}

#[test]
fn rnn_mixed_halting_matches_burn() {
    check_against_burn(CellKind::Rnn, 0.0, 5, Halting::MixedEarlyStop);
}

#[test]
fn rnn_max_steps_matches_burn() {
    check_against_burn(CellKind::Rnn, -10.0, 6, Halting::AllMaxSteps);
}

#[test]
fn gradients_feed_burn_optimizers() {
    // An SGD step with lr = 1 moves every parameter by exactly minus its gradient, so the
    // updated networks agree when the converted gradients have the ids, devices and values
    // of Burn's.
    let network = network(CellKind::Gru, 0.0, 7);
    let (inputs, targets) = parity_batch(7);
    let reference = burn_reference(&network, &inputs, &targets);
    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let mut workspace = ActWorkspace::new();
    let result = act_train_step(
        &parameters,
        &inputs,
        &targets,
        settings(),
        1,
        &mut workspace,
    )
    .expect("valid arguments");
    let device = Device::flex().autodiff();
    let ours = gradients_params(&network, result.gradients, &device).expect("gradients");
    for (name, id, matrix) in parameter_ids(&network) {
        let device_of = |gradients: &GradientsParams| {
            if matrix {
                gradients.get::<2>(id).map(|t| t.device())
            } else {
                gradients.get::<1>(id).map(|t| t.device())
            }
        };
        assert_eq!(
            device_of(&ours),
            device_of(&reference.gradients),
            "{name}: device"
        );
    }

    let mut sgd = SgdConfig::new().init();
    let expected = sgd.step(1.0, network.clone(), reference.gradients);
    let mut sgd = SgdConfig::new().init();
    let updated = sgd.step(1.0, network.clone(), ours);
    let expected = HostParameters::from_network(&expected).expect("updated parameters");
    let updated = HostParameters::from_network(&updated).expect("updated parameters");
    for ((name, actual, _), (_, wanted, _)) in updated.fields().into_iter().zip(expected.fields()) {
        let (difference, _) = max_difference(actual, wanted);
        assert!(
            difference < 1e-5,
            "{name} after SGD differs by {difference}"
        );
    }

    let ours = gradients_params(&network, result.gradients, &device).expect("gradients");
    let mut adam = AdamConfig::new().init();
    let stepped = adam.step(1e-2, network.clone(), ours);
    let stepped = HostParameters::from_network(&stepped).expect("updated parameters");
    assert_ne!(
        stepped.input_weight, parameters.input_weight,
        "Adam changed no weight"
    );
    assert!(stepped.input_weight.iter().all(|v| v.is_finite()));
}

#[test]
fn workspace_does_not_grow() {
    let network = network(CellKind::Gru, -1.0, 8);
    let (inputs, targets) = parity_batch(8);
    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let mut workspace = ActWorkspace::new();
    let first = act_train_step(
        &parameters,
        &inputs,
        &targets,
        settings(),
        2,
        &mut workspace,
    )
    .expect("valid arguments")
    .loss;
    let allocated = workspace.allocated_values();
    for _ in 0..5 {
        let loss = act_train_step(
            &parameters,
            &inputs,
            &targets,
            settings(),
            2,
            &mut workspace,
        )
        .expect("valid arguments")
        .loss;
        assert_eq!(loss, first, "a repeated step changed the loss");
        assert_eq!(
            workspace.allocated_values(),
            allocated,
            "the workspace grew"
        );
    }
}

#[test]
fn invalid_arguments_are_rejected() {
    let network = network(CellKind::Rnn, 0.0, 9);
    let (inputs, targets) = parity_batch(9);
    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let mut workspace = ActWorkspace::new();
    let mut run = |inputs: &[f32], targets: &[u8], settings: ActSettings, threads: usize| {
        act_train_step(
            &parameters,
            inputs,
            targets,
            settings,
            threads,
            &mut workspace,
        )
        .map(|result| result.loss)
        .unwrap_err()
    };
    let name_of = |error: PonderCpuError| match error {
        PonderCpuError::InvalidArgument { name, .. } => name,
        PonderCpuError::Halting(HaltingError::InvalidParameter { name, .. }) => name,
        PonderCpuError::Halting(HaltingError::InvalidShape { name, .. }) => name,
    };

    let error = run(&inputs[1..], &targets, settings(), 1);
    assert!(
        error.to_string().contains(&format!(
            "{} values, expected {}",
            BATCH * LENGTH - 1,
            BATCH * LENGTH
        )),
        "{error}"
    );
    assert_eq!(name_of(error), "inputs");

    let mut bad_targets = targets.clone();
    bad_targets[3] = 2;
    let error = run(&inputs, &bad_targets, settings(), 1);
    assert!(
        error.to_string().contains("target 2 of sample 3"),
        "{error}"
    );
    assert_eq!(name_of(error), "targets");

    for epsilon in [0.0, 1.0, -0.5, f64::NAN] {
        let error = run(
            &inputs,
            &targets,
            ActSettings {
                epsilon,
                ..settings()
            },
            1,
        );
        assert_eq!(name_of(error), "epsilon");
    }
    let error = run(
        &inputs,
        &targets,
        ActSettings {
            max_steps: 0,
            ..settings()
        },
        1,
    );
    assert_eq!(name_of(error), "max_steps");
    let error = run(
        &inputs,
        &targets,
        ActSettings {
            ponder_weight: f64::INFINITY,
            ..settings()
        },
        1,
    );
    assert_eq!(name_of(error), "ponder_weight");
    let error = run(&inputs, &targets, settings(), 0);
    assert_eq!(name_of(error), "threads");
    let error = run(&[], &[], settings(), 1);
    assert_eq!(name_of(error), "targets");

    let mut broken = parameters.clone();
    broken.hidden_bias.pop();
    let error = act_train_step(&broken, &inputs, &targets, settings(), 1, &mut workspace)
        .map(|result| result.loss)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("hidden_bias has 15 values, expected 16"),
        "{error}"
    );
}
