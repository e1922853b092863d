//! Criterion micro-benchmarks of the halting functions on the Flex CPU device: ACT halting with
//! Graves' accumulation, the PonderNet loss, and the exit rules that early-exit inference runs
//! at every head.
//!
//! Inputs come from a ChaCha8 generator with a fixed seed, and each benchmark id names the sizes,
//! parameters and seed, e.g. `act_halting/batch=128/steps=20/features=2/seed=7`. Tensor
//! benchmarks end each iteration with `Device::sync`, so a backend that queues work would
//! still be timed to completion.
//!
//! Run it after the workspace build, which it reuses because the bench profile inherits the
//! release profile:
//!
//! ```sh
//! cargo build --release --workspace --all-targets
//! cargo bench --workspace --bench halting [-- FILTER]
//! ```

use std::hint::black_box;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use haltlab_halting::act::{DEFAULT_EPSILON, act_halting};
use haltlab_halting::exits::{
    ConfidenceRule, EntropyRule, ExitRule, GateRule, PatienceRule, confidence_exits, entropy_exits,
};
use haltlab_halting::pondernet::{expected_loss, halting_distribution, kl_to_geometric_prior};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of every generator in this file.
const SEED: u64 = 7;

/// Returns `len` values drawn uniformly from `[low, high)`.
fn uniform(rng: &mut ChaCha8Rng, len: usize, low: f32, high: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(low..high)).collect()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn sync(device: &Device) {
    device.sync().expect("the device finishes its queued work");
}

/// ACT halting decision plus the weighted sum of the step outputs, the ACT part of a forward
/// pass once all M steps have run.
fn bench_act(c: &mut Criterion) {
    let device = Device::flex();
    let steps = 20;
    let features = 2;
    let mut group = c.benchmark_group("act_halting");
    for batch in [128, 1024] {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        // hₙ uniform in [0, 0.3) has mean 0.15, so Σhₙ reaches 1 − ε = 0.99 after about 7
        // steps: halting steps spread out rather than all landing on step 1 or step M.
        let halting = tensor(
            uniform(&mut rng, batch * steps, 0.0, 0.3),
            [batch, steps],
            &device,
        );
        let outputs = tensor(
            uniform(&mut rng, batch * steps * features, -1.0, 1.0),
            [batch, steps, features],
            &device,
        );
        let id = format!("batch={batch}/steps={steps}/features={features}/seed={SEED}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                let decision = act_halting(halting.clone(), DEFAULT_EPSILON)
                    .expect("ε = 0.01 is valid and there are 20 steps");
                let output = decision.accumulate(outputs.clone());
                sync(&device);
                black_box(output)
            })
        });
    }
    group.finish();
}

/// PonderNet loss as training computes it: the halting distribution from λ, the expected step
/// loss (reconstruction) and the KL to the truncated geometric prior, both averaged over the
/// batch. Forward only, without a backward pass.
fn bench_pondernet_loss(c: &mut Criterion) {
    let device = Device::flex();
    let batch = 128;
    let steps = 20;
    let lambda_prior = 0.2;
    let kl_weight = 0.01;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let lambda = tensor(
        uniform(&mut rng, batch * steps, 0.0, 1.0),
        [batch, steps],
        &device,
    );
    let step_losses = tensor(
        uniform(&mut rng, batch * steps, 0.0, 2.0),
        [batch, steps],
        &device,
    );

    let id = format!(
        "batch={batch}/steps={steps}/lambda_p={lambda_prior}/kl_weight={kl_weight}/seed={SEED}"
    );
    c.bench_function(&format!("pondernet_loss/{id}"), |b| {
        b.iter(|| {
            let p = halting_distribution(lambda.clone());
            let reconstruction = expected_loss(p.clone(), step_losses.clone()).mean();
            let kl = kl_to_geometric_prior(p, lambda_prior)
                .expect("λ_p = 0.2 is a valid prior")
                .mean();
            let loss = reconstruction + kl.mul_scalar(kl_weight);
            sync(&device);
            black_box(loss)
        })
    });
}

/// Checks that a rule lets some rows exit and keeps others, so its timing covers both outcomes.
fn assert_splits_rows(rule: &str, decisions: &[bool]) {
    let exits = decisions.iter().filter(|&&exit| exit).count();
    assert!(
        exits > 0 && exits < decisions.len(),
        "the {rule} rule exits {exits} of {} rows; pick a threshold that splits them",
        decisions.len()
    );
}

/// Host-side exit decisions of the four rules on one head's logits, and the device-side
/// confidence and entropy masks on the same logits.
fn bench_exit_rules(c: &mut Criterion) {
    let device = Device::flex();
    let rows = 256;
    let classes = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    // Logits in [−4, 4) give a spread of confidences and entropies, and the checks below make
    // sure that both thresholds split the rows.
    let previous_head = uniform(&mut rng, rows * classes, -4.0, 4.0);
    let logits = uniform(&mut rng, rows * classes, -4.0, 4.0);
    let gates = uniform(&mut rng, rows, 0.0, 1.0);
    let samples: Vec<usize> = (0..rows).collect();
    let confidence_threshold = 0.5;
    let entropy_threshold = 1.5;
    let patience = 1;
    let gate_threshold = 0.5;
    let suffix = format!("rows={rows}/classes={classes}/seed={SEED}");
    assert_splits_rows(
        "confidence",
        &ConfidenceRule {
            threshold: confidence_threshold,
        }
        .decide(1, &logits, classes, &samples),
    );
    assert_splits_rows(
        "entropy",
        &EntropyRule {
            threshold: entropy_threshold,
        }
        .decide(1, &logits, classes, &samples),
    );

    let mut group = c.benchmark_group("exit_rule");
    let mut confidence = ConfidenceRule {
        threshold: confidence_threshold,
    };
    group.bench_function(
        format!("confidence/threshold={confidence_threshold}/{suffix}"),
        |b| b.iter(|| black_box(confidence.decide(1, &logits, classes, &samples))),
    );
    let mut entropy = EntropyRule {
        threshold: entropy_threshold,
    };
    group.bench_function(
        format!("entropy/threshold={entropy_threshold}/{suffix}"),
        |b| b.iter(|| black_box(entropy.decide(1, &logits, classes, &samples))),
    );

    // Patience keeps per-sample state. Each iteration decides at head 2 from the state that
    // head 1 left, so every iteration does the same work.
    let mut after_first_head = PatienceRule::new(patience);
    after_first_head.start(rows);
    after_first_head.decide(0, &previous_head, classes, &samples);
    group.bench_function(format!("patience/patience={patience}/{suffix}"), |b| {
        b.iter_batched_ref(
            || after_first_head.clone(),
            |rule| black_box(rule.decide(1, &logits, classes, &samples)),
            BatchSize::SmallInput,
        )
    });

    // The engine stores the gate values of the running rows before every decision, so the
    // copy in `set_gates` is part of the timed work.
    let mut gate = GateRule::new(gate_threshold);
    group.bench_function(format!("gate/threshold={gate_threshold}/{suffix}"), |b| {
        b.iter(|| {
            gate.set_gates(&gates);
            black_box(gate.decide(1, &logits, classes, &samples))
        })
    });

    let logits_tensor = tensor(logits.clone(), [rows, classes], &device);
    group.bench_function(
        format!("confidence_tensor/threshold={confidence_threshold}/{suffix}"),
        |b| {
            b.iter(|| {
                let exits = confidence_exits(logits_tensor.clone(), confidence_threshold as f64);
                sync(&device);
                black_box(exits)
            })
        },
    );
    group.bench_function(
        format!("entropy_tensor/threshold={entropy_threshold}/{suffix}"),
        |b| {
            b.iter(|| {
                let exits = entropy_exits(logits_tensor.clone(), entropy_threshold as f64);
                sync(&device);
                black_box(exits)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_act, bench_pondernet_loss, bench_exit_rules);
criterion_main!(benches);
