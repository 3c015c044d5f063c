#!/usr/bin/env bash
# afxdp-netdev's devlink kernel test in a qemu guest booting Debian's kernel,
# which has devlink (CONFIG_NET_DEVLINK); a host kernel without it only checks
# the "no devlink family" error. In the guest the kernel parses DEVLINK_CMD_PORT_NEW,
# PORT_SET and PORT_DEL against its attribute policy and refuses the missing
# device pci/0000:ff:1f.7 with ENODEV (a wrong attribute length would be EINVAL,
# "invalid attribute length").
#
#   bash tests/qemu/devlink.sh [guest.sh options, e.g. --timeout 120]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bin=$(cd "$root" && cargo test -p afxdp-netdev --lib --no-run --message-format=json \
  | jq -r 'select(.reason == "compiler-artifact" and .profile.test and .target.name == "afxdp_netdev") | .executable' \
  | tail -n 1)
[ -x "$bin" ] || { echo "devlink.sh: no afxdp-netdev test binary" >&2; exit 1; }

out=$(mktemp -d /tmp/afxdp-qemu-devlink.XXXXXX)
trap 'rm -rf "$out"' EXIT
cat >"$out/run.sh" <<'GUEST'
#!/bin/sh
set -eu
echo "devlink-guest: kernel $(uname -r)"
CI=true /test/netdev-tests devlink::tests::kernel_refuses_port_new_on_a_missing_device \
  --exact --test-threads=1 --nocapture
GUEST
bash "$here/guest.sh" "$@" --bin "$bin:/test/netdev-tests" "$out/run.sh"
