#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, CLI and property tests, then the
# integration tests against real tansu brokers (each test starts its own broker on a free port;
# run one at a time so this 2-core machine's brokers and daemons don't starve each other).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --lib --bins --benches --test cli --test robustness
cargo test --locked --test pipeline --test control --test opinion -- --test-threads=1
