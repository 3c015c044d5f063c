#!/usr/bin/env bash
# The node-in-a-box in the suite: the real node comes up (etcd, kube-apiserver,
# controller-manager, scheduler, containerd, kubelet, Multus; a pod Running,
# a NAD-attached pod with both networks), goes down, and leaves the host as it
# found it (processes, mounts, netns, links, cgroups, iptables, paths,
# sysctls). Fails, never skips: `up` names the component that failed and
# prints its last log lines.
set -euo pipefail
cd "$(dirname "$0")"
before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
bash node.sh check >"$before"
bash node.sh up || { echo "k8s node: up failed (see above)"; exit 1; }
bash node.sh down
bash node.sh check >"$after"
if ! diff "$before" "$after"; then
  echo "k8s node: teardown left the above behind (< before, > after)"
  exit 1
fi
echo "k8s node: up, smoke pods, down: clean"
