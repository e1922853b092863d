#!/usr/bin/env bash
# GPU check: on a machine with a GPU, build in release mode, run the backend agreement tests on
# the real device, run the parity and early-exit recipes, and print a throughput table per
# backend. Everything is written under one folder (first argument, default gpu-check-out).
#
# Usage: scripts/gpu-check.sh [OUT_DIR] [MNIST_DATA]
# MNIST_DATA defaults to ../shared/data/mnist_5k.csv.gz. COMPARE_SECONDS (default 240) bounds
# the comparison and COMPARE_JOBS (default 8) sets how many of its runs share the GPU.
# NOTE: written for a GPU machine and not yet run on one; on lavapipe it runs, slowly.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-gpu-check-out}"
data="${2:-../shared/data/mnist_5k.csv.gz}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/haltlab-target}"
export HALTLAB_REQUIRE_WGPU=1
bin="$CARGO_TARGET_DIR/release/haltlab"

echo "== build" | tee "$out/log.txt"
# All targets, so the test below reuses this build instead of compiling Burn a second time.
cargo build --release --locked --workspace --all-targets 2>&1 | tail -n 3 | tee -a "$out/log.txt"
"$bin" backends | tee "$out/backends.txt"

echo "== backend agreement on this machine's devices" | tee -a "$out/log.txt"
cargo test --release --locked --workspace --test backend_agreement 2>&1 | tee -a "$out/log.txt" | tail -n 3

# The full-size comparison (64-element parity, M = 20, 100 epochs, 30 runs) is the longest
# part, so it gets a fixed share of the script's 8-minute budget. Rows are written in table order, so a
# method's row appears once it and every method above it have finished.
: "${COMPARE_SECONDS:=240}"
echo "== parity comparison at full size on wgpu (at most $COMPARE_SECONDS s)" | tee -a "$out/log.txt"
timeout "$COMPARE_SECONDS" "$bin" compare experiments/parity_compare_full.toml --backend wgpu \
    --jobs "${COMPARE_JOBS:-8}" --results "$out/results" >> "$out/log.txt" 2>&1 \
    || echo "comparison stopped after $COMPARE_SECONDS s or failed; finished rows are in $out/results/parity_compare_full" | tee -a "$out/log.txt"

# Throughput: training samples/s over the training time, and inference samples/s over the time
# after training (the evaluations).
printf 'backend\trecipe\ttrain_samples_per_s\tinference_samples_per_s\taccuracy\n' > "$out/throughput.tsv"
for backend in flex wgpu; do
    for recipe in parity_act mnist_exits; do
        args=(run "experiments/$recipe.toml" --backend "$backend" --quiet --results "$out/results")
        if [ "$recipe" = mnist_exits ]; then args+=(--data "$data"); fi
        echo "== $recipe on $backend" | tee -a "$out/log.txt"
        "$bin" "${args[@]}" >> "$out/log.txt" 2>&1 || { echo "failed: $recipe on $backend" | tee -a "$out/log.txt"; continue; }
        result="$(ls -td "$out/results/$recipe"/*/ | head -n 1)result.json"
        python3 - "$result" "$backend" "$recipe" >> "$out/throughput.tsv" <<'PY'
import json, sys
path, backend, recipe = sys.argv[1:]
r = json.load(open(path))
t = r["recipe"]["training"]
# Optimiser steps times batch size; the last batch of an MNIST epoch may be smaller.
trained = r["history"][-1]["step"] * t["batch_size"]
test = r["evaluation"]["test"]
inference_seconds = max(r["wall_seconds"] - r["training_seconds"], 1e-9)
print(f'{backend}\t{recipe}\t{trained / r["training_seconds"]:.0f}\t{test["samples"] / inference_seconds:.0f}\t{test["accuracy"]:.4f}')
PY
    done
done

echo "== throughput (samples/s)"
column -t -s $'\t' "$out/throughput.tsv"
