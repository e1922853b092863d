//! Criterion micro-benchmark of one step of the ACT loop in `PonderNetwork::forward_act` on the
//! Flex CPU device. The step is a GRU `step`, the sigmoid of its halting logit, the running sum
//! of the halting values and the `all_halted` check, which reads one value back to the host.
//!
//! The network has the sizes of experiments/parity_act.toml (8 inputs, a GRU state of 128,
//! 2 classes, halting bias −2) at its training batch of 128. The weights come from the device
//! seeded with the seed in the benchmark id, and the inputs are random ±1 parity vectors from a
//! ChaCha8 generator with the same seed. The timed step is step 2, which uses the projection of
//! the input without the first-step flag, as every step after the first does.
//!
//! Run it after the workspace build, which it reuses because the bench profile inherits the
//! release profile:
//!
//! ```sh
//! cargo build --release --workspace --all-targets
//! cargo bench --workspace --bench act_step [-- FILTER]
//! ```

use std::hint::black_box;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use haltlab_halting::act::{DEFAULT_EPSILON, all_halted};
use haltlab_halting::hard::ChaCha8Rng;
use haltlab_model::{CellKind, PonderConfig};
use rand::{Rng, SeedableRng};

const SEED: u64 = 7;

fn bench_act_step(c: &mut Criterion) {
    let device = Device::flex();
    let batch = 128;
    let input_size = 8;
    let hidden_size = 128;
    let halting_bias = -2.0;

    device.seed(SEED);
    let network = PonderConfig::new(input_size, hidden_size, 2)
        .with_cell(CellKind::Gru)
        .with_halting_bias(halting_bias)
        .init(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let values: Vec<f32> = (0..batch * input_size)
        .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
        .collect();
    let inputs = Tensor::<2>::from_data(TensorData::new(values, [batch, input_size]), &device);

    let projected = network.project_input(inputs);
    let first = network.step(&projected, network.initial_state(batch, &device), 1);
    let state = first.state;
    let cumulative = sigmoid(first.halting_logit);
    // With bias −2 a sample needs about 9 steps to halt, so the check after step 2 returns
    // false and the loop goes on, the common case inside the loop.
    let second = network.step(&projected, state.clone(), 2);
    assert!(
        !all_halted(
            cumulative.clone() + sigmoid(second.halting_logit),
            DEFAULT_EPSILON
        ),
        "every sample halted by step 2, so the timed check is not the common case"
    );

    let id = format!("batch={batch}/input={input_size}/hidden={hidden_size}/cell=gru/seed={SEED}");
    c.bench_function(&format!("act_loop_step/{id}"), |b| {
        b.iter(|| {
            let output = network.step(&projected, state.clone(), 2);
            let cumulative = cumulative.clone() + sigmoid(output.halting_logit).detach();
            black_box(all_halted(cumulative, DEFAULT_EPSILON));
            black_box(output.logits)
        })
    });
}

criterion_group!(benches, bench_act_step);
criterion_main!(benches);
