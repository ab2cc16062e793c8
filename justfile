# simbench recipes (https://github.com/casey/just). Each is one cargo command.

# Run a shipped scenario: `just run smoke`
run scenario="smoke" *args="":
    cargo run --release -p sim --bin simbench -- run {{scenario}} {{args}}

# The test suite (what CI runs)
test:
    cargo test --workspace --locked

# Every shipped scenario twice: expectations hold and digests repeat (as CI runs it)
check *args="":
    cargo run --release -p sim --bin simbench -- check {{args}}

# Formatting and lints, as required before a commit
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# One scenario over many seeds: `just sweep smoke 1..100`
sweep scenario seeds="1..50":
    cargo run --release -p sim --bin simbench -- sweep {{scenario}} --seeds {{seeds}}

# Speed and memory of the shipped scenarios: `just bench fleet-day`
bench filter="" *args="":
    cargo run --release -p sim --bin simbench -- bench --filter '{{filter}}' {{args}}
