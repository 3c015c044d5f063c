#!/usr/bin/env bash
# The whole test suite: install what is missing, build, lint, test, fuzz.
# Privileged tests need root and fail (not skip) without it. Each stage's
# time is printed (`== stage: N s`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# No incremental caches: CI builds a clean clone once, and they only cost disk
# (a run once failed on a full disk).
export CARGO_INCREMENTAL=0
suite_start=$(date +%s)
# Free disk at the start and the end, so a full disk is seen, not guessed.
disk() { df -h --output=avail,target . | tail -n 1 | awk '{ print "== disk: " $1 " free on " $2 }'; }
disk

# Run "$@" as the named stage and print how long it took.
stage() {
  local name=$1 start
  shift
  start=$(date +%s)
  echo "== $name"
  "$@"
  echo "== $name: $(( $(date +%s) - start )) s"
}

stage install bash tests/install.sh
stage fmt cargo fmt --all -- --check
stage fmt-policies cargo fmt --manifest-path policies/Cargo.toml --all -- --check
# The example policies (wasm32-wasip2 components) the end-to-end tests load.
stage policies cargo build --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release --locked
export AFXDP_POLICY_WASM_DIR="$PWD/policies/target/wasm32-wasip2/release" AFXDP_REQUIRE_POLICY_WASM=1
# The hostile test guests (a panicking policy, ...) the end-to-end tests load too.
stage test-guests cargo build --manifest-path host/policy/tests/guests/Cargo.toml --target wasm32-wasip2 --release --locked --target-dir target/policy-guests
stage build cargo build --workspace --all-targets --locked
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_tests() {
  {
    cargo test --manifest-path policies/Cargo.toml --workspace --locked --no-fail-fast
    cargo test --workspace --locked --no-fail-fast -- --test-threads=2
  } 2>&1 | tee "$log"
}
stage test run_tests
# Each fuzz target for a bounded time (a crash is kept as a regression input).
stage fuzz bash tests/fuzz.sh "${AFXDP_FUZZ_SECONDS:-20}"
# The bench in its bounded quick mode: proves the command works (figures
# from a loaded CI machine are not the README's table).
stage bench-quick bash tests/bench.sh --quick --json target/bench/ci-quick.json
# A qemu guest booting Debian's kernel (tests/qemu): plain XDP and an freplace
# program in a dispatcher's slot, which this host's kernel refuses (~20 s).
stage qemu-guest bash tests/qemu/xdp-freplace.sh --timeout 60
# afxdp-netdev's devlink kernel test in that guest (Debian's kernel has devlink,
# this host's may not): the kernel checks PORT_NEW/SET/DEL against devlink's
# attribute policy and refuses a missing device with ENODEV (~30 s).
stage qemu-devlink bash tests/qemu/devlink.sh --timeout 90
# Issue 9's XDP path through bpfman in that guest (tests/qemu/bpfman-xdp.sh):
# bpfman pulls the built-in program's image over HTTPS inside the guest,
# attaches it natively (afxdp-bpfman's manager, then afxdp-dp with a bpfman
# pool behind the kubelet stand-in and afxdp-cni), the unprivileged pod app
# counts exact frames, release unloads (~30-50 s of qemu).
stage qemu-bpfman bash tests/qemu/bpfman-xdp.sh --timeout 240
# A real single-node Kubernetes (tests/k8s, built from the Go module proxy
# into a versioned cache: a warm run builds nothing) up and down, cleanly.
stage k8s-node bash tests/k8s/ci.sh
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
disk
echo "== suite: $(( $(date +%s) - suite_start )) s"
