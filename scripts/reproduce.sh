#!/usr/bin/env bash
# Reruns the parity and early-exit recipes for each seed, then regenerates the tables and
# figures under docs/figures/ and the table in docs/reports.md.
#
# Usage: scripts/reproduce.sh [MNIST_DATA] [SEEDS] [RUN_ARGS]
#   MNIST_DATA  MNIST CSV file (default ../shared/data/mnist_5k.csv.gz)
#   SEEDS       space-separated seeds (default "1 2 3")
#   RUN_ARGS    extra flags for every `haltlab run`, such as "--epochs 5" for a quick check
# Runs go to results/reproduce/<UTC time>/; earlier runs are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

data="${1:-../shared/data/mnist_5k.csv.gz}"
seeds="${2:-1 2 3}"
run_args="${3:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/haltlab-target}"

started=$(date +%s)
cargo build --release --locked --workspace --all-targets
haltlab="$CARGO_TARGET_DIR/release/haltlab"
out="results/reproduce/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out" docs/figures

for seed in $seeds; do
    # shellcheck disable=SC2086 # run_args holds several flags
    "$haltlab" run experiments/parity_act.toml --seed "$seed" --results "$out" --quiet $run_args
    # shellcheck disable=SC2086
    "$haltlab" run experiments/mnist_exits.toml --data "$data" --seed "$seed" --results "$out" \
        --quiet $run_args
done

"$haltlab" table "$out" --out docs/figures/table.md
"$haltlab" table "$out" --format latex --out docs/figures/table.tex
"$haltlab" table "$out" --format csv --out docs/figures/table.csv
"$haltlab" plot "$out" --out docs/figures

# Replace the table between the markers in docs/reports.md with the new one.
awk -v table=docs/figures/table.md '
    /<!-- table:start -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
    /<!-- table:end -->/ { skip = 0 }
    !skip { print }
' docs/reports.md > docs/reports.md.tmp
mv docs/reports.md.tmp docs/reports.md

echo "reproduce took $(( $(date +%s) - started )) s (seeds: $seeds; run flags: ${run_args:-none}); runs in $out"
