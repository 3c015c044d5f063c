//! NIC settings decided at Allocate time, applied by ADD inside the pod netns:
//! channel count and ntuple filter rules. Rule locations are kept in a small
//! cache file per container so DEL can remove exactly what ADD programmed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use afxdp_netdev::ntuple::{self, FlowType, NtupleAction, NtupleRule};
use afxdp_netdev::NetnsHandle;
use afxdp_proto::nodeapi::{DeviceSettings, FilterRule};
use serde::{Deserialize, Serialize};

use crate::error::{CniError, Code};

/// Default directory of the per-container cache files.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni/afxdp-cni";

/// What ADD programmed on a device (the cache file's content).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Programmed {
    pub device: String,
    /// Rule locations the driver chose.
    pub rule_locations: Vec<u32>,
}

/// The cache file of a container's device.
pub fn cache_file(dir: &Path, container_id: &str, device: &str) -> PathBuf {
    let safe: String = container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    dir.join(format!("{safe}-{device}.json"))
}

fn flow_type(s: &str) -> Option<FlowType> {
    Some(match s {
        "tcp4" => FlowType::Tcp4,
        "udp4" => FlowType::Udp4,
        "sctp4" => FlowType::Sctp4,
        "tcp6" => FlowType::Tcp6,
        "udp6" => FlowType::Udp6,
        "sctp6" => FlowType::Sctp6,
        _ => return None,
    })
}

fn ip_pair(ip: &str, mask: &str, v6: bool) -> Result<Option<(IpAddr, IpAddr)>, String> {
    if ip.is_empty() {
        return Ok(None);
    }
    let addr: IpAddr = ip.parse().map_err(|_| format!("bad address {ip:?}"))?;
    let full: IpAddr = if v6 {
        IpAddr::from([0xffu8; 16])
    } else {
        IpAddr::from([0xffu8; 4])
    };
    let m: IpAddr = if mask.is_empty() {
        full
    } else {
        mask.parse().map_err(|_| format!("bad mask {mask:?}"))?
    };
    Ok(Some((addr, m)))
}

fn port_pair(port: u32, mask: u32) -> Result<Option<(u16, u16)>, String> {
    if mask == 0 && port == 0 {
        return Ok(None);
    }
    let p = u16::try_from(port).map_err(|_| format!("bad port {port}"))?;
    let m = if mask == 0 {
        0xffff
    } else {
        u16::try_from(mask).map_err(|_| format!("bad port mask {mask}"))?
    };
    Ok(Some((p, m)))
}

/// The node API's rule as an ntuple rule (afxdp-dp validated it already;
/// this only refuses what cannot be encoded).
/// A rule in a few words for error messages: `udp4 dst port 4789 -> queue 0`.
fn describe(r: &FilterRule) -> String {
    let mut d = r.flow_type.clone();
    if !r.dst_ip.is_empty() {
        d += &format!(" dst {}", r.dst_ip);
    }
    if r.dst_port != 0 {
        d += &format!(" dst port {}", r.dst_port);
    }
    if r.drop {
        d + " -> drop"
    } else {
        d + &format!(" -> queue {}", r.queue)
    }
}

pub fn to_ntuple(r: &FilterRule) -> Result<NtupleRule, String> {
    let ft =
        flow_type(&r.flow_type).ok_or_else(|| format!("unknown flow type {:?}", r.flow_type))?;
    let v6 = ft.is_v6();
    Ok(NtupleRule {
        flow_type: ft,
        src_ip: ip_pair(&r.src_ip, &r.src_ip_mask, v6)?,
        dst_ip: ip_pair(&r.dst_ip, &r.dst_ip_mask, v6)?,
        src_port: port_pair(r.src_port, r.src_port_mask)?,
        dst_port: port_pair(r.dst_port, r.dst_port_mask)?,
        action: if r.drop {
            NtupleAction::Drop
        } else {
            NtupleAction::Queue(r.queue)
        },
    })
}

/// Apply channels and filter rules to `device` in `pod`. A refusal fails the
/// ADD when `settings.filters_required`, else it is logged and skipped.
pub fn apply(
    pod: &NetnsHandle,
    device: &str,
    settings: &DeviceSettings,
) -> Result<Programmed, CniError> {
    let mut done = Programmed {
        device: device.to_string(),
        rule_locations: Vec::new(),
    };
    if settings.channels > 0 {
        let n = settings.channels;
        let dev = device.to_string();
        afxdp_netdev::in_netns(pod, move || afxdp_netdev::ethtool::set_channels(&dev, n))
            .map_err(|e| CniError::new(Code::Netlink, "entering the pod netns", e.to_string()))?
            .map_err(|e| {
                CniError::new(
                    Code::Netlink,
                    format!("setting {n} channels on {device}"),
                    e.to_string(),
                )
            })?;
        tracing::info!(device, channels = n, "channels set");
    }
    for (i, r) in settings.filter_rules.iter().enumerate() {
        let rule = to_ntuple(r)
            .map_err(|e| CniError::new(Code::InvalidConfig, format!("filter rule {i}"), e))?;
        let dev = device.to_string();
        let outcome = afxdp_netdev::in_netns(pod, move || ntuple::insert(&dev, &rule))
            .map_err(|e| CniError::new(Code::Netlink, "entering the pod netns", e.to_string()))?;
        match outcome {
            Ok(loc) => {
                tracing::info!(device, rule = i, location = loc, "filter rule programmed");
                done.rule_locations.push(loc);
            }
            Err(e) if settings.filters_required => {
                // Undo what this ADD programmed before failing.
                remove(pod, &done);
                return Err(CniError::new(
                    Code::FilterRules,
                    format!(
                        "the NIC refused filter rule {i} of {device} ({})",
                        describe(r)
                    ),
                    e.to_string(),
                ));
            }
            Err(e) => {
                tracing::warn!(device, rule = i, error = %e, "NIC refused a filter rule; continuing (failurePolicy Ignore)")
            }
        }
    }
    Ok(done)
}

/// Remove the rules ADD programmed (best effort).
pub fn remove(pod: &NetnsHandle, done: &Programmed) {
    for &loc in &done.rule_locations {
        let dev = done.device.clone();
        match afxdp_netdev::in_netns(pod, move || ntuple::delete(&dev, loc)) {
            Ok(Ok(())) => {
                tracing::info!(device = %done.device, location = loc, "filter rule removed")
            }
            Ok(Err(e)) => {
                tracing::warn!(device = %done.device, location = loc, error = %e, "removing filter rule failed")
            }
            Err(e) => tracing::warn!(error = %e, "entering the pod netns failed"),
        }
    }
}

/// Save what ADD programmed (atomically: temp file + rename).
pub fn save(file: &Path, done: &Programmed) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(done).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, file)
}

/// Load and delete the cache file (DEL); `None` when there is none.
pub fn take(file: &Path) -> Option<Programmed> {
    let text = std::fs::read(file).ok()?;
    let _ = std::fs::remove_file(file);
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_convert_with_default_masks() {
        let r = FilterRule {
            flow_type: "udp4".into(),
            dst_ip: "10.0.0.2".into(),
            dst_port: 4789,
            queue: 2,
            ..Default::default()
        };
        let n = to_ntuple(&r).expect("convert");
        assert_eq!(
            n.dst_ip,
            Some((
                "10.0.0.2".parse().expect("ip"),
                "255.255.255.255".parse().expect("ip")
            ))
        );
        assert_eq!(n.dst_port, Some((4789, 0xffff)));
        assert_eq!(n.src_port, None);
        assert_eq!(n.action, NtupleAction::Queue(2));
        let bad = FilterRule {
            flow_type: "icmp".into(),
            ..Default::default()
        };
        assert!(to_ntuple(&bad).is_err());
        let port = FilterRule {
            flow_type: "tcp4".into(),
            dst_port: 70000,
            ..Default::default()
        };
        assert!(to_ntuple(&port).is_err());
    }

    #[test]
    fn cache_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = cache_file(dir.path(), "abc/../x", "eth1");
        assert!(f.starts_with(dir.path()) && f.file_name().is_some_and(|n| n == "abcx-eth1.json"));
        let p = Programmed {
            device: "eth1".into(),
            rule_locations: vec![3, 7],
        };
        save(&f, &p).expect("save");
        assert_eq!(take(&f), Some(p));
        assert_eq!(take(&f), None);
    }
}
