#!/usr/bin/env bash
# The whole test suite: install what is missing, build, lint, test.
# Privileged tests need root and fail (not skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo fmt --manifest-path policies/Cargo.toml --all -- --check
# The example policies (wasm32-wasip2 components) the end-to-end tests load.
cargo build --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release --locked
export AFXDP_POLICY_WASM_DIR="$PWD/policies/target/wasm32-wasip2/release" AFXDP_REQUIRE_POLICY_WASM=1
# The hostile test guests (a panicking policy, ...) the end-to-end tests load too.
cargo build --manifest-path host/policy/tests/guests/Cargo.toml --target wasm32-wasip2 --release --locked --target-dir target/policy-guests
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
{
  cargo test --manifest-path policies/Cargo.toml --workspace --locked --no-fail-fast
  cargo test --workspace --locked --no-fail-fast -- --test-threads=2
} 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
