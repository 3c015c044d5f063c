#!/usr/bin/env bash
# The qemu guest's first test: in the guest (Debian's own kernel, TCG), plain
# XDP on a veth and an freplace (BPF_PROG_TYPE_EXT) program in a dispatcher's
# slot, the path bpfman takes for every XDP attach and this host's kernel
# refuses. Builds the BPF objects (clang) and the libbpf loader (gcc) here.
#   xdp-freplace.sh [guest.sh options]
# Fails (never skips) when something it needs is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d /tmp/afxdp-qemu-xdp.XXXXXX)
trap 'rm -rf "$out"' EXIT

build() {
  local p
  # -g: the dispatcher's slot needs BTF to be a freplace target.
  for p in xdp_pass dispatcher ext_pass; do
    clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
      -c "$here/xdp/$p.bpf.c" -o "$out/$p.o"
  done
  gcc -O2 -Wall -o "$out/freplace" "$here/xdp/freplace.c" -lbpf
}

build
ip_bin=$(command -v ip)
bash "$here/guest.sh" "$@" \
  --bin "$(readlink -f "$ip_bin")" --bin "$(command -v bpftool)" --bin "$out/freplace:/test/freplace" \
  --file "$out/xdp_pass.o:/test/xdp_pass.o" --file "$out/dispatcher.o:/test/dispatcher.o" \
  --file "$out/ext_pass.o:/test/ext_pass.o" \
  "$here/xdp/guest-test.sh"
