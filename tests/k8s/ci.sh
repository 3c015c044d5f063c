#!/usr/bin/env bash
# The node-in-a-box in the suite: the real node comes up (etcd, kube-apiserver,
# controller-manager, scheduler, containerd, kubelet, Multus; a pod Running,
# a NAD-attached pod with both networks); afxdp-rs is installed on it with
# helm and with the plain manifests, and an unprivileged pod receives
# through it (e2e.sh: chart, faults, manifests, the CSI mode); the node goes down and
# leaves the host as it found it (processes, mounts, netns, links, cgroups,
# iptables, paths, sysctls). Fails, never skips: each failure names the
# component or step and prints its last log lines.
set -euo pipefail
cd "$(dirname "$0")"
before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
bash node.sh check >"$before"
bash node.sh up || { echo "k8s node: up failed (see above)"; exit 1; }
rc=0
for test in chart manifests csi; do
  start=$(date +%s)
  if bash e2e.sh "$test"; then
    echo "k8s e2e $test: passed in $(( $(date +%s) - start )) s"
  else
    echo "k8s e2e $test: FAILED after $(( $(date +%s) - start )) s"
    rc=1
    break
  fi
done
bash node.sh down
bash node.sh check >"$after"
if ! diff "$before" "$after"; then
  echo "k8s node: teardown left the above behind (< before, > after)"
  exit 1
fi
[[ $rc == 0 ]] || exit 1
echo "k8s node: up, smoke pods, afxdp-rs by chart and by manifests, faults, down: clean"
