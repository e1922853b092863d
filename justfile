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

# Rerun the parity and early-exit recipes for each seed, then regenerate the tables and figures
# under docs/figures/ and the table in docs/reports.md (scripts/reproduce.sh does the work).
# `args` is passed to every `haltlab run`, such as args="--epochs 5" for a quick check.
reproduce data="../shared/data/mnist_5k.csv.gz" seeds="1 2 3" args="":
    scripts/reproduce.sh "{{data}}" "{{seeds}}" "{{args}}"
