#!/usr/bin/env bash
# The root filesystem of an afxdp-rs image, assembled from built binaries:
# the binaries in /usr/local/bin, the shared libraries `ldd` lists for them
# (at the paths ldd gives, the dynamic loader included), /tmp, and a
# passwd/group naming root and nobody. No base image, no shell, no package
# manager. The Dockerfile and build-local.sh both run this script, so both
# produce this layout.
#
#   rootfs.sh afxdp-dp      BINDIR OUTDIR   afxdp-dp, afxdpctl, afxdp-cni
#   rootfs.sh afxdp-pod-app BINDIR OUTDIR   afxdp-pod-app, with the file
#                                           capability cap_net_raw+ep
#
# BINDIR holds the built binaries (e.g. target/release). OUTDIR is made
# fresh. Needs ldd and, for afxdp-pod-app, setcap (Debian libcap2-bin).
set -euo pipefail

die() { echo "rootfs.sh: $*" >&2; exit 1; }

[[ $# == 3 ]] || die "usage: rootfs.sh afxdp-dp|afxdp-pod-app BINDIR OUTDIR"
image=$1 bindir=$2 out=$3

case "$image" in
afxdp-dp) binaries="afxdp-dp afxdpctl afxdp-cni" ;;
afxdp-pod-app) binaries="afxdp-pod-app" ;;
*) die "unknown image $image (afxdp-dp or afxdp-pod-app)" ;;
esac

# The shared objects a binary loads, as absolute paths (none for a static one).
libraries_of() {
	ldd "$1" 2>/dev/null | awk '
		$2 == "=>" && $3 ~ /^\// { print $3 }
		$1 ~ /^\// { print $1 }' || true
}

# Copies a file to the same path under $out, following symlinks.
copy_at_path() {
	mkdir -p "$out$(dirname "$1")"
	cp -L "$1" "$out$1"
}

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc" "$out/tmp"
chmod 1777 "$out/tmp"
for b in $binaries; do
	[[ -x "$bindir/$b" ]] || die "$bindir/$b: not built"
	install -m 0755 "$bindir/$b" "$out/usr/local/bin/$b"
	# no debug info in an image (a release build has none already)
	if command -v strip >/dev/null; then strip --strip-debug "$out/usr/local/bin/$b"; fi
	for lib in $(libraries_of "$bindir/$b"); do
		[[ -e "$out$lib" ]] || copy_at_path "$lib"
	done
done
printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n' >"$out/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$out/etc/group"

if [[ $image == afxdp-pod-app ]]; then
	# A non-root process gets NET_RAW on exec only from a file capability
	# (Kubernetes sets no ambient capabilities).
	command -v setcap >/dev/null || die "setcap not found (Debian: libcap2-bin)"
	setcap cap_net_raw+ep "$out/usr/local/bin/afxdp-pod-app"
fi
echo "rootfs.sh: $image in $out ($(find "$out" -type f | wc -l) files)"
