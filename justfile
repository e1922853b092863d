# haltlab tasks. `just --list` shows them.

# Shared build cache outside the checkout, so clean clones reuse the Burn build.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/haltlab-target")

# Build the haltlab binary in release mode. All targets, so that the features match those of
# `cargo test --workspace` and the two share one Burn build.
build:
    cargo build --release --locked --workspace --all-targets

# Run a recipe: `just run experiments/parity_act.toml`, extra flags after it.
run RECIPE *ARGS: build
    "$CARGO_TARGET_DIR/release/haltlab" run {{RECIPE}} {{ARGS}}

# Run the early-exit recipe on the bundled 5,000-image MNIST sample.
mnist *ARGS: build
    "$CARGO_TARGET_DIR/release/haltlab" run experiments/mnist_exits.toml --data ../shared/data/mnist_5k.csv.gz {{ARGS}}

# List compiled-in backends and their devices.
backends: build
    "$CARGO_TARGET_DIR/release/haltlab" backends

# Run the whole test suite, as CI does.
test:
    cargo test --workspace --release --locked

# Train the early-exit recipe and print measured time against its FLOP fraction.
bench-exits *ARGS: build
    "$CARGO_TARGET_DIR/release/haltlab" bench-exits experiments/mnist_exits.toml --data ../shared/data/mnist_5k.csv.gz {{ARGS}}

# Time haltlab against the PyTorch reference in bench/ (install: bench/README.md) on the ACT
# parity training and early-exit inference workloads; print the ratios and write
# results/bench/<time>/bench.json. Arguments, in order: the Python interpreter that has torch,
# the MNIST data file and the thread count (empty: all cores), as in
# `just bench ~/.cache/haltlab-bench-venv/bin/python`.
bench python="python3" data="../shared/data/mnist_5k.csv.gz" threads="": build
    #!/usr/bin/env bash
    set -euo pipefail
    if ! "{{python}}" -c "import torch, numpy" 2>/dev/null; then
        echo "error: {{python}} cannot import torch and numpy; install them as bench/README.md says, then run: just bench PATH/TO/python" >&2
        exit 1
    fi
    if ! [ -f "{{data}}" ]; then
        echo "error: MNIST data file {{data}} not found; pass it as the second argument: just bench PYTHON DATA" >&2
        exit 1
    fi
    out="results/bench/$(date -u +%Y%m%d-%H%M%S)"
    threads=()
    if [ -n "{{threads}}" ]; then threads=(--threads "{{threads}}"); fi
    haltlab="$CARGO_TARGET_DIR/release/haltlab"
    "$haltlab" bench act experiments/bench_act.toml --out "$out" "${threads[@]}"
    "{{python}}" bench/reference.py act "$out"
    "$haltlab" bench exits experiments/mnist_exits.toml --data "{{data}}" --out "$out" "${threads[@]}"
    "{{python}}" bench/reference.py exits "$out"
    "$haltlab" bench report "$out"

# Compare ACT, PonderNet, STE, REINFORCE and an annealed hybrid on parity over 3 seeds;
# `--full` uses the papers' sizes (for a GPU), other flags go to `haltlab compare`.
parity-compare *ARGS: build
    #!/usr/bin/env bash
    set -euo pipefail
    set_file=experiments/parity_compare.toml
    args=()
    for arg in {{ARGS}}; do
        if [ "$arg" = "--full" ]; then set_file=experiments/parity_compare_full.toml; else args+=("$arg"); fi
    done
    "$CARGO_TARGET_DIR/release/haltlab" compare "$set_file" "${args[@]}"

# Rerun the parity and early-exit recipes for each seed, then regenerate the tables and figures
# under docs/figures/ and the table in docs/reports.md (scripts/reproduce.sh does the work).
# `args` is passed to every `haltlab run`. Arguments are positional, so a quick check is
# `just reproduce ../shared/data/mnist_5k.csv.gz 1 "--epochs 5"`.
reproduce data="../shared/data/mnist_5k.csv.gz" seeds="1 2 3" args="":
    scripts/reproduce.sh "{{data}}" "{{seeds}}" "{{args}}"
