#!/usr/bin/env bash
# GPU check: on a machine with a GPU, build in release mode, run the backend agreement tests on
# the real device, run the parity and early-exit recipes, and print a throughput table per
# backend. Everything is written under one folder (first argument, default gpu-check-out).
#
# Usage: scripts/gpu-check.sh [OUT_DIR] [MNIST_DATA]
# MNIST_DATA defaults to ../shared/data/mnist_5k.csv.gz.
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
cargo build --release --locked -p haltlab-cli 2>&1 | tail -n 3 | tee -a "$out/log.txt"
"$bin" backends | tee "$out/backends.txt"

echo "== backend agreement on this machine's devices" | tee -a "$out/log.txt"
cargo test --release --locked -p haltlab-cli --test backend_agreement 2>&1 | tee -a "$out/log.txt" | tail -n 3

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
