#!/bin/sh
# Runs inside the qemu guest (busybox sh, as /test/run.sh): the XDP paths the
# host kernel refuses. A veth pair, one end in a netns "peer"; packets from
# the peer reach veth0's XDP program in native mode.
#  1. plain XDP (iproute2 loads xdp_pass.o): ping passes;
#  2. the dispatcher alone (its slot aborts): ping fails, so a passing ping
#     below is the freplace program's doing, not the dispatcher's;
#  3. freplace: ext_pass linked into the dispatcher's slot, the way bpfman
#     attaches every XDP program: ping passes again.
set -eu

step() { echo "guest-test: $*"; }
fail() { echo "guest-test: FAILED: $*"; exit 1; }
# One ping from the peer netns to veth0; $1: seconds to wait for the reply.
ping_peer() { ip netns exec peer ping -c 1 -W "${1:-2}" 10.0.0.1 >/dev/null 2>&1; }

setup() {
  ip netns add peer
  ip link add veth0 type veth peer name veth1
  ip link set veth1 netns peer
  ip addr add 10.0.0.1/24 dev veth0
  ip link set veth0 up
  ip -n peer addr add 10.0.0.2/24 dev veth1
  ip -n peer link set veth1 up
  ip -n peer link set lo up
}

plain_xdp() {
  ip link set dev veth0 xdpdrv obj /test/xdp_pass.o sec xdp || fail "ip link set xdpdrv obj xdp_pass.o"
  ip link show dev veth0 | grep -q 'prog/xdp id' || fail "no native XDP program on veth0"
  ping_peer || fail "ping through xdp_pass"
  step "plain XDP (xdp_pass, native) attached, ping passes"
  ip link set dev veth0 xdpdrv off
}

dispatcher_alone() {
  ip link set dev veth0 xdpdrv obj /test/dispatcher.o sec xdp || fail "attach dispatcher"
  ! ping_peer 1 || fail "ping passed the dispatcher alone (its slot should drop)"
  step "dispatcher alone drops (ping fails, as expected)"
  ip link set dev veth0 xdpdrv off
}

freplace() {
  /test/freplace /test/dispatcher.o /test/ext_pass.o veth0 /sys/fs/bpf/ext_link ||
    fail "freplace load/attach"
  bpftool prog show | grep -q ': ext ' || fail "no ext program loaded"
  bpftool prog show | grep -E ': (ext|xdp) ' | sed 's/^/guest-test:   /'
  ping_peer || fail "ping through dispatcher + freplace ext_pass"
  step "freplace (EXT) program in the dispatcher's slot, ping passes"
}

setup
plain_xdp
dispatcher_alone
freplace
