//! Time per ACT training step: the fused CPU kernel against Burn flex autodiff
//! (forward_act + parity loss + backward + GradientsParams), for a GRU ponder network.
//!
//! Run with `cargo bench --bench ponder_cpu`, or run the release-built binary
//! `target/release/deps/ponder_cpu-* --bench`. It prints the median and minimum over
//! `SAMPLES` timed steps after `WARMUP` untimed ones.
//!
//! NOTE: a hand-written timing loop, not criterion: adding criterion 0.7 to this crate changes
//! the features of ciborium and either, which Burn depends on, and so rebuilds Burn.

use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use haltlab_halting::hard::ChaCha8Rng;
use haltlab_model::ponder_cpu::{
    ActSettings, ActWorkspace, HostParameters, act_train_step, gradients_params,
};
use haltlab_model::{CellKind, PonderConfig, PonderNetwork};
use rand::{Rng, SeedableRng};

const LENGTH: usize = 8;
const HIDDEN: usize = 128;
const BATCH: usize = 128;
const MAX_STEPS: usize = 20;
const HALTING_BIAS: f64 = -10.0;
const THREADS: usize = 2;
const SEED: u64 = 1;
const WARMUP: usize = 5;
const SAMPLES: usize = 30;

struct DrawParameters;

impl ModuleVisitor for DrawParameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

fn settings() -> ActSettings {
    ActSettings {
        max_steps: MAX_STEPS,
        epsilon: 0.01,
        ponder_weight: 0.01,
    }
}

fn parity_batch() -> (Vec<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let inputs: Vec<f32> = (0..BATCH * LENGTH)
        .map(|_| rng.random_range(-1i32..=1) as f32)
        .collect();
    let targets = inputs
        .chunks_exact(LENGTH)
        .map(|row| (row.iter().filter(|&&v| v > 0.0).count() % 2) as u8)
        .collect();
    (inputs, targets)
}

fn burn_step(network: &PonderNetwork, inputs: &[f32], targets: &[u8], device: &Device) -> f32 {
    let settings = settings();
    let x = Tensor::<2>::from_data(TensorData::new(inputs.to_vec(), [BATCH, LENGTH]), device);
    let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let t = Tensor::<1, Int>::from_data(TensorData::new(ids, [BATCH]), device);
    let forward = network
        .forward_act(x, settings.max_steps, settings.epsilon)
        .expect("valid ACT settings");
    let task_loss = log_softmax(forward.logits, 1)
        .gather(1, t.reshape([BATCH, 1]))
        .reshape([BATCH])
        .neg()
        .mean();
    let loss = task_loss
        + forward
            .halting
            .ponder_cost
            .mean()
            .mul_scalar(settings.ponder_weight);
    let value = loss.clone().into_scalar::<f32>();
    let gradients = GradientsParams::from_grads(loss.backward(), network);
    assert!(!gradients.is_empty());
    value
}

/// Times `step` and prints the median and minimum.
fn measure(id: &str, mut step: impl FnMut() -> f32) {
    for _ in 0..WARMUP {
        std::hint::black_box(step());
    }
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(step());
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{id}: median {:.3} ms, min {:.3} ms over {SAMPLES} steps",
        times[SAMPLES / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

fn main() {
    let device = Device::flex().autodiff();
    device.seed(SEED);
    let network = PonderConfig::new(LENGTH, HIDDEN, 2)
        .with_cell(CellKind::Gru)
        .with_halting_bias(HALTING_BIAS)
        .init(&device);
    network.visit(&mut DrawParameters);
    let (inputs, targets) = parity_batch();
    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let case = format!(
        "gru/hidden {HIDDEN}/batch {BATCH}/length {LENGTH}/max_steps {MAX_STEPS}/bias {HALTING_BIAS}"
    );

    let mut workspace = ActWorkspace::new();
    for threads in [1, THREADS] {
        measure(&format!("fused/{case}/threads {threads}"), || {
            act_train_step(
                &parameters,
                &inputs,
                &targets,
                settings(),
                threads,
                &mut workspace,
            )
            .expect("valid arguments")
            .loss
        });
    }
    // What a training loop pays per step: reading the weights, the kernel, and building Burn's
    // gradients for the optimiser.
    measure(
        &format!("fused_with_conversions/{case}/threads {THREADS}"),
        || {
            let parameters = HostParameters::from_network(&network).expect("network parameters");
            let result = act_train_step(
                &parameters,
                &inputs,
                &targets,
                settings(),
                THREADS,
                &mut workspace,
            )
            .expect("valid arguments");
            let loss = result.loss;
            let gradients =
                gradients_params(&network, result.gradients, &device).expect("gradients");
            assert!(!gradients.is_empty());
            loss
        },
    );
    measure(&format!("burn_flex_autodiff/{case}"), || {
        burn_step(&network, &inputs, &targets, &device)
    });
}
