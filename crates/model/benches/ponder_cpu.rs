//! Time per ACT training step: the fused CPU kernel against Burn flex autodiff
//! (forward_act + parity loss + backward + GradientsParams), for a GRU ponder network.
//!
//! Every sample of the batch runs all M = 20 steps (halting bias −10), so each variant does
//! the same work. Run it after the workspace build, which it reuses because the bench profile
//! inherits the release profile:
//!
//! ```sh
//! cargo build --release --workspace --all-targets
//! cargo bench --workspace --bench ponder_cpu [-- FILTER]
//! ```

use std::time::Duration;

use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use haltlab_halting::hard::ChaCha8Rng;
use haltlab_model::ponder_cpu::{
    ActSettings, ActWorkspace, HostParameters, act_train_step, gradients_params,
};
use haltlab_model::{CellKind, PonderConfig, PonderNetwork, draw_parameters};
use rand::{Rng, SeedableRng};

const LENGTH: usize = 8;
const HIDDEN: usize = 128;
const BATCH: usize = 128;
const MAX_STEPS: usize = 20;
const HALTING_BIAS: f64 = -10.0;
const THREADS: usize = 2;
const SEED: u64 = 1;

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

fn bench_act_step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(SEED);
    let network = PonderConfig::new(LENGTH, HIDDEN, 2)
        .with_cell(CellKind::Gru)
        .with_halting_bias(HALTING_BIAS)
        .init(&device);
    draw_parameters(&network);
    let (inputs, targets) = parity_batch();
    let parameters = HostParameters::from_network(&network).expect("network parameters");
    let case = format!(
        "cell=gru/hidden={HIDDEN}/batch={BATCH}/length={LENGTH}/max_steps={MAX_STEPS}/bias={HALTING_BIAS}/seed={SEED}"
    );
    let mut group = c.benchmark_group("act_train_step");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));

    let mut workspace = ActWorkspace::new();
    for threads in [1, THREADS] {
        group.bench_function(
            BenchmarkId::new("fused", format!("{case}/threads={threads}")),
            |b| {
                b.iter(|| {
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
                })
            },
        );
    }
    // What a training loop pays per step: reading the weights, the kernel, and building Burn's
    // gradients for the optimiser.
    group.bench_function(
        BenchmarkId::new(
            "fused_with_conversions",
            format!("{case}/threads={THREADS}"),
        ),
        |b| {
            b.iter(|| {
                let parameters =
                    HostParameters::from_network(&network).expect("network parameters");
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
            })
        },
    );
    group.bench_function(BenchmarkId::new("burn_flex_autodiff", &case), |b| {
        b.iter(|| burn_step(&network, &inputs, &targets, &device))
    });
    group.finish();
}

criterion_group!(benches, bench_act_step);
criterion_main!(benches);
