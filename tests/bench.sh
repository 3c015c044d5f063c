#!/usr/bin/env bash
# The data-path bench (tests/bench): one table, every row a ratio against a
# floor or a peer measured in the same run, also written as JSON
# (default target/bench/latest.json). As root.
#
#   bash tests/bench.sh                 # the full bench (minutes)
#   bash tests/bench.sh --quick         # bounded: proves it works (CI)
#   bash tests/bench.sh --section prog-cost --json /tmp/t.json
#   (sections: prog-cost, rx-rate, control, scale, bpfman)
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [[ " $* " != *" --json "* ]]; then
  mkdir -p target/bench
  args+=(--json target/bench/latest.json)
fi
# afxdp-dp and afxdp-cni: the control-plane and scale sections run a node
# (tests/bench/src/control.rs, scale_dp.rs). --quick only proves the command
# works, so it runs the debug build the suite's build stage already made (a
# release build of afxdp-dp links wasmtime and kube: many CPU-minutes);
# figures worth reading come from the release build of a full run.
profile=release
if [[ " $* " == *" --quick "* ]]; then
  profile=debug
fi
cargo build --locked $([[ $profile == release ]] && echo --release) \
  -p afxdp-bench -p afxdp-pod-app -p afxdp-dp -p afxdp-cni
# The example policies the control-plane and scale rows load.
if [[ -z ${AFXDP_POLICY_WASM_DIR:-} ]]; then
  cargo build --locked --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release
fi
# The libxdp peer of the receive-rate section (Debian's libxdp-dev).
mkdir -p target/bench
src=tests/bench/c/xsk_rx_libxdp.c bin=target/bench/xsk-rx-libxdp
if [[ ! -x $bin || $src -nt $bin ]]; then
  cc -O2 -Wall -Werror -o "$bin" "$src" -lxdp -lbpf
fi
exec "target/$profile/afxdp-bench" "${args[@]}"
