//! Criterion micro-benchmarks of hard early-exit inference on the Flex CPU device.
//!
//! The network is an untrained `ExitMlp` with the layout of experiments/mnist_exits.toml:
//! 784 inputs, four hidden layers of 1024 units, and a 10-class exit head after each. The
//! benchmarks time `infer_hard` (confidence exits with batch compaction) next to `infer_full`
//! (every layer for every row, no exit logic) at batch 1 and 256, and `replay_exits` on head
//! logits computed beforehand. Inputs are uniform pixel values in [0, 1) from a ChaCha8
//! generator, and the weights come from the device seeded with the same seed.
//!
//! The confidence threshold is the median over the rows of each row's highest confidence at
//! the first three heads, so about half the rows exit early, at different heads, and the
//! rest run to the last head. The benchmark checks before timing that at least two exit heads
//! occur and prints how many rows exit at each head. At batch 1 each iteration takes the next
//! of the 256 rows, so the mean covers the same mix of exit heads.
//!
//! Run it after the workspace build, which it reuses because the bench profile inherits the
//! release profile:
//!
//! ```sh
//! cargo build --release --workspace --all-targets
//! cargo bench --workspace --bench exits [-- FILTER]
//! ```

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use haltlab_halting::exits::{ConfidenceRule, row_confidence};
use haltlab_halting::hard::ChaCha8Rng;
use haltlab_model::exit_engine::{ExitStages, infer_full, infer_hard, read_floats, replay_exits};
use haltlab_model::{ExitMlp, ExitMlpConfig};
use rand::{Rng, SeedableRng};

/// Seed of the input generator and of the device that initialises the weights.
const SEED: u64 = 7;
const INPUT_SIZE: usize = 784;
const HIDDEN_SIZES: [usize; 4] = [1024; 4];
const CLASSES: usize = 10;
/// Rows of the large batch, and the rows that the batch-1 benchmarks cycle through.
const ROWS: usize = 256;

fn network(device: &Device) -> ExitMlp {
    device.seed(SEED);
    ExitMlpConfig::new(INPUT_SIZE, HIDDEN_SIZES.to_vec(), CLASSES).init(device)
}

fn inputs(device: &Device) -> Tensor<2> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let values: Vec<f32> = (0..ROWS * INPUT_SIZE)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    Tensor::from_data(TensorData::new(values, [ROWS, INPUT_SIZE]), device)
}

/// Returns the median over the rows of each row's highest confidence at the heads where the
/// rule decides (all but the last).
fn median_early_confidence(head_logits: &[Vec<f32>]) -> f32 {
    let deciding_heads = &head_logits[..head_logits.len() - 1];
    let mut best: Vec<f32> = (0..ROWS)
        .map(|row| {
            deciding_heads
                .iter()
                .map(|logits| row_confidence(&logits[row * CLASSES..(row + 1) * CLASSES]))
                .fold(0.0, f32::max)
        })
        .collect();
    best.sort_by(f32::total_cmp);
    best[ROWS / 2]
}

/// Counts the rows that exit at each head, counted from 1.
fn exit_histogram(exit_layers: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut counts = vec![0; HIDDEN_SIZES.len()];
    for layer in exit_layers {
        counts[layer - 1] += 1;
    }
    counts
}

/// Checks that rows leave at two or more heads, so `infer_hard` compacts the batch.
fn assert_mixed_exits(label: &str, histogram: &[usize]) {
    let heads_used = histogram.iter().filter(|&&count| count > 0).count();
    assert!(
        heads_used >= 2,
        "{label}: all rows exit at one head ({histogram:?}), so no compaction is measured"
    );
    eprintln!("{label}: rows exiting at heads 1..=4: {histogram:?}");
}

fn bench_exits(c: &mut Criterion) {
    let device = Device::flex();
    let model = network(&device);
    let batch = inputs(&device);
    let single_rows: Vec<Tensor<2>> = (0..ROWS)
        .map(|row| batch.clone().slice([row..row + 1, 0..INPUT_SIZE]))
        .collect();

    let head_logits: Vec<Vec<f32>> = model
        .forward_all(batch.clone())
        .into_iter()
        .map(read_floats)
        .collect();
    let threshold = median_early_confidence(&head_logits);
    let mut rule = ConfidenceRule { threshold };

    let batched = infer_hard(&model, batch.clone(), &mut rule);
    assert_mixed_exits(
        &format!("batch={ROWS}"),
        &exit_histogram(batched.exit_layer.iter().copied()),
    );
    let one_at_a_time = single_rows
        .iter()
        .map(|row| infer_hard(&model, row.clone(), &mut rule).exit_layer[0]);
    assert_mixed_exits("batch=1", &exit_histogram(one_at_a_time));

    let layout = format!(
        "exit_mlp/{INPUT_SIZE}-{}x{}-{CLASSES}",
        HIDDEN_SIZES.len(),
        HIDDEN_SIZES[0]
    );
    let mut group = c.benchmark_group(layout);
    // `infer_full` at batch 256 took about 25 ms on a 2-core Intel Xeon, so ten samples keep a
    // run short.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    let mut next_row = 0;
    group.bench_function(
        BenchmarkId::new(
            "infer_hard",
            format!("batch=1/threshold={threshold:.4}/seed={SEED}"),
        ),
        |b| {
            b.iter(|| {
                let row = single_rows[next_row % ROWS].clone();
                next_row += 1;
                black_box(infer_hard(&model, row, &mut rule))
            })
        },
    );
    let mut next_row = 0;
    group.bench_function(
        BenchmarkId::new("infer_full", format!("batch=1/seed={SEED}")),
        |b| {
            b.iter(|| {
                let row = single_rows[next_row % ROWS].clone();
                next_row += 1;
                black_box(infer_full(&model, row))
            })
        },
    );
    group.bench_function(
        BenchmarkId::new(
            "infer_hard",
            format!("batch={ROWS}/threshold={threshold:.4}/seed={SEED}"),
        ),
        |b| b.iter(|| black_box(infer_hard(&model, batch.clone(), &mut rule))),
    );
    group.bench_function(
        BenchmarkId::new("infer_full", format!("batch={ROWS}/seed={SEED}")),
        |b| b.iter(|| black_box(infer_full(&model, batch.clone()))),
    );
    group.bench_function(
        BenchmarkId::new(
            "replay_exits",
            format!("batch={ROWS}/threshold={threshold:.4}/seed={SEED}"),
        ),
        |b| b.iter(|| black_box(replay_exits(&head_logits, &[], CLASSES, &mut rule))),
    );
    group.finish();
}

/// Times one hidden layer with its head (`forward_stage` of stage 2, 1024 → 1024 → 10) at the
/// row counts that compaction leaves. Both forms run: `Linear`'s x·W and the feature-major W·hᵀ
/// of `ExitMlp::for_inference`. The row gather of compaction is timed too. The time per row
/// shows how much of a compacted batch's cost does not shrink with its rows.
fn bench_stage(c: &mut Criterion) {
    let device = Device::flex();
    let model = network(&device);
    let hidden = model.forward_stage(0, inputs(&device)).0;
    let mut group = c.benchmark_group(format!(
        "exit_mlp_stage/{}x{}",
        HIDDEN_SIZES[0], HIDDEN_SIZES[1]
    ));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(2));
    let prepared = model.for_inference();
    for rows in [256, 192, 128, 96, 80, 64, 48, 32, 16, 8, 1] {
        let part = hidden.clone().slice([0..rows, 0..HIDDEN_SIZES[0]]);
        // The inference form takes later stages' hidden states feature-major.
        let columns = Tensor::<2>::from_data(part.clone().transpose().into_data(), &device);
        group.bench_function(
            BenchmarkId::new(
                "forward_stage_inference_layout",
                format!("rows={rows}/seed={SEED}"),
            ),
            |b| b.iter(|| black_box(read_floats(prepared.forward_stage(1, columns.clone()).1))),
        );
        group.bench_function(
            BenchmarkId::new("forward_stage", format!("rows={rows}/seed={SEED}")),
            |b| b.iter(|| black_box(read_floats(model.forward_stage(1, part.clone()).1))),
        );
    }
    // Keeps every other row, the gather of a compaction step where half the rows exit.
    let kept: Vec<i64> = (0..ROWS as i64).step_by(2).collect();
    let indices =
        Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(kept, [ROWS / 2]), &device);
    group.bench_function(
        BenchmarkId::new("select_rows", format!("from={ROWS}/kept={}", ROWS / 2)),
        |b| b.iter(|| black_box(hidden.clone().select(0, indices.clone()))),
    );
    group.finish();
}

criterion_group!(benches, bench_exits, bench_stage);
criterion_main!(benches);
