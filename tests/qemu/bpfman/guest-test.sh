#!/bin/sh
# Runs inside the qemu guest (busybox sh, as /test/run.sh; see
# ../bpfman-xdp.sh): the registry over HTTPS on 127.0.0.1, bpfman-rpc, then
# the Rust test (host/bpfman/tests/xdp_guest.rs) against them. Root here has every
# capability: bpfman raises RLIMIT_MEMLOCK itself, no shim.
set -eu
step() { echo "bpfman-guest: $*"; }
SOCKET=/run/bpfman-sock/bpfman.sock

# iproute2 keeps named netns under /var/run/netns.
mkdir -p /var /etc/bpfman /run/bpfman-sock /tmp/registry
ln -s /run /var/run
# The registry listens on loopback, which /init leaves down.
ip link set lo up
printf '[signing]\nallow_unsigned = true\nverify_enabled = false\n' >/etc/bpfman/bpfman.toml

tar -xf /test/registry.tar -C /tmp/registry
cat >/tmp/registry.yml <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /tmp/registry
http:
  addr: $AFXDP_GUEST_REGISTRY
  tls:
    certificate: /test/tls/cert.pem
    key: /test/tls/key.pem
CONF
docker-registry serve /tmp/registry.yml >/tmp/registry.log 2>&1 &
SSL_CERT_FILE=/test/tls/cert.pem RUST_LOG=info \
  bpfman-rpc --timeout 0 --socket-path "$SOCKET" >/tmp/bpfman.log 2>&1 &
i=0
while [ ! -S "$SOCKET" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ -S "$SOCKET" ] || { cat /tmp/bpfman.log; step "bpfman-rpc did not come up"; exit 1; }
step "bpfman-rpc up (no memlock shim), registry on $AFXDP_GUEST_REGISTRY (HTTPS)"

export AFXDP_BPFMAN_SOCKET="$SOCKET" AFXDP_BIN_DIR=/usr/local/bin CI=true
rc=0
# The manager alone (afxdp-bpfman's BpfmanManager), then afxdp-dp with a
# bpfman pool behind the kubelet stand-in and afxdp-cni (pinned and UDS
# sharing: both tests match the filter).
/usr/local/bin/xdp-guest --ignored --exact --test-threads=1 --nocapture \
  bpfman_xdp_from_image_to_unprivileged_pod || rc=$?
[ $rc != 0 ] || /usr/local/bin/qemu-bpfman --ignored --test-threads=1 --nocapture \
  afxdp_dp_bpfman_pool_serves_an_unprivileged_pod || rc=$?
if [ $rc != 0 ]; then
  echo "--- bpfman-rpc log (last lines)"; tail -n 30 /tmp/bpfman.log
  echo "--- registry log"; tail -n 10 /tmp/registry.log
fi
exit $rc
