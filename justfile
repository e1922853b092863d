# haltlab tasks. `just --list` shows them.

# Shared build cache outside the checkout, so clean clones reuse the Burn build.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/haltlab-target")

# Build the haltlab binary in release mode.
build:
    cargo build --release --locked -p haltlab-cli

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

# Rerun the parity and early-exit recipes for SEEDS, then regenerate the tables and figures
# under docs/figures/ and the table in docs/reports.md. Runs go to results/reproduce/<time>/.
reproduce data="../shared/data/mnist_5k.csv.gz" seeds="1 2 3": build
    #!/usr/bin/env bash
    set -euo pipefail
    started=$(date +%s)
    haltlab="$CARGO_TARGET_DIR/release/haltlab"
    out="results/reproduce/$(date -u +%Y%m%d-%H%M%S)"
    mkdir -p "$out" docs/figures
    for seed in {{seeds}}; do
        "$haltlab" run experiments/parity_act.toml --seed "$seed" --results "$out" --quiet
        "$haltlab" run experiments/mnist_exits.toml --data {{data}} --seed "$seed" --results "$out" --quiet
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
    ' docs/reports.md > docs/reports.md.tmp && mv docs/reports.md.tmp docs/reports.md
    echo "reproduce took $(( $(date +%s) - started )) s; runs in $out"
