#!/usr/bin/env bash
# afxdp-rs on the real node (tests/k8s/node.sh up first): the real kubelet,
# API server, containerd and Multus run it; nothing is a stand-in.
#
#   tests/k8s/e2e.sh chart      helm install of deploy/helm/afxdp-rs → the
#                               Node's capacity shows afxdp/fastnet → the
#                               example pod (deploy/kubernetes/examples,
#                               unprivileged) receives an exact packet count
#                               → faults (kubelet restart, afxdp-dp's pod
#                               deleted while the app receives, a pod asking
#                               more than the pool holds) → pod deleted:
#                               device back on the host, program detached →
#                               helm uninstall
#   tests/k8s/e2e.sh manifests  the plain manifests of deploy/kubernetes,
#                               validated by the API server (--dry-run=server),
#                               installed, the same pod receiving, removed
#   tests/k8s/e2e.sh csi        helm install with the pool in the CSI mode
#                               ("sharing": "csi"): the kubelet registers
#                               csi.afxdp.io (CSINode), Allocate annotates the
#                               pod in the API server, the kubelet's
#                               NodePublishVolume for the pod's inline volume
#                               pins the XSKMAP in a bpffs there, the
#                               unprivileged pod (deploy/csi-example) opens it
#                               and receives an exact count; the pod deleted:
#                               NodeUnpublishVolume unmounts it, device back
#
# The pool's "NICs" are veth pairs made for the run: the NIC ends (afxk0,
# afxk1) on the host, where afxdp-dp discovers them; the wire ends in the
# netns afxdp-k8s-wire, which sends the traffic. Images are built locally as
# OCI archives (deploy/images/build-local.sh) and imported into containerd.
# Everything the script makes is removed on exit, failure included. Each
# failure names the step and prints the last log lines of what was involved.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${K8S_RUN:-/run/afxdp-k8s}"
NODE="${K8S_NODE_NAME:-localhost}"
TIMEOUT="${K8S_TIMEOUT:-180}"
PROFILE="${AFXDP_IMAGE_PROFILE:-debug}"
WIRE_NS=afxdp-k8s-wire
NICS="afxk0 afxk1"
POOL=fastnet
RESOURCE="afxdp/$POOL"
SYSTEM_NS=afxdp-system
APP_NS=afxdp-demo
APP=afxdp-pod-app
PACKETS="${AFXDP_E2E_PACKETS:-1000}"

say() { echo "[e2e.sh $(date -u +%H:%M:%S)] $*"; }

[[ -f $RUN/bindir ]] || { say "FAILED: the node is not up (tests/k8s/node.sh up)"; exit 1; }
eval "$(bash "$HERE/node.sh" env)"
CTR=(ctr --address "$RUN/containerd/containerd.sock" -n k8s.io)
WORK=$(mktemp -d)

# ---------------------------------------------------------------- failures
# The last lines of everything involved, then exit 1 (the EXIT trap cleans).
fail() {
	say "FAILED: $*"
	echo "----- pods -----"
	kubectl get pods -A -o wide 2>&1 | tail -n 20
	echo "----- recent events -----"
	kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 15
	echo "----- afxdp-dp (last 30 lines) -----"
	kubectl -n "$SYSTEM_NS" logs -l app.kubernetes.io/name=afxdp-dp --tail=30 --all-containers 2>&1 || true
	echo "----- $APP (last 10 lines) -----"
	kubectl -n "$APP_NS" logs "$APP" --tail=10 2>&1 || true
	for log in kubelet containerd multus; do
		echo "----- $log (last 15 lines) -----"
		tail -n 15 "$RUN/logs/$log.log" 2>/dev/null || true
	done
	exit 1
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
wait_until() {
	local t=$1 what=$2 end
	shift 2
	end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || fail "timed out after ${t}s waiting for $what"
		sleep 1
	done
	say "$what"
}

# ---------------------------------------------------------------- the wire
make_wire() {
	ip netns add "$WIRE_NS"
	local nic
	for nic in $NICS; do
		ip link add "$nic" numtxqueues 2 numrxqueues 2 type veth \
			peer name "${nic}w" numtxqueues 2 numrxqueues 2 netns "$WIRE_NS"
		# no IPv6 on the wire end: nothing but the test's datagrams reaches
		# the NIC, so the pod's count is exact
		ip netns exec "$WIRE_NS" sysctl -q -w "net.ipv6.conf.${nic}w.disable_ipv6=1"
		ip -n "$WIRE_NS" link set "${nic}w" up
		ip link set "$nic" up
		cat "/sys/class/net/$nic/address" >"$WORK/$nic.mac"
	done
	say "wire: $NICS (host) <-> netns $WIRE_NS"
}

remove_wire() {
	ip netns delete "$WIRE_NS" 2>/dev/null || true
	local nic
	for nic in $NICS; do ip link delete "$nic" 2>/dev/null || true; done
}

# send NIC COUNT: COUNT UDP datagrams from the wire end of NIC to its pod
# (a static neighbour: the NIC end answers no ARP while XDP redirects).
send() {
	local nic=$1 count=$2 i
	i=${nic##*[!0-9]}
	ip -n "$WIRE_NS" addr replace "10.77.$i.1/24" dev "${nic}w"
	ip -n "$WIRE_NS" neigh replace "10.77.$i.2" lladdr "$(cat "$WORK/$nic.mac")" dev "${nic}w" nud permanent
	ip netns exec "$WIRE_NS" python3 - "10.77.$i.2" "$count" <<'EOF'
import socket, sys
dst, count = sys.argv[1], int(sys.argv[2])
import time
# four source ports: the flows spread over the veth's two queues; paced
# (bursts of 64, well under a socket's 256 fill-ring entries), so an exact
# count tests delivery, not how fast the app refills its ring
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
for seq in range(count):
    socks[seq % 4].sendto(b"afxdp-e2e %d" % seq, (dst, 9000))
    if seq % 64 == 63:
        time.sleep(0.005)
EOF
}

# ---------------------------------------------------------------- images
load_images() {
	if ! [[ -x $ROOT/target/$PROFILE/afxdp-dp && -x $ROOT/target/$PROFILE/afxdp-pod-app ]]; then
		say "building the binaries ($PROFILE)"
		(cd "$ROOT" && cargo build --locked -p afxdp-dp -p afxdpctl -p afxdp-cni -p afxdp-pod-app)
	fi
	bash "$ROOT/deploy/images/build-local.sh" "$WORK/images" "$PROFILE"
	local image
	for image in afxdp-dp afxdp-pod-app; do
		"${CTR[@]}" images import --local "$WORK/images/$image.tar" >/dev/null ||
			fail "ctr images import $image"
	done
	say "images imported: $("${CTR[@]}" images ls -q | grep afxdp-rs | tr '\n' ' ')"
}

remove_images() {
	"${CTR[@]}" images ls -q 2>/dev/null | grep '^docker.io/afxdp-rs/' | while read -r ref; do
		"${CTR[@]}" images rm "$ref" >/dev/null 2>&1 || true
	done
}

# ---------------------------------------------------------------- the pool
# The pool config: the example's pool (fastnet, uid 65534), made of the veths.
pool_config_json() {
	local devices="" nic
	for nic in $NICS; do devices+="${devices:+,}{\"name\":\"$nic\"}"; done
	printf '{"logLevel":"debug","pools":[{"name":"%s","mode":"primary","uid":65534,"udsTimeout":60,"devices":[%s]}]}' \
		"$POOL" "$devices"
}

# The pool in the CSI mode (afxdp.io/v1alpha1): the same devices.
csi_pool_config_json() {
	local devices="" nic
	for nic in $NICS; do devices+="${devices:+,}{\"name\":\"$nic\"}"; done
	printf '{"apiVersion":"afxdp.io/v1alpha1","logLevel":"debug","includeVirtualDevices":true,"pools":[{"name":"%s","sharing":"csi","selectors":{"devices":[%s]}}]}' \
		"$POOL" "$devices"
}

allocatable() {
	kubectl get node "$NODE" -o json | jq -r --arg r "$RESOURCE" '.status.allocatable[$r] // "0"'
}

capacity_is() { [[ "$(allocatable)" == "$1" ]]; }

wait_capacity() { # count why
	wait_until "$TIMEOUT" "node allocatable $RESOURCE = $1 ($2)" capacity_is "$1"
}

dp_ready() {
	[[ "$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/name=afxdp-dp \
		-o jsonpath='{.items[*].status.containerStatuses[0].ready}')" == true ]]
}

# The DaemonSet's pod is a new one (not OLD), and ready.
dp_replaced() {
	[[ "$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/name=afxdp-dp -o jsonpath='{.items[*].metadata.name}')" != *"$1"* ]] && dp_ready
}

dp_reregistered() {
	kubectl -n "$SYSTEM_NS" logs -l app.kubernetes.io/name=afxdp-dp -c afxdp-dp --tail=-1 |
		grep -q 'kubelet restarted; re-registering'
}

no_pods_in() { [[ -z "$(kubectl -n "$1" get pods -o name)" ]]; }

namespace_gone() { ! kubectl get namespace "$1"; }

# ---------------------------------------------------------------- the app
start_app() {
	kubectl apply -f "$ROOT/deploy/kubernetes/examples/" >/dev/null || fail "kubectl apply examples"
	wait_until "$TIMEOUT" "pod $APP_NS/$APP Running" app_running
	wait_until 60 "$APP bound its sockets" app_device
	say "$APP got $(app_device)"
}

app_running() { [[ "$(kubectl -n "$APP_NS" get pod "$APP" -o jsonpath='{.status.phase}')" == Running ]]; }

# The device the app got (its "ready" line; the JSON lines among its log lines).
app_device() {
	kubectl -n "$APP_NS" logs "$APP" 2>/dev/null | jq -Rr 'fromjson? | select(.type == "ready") | .device' | tail -n 1 | grep .
}

# Packets the app counted: the sum of each queue's latest stats line.
app_packets() {
	kubectl -n "$APP_NS" logs "$APP" 2>/dev/null |
		jq -Rn '[inputs | fromjson? | select(.type == "stats")] | group_by(.queue) | map(last.packets) | add // 0'
}

app_packets_are() { [[ "$(app_packets)" == "$1" ]]; }

# send_and_count EXPECTED_TOTAL: send $PACKETS more, wait for the exact total.
send_and_count() {
	local dev expected=$1
	# its logs come through the kubelet, which may have just restarted
	wait_until 30 "$APP's log readable" app_device
	dev=$(app_device)
	send "$dev" "$PACKETS"
	wait_until 30 "$APP counted $expected packets" app_packets_are "$expected"
	sleep 2
	[[ "$(app_packets)" == "$expected" ]] || fail "$APP counted $(app_packets), not exactly $expected"
}

# The device is back on the host, up, with no XDP program.
device_released() {
	local dev=$1
	ip link show "$dev" >/dev/null 2>&1 || return 1
	! ip -d link show "$dev" | grep -q 'prog/xdp'
}

stop_app() {
	local dev
	dev=$(app_device) || fail "no device in the app's ready line"
	kubectl delete -f "$ROOT/deploy/kubernetes/examples/20-pod.yaml" --wait=true --timeout=60s >/dev/null ||
		fail "deleting $APP"
	wait_until 30 "$dev back on the host with no XDP program" device_released "$dev"
}

# ---------------------------------------------------------------- faults
# kubelet restarted: it wipes the plugin sockets; afxdp-dp registers again,
# the capacity comes back, the running app keeps receiving.
fault_kubelet_restart() {
	local before=$1
	bash "$HERE/node.sh" restart-kubelet >"$WORK/restart.log" 2>&1 || {
		cat "$WORK/restart.log"
		fail "kubelet restart"
	}
	wait_until 60 "afxdp-dp saw the kubelet restart and registered again" dp_reregistered
	wait_capacity 2 "after the kubelet restart"
	send_and_count $((before + PACKETS))
}

# afxdp-dp's pod deleted while the app receives: the DaemonSet makes a new
# one, which adopts the allocation; the app keeps receiving throughout.
fault_agent_pod_deleted() {
	local before=$1 old
	old=$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/name=afxdp-dp -o jsonpath='{.items[0].metadata.name}')
	kubectl -n "$SYSTEM_NS" delete pod "$old" --wait=false >/dev/null
	send_and_count $((before + PACKETS))
	wait_until "$TIMEOUT" "a new afxdp-dp pod replaced $old, ready" dp_replaced "$old"
	wait_capacity 2 "after afxdp-dp's restart"
	send_and_count $((before + 2 * PACKETS))
}

# Two pods asking for more devices than the pool holds (2, one in use): the
# second stays Pending with the scheduler's reason; no sandbox is made for it.
fault_pool_exhausted() {
	kubectl apply -f - >/dev/null <<EOF || fail "creating the greedy pod"
apiVersion: v1
kind: Pod
metadata: {name: afxdp-greedy, namespace: $APP_NS}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65534}
  containers:
  - name: app
    image: docker.io/afxdp-rs/afxdp-pod-app:$(chart_app_version)
    imagePullPolicy: Never
    resources:
      limits: {$RESOURCE: "2"}
EOF
	wait_until 60 "afxdp-greedy Unschedulable: Insufficient $RESOURCE" greedy_unschedulable
	sleep 3
	[[ "$(kubectl -n "$APP_NS" get pod afxdp-greedy -o jsonpath='{.status.phase}')" == Pending ]] ||
		fail "afxdp-greedy is not Pending"
	[[ -z "$(kubectl -n "$APP_NS" get pod afxdp-greedy -o jsonpath='{.spec.nodeName}')" ]] ||
		fail "afxdp-greedy was bound to a node"
	kubectl -n "$APP_NS" delete pod afxdp-greedy --wait=true --timeout=30s >/dev/null
}

greedy_unschedulable() {
	kubectl -n "$APP_NS" get pod afxdp-greedy -o json |
		jq -e --arg r "$RESOURCE" '.status.conditions[]? | select(.type == "PodScheduled" and .reason == "Unschedulable" and (.message | contains("Insufficient " + $r)))'
}

chart_app_version() { awk -F'"' '/^appVersion:/ { print $2 }' "$ROOT/deploy/helm/afxdp-rs/Chart.yaml"; }

# ---------------------------------------------------------------- the tests
# The chart with bpfman pools enabled: the API server accepts the rendered
# objects (server dry run) and every --bpfman-* argument is an afxdp-dp flag
# whose path is mounted.
chart_bpfman_renders() {
	local out="$WORK/bpfman.yaml" flag
	helm template afxdp-rs "$ROOT/deploy/helm/afxdp-rs" -n "$SYSTEM_NS" \
		--set bpfman.enabled=true >"$out" || fail "helm template with bpfman.enabled"
	# A server dry run creates nothing: the namespace must exist (helm install
	# --create-namespace below takes it as it is).
	kubectl create namespace "$SYSTEM_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	kubectl apply --dry-run=server -f "$out" >/dev/null || fail "the API server refuses the bpfman-enabled chart"
	for flag in $(grep -o -- '--bpfman-[a-z-]*' "$out" | sort -u); do
		"$ROOT/target/$PROFILE/afxdp-dp" --help | grep -q -- "$flag" || fail "$flag is not an afxdp-dp flag"
	done
	grep -q -- '--bpfman-socket=/run/bpfman-sock/bpfman.sock' "$out" || fail "no --bpfman-socket"
	grep -q 'mountPath: /run/bpfman-sock' "$out" || fail "bpfman's socket dir is not mounted"
	grep -q 'mountPath: /run/bpfman$' "$out" || fail "bpfman's run dir is not mounted"
	say "chart with bpfman.enabled: renders, validates, flags known, paths mounted"
}

chart() {
	chart_bpfman_renders
	cat >"$WORK/values.yaml" <<EOF
image:
  pullPolicy: Never
configJson: '$(pool_config_json)'
EOF
	helm install afxdp-rs "$ROOT/deploy/helm/afxdp-rs" -n "$SYSTEM_NS" --create-namespace \
		-f "$WORK/values.yaml" --wait --timeout "${TIMEOUT}s" >"$WORK/helm.log" 2>&1 || {
		cat "$WORK/helm.log"
		fail "helm install"
	}
	say "helm install: $(helm -n "$SYSTEM_NS" list -o json | jq -r '.[0] | "\(.name) \(.status) chart \(.chart)"')"
	wait_capacity 2 "afxdp-dp registered through the chart"
	start_app
	send_and_count "$PACKETS"
	fault_kubelet_restart "$PACKETS"
	fault_agent_pod_deleted $((2 * PACKETS))
	fault_pool_exhausted
	stop_app
	wait_capacity 2 "the device is free again"
	helm uninstall afxdp-rs -n "$SYSTEM_NS" --wait --timeout 60s >/dev/null || fail "helm uninstall"
	wait_until 60 "afxdp-dp's pod gone" no_pods_in "$SYSTEM_NS"
	kubectl delete namespace "$SYSTEM_NS" "$APP_NS" --wait=true --timeout=60s >/dev/null
	say "chart: installed, capacity, exact receive, three faults, released, uninstalled"
}

manifests() {
	local dir="$ROOT/deploy/kubernetes"
	# server-side dry run creates nothing, so the namespaced objects are
	# validated once their namespace exists (itself validated first)
	kubectl apply --dry-run=server -f "$dir/00-namespace.yaml" >"$WORK/dry-run.log" 2>&1 &&
		kubectl apply -f "$dir/00-namespace.yaml" >/dev/null &&
		kubectl apply --dry-run=server -f "$dir/" >>"$WORK/dry-run.log" 2>&1 || {
		cat "$WORK/dry-run.log"
		fail "kubectl apply --dry-run=server deploy/kubernetes"
	}
	say "dry-run=server accepted $(grep -c 'server dry run' "$WORK/dry-run.log") objects:" $(awk '{print $1}' "$WORK/dry-run.log")
	# installed as they are, but for the pool: the veths instead of the
	# example's NIC drivers (the ConfigMap is written before the DaemonSet)
	kubectl apply -f "$dir/00-namespace.yaml" -f "$dir/10-serviceaccount.yaml" >/dev/null || fail "kubectl apply namespace, service account"
	kubectl -n "$SYSTEM_NS" create configmap afxdp-dp-config --from-literal=config.json="$(pool_config_json)" \
		--dry-run=client -o yaml | kubectl apply -f - >/dev/null || fail "the pool ConfigMap"
	kubectl apply -f "$dir/30-daemonset.yaml" -f "$dir/40-csidriver.yaml" >/dev/null ||
		fail "kubectl apply 30-daemonset.yaml 40-csidriver.yaml"
	wait_until "$TIMEOUT" "afxdp-dp ready (plain manifests)" dp_ready
	wait_capacity 2 "afxdp-dp registered through the plain manifests"
	start_app
	send_and_count "$PACKETS"
	stop_app
	kubectl delete -f "$ROOT/deploy/kubernetes/examples/" --wait=true --timeout=60s >/dev/null 2>&1 || true
	kubectl delete -f "$dir/" --wait=true --timeout=60s >/dev/null || fail "kubectl delete deploy/kubernetes"
	wait_until 60 "afxdp-dp's namespace gone" namespace_gone "$SYSTEM_NS"
	say "manifests: validated by the API server, installed, exact receive, released, removed"
}

# The kubelet registered the CSI driver (its CSINode object lists it).
csi_registered() {
	kubectl get csinode "$NODE" -o json | jq -e '.spec.drivers[]? | select(.name == "csi.afxdp.io")'
}

# The bpffs NodePublishVolume mounted in the app pod's volume, on the host.
csi_mounts() { # pod-uid
	awk -v p="/var/lib/kubelet/pods/$1/" '$3 == "bpf" && index($2, p) == 1 {print $2}' /proc/self/mounts
}

csi_unmounted() { [[ -z "$(csi_mounts "$1")" ]]; }

csi() {
	APP=afxdp-pod-app-csi
	local examples="$ROOT/deploy/kubernetes/examples" uid dev annotation mount
	local server host port
	# no kube-proxy on this node: afxdp-dp (host network) reaches the API
	# server where kubectl does, not at the kubernetes service's IP
	server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	host=${server#https://}
	port=${host##*:}
	host=${host%:*}
	cat >"$WORK/values.yaml" <<EOF
image:
  pullPolicy: Never
configJson: '$(csi_pool_config_json)'
apiServer:
  host: "$host"
  port: "$port"
EOF
	helm install afxdp-rs "$ROOT/deploy/helm/afxdp-rs" -n "$SYSTEM_NS" --create-namespace \
		-f "$WORK/values.yaml" --wait --timeout "${TIMEOUT}s" >"$WORK/helm.log" 2>&1 || {
		cat "$WORK/helm.log"
		fail "helm install (CSI mode)"
	}
	wait_capacity 2 "afxdp-dp registered through the chart (CSI mode)"
	wait_until 60 "the kubelet registered csi.afxdp.io (CSINode $NODE)" csi_registered
	kubectl get csidriver csi.afxdp.io >/dev/null || fail "no CSIDriver csi.afxdp.io"
	kubectl apply -f "$examples/00-namespace.yaml" -f "$examples/10-network-attachment.yaml" \
		-f "$ROOT/deploy/csi-example/pod.yaml" >/dev/null || fail "kubectl apply the CSI example"
	wait_until "$TIMEOUT" "pod $APP_NS/$APP Running" app_running
	wait_until 60 "$APP opened the pinned map and bound its sockets" app_device
	dev=$(app_device)
	uid=$(kubectl -n "$APP_NS" get pod "$APP" -o jsonpath='{.metadata.uid}')
	annotation=$(kubectl -n "$APP_NS" get pod "$APP" -o json |
		jq -r --arg k "csi.afxdp.io/device.$dev" '.metadata.annotations[$k] // empty')
	[[ -n $annotation ]] || fail "Allocate left no csi.afxdp.io/device.$dev annotation on $APP"
	say "Allocate annotated $APP: csi.afxdp.io/device.$dev=$annotation"
	[[ "$(jq -r '.maps[0]' <<<"$annotation")" == xsks_map ]] || fail "the annotation names no xsks_map: $annotation"
	mount=$(csi_mounts "$uid")
	[[ -n $mount ]] || fail "no bpffs under /var/lib/kubelet/pods/$uid"
	[[ "$(stat -c %u:%g "$mount/$dev/xsks_map")" == 65534:65534 ]] ||
		fail "$mount/$dev/xsks_map is owned by $(stat -c %u:%g "$mount/$dev/xsks_map"), not the pod's 65534:65534"
	say "NodePublishVolume pinned $mount/$dev/xsks_map (65534:65534)"
	send_and_count "$PACKETS"
	kubectl delete -f "$ROOT/deploy/csi-example/pod.yaml" --wait=true --timeout=60s >/dev/null || fail "deleting $APP"
	wait_until 30 "NodeUnpublishVolume unmounted the pod's bpffs" csi_unmounted "$uid"
	wait_until 30 "$dev back on the host with no XDP program" device_released "$dev"
	wait_capacity 2 "the device is free again"
	helm uninstall afxdp-rs -n "$SYSTEM_NS" --wait --timeout 60s >/dev/null || fail "helm uninstall"
	wait_until 60 "afxdp-dp's pod gone" no_pods_in "$SYSTEM_NS"
	kubectl delete namespace "$SYSTEM_NS" "$APP_NS" --wait=true --timeout=60s >/dev/null
	say "csi: driver registered, pod annotated, volume published by the kubelet, exact receive, unpublished, released, uninstalled"
}

cleanup() {
	local rc=$?
	trap - EXIT
	helm uninstall afxdp-rs -n "$SYSTEM_NS" --wait --timeout 60s >/dev/null 2>&1 || true
	kubectl delete namespace "$APP_NS" "$SYSTEM_NS" --wait=true --timeout=60s >/dev/null 2>&1 || true
	remove_wire
	remove_images
	rm -rf "$WORK"
	exit "$rc"
}

main() {
	case "${1:-}" in
	chart | manifests | csi) ;;
	*) echo "usage: $0 chart|manifests|csi" >&2; exit 2 ;;
	esac
	trap cleanup EXIT
	remove_wire
	make_wire
	load_images
	"$1"
}

main "$@"
