#!/usr/bin/env bash
# Issue 9's XDP end-to-end through bpfman, in the qemu guest (guest.sh):
# bpfman attaches every XDP program as an freplace extension of its
# dispatcher, which this host's kernel refuses and Debian's kernel accepts.
#
# Here (host): build the guest test (host/bpfman/tests/xdp_guest.rs) and the pod
# app; compile the built-in program (bpf/xsk_redirect.bpf.c, as
# host/program/build.rs does); make a CA + certificate for 127.0.0.1; publish
# the object as a bytecode image (`afxdpctl image push`) to a docker-registry
# on 127.0.0.1 with a storage directory of its own, then stop it.
# In the guest (bpfman/guest-test.sh): docker-registry serves that storage
# over HTTPS on 127.0.0.1 with the certificate, bpfman-rpc trusts the CA
# (SSL_CERT_FILE), and the test has bpfman pull the image, load and attach
# the program natively to a veth, the unprivileged pod app receive an exact
# count through bpfman's pinned XSKMAP, and release unload it. Nothing
# leaves the guest (-nic none).
#
#   bpfman-xdp.sh [guest.sh options, e.g. --timeout 180]
# Fails (never skips) when something it needs is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mktemp -d /tmp/afxdp-xdp-guest.XXXXXX)
registry_pid=""
cleanup() {
  if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT
die() { echo "bpfman-xdp.sh: $*" >&2; exit 1; }

# The registry's address in the guest (its own loopback).
GUEST_REGISTRY=127.0.0.1:5443

bpfman_rpc() {
  command -v bpfman-rpc 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/bpfman-rpc"
}

need_tools() {
  local t
  for t in cargo clang openssl strip tar; do
    command -v "$t" >/dev/null || die "$t missing (tests/install.sh installs it)"
  done
  [[ -x /usr/bin/docker-registry ]] || die "docker-registry missing (tests/install.sh installs it)"
  [[ -x $(bpfman_rpc) ]] || die "bpfman-rpc missing (tests/install.sh: cargo install --locked bpfman-api)"
}

# Stripped copies (the initramfs is unpacked under emulation: size is time).
stripped() {
  strip -o "$out/bin/$2" "$1"
  echo "$out/bin/$2"
}

# The executable of integration test TEST of crate PKG (built if needed),
# from cargo's "Executable <target> (<path>)" line.
test_binary() {
  (cd "$root" && cargo test --locked -p "$1" --test "$2" --no-run 2>&1) |
    sed -n "s|^ *Executable tests/$2.rs (\(.*\))\$|$root/\1|p; s|^ *Executable .*/tests/$2.rs (\(.*\))\$|$root/\1|p" |
    tail -n 1
}

build() {
  mkdir -p "$out/bin"
  (cd "$root" && cargo build -q --locked -p afxdp-pod-app -p afxdpctl -p afxdp-dp -p afxdp-cni)
  manager_test=$(test_binary afxdp-bpfman xdp_guest)
  dp_test=$(test_binary afxdp-e2e qemu_bpfman)
  [[ -x $manager_test && -x $dp_test ]] || die "no xdp_guest or qemu_bpfman test binary"
  clang -O2 -g -target bpf -Wall -Werror -I"/usr/include/$(uname -m)-linux-gnu" \
    -c "$root/bpf/xsk_redirect.bpf.c" -o "$out/xsk_redirect.bpf.o"
}

certificate() {
  mkdir -p "$out/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=afxdp-qemu-registry \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$out/tls/key.pem" -out "$out/tls/cert.pem" 2>/dev/null
}

# Push the built-in object as a bytecode image; set digest to its
# sha256:... (not run in a subshell: the EXIT trap must see registry_pid).
publish() {
  local port cfg ref i
  mkdir -p "$out/registry"
  for i in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    cfg=$out/registry.yml
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
      "$out/registry" "$port" >"$cfg"
    /usr/bin/docker-registry serve "$cfg" >"$out/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$registry_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$registry_pid" 2>/dev/null && break
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  done
  [[ -n $registry_pid ]] || die "docker-registry did not start: $(cat "$out/registry.log")"
  ref=$(AFXDP_POLICY_CACHE="$out/oci-cache" "$root/target/debug/afxdpctl" image push "$out/xsk_redirect.bpf.o" \
    "127.0.0.1:$port/afxdp/xsk-redirect:v1" --program xsk_redirect=xdp --map xsks_map=xskmap) ||
    die "afxdpctl image push failed"
  kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true
  registry_pid=""
  tar -C "$out/registry" -cf "$out/registry.tar" .
  digest=${ref#*@}
}

need_tools
build
certificate
publish
[[ $digest == sha256:* ]] || die "no digest from the push: $digest"
ip_bin=$(readlink -f "$(command -v ip)")
bash "$here/guest.sh" --mem 2048 "$@" \
  --bin "$ip_bin" \
  --bin "$(stripped "$(bpfman_rpc)" bpfman-rpc):/usr/local/bin/bpfman-rpc" \
  --bin /usr/bin/docker-registry \
  --bin "$(stripped "$root/target/debug/afxdp-pod-app" afxdp-pod-app):/usr/local/bin/afxdp-pod-app" \
  --bin "$(stripped "$root/target/debug/afxdp-dp" afxdp-dp):/usr/local/bin/afxdp-dp" \
  --bin "$(stripped "$root/target/debug/afxdp-cni" afxdp-cni):/usr/local/bin/afxdp-cni" \
  --bin "$(stripped "$manager_test" xdp-guest):/usr/local/bin/xdp-guest" \
  --bin "$(stripped "$dp_test" qemu-bpfman):/usr/local/bin/qemu-bpfman" \
  --file "$out/tls/cert.pem:/test/tls/cert.pem" --file "$out/tls/key.pem:/test/tls/key.pem" \
  --file "$out/registry.tar:/test/registry.tar" \
  --env "AFXDP_BPFMAN_IMAGE=$GUEST_REGISTRY/afxdp/xsk-redirect@$digest" \
  --env "AFXDP_GUEST_REGISTRY=$GUEST_REGISTRY" \
  "$here/bpfman/guest-test.sh"
