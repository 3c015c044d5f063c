//! The pod annotations that carry, from Allocate to `NodePublishVolume`,
//! what each device's volume holds: one annotation per device,
//! `csi.afxdp.io/device.<device>`, whose value is a JSON [`DeviceEntry`].
//! They are hints for the volume's layout, never authority: the node
//! service gives a pod a device's maps only when afxdp-dp's own state says
//! the device is allocated to that pod.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sharing;
use crate::state::Allocation;

/// The prefix of a device's annotation key; the device name follows.
pub const DEVICE_PREFIX: &str = "csi.afxdp.io/device.";

/// What the pod's volume holds for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEntry {
    /// The pool the device was allocated from.
    pub pool: String,
    /// The program attached to the device, as afxdp-dp records it
    /// (`builtin (xsk_redirect)`, `image registry/repo@sha256:... (fn)`).
    pub program: String,
    /// The maps pinned in the device's directory of the volume.
    pub maps: Vec<String>,
    /// Where the device's directory appears in the container when the
    /// volume is mounted at `/tmp/afxdp_dp` (the path the pinned mode uses).
    pub mount_path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("device name {0:?} cannot be part of an annotation key (letters, digits, '-', '_' and '.', starting and ending with a letter or digit)")]
    DeviceName(String),
    #[error("annotation {key}: {detail}")]
    Value { key: String, detail: String },
}

/// The annotation key of `device`.
pub fn key(device: &str) -> Result<String, AnnotationError> {
    let name = format!("device.{device}");
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = device
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if device.is_empty() || name.len() > 63 || !device.chars().all(ok_char) || !ends_ok {
        return Err(AnnotationError::DeviceName(device.to_string()));
    }
    Ok(format!("{DEVICE_PREFIX}{device}"))
}

/// The annotations of `allocations` (all given to the same pod).
pub fn for_allocations(
    allocations: &[Allocation],
) -> Result<BTreeMap<String, String>, AnnotationError> {
    allocations
        .iter()
        .map(|a| {
            let entry = DeviceEntry {
                pool: a.pool.clone(),
                program: a.program.clone(),
                maps: vec![afxdp_program::XSKS_MAP_NAME.to_string()],
                mount_path: sharing::container_dir(&a.device).display().to_string(),
            };
            let value = serde_json::to_string(&entry).map_err(|e| AnnotationError::Value {
                key: a.device.clone(),
                detail: e.to_string(),
            })?;
            Ok((key(&a.device)?, value))
        })
        .collect()
}

/// The devices a pod's annotations name, with their entries, by device.
pub fn parse(
    annotations: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, DeviceEntry>, AnnotationError> {
    let mut out = BTreeMap::new();
    for (k, v) in annotations {
        let Some(device) = k.strip_prefix(DEVICE_PREFIX) else {
            continue;
        };
        let bad = |detail: String| AnnotationError::Value {
            key: k.clone(),
            detail,
        };
        if key(device)? != *k {
            return Err(bad("not a device annotation".into()));
        }
        let entry: DeviceEntry = serde_json::from_str(v).map_err(|e| bad(e.to_string()))?;
        if entry.maps.is_empty() {
            return Err(bad("names no map".into()));
        }
        for m in &entry.maps {
            if m.is_empty() || m == "." || m == ".." || m.contains(['/', '\0']) {
                return Err(bad(format!("map name {m:?} is not a file name")));
            }
        }
        out.insert(device.to_string(), entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_netdev_names_that_fit_an_annotation() {
        assert_eq!(key("afxk0").unwrap(), "csi.afxdp.io/device.afxk0");
        assert_eq!(key("eth0.100").unwrap(), "csi.afxdp.io/device.eth0.100");
        for bad in ["", "a@b", "dev-", "a b", "x/y"] {
            assert!(key(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn entries_round_trip_and_other_annotations_are_ignored() {
        let entry = DeviceEntry {
            pool: "fast".into(),
            program: "builtin".into(),
            maps: vec!["xsks_map".into()],
            mount_path: "/tmp/afxdp_dp/afxk0".into(),
        };
        let mut ann = BTreeMap::new();
        ann.insert(
            key("afxk0").unwrap(),
            serde_json::to_string(&entry).unwrap(),
        );
        ann.insert("example.com/other".into(), "x".into());
        ann.insert("csi.afxdp.io/thru-annotations".into(), "true".into());
        let parsed = parse(&ann).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed["afxk0"], entry);
        assert!(ann["csi.afxdp.io/device.afxk0"].contains("\"mountPath\""));
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut ann = BTreeMap::new();
        ann.insert("csi.afxdp.io/device.afxk0".into(), "{not json".into());
        let e = parse(&ann).unwrap_err().to_string();
        assert!(e.contains("csi.afxdp.io/device.afxk0"), "{e}");
        ann.insert(
            "csi.afxdp.io/device.afxk0".into(),
            r#"{"pool":"p","program":"b","maps":[],"mountPath":"/x"}"#.into(),
        );
        assert!(parse(&ann)
            .unwrap_err()
            .to_string()
            .contains("names no map"));
    }
}
