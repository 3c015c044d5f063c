#!/usr/bin/env bash
# The whole test suite: install what is missing, build, lint, test.
# Privileged tests need root and fail (not skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
