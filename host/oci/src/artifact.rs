//! What a policy artifact must look like, checked identically on bytes from
//! the registry and on bytes read back from the cache.

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_wasm::{WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WASM_MANIFEST_MEDIA_TYPE};
use sha2::{Digest as _, Sha256};

use crate::reference::validate_digest;
use crate::OciError;

/// The Wasm binary magic number.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Largest manifest accepted (the OCI distribution spec recommends 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Largest Wasm layer accepted.
pub const MAX_LAYER_BYTES: u64 = 64 * 1024 * 1024;

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

/// Checks the media types (manifest, config, exactly one `application/wasm`
/// layer), the layer digest format and its announced size; returns the layer
/// descriptor.
pub(crate) fn validate_manifest(reference: &str, bytes: &[u8]) -> Result<OciDescriptor, OciError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(OciError::TooLarge {
            reference: reference.to_string(),
            what: "manifest",
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let wrong = |what: &'static str, expected: &str, found: String| OciError::WrongMediaType {
        reference: reference.to_string(),
        what,
        expected: expected.to_string(),
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
        if mt != WASM_MANIFEST_MEDIA_TYPE {
            return Err(wrong("manifest", WASM_MANIFEST_MEDIA_TYPE, mt));
        }
    }
    let manifest: OciImageManifest =
        serde_json::from_slice(bytes).map_err(|source| OciError::InvalidManifest {
            reference: reference.to_string(),
            source,
        })?;
    if manifest.config.media_type != WASM_MANIFEST_CONFIG_MEDIA_TYPE {
        return Err(wrong(
            "config",
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            manifest.config.media_type,
        ));
    }
    let mut layers = manifest.layers;
    if layers.len() != 1 {
        return Err(wrong(
            "layer count",
            "1",
            format!("{} layers", layers.len()),
        ));
    }
    let layer = layers.remove(0);
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(wrong("layer", WASM_LAYER_MEDIA_TYPE, layer.media_type));
    }
    validate_digest(&layer.digest).map_err(|reason| OciError::InvalidReference {
        reference: reference.to_string(),
        reason: format!("layer {reason}"),
    })?;
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > MAX_LAYER_BYTES {
        return Err(OciError::TooLarge {
            reference: reference.to_string(),
            what: "layer",
            size,
            limit: MAX_LAYER_BYTES,
        });
    }
    Ok(layer)
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
        assert!(validate_manifest("r", &manifest(cfg, &[wasm], oci)).is_ok());
        assert!(validate_manifest("r", &manifest(cfg, &[wasm], None)).is_ok());
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
            match validate_manifest("r", &m) {
                Err(OciError::WrongMediaType { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(matches!(
            validate_manifest("r", b"{"),
            Err(OciError::InvalidManifest { .. })
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
