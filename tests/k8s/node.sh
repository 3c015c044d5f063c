#!/usr/bin/env bash
# node-in-a-box: a real single-node Kubernetes on this machine (root, no
# systemd, no Docker engine, no registry), from the binaries tests/k8s/build.sh
# makes.  Everything listens on 127.0.0.1 or on unix sockets under $RUN.
#
#   tests/k8s/node.sh up       build if needed, start etcd, kube-apiserver,
#                              controller-manager, scheduler, containerd, kubelet;
#                              wait for node Ready; run a pause pod to Running
#   tests/k8s/node.sh smoke-multus   (on a running node) pod with a second
#                              network from a NetworkAttachmentDefinition
#   tests/k8s/node.sh down     stop everything, remove what the run left behind
#   tests/k8s/node.sh restart-kubelet   stop the kubelet and start a new one
#   tests/k8s/node.sh status   processes + node/pod view
#   tests/k8s/node.sh check    snapshot of processes, mounts, netns, links,
#                              cgroups, iptables, files touched (before/after)
#   tests/k8s/node.sh env      print KUBECONFIG=... and PATH=... for a shell
# On a failure, up prints the failing component and the tail of its log, then
# runs down (K8S_KEEP_ON_FAIL=1 keeps everything for inspection).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN="${K8S_RUN:-/run/afxdp-k8s}"
STATE="${K8S_STATE:-/var/lib/afxdp-k8s}"
# "localhost": the kubelet listens on 127.0.0.1 only (it refuses a loopback
# --node-ip), so the apiserver reaches it for logs/exec by the node's Hostname
# address, which must resolve to 127.0.0.1
NODE="${K8S_NODE_NAME:-localhost}"
CGROOT="afxdp-k8s" # kubelet cgroupRoot (one per v1 controller)
BRIDGE="afxdpcni0"
# second bridge, used only by the Multus smoke NetworkAttachmentDefinition
NAD_BRIDGE="afxdpnad0"
NAD_CIDR="10.245.0.0/24"
POD_CIDR="10.244.0.0/24"
SVC_CIDR="10.96.0.0/24"
SVC_IP="10.96.0.1"
ETCD_PORT=23790 ETCD_PEER_PORT=23800
API_PORT=16443
KCM_PORT=20257 SCHED_PORT=20259
KUBELET_PORT=20250 KUBELET_HEALTHZ_PORT=20248
TIMEOUT="${K8S_TIMEOUT:-180}"
CGCONTROLLERS="cpu cpuacct cpuset memory devices freezer blkio pids systemd"
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables"
# host paths the kubelet/containerd/CNI use that cannot be moved by config
# (/run/containerd: the runc shim's socket dir /run/containerd/s is compiled in;
#  /var/lib/kubelet: the device-plugin dir /var/lib/kubelet/device-plugins is)
FIXED_PATHS="/run/afxdp /var/lib/kubelet /var/log/containers /var/log/pods /var/run/netns /var/lib/cni /run/containerd /var/lib/containerd /run/nri /etc/cni /opt/cni /etc/kubernetes"
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet"

say() { echo "[node.sh $(date -u +%H:%M:%S)] $*"; }
die() { say "FAILED: $*"; exit 1; }

bindir() { "$HERE/build.sh" --bindir; }

# ---------------------------------------------------------------- snapshot
snapshot() {
	echo "## processes (ours: exe under the k8s cache, or runc/shim/pause)"
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		case "$exe" in
		/var/cache/afxdp-rs/k8s/* | */runc | /pause | */containerd-shim* | */pause) echo "${p#/proc/} $exe" ;;
		esac
	done | sort -k2 | awk '{print $2}' | uniq -c
	echo "## mounts under $RUN $STATE /var/lib/kubelet /var/run/netns /run/netns or of type nsfs/overlay"
	awk -v r="$RUN" -v s="$STATE" '$2 ~ "^("r"|"s"|/var/lib/kubelet|/run/afxdp$|/run/afxdp/|/var/run/netns|/run/netns)" || $3=="nsfs" || $3=="overlay" {print $1, $2, $3}' /proc/self/mounts | sort
	echo "## netns"
	ls /var/run/netns 2>/dev/null || true
	echo "## links"
	ip -br link | awk '{print $1}' | sed 's/@.*//' | sort
	echo "## cgroups (kubepods / $CGROOT in each v1 controller)"
	local c
	for c in $CGCONTROLLERS; do
		find "/sys/fs/cgroup/$c" -maxdepth 3 -type d \( -name "$CGROOT" -o -name 'kubepods*' -o -name 'kubelet*' \) 2>/dev/null
	done | sort
	echo "## iptables/ip6tables rules (all tables, counters stripped)"
	local t
	for t in filter nat mangle raw; do
		iptables -t "$t" -S 2>/dev/null | sed "s/^/ipv4 $t: /"
		ip6tables -t "$t" -S 2>/dev/null | sed "s/^/ipv6 $t: /"
	done
	echo "## fixed host paths"
	for p in $FIXED_PATHS $RUN $STATE; do [[ -e $p ]] && echo "exists: $p"; done
	echo "## sysctls"
	for p in $SYSCTLS; do echo "$p=$(sysctl -n "$p" 2>/dev/null || echo n/a)"; done
}

# ---------------------------------------------------------------- certs
gen_certs() {
	local d="$RUN/pki"
	mkdir -p "$d"; chmod 700 "$d"
	cd "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
		-subj "/CN=afxdp-k8s-ca" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
	# name  subject  extendedKeyUsage  [SANs]
	mk() {
		local n="$1" subj="$2" eku="$3" san="${4:-}"
		openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subj" 2>/dev/null
		{
			echo "basicConstraints=critical,CA:FALSE"
			echo "keyUsage=critical,digitalSignature,keyEncipherment"
			echo "extendedKeyUsage=$eku"
			[[ -n $san ]] && echo "subjectAltName=$san"
		} >"$n.ext"
		openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
			-extfile "$n.ext" -out "$n.crt" 2>/dev/null
		rm -f "$n.csr" "$n.ext"
	}
	mk apiserver "/CN=kube-apiserver" serverAuth \
		"IP:127.0.0.1,IP:$SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	mk apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	mk admin "/O=system:masters/CN=afxdp-admin" clientAuth
	mk controller-manager "/CN=system:kube-controller-manager" clientAuth
	mk scheduler "/CN=system:kube-scheduler" clientAuth
	mk kubelet "/O=system:nodes/CN=system:node:$NODE" clientAuth
	# the Multus thin plugin (bound by ClusterRole afxdp-multus, see apply_multus_rbac)
	mk multus "/CN=afxdp-multus" clientAuth
	mk kubelet-serving "/O=system:nodes/CN=system:node:$NODE" serverAuth "IP:127.0.0.1,DNS:localhost,DNS:$NODE"
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	chmod 600 ./*.key
	cd - >/dev/null
}

kubeconfig() { # name cert
	local n="$1" c="$2" f="$RUN/$1.kubeconfig"
	cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: afxdp
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $RUN/pki/ca.crt
users:
- name: $n
  user:
    client-certificate: $RUN/pki/$c.crt
    client-key: $RUN/pki/$c.key
contexts:
- name: $n
  context: {cluster: afxdp, user: $n}
current-context: $n
EOF
}

# ---------------------------------------------------------------- configs
write_configs() {
	mkdir -p "$RUN/cni/net.d" "$STATE/multus-cache" "$RUN/containerd" "$STATE/containerd" "$STATE/pod-logs" "$STATE/cni-ipam" "$STATE/cni-cache"
	cat >"$RUN/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd"
state = "$RUN/containerd/state"
# plugins that would need host paths or hardware we do not use
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.blockfile", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$RUN/containerd/containerd.sock"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # no CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj (-998 for
  # sandboxes) below containerd's own, so clamp it to containerd's value
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
	# default pod network: Debian's reference plugins (bridge + host-local + portmap)
	cat >"$RUN/cni/net.d/10-afxdp-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "afxdp-pod-net",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	# CNI bin dir: Debian's plugins plus multus (containerd and multus look
	# here). What is added to a dir that existed before is listed, and down
	# removes exactly that.
	mkdir -p "$CNI_BIN"
	for f in "$CNI_PLUGINS"/* "$(readlink -f "$BIN/multus")"; do
		[[ -e $CNI_BIN/${f##*/} ]] || echo "$CNI_BIN/${f##*/}" >>"$STATE/cni-bin-added"
		ln -sf "$f" "$CNI_BIN/"
	done
	# Multus thin plugin first (containerd uses the first file, max_conf_num = 1):
	# every sandbox goes through it; it runs the bridge conflist as the default
	# network and adds the NetworkAttachmentDefinitions named in the pod's
	# k8s.v1.cni.cncf.io/networks annotation.  The conflist is embedded as
	# "delegates", not referenced by path: with "clusterNetwork": "<file>.conflist"
	# multus v4.2.2 caches a re-marshalled conflist that has lost the plugins'
	# own fields, and DEL then fails ("plugin type="bridge" failed (delete): no
	# IP ranges specified"), so a pod could never be torn down
	cat >"$RUN/cni/net.d/00-multus.conf" <<EOF
{
  "cniVersion": "0.3.1",
  "name": "multus-cni-network",
  "type": "multus",
  "kubeconfig": "$RUN/multus.kubeconfig",
  "confDir": "$RUN/cni/net.d",
  "cniDir": "$STATE/multus-cache",
  "binDir": "$CNI_BIN",
  "logFile": "$RUN/logs/multus.log",
  "logLevel": "verbose",
  "logToStderr": false,
  "capabilities": {"portMappings": true},
  "delegates": [$(cat "$RUN/cni/net.d/10-afxdp-bridge.conflist")]
}
EOF
	cat >"$RUN/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $RUN/pki/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $RUN/pki/kubelet-serving.crt
tlsPrivateKeyFile: $RUN/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
imageServiceEndpoint: unix://$RUN/containerd/containerd.sock
# this host: cgroup v1 only, PID 1 is not systemd
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROOT
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
podLogsDir: $STATE/pod-logs
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
maxPods: 32
# a dev VM disk is often fuller than upstream defaults accept
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
	cat >"$RUN/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $RUN/scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
}

# ---------------------------------------------------------------- processes
start() { # name cmd...
	local n="$1"; shift
	say "starting $n"
	mkdir -p "$RUN/logs"
	# setsid: own session, so our down can signal it by pid; no stdin
	setsid "$@" </dev/null >>"$RUN/logs/$n.log" 2>&1 &
	echo $! >"$RUN/$n.pid"
}

alive() { local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

fail() { # component message
	local n="$1"; shift
	say "FAILED: component $n: $*"
	if [[ -f "$RUN/logs/$n.log" ]]; then
		echo "----- last 40 lines of $RUN/logs/$n.log -----"
		tail -n 40 "$RUN/logs/$n.log"
		echo "-----"
	fi
	if [[ $n == kubelet ]] && alive kube-apiserver; then
		echo "----- recent events -----"
		kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 15
		echo "----- last 15 lines of $RUN/logs/containerd.log -----"
		tail -n 15 "$RUN/logs/containerd.log" 2>/dev/null
		if [[ -f $RUN/logs/multus.log ]]; then
			echo "----- last 15 lines of $RUN/logs/multus.log -----"
			tail -n 15 "$RUN/logs/multus.log"
		fi
		echo "-----"
	fi
	if [[ ${K8S_KEEP_ON_FAIL:-0} == 1 ]]; then
		say "K8S_KEEP_ON_FAIL=1: leaving the node up for inspection; '$0 down' cleans up"
	else
		say "tearing down (set K8S_KEEP_ON_FAIL=1 to keep it for inspection)"
		down || true
	fi
	exit 1
}

wait_for() { # component timeout description cmd...
	local n="$1" t="$2" what="$3"; shift 3
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		alive "$n" || fail "$n" "process exited while waiting for $what"
		((SECONDS < end)) || fail "$n" "timed out after ${t}s waiting for $what"
		sleep 1
	done
	say "$n: $what"
}

kc() { "$BIN/kubectl" --kubeconfig "$RUN/admin.kubeconfig" "$@"; }

# what the Multus thin plugin reads and writes: the pod (and its status, where
# it puts the k8s.v1.cni.cncf.io/network-status annotation), NADs, events
apply_multus_rbac() {
	kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: afxdp-multus}
rules:
- apiGroups: ["k8s.cni.cncf.io"]
  resources: ["network-attachment-definitions"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["get", "update"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: afxdp-multus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: afxdp-multus}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: afxdp-multus}
EOF
}

# a pod with a second interface from a NetworkAttachmentDefinition (Debian's
# bridge plugin on $NAD_BRIDGE, host-local IPAM); its network-status must list
# the default network and the NAD's; then delete both
smoke_multus() {
	[[ -n ${BIN:-} ]] || { BIN=$(cat "$RUN/bindir" 2>/dev/null) || die "not up"; }
	alive kubelet || die "not up (kubelet not running)"
	[[ -n ${PAUSE_IMAGE:-} ]] || PAUSE_IMAGE="$(cat "$BIN/../pause-image-name")"
	kc apply -f - >/dev/null <<EOF || fail kube-apiserver "creating the NetworkAttachmentDefinition failed"
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: afxdp-nad, namespace: default}
spec:
  config: '{"cniVersion": "0.3.1", "name": "afxdp-nad", "type": "bridge", "bridge": "$NAD_BRIDGE", "ipam": {"type": "host-local", "dataDir": "$STATE/cni-ipam", "ranges": [[{"subnet": "$NAD_CIDR"}]]}}'
---
apiVersion: v1
kind: Pod
metadata:
  name: afxdp-multus-smoke
  namespace: default
  annotations: {k8s.v1.cni.cncf.io/networks: afxdp-nad}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: pause
    image: $PAUSE_IMAGE
    imagePullPolicy: Never
EOF
	wait_for kubelet "$TIMEOUT" "pod afxdp-multus-smoke Running" \
		bash -c "[[ \$('$BIN/kubectl' --kubeconfig '$RUN/admin.kubeconfig' -n default get pod afxdp-multus-smoke -o jsonpath='{.status.phase}') == Running ]]"
	local st
	st=$(kc -n default get pod afxdp-multus-smoke -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/network-status}')
	echo "network-status: $st"
	python3 - "$st" <<'PY' || fail kubelet "network-status does not list the default network and default/afxdp-nad"
import json, sys
st = json.loads(sys.argv[1])
names = [n.get("name") for n in st]
print("networks:", ", ".join("%s %s %s" % (n.get("name"), n.get("interface"), n.get("ips")) for n in st))
assert len(st) == 2 and "afxdp-pod-net" in names and "default/afxdp-nad" in names, names
PY
	kc -n default delete pod afxdp-multus-smoke --wait=true --timeout=60s >/dev/null || fail kubelet "deleting afxdp-multus-smoke failed"
	kc -n default delete network-attachment-definition afxdp-nad >/dev/null
	say "smoke-multus: pod had 2 networks (afxdp-pod-net + default/afxdp-nad), deleted"
}

# ---------------------------------------------------------------- up
up() {
	[[ $EUID == 0 ]] || die "must run as root"
	if [[ -d $RUN ]] && ls "$RUN"/*.pid >/dev/null 2>&1; then die "$RUN exists: already up? run '$0 down' first"; fi
	BIN="$(bindir)" || die "build failed"
	export PATH="$BIN:$PATH"
	PAUSE_IMAGE="$(cat "$BIN/../pause-image-name")"
	RUNC="${K8S_RUNC:-$(command -v runc)}" || die "runc missing"
	CNI_PLUGINS=/usr/lib/cni
	# the standard CNI bin dir, so the chart and the plain manifests install
	# afxdp-cni where containerd and Multus look, without overrides
	CNI_BIN=/opt/cni/bin
	[[ -x $CNI_PLUGINS/bridge ]] || die "no CNI plugins in $CNI_PLUGINS (apt-get install containernetworking-plugins)"
	[[ -x $BIN/multus ]] || die "no multus in $BIN"
	mkdir -p "$RUN" "$STATE"
	echo "$BIN" >"$RUN/bindir"
	# what the host looked like before: down restores/compares against it
	snapshot >"$STATE/baseline.txt" 2>&1
	for p in $FIXED_PATHS; do [[ -e $p ]] || echo "$p"; done >"$STATE/created-paths"
	for p in $SYSCTLS; do v=$(sysctl -n "$p" 2>/dev/null) && echo "$p=$v"; done >"$STATE/sysctls.orig"
	iptables-save >"$STATE/iptables.orig" 2>/dev/null || true
	ip6tables-save >"$STATE/ip6tables.orig" 2>/dev/null || true

	gen_certs
	for k in admin:admin controller-manager:controller-manager scheduler:scheduler kubelet:kubelet multus:multus; do
		kubeconfig "${k%%:*}" "${k#*:}"
	done
	write_configs

	# etcd
	start etcd "$BIN/etcd" --name afxdp --data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "afxdp=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --log-outputs stderr
	wait_for etcd 60 "healthy" "$BIN/etcdctl" --endpoints "127.0.0.1:$ETCD_PORT" endpoint health

	# kube-apiserver
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
		--endpoint-reconciler-type none \
		--service-cluster-ip-range "$SVC_CIDR" \
		--tls-cert-file "$RUN/pki/apiserver.crt" --tls-private-key-file "$RUN/pki/apiserver.key" \
		--client-ca-file "$RUN/pki/ca.crt" \
		--kubelet-client-certificate "$RUN/pki/apiserver-kubelet-client.crt" --kubelet-client-key "$RUN/pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$RUN/pki/ca.crt" \
		--kubelet-preferred-address-types Hostname,InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$RUN/pki/sa.pub" --service-account-signing-key-file "$RUN/pki/sa.key" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--allow-privileged=true --profiling=false
	wait_for kube-apiserver "$TIMEOUT" "ready" kc get --raw /readyz

	# controller-manager, scheduler
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig "$RUN/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$RUN/controller-manager.kubeconfig" --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
		--service-account-private-key-file "$RUN/pki/sa.key" --root-ca-file "$RUN/pki/ca.crt" \
		--use-service-account-credentials=true --service-cluster-ip-range "$SVC_CIDR" \
		--cluster-signing-cert-file "$RUN/pki/ca.crt" --cluster-signing-key-file "$RUN/pki/ca.key" \
		--profiling=false
	start kube-scheduler "$BIN/kube-scheduler" --config "$RUN/kube-scheduler.yaml" \
		--authentication-kubeconfig "$RUN/scheduler.kubeconfig" --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --profiling=false
	wait_for kube-controller-manager 60 "healthy" curl -fsk "https://127.0.0.1:$KCM_PORT/healthz"
	wait_for kube-scheduler 60 "healthy" curl -fsk "https://127.0.0.1:$SCHED_PORT/healthz"

	# the NetworkAttachmentDefinition CRD (k8snetworkplumbingwg spec v1)
	kc apply -f "$HERE/manifests/network-attachment-definition-crd.yaml" >/dev/null || fail kube-apiserver "CRD apply failed"
	wait_for kube-apiserver 60 "NetworkAttachmentDefinition CRD established" \
		kc wait --for condition=established --timeout=5s crd/network-attachment-definitions.k8s.cni.cncf.io
	apply_multus_rbac || fail kube-apiserver "Multus RBAC apply failed"
	say "kube-apiserver: ClusterRole/ClusterRoleBinding afxdp-multus applied"

	# afxdp-dp's state dir is a Bidirectional hostPath (its bpffs pins must
	# reach the host), which containerd allows only on a shared mount. This
	# host's / is private (no systemd, which would make it shared), so the
	# dir becomes a shared bind mount of itself: the narrowest change.
	mkdir -p /run/afxdp
	mount --bind /run/afxdp /run/afxdp && mount --make-shared /run/afxdp ||
		fail containerd "could not make /run/afxdp a shared mount"

	# the host's bpffs, shared, as systemd mounts it (the DaemonSet mounts it
	# HostToContainer, which containerd allows only on a shared or slave mount)
	if ! mountpoint -q /sys/fs/bpf; then
		mount -t bpf bpffs /sys/fs/bpf && mount --make-shared /sys/fs/bpf && touch "$STATE/mounted-bpffs" ||
			fail containerd "could not mount a shared bpffs on /sys/fs/bpf"
	fi

	# containerd + pause image
	start containerd "$BIN/containerd" --config "$RUN/containerd/config.toml"
	wait_for containerd 60 "serving" "$BIN/ctr" --address "$RUN/containerd/containerd.sock" version
	"$BIN/ctr" --address "$RUN/containerd/containerd.sock" -n k8s.io images import --local \
		"$BIN/../pause-image.tar" >>"$RUN/logs/ctr.log" 2>&1 || fail containerd "pause image import failed: $(tail -3 "$RUN/logs/ctr.log")"
	"$BIN/ctr" --address "$RUN/containerd/containerd.sock" -n k8s.io images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >>"$RUN/logs/ctr.log" 2>&1 ||
		fail containerd "labelling pause image failed"
	say "containerd: imported $PAUSE_IMAGE (pinned)"

	# kubelet
	for c in $CGCONTROLLERS; do [[ -d /sys/fs/cgroup/$c ]] && mkdir -p "/sys/fs/cgroup/$c/$CGROOT"; done
	start_kubelet

	# proof: a pod with the local pause image reaches Running
	wait_for kube-controller-manager 60 "default service account exists" kc -n default get serviceaccount default
	kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: afxdp-smoke, namespace: default}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: pause
    image: $PAUSE_IMAGE
    imagePullPolicy: Never
EOF
	wait_for kubelet "$TIMEOUT" "pod afxdp-smoke Running" \
		bash -c "[[ \$('$BIN/kubectl' --kubeconfig '$RUN/admin.kubeconfig' -n default get pod afxdp-smoke -o jsonpath='{.status.phase}') == Running ]]"
	kc get node -o wide
	kc -n default get pod -o wide
	[[ ${K8S_SKIP_MULTUS_SMOKE:-0} == 1 ]] || smoke_multus
	say "up: node $NODE Ready, smoke pod Running (through Multus).  export KUBECONFIG=$RUN/admin.kubeconfig PATH=$BIN:\$PATH"
}

start_kubelet() {
	start kubelet "$BIN/kubelet" --config "$RUN/kubelet-config.yaml" \
		--kubeconfig "$RUN/kubelet.kubeconfig" --hostname-override "$NODE" \
		--root-dir /var/lib/kubelet --cert-dir "$RUN/pki" --v 2
	wait_for kubelet "$TIMEOUT" "node $NODE Ready" kc wait --for condition=Ready --timeout=5s "node/$NODE"
}

# A real kubelet restart (SIGTERM, then a new process): at start the kubelet
# wipes the device-plugin dir, so every plugin has to register again.
restart_kubelet() {
	[[ -f $RUN/kubelet.pid ]] || die "kubelet is not running (up first)"
	BIN=$(cat "$RUN/bindir")
	stop_pid kubelet
	start_kubelet
}

# ---------------------------------------------------------------- down
stop_pid() { # name
	local n="$1" p i
	p=$(cat "$RUN/$n.pid" 2>/dev/null) || return 0
	if kill -0 "$p" 2>/dev/null; then
		kill -TERM "$p" 2>/dev/null || true
		for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -0 "$p" 2>/dev/null && { say "$n ($p) did not stop, KILL"; kill -KILL "$p" 2>/dev/null || true; }
	fi
	rm -f "$RUN/$n.pid"
	say "stopped $n"
}

# processes started by containerd for our pods (shims, runc, pause, containers):
# every process whose cgroup is under our cgroupRoot, and shims whose exe is ours
our_leftover_pids() {
	local p exe
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" ]] && continue
		exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
		if [[ $exe == /var/cache/afxdp-rs/k8s/* ]] || grep -q ":/$CGROOT/" "/proc/$p/cgroup" 2>/dev/null; then
			echo "$p"
		fi
	done
}

# mount points (newest first) that belong to a run: under $RUN, $STATE,
# /var/lib/kubelet, and /run/netns when the run created that dir
our_mounts() {
	local netns='/run/netns/cni-'
	grep -qx /var/run/netns "$STATE/created-paths" 2>/dev/null && netns='/run/netns'
	awk -v r="$RUN" -v s="$STATE" -v n="$netns" \
		'index($5, r)==1 || index($5, s)==1 || index($5, "/var/lib/kubelet")==1 || ($5 == "/run/afxdp" || index($5, "/run/afxdp/")==1) || index($5, n)==1 {print $1, $5}' \
		/proc/self/mountinfo | sort -rn | awk '{print $2}'
}

down() {
	[[ $EUID == 0 ]] || die "must run as root"
	set +e # best effort: clean as much as possible
	local BIN="" p
	BIN=$(cat "$RUN/bindir" 2>/dev/null || true)
	# graceful: let kubelet/containerd tear pods down (CNI DEL, netns, mounts)
	if [[ -n $BIN ]] && alive kube-apiserver && alive kubelet; then
		kc delete pod --all -A --wait=true --timeout=30s >/dev/null 2>&1 || true
	fi
	stop_pid kubelet
	if [[ -n $BIN ]] && alive containerd; then
		local cr=(env CONTAINER_RUNTIME_ENDPOINT=x "$BIN/ctr" --address "$RUN/containerd/containerd.sock" -n k8s.io)
		for t in $("${cr[@]}" tasks ls -q 2>/dev/null); do "${cr[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
		sleep 1
		for t in $("${cr[@]}" tasks ls -q 2>/dev/null); do "${cr[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
	fi
	for n in kube-scheduler kube-controller-manager containerd kube-apiserver etcd; do stop_pid "$n"; done
	# anything of ours still running (shims, pause, containers): by pid
	for p in $(our_leftover_pids); do kill -KILL "$p" 2>/dev/null && say "killed leftover pid $p ($(readlink /proc/$p/exe 2>/dev/null))"; done
	sleep 0.5

	# mounts under our dirs, kubelet's fixed dir and the netns dir, newest
	# first (mount id order: a netns bind mount can be hidden under a later
	# bind mount of /run/netns itself), repeated until none is left
	local i
	for i in 1 2 3 4 5; do
		local ms
		ms=$(our_mounts)
		[[ -z $ms ]] && break
		for m in $ms; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	done
	[[ -n $(our_mounts) ]] && say "could not umount: $(our_mounts | tr '\n' ' ')"
	[[ -f $STATE/mounted-bpffs ]] && { umount /sys/fs/bpf || say "could not umount /sys/fs/bpf"; }
	# CNI network namespaces made by containerd (cni-<uuid>)
	for m in /var/run/netns/cni-*; do [[ -e $m ]] && { ip netns delete "${m##*/}" 2>/dev/null || rm -f "$m" || true; }; done
	# links: our bridge (veths die with their netns)
	for br in "$BRIDGE" "$NAD_BRIDGE"; do
		ip link show "$br" >/dev/null 2>&1 && ip link delete "$br" && say "deleted bridge $br"
		for m in $(ip -br link | awk '{print $1}' | sed 's/@.*//' | grep '^veth' || true); do
			ip -d link show "$m" 2>/dev/null | grep -q "master $br" && ip link delete "$m"
		done
	done
	# iptables: drop rules and chains that were not there before up
	restore_iptables iptables "$STATE/iptables.orig"
	restore_iptables ip6tables "$STATE/ip6tables.orig"
	# cgroups made by kubelet under our cgroupRoot, deepest first
	for c in $CGCONTROLLERS; do
		[[ -d /sys/fs/cgroup/$c/$CGROOT ]] || continue
		find "/sys/fs/cgroup/$c/$CGROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[[ -d /sys/fs/cgroup/$c/$CGROOT ]] && say "could not remove cgroup /sys/fs/cgroup/$c/$CGROOT"
	done
	# sysctls kubelet/CNI changed
	if [[ -f $STATE/sysctls.orig ]]; then
		while IFS== read -r k v; do
			[[ "$(sysctl -n "$k" 2>/dev/null)" == "$v" ]] || sysctl -q -w "$k=$v" >/dev/null 2>&1 || say "could not restore $k=$v"
		done <"$STATE/sysctls.orig"
	fi
	# plugins added to a CNI bin dir that existed before up (and what the
	# chart's init container installed there)
	if [[ -f $STATE/cni-bin-added ]]; then
		while read -r p; do rm -f "$p"; done <"$STATE/cni-bin-added"
		rm -f /opt/cni/bin/afxdp-cni /opt/cni/bin/afxdp
	fi
	# host paths the run created
	if [[ -f $STATE/created-paths ]]; then
		while read -r p; do [[ -e $p ]] && rm -rf --one-file-system "$p" && say "removed $p"; done <"$STATE/created-paths"
	fi
	local baseline=""
	[[ -f $STATE/baseline.txt ]] && baseline=$(mktemp) && cp "$STATE/baseline.txt" "$baseline"
	rm -rf --one-file-system "$RUN" "$STATE"
	if [[ -n $baseline ]]; then
		if diff <(grep -v "^exists: \($RUN\|$STATE\)$" "$baseline") <(snapshot) >"$baseline.diff"; then
			say "down: host state equals the pre-up snapshot"
		else
			say "down: host state differs from the pre-up snapshot (< before, > now):"
			cat "$baseline.diff"
		fi
		rm -f "$baseline" "$baseline.diff"
	fi
	say "down: done"
}

# delete rules then chains present now but absent from the saved iptables-save
restore_iptables() { # iptables|ip6tables saved-file
	local ipt="$1" orig="$2" t line chain
	[[ -f $orig ]] || return 0
	for t in filter nat mangle raw; do
		local before now
		before=$(awk -v t="*$t" '$0==t{f=1;next} /^\*/{f=0} f' "$orig")
		now=$("$ipt" -t "$t" -S 2>/dev/null) || continue
		# rules (-A) added since
		while IFS= read -r line; do
			[[ $line == -A* ]] || continue
			grep -qxF -- "$line" <<<"$before" && continue
			eval "$ipt -t $t -D ${line#-A }" 2>/dev/null || true
		done <<<"$now"
		# chains (-N) added since
		for chain in $(grep '^-N ' <<<"$now" | awk '{print $2}'); do
			grep -q "^:$chain " <<<"$before" && continue
			"$ipt" -t "$t" -F "$chain" 2>/dev/null || true
		done
		for chain in $(grep '^-N ' <<<"$now" | awk '{print $2}'); do
			grep -q "^:$chain " <<<"$before" && continue
			"$ipt" -t "$t" -X "$chain" 2>/dev/null || say "could not delete $ipt $t chain $chain"
		done
	done
}

status() {
	local n
	for n in $COMPONENTS; do
		if alive "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: not running"; fi
	done
	BIN=$(cat "$RUN/bindir" 2>/dev/null || true)
	if [[ -n $BIN ]] && alive kube-apiserver; then
		kc get nodes -o wide 2>&1 || true
		kc get pods -A -o wide 2>&1 || true
	fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
smoke-multus) smoke_multus ;;
restart-kubelet) restart_kubelet ;;
check) snapshot ;;
env) echo "export KUBECONFIG=$RUN/admin.kubeconfig PATH=$(cat "$RUN/bindir"):\$PATH" ;;
*) echo "usage: $0 up|down|status|check|env|smoke-multus|restart-kubelet" >&2; exit 2 ;;
esac
