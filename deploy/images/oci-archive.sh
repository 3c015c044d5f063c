#!/usr/bin/env bash
# Packs a root filesystem into a one-layer OCI image archive (an OCI image
# layout in a tar), reproducibly: the same rootfs gives the same digests.
# File capabilities (security.capability xattrs) are kept. The archive names
# the image in its index (io.containerd.image.name), so
#   ctr -n k8s.io images import --local ARCHIVE
# makes it available to the kubelet under that name without a registry.
#
#   oci-archive.sh --rootfs DIR --name REF --out FILE
#                  [--entrypoint PATH] [--user UID:GID] [--owner UID:GID]
#                  [--created-by TEXT]
#
# --owner sets the owner of every file in the layer (default: as on disk).
set -euo pipefail

die() { echo "oci-archive.sh: $*" >&2; exit 1; }

rootfs="" name="" out="" entrypoint="" user="" owner="" created_by="deploy/images/oci-archive.sh"
while (($#)); do
	case "$1" in
	--rootfs) rootfs=$2 ;;
	--name) name=$2 ;;
	--out) out=$2 ;;
	--entrypoint) entrypoint=$2 ;;
	--user) user=$2 ;;
	--owner) owner=$2 ;;
	--created-by) created_by=$2 ;;
	*) die "unknown argument $1" ;;
	esac
	shift 2 || die "$1 needs a value"
done
[[ -d $rootfs && -n $name && -n $out ]] || die "--rootfs DIR, --name REF and --out FILE are required"
tag=${name##*:}
[[ $tag != "$name" && $tag != */* ]] || die "--name $name has no tag"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
blobs="$work/oci/blobs/sha256"
mkdir -p "$blobs"

# Moves a file into the blob store; prints "<digest> <size>".
add_blob() {
	local digest size
	digest=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(stat -c %s "$1")
	mv "$1" "$blobs/$digest"
	echo "$digest $size"
}

owner_flags=()
if [[ -n $owner ]]; then owner_flags=(--owner="${owner%%:*}" --group="${owner##*:}"); fi
tar --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--sort=name --mtime=@0 --numeric-owner "${owner_flags[@]}" \
	--xattrs --xattrs-include=security.capability \
	-C "$rootfs" -cf "$work/layer.tar" .
read -r layer_digest layer_size < <(add_blob "$work/layer.tar")

config_fields='"WorkingDir":"/"'
[[ -n $entrypoint ]] && config_fields+=',"Entrypoint":["'"$entrypoint"'"]'
[[ -n $user ]] && config_fields+=',"User":"'"$user"'"'
printf '%s' '{"architecture":"amd64","os":"linux","config":{'"$config_fields"'},"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_digest"'"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"'"$created_by"'"}]}' >"$work/config"
read -r config_digest config_size < <(add_blob "$work/config")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}' >"$work/manifest"
read -r manifest_digest manifest_size < <(add_blob "$work/manifest")

printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"',"annotations":{"io.containerd.image.name":"'"$name"'","org.opencontainers.image.ref.name":"'"$tag"'"},"platform":{"architecture":"amd64","os":"linux"}}]}' >"$work/oci/index.json"
mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "oci-archive.sh: $name -> $out (manifest sha256:$manifest_digest)"
