//! The CNI commands.

use std::path::Path;
use std::time::Duration;

use afxdp_netdev::NetnsHandle;
use afxdp_proto::nodeapi::{DeviceRef, DeviceSettings};

use crate::config::{Env, NetConf, SUPPORTED_VERSIONS};
use crate::error::{CniError, Code};
use crate::node::{NodeClient, NodeError};
use crate::result::{CniResult, Interface};

/// What a command prints on success (nothing for DEL).
pub type Output = Option<String>;

fn timeout(conf: &NetConf) -> Duration {
    Duration::from_millis(conf.node_api_timeout_ms.unwrap_or(2000))
}

fn device_ref(env: &Env, conf: &NetConf, device: &str, addresses: Vec<String>) -> DeviceRef {
    // The pod's netns identity (the UDS handshake checks its peer against it).
    let (netns_dev, netns_ino) = env
        .netns
        .as_deref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        })
        .unwrap_or((0, 0));
    DeviceRef {
        netns_dev,
        netns_ino,
        device: device.to_string(),
        container_id: env.container_id.clone(),
        pod_namespace: env
            .args
            .get("K8S_POD_NAMESPACE")
            .cloned()
            .unwrap_or_default(),
        pod_name: env.args.get("K8S_POD_NAME").cloned().unwrap_or_default(),
        // The IPAM lease's addresses (filter rules are templated with them).
        addresses,
        network: conf.name.clone(),
        ifname: env.ifname.clone(),
    }
}

fn netlink_err(what: &str) -> impl FnOnce(afxdp_netdev::NetdevError) -> CniError + '_ {
    move |e| CniError::new(Code::Netlink, what, e.to_string())
}

fn open_netns(path: &Path) -> Result<NetnsHandle, CniError> {
    NetnsHandle::open(path).map_err(|e| {
        CniError::new(
            Code::UnknownContainer,
            "cannot open the container netns",
            e.to_string(),
        )
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CniError> {
    serde_json::to_string(v).map_err(|e| CniError::new(Code::Io, "encoding result", e.to_string()))
}

/// What afxdp-dp decided for `device` (ADD, CHECK); unreachable or silent
/// afxdp-dp is "try again later".
fn device_settings(
    env: &Env,
    conf: &NetConf,
    device: &str,
    addresses: Vec<String>,
) -> Result<DeviceSettings, CniError> {
    let again = |msg: &str| {
        let msg = msg.to_string();
        move |e: NodeError| CniError::new(Code::TryAgainLater, msg, e.to_string())
    };
    NodeClient::connect(&conf.node_api_socket(), timeout(conf))
        .map_err(again("afxdp-dp is not reachable"))?
        .settings(device_ref(env, conf, device, addresses))
        .map_err(again("afxdp-dp did not answer"))
}

/// The netdev to plumb for `device`: itself, or the subfunction netdev
/// afxdp-dp created for a `cdq` slot at Allocate.
fn plumbed_netdev<'a>(device: &'a str, settings: &'a DeviceSettings) -> &'a str {
    if settings.netdev.is_empty() {
        device
    } else {
        &settings.netdev
    }
}

/// Run one invocation.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Output, CniError> {
    match env.command.as_str() {
        "VERSION" => version(),
        "ADD" => add(env, &NetConf::parse(stdin)?, stdin),
        "DEL" => del(env, &NetConf::parse(stdin)?, stdin),
        "CHECK" => check(env, &NetConf::parse(stdin)?),
        "STATUS" => status(&NetConf::parse(stdin)?),
        "GC" => gc(&NetConf::parse(stdin)?, stdin),
        other => Err(CniError::new(
            Code::InvalidEnv,
            format!("unsupported CNI_COMMAND {other:?}"),
            "",
        )),
    }
}

fn version() -> Result<Output, CniError> {
    let v = serde_json::json!({ "cniVersion": "1.1.0", "supportedVersions": SUPPORTED_VERSIONS });
    Ok(Some(to_json(&v)?))
}

/// ADD: lease addresses (IPAM, when configured), check afxdp-dp allocated
/// the device, move it into the pod netns under its own name, set it up,
/// program its filter rules, apply the addresses and routes. All or
/// nothing: a failing step undoes the ones before it (the device moves
/// back, the rules go, the lease is released).
fn add(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<Output, CniError> {
    let device = conf.device()?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is required", ""))?;
    let ipam = crate::ipam::plugin_of(conf.ipam.as_ref())?;
    let lease = ipam
        .as_deref()
        .map(|p| crate::ipam::add(p, stdin))
        .transpose()?;
    let leased = ipam
        .as_deref()
        .map(|p| crate::ipam::LeaseGuard::new(p, stdin));
    let addresses = match &lease {
        Some(l) => l
            .addresses()?
            .iter()
            .map(|a| a.address.to_string())
            .collect(),
        None => Vec::new(),
    };
    let settings = device_settings(env, conf, device, addresses)?;
    if !settings.allocated {
        return Err(CniError::new(
            Code::NotAllocated,
            format!("device {device} is not allocated by afxdp-dp"),
            "the pod must request the device's afxdp/<pool> resource",
        ));
    }
    let device = plumbed_netdev(device, &settings);
    let host = NetnsHandle::current().map_err(netlink_err("opening the host netns"))?;
    let pod = open_netns(netns_path)?;
    if !afxdp_netdev::link_exists(&pod, device).map_err(netlink_err("looking up the device"))? {
        afxdp_netdev::move_link(device, &host, &pod)
            .map_err(netlink_err("moving the device into the pod netns"))?;
    }
    let moved_back = MoveBackGuard {
        device,
        host: &host,
        pod: &pod,
        armed: true,
    };
    if let Some(mtu) = conf.mtu {
        afxdp_netdev::set_mtu(&pod, device, mtu).map_err(netlink_err("setting the MTU"))?;
    }
    afxdp_netdev::set_link_up(&pod, device).map_err(netlink_err("setting the device up"))?;
    let programmed = crate::filters::apply(&pod, device, &settings)?;
    let rules = RulesGuard {
        pod: &pod,
        programmed: &programmed,
        armed: true,
    };
    if let Some(lease) = &lease {
        crate::ipam::apply(&pod, device, lease)?;
    }
    record_rules(env, conf, device, &programmed)?;
    let nd = afxdp_netdev::in_netns(&pod, || afxdp_netdev::get(device))
        .map_err(netlink_err("entering the pod netns"))?
        .map_err(netlink_err("reading the device"))?;
    rules.disarm();
    moved_back.disarm();
    if let Some(l) = leased {
        l.disarm();
    }
    tracing::info!(device, netns = %netns_path.display(), pool = %settings.pool, "device plumbed");
    let iface = Interface {
        name: device.to_string(),
        mac: nd.as_ref().and_then(|n| n.mac.clone()),
        mtu: nd.as_ref().map(|n| n.mtu),
        sandbox: Some(netns_path.display().to_string()),
        pci_id: (!settings.pci_address.is_empty()).then(|| settings.pci_address.clone()),
    };
    let mut result = CniResult::with_interface(&conf.cni_version, iface);
    if let Some(lease) = &lease {
        result = result.with_lease(lease);
    }
    Ok(Some(to_json(&result)?))
}

/// Record the programmed filter rules for DEL (none: nothing to record).
fn record_rules(
    env: &Env,
    conf: &NetConf,
    device: &str,
    programmed: &crate::filters::Programmed,
) -> Result<(), CniError> {
    if programmed.rule_locations.is_empty() {
        return Ok(());
    }
    let file = crate::filters::cache_file(&conf.cache_dir(), &env.container_id, device);
    crate::filters::save(&file, programmed)
        .map_err(|e| CniError::new(Code::Io, "recording filter rules", e.to_string()))
}

/// Removes the filter rules ADD programmed if a later ADD step fails.
struct RulesGuard<'a> {
    pod: &'a NetnsHandle,
    programmed: &'a crate::filters::Programmed,
    armed: bool,
}

impl RulesGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for RulesGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            crate::filters::remove(self.pod, self.programmed);
        }
    }
}

/// Undo of the netns move if a later ADD step fails.
struct MoveBackGuard<'a> {
    device: &'a str,
    host: &'a NetnsHandle,
    pod: &'a NetnsHandle,
    armed: bool,
}

impl MoveBackGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for MoveBackGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = afxdp_netdev::move_link(self.device, self.pod, self.host) {
                tracing::error!(device = self.device, error = %e, "undo: moving the device back failed");
            }
        }
    }
}

/// DEL: best effort and idempotent. Move the device back if it is still in the
/// pod netns while afxdp-dp releases it (both wait on the kernel: the move
/// on an RCU barrier, the detach on a grace period; run together, DEL costs
/// one), then release the IPAM lease; a missing netns, a device already
/// back, or afxdp-dp down are not errors.
fn del(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<Output, CniError> {
    match conf.device() {
        Ok(device) => std::thread::scope(|s| {
            let release = s.spawn(|| release(env, conf, device));
            let moved = move_back(env, conf, device);
            if release.join().is_err() {
                tracing::error!(device, "the release thread panicked");
            }
            moved
        })?,
        // libcni's GC deletes stale attachments with the network's config,
        // which names no device: afxdp-dp says which one the attachment
        // claimed, released first, then moved back.
        Err(e) => {
            tracing::info!(reason = %e, "DEL without a device: asking afxdp-dp what the attachment claimed");
            if let Some(device) = release(env, conf, "") {
                move_back(env, conf, &device)?;
            }
        }
    }
    // Last: the lease is released even when the steps above found nothing.
    if let Some(plugin) = crate::ipam::plugin_of(conf.ipam.as_ref())? {
        crate::ipam::del(&plugin, stdin)?;
    }
    Ok(None)
}

/// DEL's move: filter rules removed, the device down and back in the host
/// netns, if it is still in the pod's.
fn move_back(env: &Env, conf: &NetConf, device: &str) -> Result<(), CniError> {
    let Some(path) = env.netns.as_deref() else {
        return Ok(());
    };
    let pod = match NetnsHandle::open(path) {
        Ok(pod) => pod,
        Err(e) => {
            tracing::info!(netns = %path.display(), error = %e, "pod netns gone; nothing to move");
            return Ok(());
        }
    };
    let host = NetnsHandle::current().map_err(netlink_err("opening the host netns"))?;
    let file = crate::filters::cache_file(&conf.cache_dir(), &env.container_id, device);
    if let Some(programmed) = crate::filters::take(&file) {
        crate::filters::remove(&pod, &programmed);
    }
    if !afxdp_netdev::link_exists(&pod, device).map_err(netlink_err("looking up the device"))? {
        tracing::info!(device, "device not in the pod netns (already returned?)");
        return Ok(());
    }
    // Down first, as the kernel would leave it on netns teardown.
    if let Err(e) = afxdp_netdev::set_link_down(&pod, device) {
        tracing::warn!(device, error = %e, "setting the device down failed");
    }
    afxdp_netdev::move_link(device, &pod, &host).map_err(netlink_err("moving the device back"))?;
    tracing::info!(device, "device returned to the host netns");
    Ok(())
}

/// DEL's release: tell afxdp-dp (best effort: unreachable, it reconciles
/// at its next start). `device` empty: the one the attachment claimed.
/// Returns the device afxdp-dp named, if any.
fn release(env: &Env, conf: &NetConf, device: &str) -> Option<String> {
    match NodeClient::connect(&conf.node_api_socket(), timeout(conf))
        .and_then(|mut c| c.release(device_ref(env, conf, device, Vec::new())))
    {
        Ok((released, named)) => {
            tracing::info!(device = %named, released, "afxdp-dp released the device");
            return (!named.is_empty()).then_some(named);
        }
        Err(NodeError::Unreachable { path, detail }) => {
            tracing::warn!(
                device,
                path,
                detail,
                "afxdp-dp unreachable; it reconciles on restart"
            )
        }
        Err(e) => tracing::warn!(device, error = %e, "release failed"),
    }
    None
}

/// CHECK: the device is in the pod netns, up, with the addresses and
/// routes `prevResult` says, and still allocated.
fn check(env: &Env, conf: &NetConf) -> Result<Output, CniError> {
    let device = conf.device()?;
    if conf.prev_result.is_none() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "CHECK needs prevResult",
            "",
        ));
    }
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is required", ""))?;
    let pod = open_netns(netns_path)?;
    let s = device_settings(env, conf, device, Vec::new())?;
    let device = plumbed_netdev(device, &s);
    let nd = afxdp_netdev::in_netns(&pod, || afxdp_netdev::get(device))
        .map_err(netlink_err("entering the pod netns"))?
        .map_err(netlink_err("reading the device"))?
        .ok_or_else(|| {
            CniError::new(
                Code::CheckFailed,
                format!("device {device} is not in the pod netns"),
                "",
            )
        })?;
    if !nd.admin_up {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("device {device} is down"),
            "",
        ));
    }
    if let Some(prev) = &conf.prev_result {
        crate::ipam::check(&pod, device, &nd.addresses, prev)?;
    }
    if !s.allocated {
        return Err(CniError::new(
            Code::CheckFailed,
            format!("device {device} is no longer allocated"),
            "",
        ));
    }
    Ok(None)
}

/// GC: afxdp-dp releases every device plumbed through this network that
/// is not among `cni.dev/valid-attachments`; the IPAM plugin, when it
/// speaks GC (spec 1.1), releases its stale leases.
fn gc(conf: &NetConf, stdin: &[u8]) -> Result<Output, CniError> {
    let valid = conf
        .valid_attachments
        .iter()
        .map(|a| afxdp_proto::nodeapi::Attachment {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        })
        .collect();
    let released = NodeClient::connect(&conf.node_api_socket(), timeout(conf))
        .and_then(|mut c| {
            c.collect_garbage(afxdp_proto::nodeapi::GcRequest {
                network: conf.name.clone(),
                valid,
            })
        })
        .map_err(|e| CniError::new(Code::TryAgainLater, "afxdp-dp GC failed", e.to_string()))?;
    tracing::info!(network = %conf.name, ?released, "GC");
    if let Some(plugin) = crate::ipam::plugin_of(conf.ipam.as_ref())? {
        crate::ipam::gc(&plugin, stdin);
    }
    Ok(None)
}

/// STATUS: success when afxdp-dp answers on the node API and is ready
/// (config loaded, every pool registered with kubelet); else code 50 with
/// the reason.
fn status(conf: &NetConf) -> Result<Output, CniError> {
    let unavailable =
        |reason: String| CniError::new(Code::NotAvailable, "afxdp-dp is not available", reason);
    NodeClient::connect(&conf.node_api_socket(), timeout(conf))
        .and_then(|mut c| c.status())
        .map_err(|e| unavailable(e.to_string()))?
        .map_err(|why| unavailable(format!("not ready: {why}")))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `cdq` slot's settings name the subfunction netdev ADD and CHECK
    /// plumb; other devices are plumbed under their own name.
    #[test]
    fn the_plumbed_netdev_is_the_subfunction_of_a_cdq_slot() {
        let whole = DeviceSettings {
            device: "eth1".into(),
            allocated: true,
            ..Default::default()
        };
        assert_eq!(plumbed_netdev("eth1", &whole), "eth1");
        let slot = DeviceSettings {
            device: "ens801f0sf1".into(),
            allocated: true,
            netdev: "enp129s0f0s1".into(),
            ..Default::default()
        };
        assert_eq!(plumbed_netdev("ens801f0sf1", &slot), "enp129s0f0s1");
    }
}
