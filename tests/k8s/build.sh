#!/usr/bin/env bash
# Builds the node-in-a-box components (tests/k8s/*/go.mod) from the Go module
# proxy into a cache keyed by each component's go.mod + go.sum + tools.go and
# its build recipe, plus the local pause image.  A component already built is
# skipped.  Usage:
#   tests/k8s/build.sh            build what is missing, print timings
#   tests/k8s/build.sh --bindir   (build if needed, quietly) then print the bin dir
# Env: K8S_CACHE (default /var/cache/afxdp-rs/k8s), GO (default /usr/local/go/bin/go),
#      K8S_BUILD_ONLY="etcd kube" to restrict.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${K8S_CACHE:-/var/cache/afxdp-rs/k8s}"
GO="${GO:-/usr/local/go/bin/go}"
export PATH="$(dirname "$GO"):$PATH"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN=local

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.17
CONTAINERD_VERSION=v2.4.2
HELM_VERSION=v4.3.2
MULTUS_VERSION=v4.2.2
PAUSE_TAG=3.10
PAUSE_IMAGE="localhost/afxdp/pause:${PAUSE_TAG}"

QUIET=0
[[ "${1:-}" == "--bindir" ]] && QUIET=1
log() { if [[ $QUIET == 1 ]]; then echo "$*" >&2; else echo "$*"; fi; }

# Debian packages the node needs at run time (and gcc/libc for the pause binary).
ensure_debs() {
	local missing=()
	for p in runc iptables conntrack socat ethtool kmod openssl containernetworking-plugins gcc libc6-dev; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "apt: installing ${missing[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
	fi
}

# recipe per component: "binary=package ..." and extra go build args
recipe() {
	case "$1" in
	etcd)
		BINS="etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3"
		CGO=0 TAGS="" LDFLAGS="-s -w" ;;
	kube)
		BINS="kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubelet=k8s.io/kubernetes/cmd/kubelet kubectl=k8s.io/kubernetes/cmd/kubectl"
		CGO=0 TAGS=""
		local v="$KUBE_VERSION" maj minor
		maj="${v#v}"; maj="${maj%%.*}"; minor="${v#v*.}"; minor="${minor%%.*}"
		LDFLAGS="-s -w"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			LDFLAGS+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$maj -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
		done ;;
	containerd)
		BINS="containerd=github.com/containerd/containerd/v2/cmd/containerd ctr=github.com/containerd/containerd/v2/cmd/ctr containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
		CGO=0 TAGS="no_btrfs no_devmapper no_zfs"
		LDFLAGS="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=module-proxy" ;;
	helm)
		BINS="helm=helm.sh/helm/v4/cmd/helm"
		CGO=0 TAGS=""
		LDFLAGS="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;
	multus)
		# the thin plugin (a CNI binary run by containerd per sandbox), not the daemon
		BINS="multus=gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"
		CGO=0 TAGS=""
		local mp=gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus
		LDFLAGS="-s -w -X $mp.version=$MULTUS_VERSION -X $mp.commit=module-proxy -X $mp.gitTreeState=clean -X $mp.releaseStatus=released -X $mp.date=1970-01-01T00:00:00Z" ;;
	*) echo "unknown component $1" >&2; return 1 ;;
	esac
}

comp_hash() {
	local c="$1"
	recipe "$c"
	{ cat "$HERE/$c/go.mod" "$HERE/$c/go.sum" "$HERE/$c/tools.go"; echo "$BINS|$CGO|$TAGS|$LDFLAGS|$("$GO" env GOVERSION)"; } |
		sha256sum | cut -c1-16
}

build_comp() {
	local c="$1" h dir t0 t1
	h="$(comp_hash "$c")"
	recipe "$c"
	dir="$CACHE/$c-$h"
	if [[ -f "$dir/.done" ]]; then
		log "$c: up to date ($dir), nothing built"
		return 0
	fi
	log "$c: building into $dir"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	t0=$(date +%s)
	(
		cd "$HERE/$c"
		nice -n 15 "$GO" mod download >&2
		for b in $BINS; do
			local name="${b%%=*}" pkg="${b#*=}" bt0
			bt0=$(date +%s)
			CGO_ENABLED=$CGO nice -n 15 "$GO" build -mod=readonly -trimpath ${TAGS:+-tags "$TAGS"} \
				-ldflags "$LDFLAGS" -o "$dir.tmp/bin/$name" "$pkg" >&2
			log "  $c/$name: $(($(date +%s) - bt0))s"
		done
	) 2>&1 | tee "$CACHE/$c-$h.build.log" >&2
	[[ ${PIPESTATUS[0]} == 0 ]] || { log "$c: BUILD FAILED, see $CACHE/$c-$h.build.log"; return 1; }
	t1=$(date +%s)
	echo "$((t1 - t0))" >"$dir.tmp/.seconds"
	touch "$dir.tmp/.done"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
	log "$c: built in $((t1 - t0))s"
}

# pause: static C binary, packed as an OCI image archive by the same recipe
# as afxdp-rs's own images (deploy/images/oci-archive.sh; no registry here)
OCI_ARCHIVE="$HERE/../../deploy/images/oci-archive.sh"
pause_hash() { { cat "$HERE/pause/pause.c" "$OCI_ARCHIVE"; echo "$PAUSE_IMAGE"; sed -n '/^build_pause()/,/^}/p' "$HERE/build.sh"; } | sha256sum | cut -c1-16; }

build_pause() {
	local h dir t0
	h="$(pause_hash)"
	dir="$CACHE/pause-$h"
	if [[ -f "$dir/.done" ]]; then
		log "pause: up to date ($dir), nothing built"
		return 0
	fi
	log "pause: building into $dir"
	t0=$(date +%s)
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin" "$dir.tmp/rootfs"
	gcc -static -Os -s -o "$dir.tmp/bin/pause" "$HERE/pause/pause.c"
	cp "$dir.tmp/bin/pause" "$dir.tmp/rootfs/pause"
	# one file /pause, owned by 65535 like the upstream image
	bash "$OCI_ARCHIVE" --rootfs "$dir.tmp/rootfs" --name "$PAUSE_IMAGE" --out "$dir.tmp/pause-image.tar" \
		--entrypoint /pause --user 65535:65535 --owner 65535:65535 --created-by "tests/k8s/build.sh pause" >&2
	echo "$PAUSE_IMAGE" >"$dir.tmp/image-name"
	rm -rf "$dir.tmp/rootfs"
	touch "$dir.tmp/.done"; rm -rf "$dir"; mv "$dir.tmp" "$dir"
	log "pause: built in $(($(date +%s) - t0))s ($PAUSE_IMAGE)"
}

# bin dir holding links to every component's binaries, keyed by all hashes
assemble() {
	local key="" c
	for c in etcd kube containerd helm multus; do key+="$c-$(comp_hash "$c") "; done
	key+="pause-$(pause_hash)"
	local h; h=$(echo "$key" | sha256sum | cut -c1-16)
	local out="$CACHE/node-$h"
	if [[ ! -f "$out/.done" ]]; then
		rm -rf "$out"; mkdir -p "$out/bin"
		for c in $key; do
			[[ -d "$CACHE/$c/bin" ]] || continue
			for f in "$CACHE/$c"/bin/*; do ln -sf "$f" "$out/bin/"; done
			[[ -f "$CACHE/$c/pause-image.tar" ]] && ln -sf "$CACHE/$c/pause-image.tar" "$out/pause-image.tar" && cp "$CACHE/$c/image-name" "$out/pause-image-name"
		done
		touch "$out/.done"
	fi
	echo "$out"
}

main() {
	mkdir -p "$CACHE"
	ensure_debs
	local only="${K8S_BUILD_ONLY:-etcd kube containerd helm multus}" c rc=0 T0
	T0=$(date +%s)
	build_pause
	for c in $only; do build_comp "$c" || rc=1; done
	log "total: $(($(date +%s) - T0))s"
	[[ $rc == 0 ]] || return $rc
	local out; out=$(assemble)
	if [[ $QUIET == 1 ]]; then echo "$out/bin"; else log "bin dir: $out/bin"; fi
}

main "$@"
