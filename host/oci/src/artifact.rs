//! What an artifact must look like, checked identically on bytes from
//! the registry and on bytes read back from the cache.
//!
//! Two kinds share the fetcher: Wasm policies (oci-wasm layout) and eBPF
//! bytecode images (bpfman's spec, see [`crate::bytecode`]).

use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_wasm::{WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WASM_MANIFEST_MEDIA_TYPE};
use sha2::{Digest as _, Sha256};

use crate::reference::validate_digest;
use crate::OciError;

/// The Wasm binary magic number.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Largest manifest accepted (the OCI distribution spec recommends 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Largest layer accepted (a Wasm layer, or a bytecode image's tar+gzip).
pub const MAX_LAYER_BYTES: u64 = 64 * 1024 * 1024;

/// Largest image config accepted (bytecode images; a Wasm policy's config
/// is not fetched).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The kinds of artifact this crate fetches. Each kind fixes the media types
/// its manifest may name and whether its config blob carries meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A Wasm policy: OCI manifest, `application/vnd.wasm.config.v0+json`
    /// config (not fetched), one `application/wasm` layer.
    WasmPolicy,
    /// A bytecode image: OCI or Docker v2 manifest, OCI or Docker image
    /// config (fetched: it holds the labels), one tar+gzip layer.
    Bytecode,
}

impl Kind {
    fn manifest_types(self) -> &'static [&'static str] {
        match self {
            Kind::WasmPolicy => &[WASM_MANIFEST_MEDIA_TYPE],
            Kind::Bytecode => &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
        }
    }

    fn config_types(self) -> &'static [&'static str] {
        match self {
            Kind::WasmPolicy => &[WASM_MANIFEST_CONFIG_MEDIA_TYPE],
            Kind::Bytecode => &[IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE],
        }
    }

    fn layer_types(self) -> &'static [&'static str] {
        match self {
            Kind::WasmPolicy => &[WASM_LAYER_MEDIA_TYPE],
            Kind::Bytecode => &[
                IMAGE_LAYER_GZIP_MEDIA_TYPE,
                IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
            ],
        }
    }

    /// Whether the config blob is part of the artifact: fetched, verified
    /// against its digest, cached and handed to [`Artifact::decode`].
    pub(crate) fn needs_config(self) -> bool {
        matches!(self, Kind::Bytecode)
    }
}

/// What the fetcher hands out for one kind, decoded from blobs that were
/// already verified against their digests. Decoding is pure: the same blobs
/// always give the same answer, so a failure is final (no refetch helps).
pub(crate) trait Artifact: Sized + Send + 'static {
    /// Media types and the role of the config.
    const KIND: Kind;
    /// Checks the content; `config` is `Some` exactly when
    /// [`Kind::needs_config`].
    fn decode(subject: &str, config: Option<&[u8]>, layer: &[u8]) -> Result<Self, OciError>;
}

/// A Wasm policy layer: nothing beyond the magic to decode.
pub(crate) struct WasmLayer;

impl Artifact for WasmLayer {
    const KIND: Kind = Kind::WasmPolicy;
    fn decode(subject: &str, _config: Option<&[u8]>, layer: &[u8]) -> Result<Self, OciError> {
        check_wasm(subject, layer).map(|()| WasmLayer)
    }
}

/// The descriptors of a validated manifest.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The config descriptor (digest and size validated only when the kind
    /// needs the config).
    pub config: OciDescriptor,
    /// The single layer.
    pub layer: OciDescriptor,
}

fn one_of(types: &[&str]) -> String {
    types.join(" or ")
}

/// Checks size and media types (manifest, config, exactly one layer) for
/// `kind`, the digest format and announced size of the blobs that will be
/// fetched; returns their descriptors.
pub(crate) fn validate_manifest(
    kind: Kind,
    reference: &str,
    bytes: &[u8],
) -> Result<Layout, OciError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(OciError::TooLarge {
            reference: reference.to_string(),
            what: "manifest",
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let wrong = |what: &'static str, expected: &[&str], found: String| OciError::WrongMediaType {
        reference: reference.to_string(),
        what,
        expected: one_of(expected),
        found,
    };
    // Look at mediaType first so an index or a Docker manifest list is
    // reported as such, not as a parse error.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|source| OciError::InvalidManifest {
        reference: reference.to_string(),
        source,
    })?;
    // mediaType is optional in an OCI image manifest; any other value is refused.
    if let Some(mt) = head.media_type {
        if !kind.manifest_types().contains(&mt.as_str()) {
            return Err(wrong("manifest", kind.manifest_types(), mt));
        }
    }
    let manifest: OciImageManifest =
        serde_json::from_slice(bytes).map_err(|source| OciError::InvalidManifest {
            reference: reference.to_string(),
            source,
        })?;
    if !kind
        .config_types()
        .contains(&manifest.config.media_type.as_str())
    {
        return Err(wrong(
            "config",
            kind.config_types(),
            manifest.config.media_type,
        ));
    }
    let mut layers = manifest.layers;
    if layers.len() != 1 {
        return Err(wrong(
            "layer count",
            &["1"],
            format!("{} layers", layers.len()),
        ));
    }
    let layer = layers.remove(0);
    if !kind.layer_types().contains(&layer.media_type.as_str()) {
        return Err(wrong("layer", kind.layer_types(), layer.media_type));
    }
    check_descriptor(reference, "layer", &layer, MAX_LAYER_BYTES)?;
    if kind.needs_config() {
        check_descriptor(reference, "config", &manifest.config, MAX_CONFIG_BYTES)?;
    }
    Ok(Layout {
        config: manifest.config,
        layer,
    })
}

/// A blob to be fetched: a well-formed digest and an announced size within `limit`.
fn check_descriptor(
    reference: &str,
    what: &'static str,
    d: &OciDescriptor,
    limit: u64,
) -> Result<(), OciError> {
    validate_digest(&d.digest).map_err(|reason| OciError::InvalidReference {
        reference: reference.to_string(),
        reason: format!("{what} {reason}"),
    })?;
    let size = u64::try_from(d.size).unwrap_or(u64::MAX);
    if size > limit {
        return Err(OciError::TooLarge {
            reference: reference.to_string(),
            what,
            size,
            limit,
        });
    }
    Ok(())
}

/// Checks the `\0asm` magic.
pub(crate) fn check_wasm(subject: &str, bytes: &[u8]) -> Result<(), OciError> {
    if bytes.starts_with(WASM_MAGIC) {
        Ok(())
    } else {
        Err(OciError::NotWasm {
            subject: subject.to_string(),
            reason: "missing the \\0asm magic number".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config_mt: &str, layers: &[&str], mt: Option<&str>) -> Vec<u8> {
        let d = sha256_digest(b"x");
        let layers: Vec<_> = layers
            .iter()
            .map(|m| serde_json::json!({"mediaType": m, "digest": d, "size": 1}))
            .collect();
        let mut v = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": config_mt, "digest": d, "size": 1},
            "layers": layers,
        });
        if let Some(mt) = mt {
            v["mediaType"] = mt.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn media_types() {
        let cfg = WASM_MANIFEST_CONFIG_MEDIA_TYPE;
        let wasm = WASM_LAYER_MEDIA_TYPE;
        let oci = Some(WASM_MANIFEST_MEDIA_TYPE);
        let v = |m: &[u8]| validate_manifest(Kind::WasmPolicy, "r", m);
        assert!(v(&manifest(cfg, &[wasm], oci)).is_ok());
        assert!(v(&manifest(cfg, &[wasm], None)).is_ok());
        for (m, what) in [
            (manifest("application/json", &[wasm], oci), "config"),
            (manifest(cfg, &["application/octet-stream"], oci), "layer"),
            (manifest(cfg, &[wasm, wasm], oci), "layer count"),
            (manifest(cfg, &[], oci), "layer count"),
            (
                manifest(
                    cfg,
                    &[wasm],
                    Some("application/vnd.oci.image.index.v1+json"),
                ),
                "manifest",
            ),
        ] {
            match v(&m) {
                Err(OciError::WrongMediaType { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(matches!(v(b"{"), Err(OciError::InvalidManifest { .. })));
    }

    #[test]
    fn bytecode_media_types() {
        use oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
        let v = |m: &[u8]| validate_manifest(Kind::Bytecode, "r", m);
        let gz = IMAGE_LAYER_GZIP_MEDIA_TYPE;
        for (cfg, layer, mt) in [
            (IMAGE_CONFIG_MEDIA_TYPE, gz, Some(OCI_IMAGE_MEDIA_TYPE)),
            (IMAGE_CONFIG_MEDIA_TYPE, gz, None),
            (
                IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
                IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
                Some(IMAGE_MANIFEST_MEDIA_TYPE),
            ),
        ] {
            let l = v(&manifest(cfg, &[layer], mt)).expect(layer);
            assert_eq!(l.layer.media_type, layer);
            assert_eq!(l.config.media_type, cfg);
        }
        for (m, what) in [
            (
                manifest(IMAGE_CONFIG_MEDIA_TYPE, &[IMAGE_LAYER_MEDIA_TYPE], None),
                "layer",
            ),
            (
                manifest(IMAGE_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE], None),
                "layer",
            ),
            (
                manifest(WASM_MANIFEST_CONFIG_MEDIA_TYPE, &[gz], None),
                "config",
            ),
            (
                manifest(IMAGE_CONFIG_MEDIA_TYPE, &[gz, gz], None),
                "layer count",
            ),
        ] {
            match v(&m) {
                Err(OciError::WrongMediaType { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        // The config is fetched for bytecode images: its size is bounded.
        let mut big: serde_json::Value =
            serde_json::from_slice(&manifest(IMAGE_CONFIG_MEDIA_TYPE, &[gz], None)).unwrap();
        big["config"]["size"] = (MAX_CONFIG_BYTES + 1).into();
        assert!(matches!(
            v(&serde_json::to_vec(&big).unwrap()),
            Err(OciError::TooLarge { what: "config", .. })
        ));
    }

    #[test]
    fn digest_format() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(check_wasm("x", b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_wasm("x", b"\x7fELF"),
            Err(OciError::NotWasm { .. })
        ));
    }
}
