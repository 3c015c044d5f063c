#!/usr/bin/env bash
# Install what afxdp-rs needs on a fresh Debian machine (as root). Idempotent:
# only missing pieces are installed.
set -euo pipefail

APT_PACKAGES=(
  clang llvm libbpf-dev
  protobuf-compiler
  iproute2 ethtool
  containernetworking-plugins
  pkg-config
  docker-registry
  apache2-utils
  # the bpfman image test's registry certificate
  openssl
  # the bench's peers: libxdp's AF_XDP programs and library (tests/bench.sh)
  libxdp1 libxdp-dev
  # the qemu guest for the XDP paths this kernel refuses (tests/qemu): TCG
  # qemu, a static busybox and cpio for its initramfs, bpftool in it
  qemu-system-x86 busybox-static cpio bpftool
  # JSON in the k8s and qemu scripts (kubectl output, cargo's artifact lines)
  jq
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  case "$p" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "cargo (rustup) is required" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# Pool policies are Wasm components.
rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip2$' || rustup target add wasm32-wasip2

# Fuzzing (tests/fuzz.sh): nightly for the sanitizer build, and cargo-fuzz.
rustup toolchain list 2>/dev/null | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# bpfman's daemon for the bpfman backend's tests (host/bpfman): bpfman-rpc.
# Its build compiles bpfman's dispatchers with clang, which needs the
# multiarch include directory for <asm/types.h>.
if ! command -v bpfman-rpc >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/bpfman-rpc" ]; then
  C_INCLUDE_PATH="/usr/include/$(uname -m)-linux-gnu${C_INCLUDE_PATH:+:$C_INCLUDE_PATH}" \
    cargo install --locked bpfman-api
fi

# The libcni harness the CNI tests drive afxdp-cni through (Go from
# /usr/local/go or $GO; built once into target/libcni, nothing to do after).
# Without Go the tests build nothing and skip, or fail under CI=true.
go_bin="${GO:-/usr/local/go/bin/go}"
if [ -x "$go_bin" ]; then
  GO="$go_bin" bash "$(dirname "$0")/libcni/build.sh" >/dev/null
fi
