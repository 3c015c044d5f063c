#!/usr/bin/env bash
# The afxdp-rs images as local OCI image archives, without a Docker engine or
# a registry: the same root filesystems as the Dockerfile (rootfs.sh), from
# binaries cargo built on this machine, packed by oci-archive.sh.
#
#   deploy/images/build-local.sh OUTDIR [PROFILE]
#
# PROFILE: the cargo profile dir under target/ holding the binaries
# (default: release; the tests use debug, which the suite has built already).
# Writes OUTDIR/afxdp-dp.tar and OUTDIR/afxdp-pod-app.tar, named as the
# manifests and the chart name them (docker.io/afxdp-rs/<image>:<appVersion>);
# import each with `ctr -n k8s.io images import --local FILE`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out=${1:?usage: build-local.sh OUTDIR [PROFILE]}
profile=${2:-release}
bindir="$root/target/$profile"
version=$(awk -F'"' '/^appVersion:/ { print $2 }' "$root/deploy/helm/afxdp-rs/Chart.yaml")
[[ -n $version ]] || { echo "build-local.sh: no appVersion in Chart.yaml" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
bash "$here/rootfs.sh" afxdp-dp "$bindir" "$work/afxdp-dp"
bash "$here/oci-archive.sh" --rootfs "$work/afxdp-dp" --name "docker.io/afxdp-rs/afxdp-dp:$version" \
	--entrypoint /usr/local/bin/afxdp-dp --created-by "deploy/images/build-local.sh afxdp-dp" \
	--out "$out/afxdp-dp.tar"
bash "$here/rootfs.sh" afxdp-pod-app "$bindir" "$work/afxdp-pod-app"
bash "$here/oci-archive.sh" --rootfs "$work/afxdp-pod-app" --name "docker.io/afxdp-rs/afxdp-pod-app:$version" \
	--entrypoint /usr/local/bin/afxdp-pod-app --user 65534:65534 \
	--created-by "deploy/images/build-local.sh afxdp-pod-app" --out "$out/afxdp-pod-app.tar"
