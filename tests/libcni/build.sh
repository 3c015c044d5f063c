#!/usr/bin/env bash
# Builds the libcni harness (tests/libcni, github.com/containernetworking/cni
# pinned in go.mod + go.sum, from the Go module proxy) into
# target/libcni/afxdp-libcni-<hash>, the hash keyed by go.mod, go.sum,
# main.go, this recipe and the Go version. Already built: nothing to do, no
# output but the path. Usage:
#   tests/libcni/build.sh           build if needed, print the binary's path
# Env: GO (default /usr/local/go/bin/go), CARGO_TARGET_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-/usr/local/go/bin/go}"
OUT="$(realpath -m "${CARGO_TARGET_DIR:-$HERE/../../target}/libcni")"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0

[[ -x "$GO" ]] || { echo "Go not found at $GO (set GO=...)" >&2; exit 1; }
hash=$({ cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" "${BASH_SOURCE[0]}"; "$GO" env GOVERSION; } |
	sha256sum | cut -c1-16)
bin="$OUT/afxdp-libcni-$hash"
if [[ ! -x "$bin" ]]; then
	mkdir -p "$OUT"
	echo "libcni harness: building $bin" >&2
	(cd "$HERE" && nice -n 10 "$GO" build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin.tmp.$$" .) >&2
	# the one build this recipe makes: older ones go
	find "$OUT" -maxdepth 1 -name 'afxdp-libcni-*' ! -name "${bin##*/}*" -delete
	mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
