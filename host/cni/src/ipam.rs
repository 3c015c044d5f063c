//! IPAM delegation (CNI spec 1.1, "Delegated plugins"): the plugin named
//! by the config's `ipam.type`, found on `CNI_PATH`, run with the same
//! environment and network configuration; its result's addresses and
//! routes are applied inside the pod netns by ADD, and its lease released
//! by DEL and by any ADD that fails after leasing ([`LeaseGuard`]).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use afxdp_netdev::NetnsHandle;
use serde::Deserialize;

use crate::error::{CniError, Code};

/// The IPAM result fields afxdp-cni applies (the rest passes through).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Lease {
    #[serde(default)]
    pub ips: Vec<serde_json::Value>,
    #[serde(default)]
    pub routes: Vec<serde_json::Value>,
    #[serde(default)]
    pub dns: Option<serde_json::Value>,
}

/// An address of a lease: `10.0.0.5/24` and its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedIp {
    pub address: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
}

/// A route of a lease: `dst` (CIDR) through `gw` if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRoute {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gw: Option<IpAddr>,
}

fn bad_result(detail: impl Into<String>) -> CniError {
    CniError::new(Code::Decode, "the IPAM plugin's result", detail)
}

/// `a.b.c.d/n` or `x::y/n`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not CIDR"))?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{s:?}: prefix longer than {max}"));
    }
    Ok((ip, prefix))
}

fn opt_ip(v: &serde_json::Value, key: &str) -> Result<Option<IpAddr>, CniError> {
    v.get(key)
        .and_then(|g| g.as_str())
        .map(|g| {
            g.parse()
                .map_err(|e| bad_result(format!("{key} {g:?}: {e}")))
        })
        .transpose()
}

impl Lease {
    /// Its addresses.
    pub fn addresses(&self) -> Result<Vec<LeasedIp>, CniError> {
        self.ips
            .iter()
            .map(|ip| {
                let cidr = ip
                    .get("address")
                    .and_then(|a| a.as_str())
                    .ok_or_else(|| bad_result("an ips entry without address"))?;
                let (address, prefix) = parse_cidr(cidr).map_err(bad_result)?;
                Ok(LeasedIp {
                    address,
                    prefix,
                    gateway: opt_ip(ip, "gateway")?,
                })
            })
            .collect()
    }

    /// Its routes; one without `gw` goes through the gateway of the
    /// lease's address of its family, if any (as the reference plugins do).
    pub fn routes(&self) -> Result<Vec<LeasedRoute>, CniError> {
        let addresses = self.addresses()?;
        self.routes
            .iter()
            .map(|r| {
                let cidr = r
                    .get("dst")
                    .and_then(|d| d.as_str())
                    .ok_or_else(|| bad_result("a route without dst"))?;
                let (dst, prefix) = parse_cidr(cidr).map_err(bad_result)?;
                let gw = opt_ip(r, "gw")?.or_else(|| {
                    addresses
                        .iter()
                        .find(|a| a.address.is_ipv4() == dst.is_ipv4())
                        .and_then(|a| a.gateway)
                });
                Ok(LeasedRoute { dst, prefix, gw })
            })
            .collect()
    }

    /// The result's `ips`, each naming interface 0 (the pod's device).
    pub fn result_ips(&self) -> Vec<serde_json::Value> {
        self.ips
            .iter()
            .cloned()
            .map(|mut ip| {
                if let Some(o) = ip.as_object_mut() {
                    o.insert("interface".into(), 0.into());
                }
                ip
            })
            .collect()
    }
}

/// The IPAM plugin `ipam.type` of `stdin`'s config, if it names one.
pub fn plugin_of(ipam: Option<&serde_json::Value>) -> Result<Option<String>, CniError> {
    let Some(ipam) = ipam else { return Ok(None) };
    match ipam.get("type").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() && !t.contains('/') => Ok(Some(t.to_string())),
        _ => Err(CniError::new(
            Code::InvalidConfig,
            "ipam.type must name a plugin on CNI_PATH",
            format!("{ipam}"),
        )),
    }
}

/// The plugin binary `name` on `CNI_PATH`.
fn find(name: &str) -> Result<PathBuf, CniError> {
    let path = std::env::var("CNI_PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!("IPAM plugin {name} not found"),
                format!("CNI_PATH={path}"),
            )
        })
}

/// Run the IPAM plugin `name` for `command` with `stdin` (our own config);
/// its stdout on success, its error (code and message kept) otherwise.
fn exec(name: &str, command: &str, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let bin = find(name)?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                Code::Io,
                format!("running {}", bin.display()),
                e.to_string(),
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe: its
        // exit status tells.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Io, format!("waiting for {name}"), e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(delegated_error(name, &out.stdout, out.status))
}

/// A delegated plugin's error as ours: its code and message, prefixed.
fn delegated_error(name: &str, stdout: &[u8], status: std::process::ExitStatus) -> CniError {
    #[derive(Deserialize)]
    struct Wire {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<Wire>(stdout) {
        Ok(w) => CniError {
            code: w.code,
            msg: format!("IPAM plugin {name}: {}", w.msg),
            details: w.details,
        },
        Err(_) => CniError::new(
            Code::Io,
            format!("IPAM plugin {name} failed ({status})"),
            String::from_utf8_lossy(stdout).into_owned(),
        ),
    }
}

/// [`exec`], and when the plugin refuses the config's version (code 1:
/// Debian's plugins stop at 1.0.0 while runtimes send 1.1.0), once more
/// with the highest 1.x version it lists in VERSION: 1.x results read the
/// same.
fn exec_negotiated(name: &str, command: &str, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    match exec(name, command, stdin) {
        Err(e) if e.code == Code::IncompatibleVersion as u32 => {
            let Some(stdin) = downgraded(name, stdin)? else {
                return Err(e);
            };
            exec(name, command, &stdin)
        }
        other => other,
    }
}

/// `stdin` with the highest 1.x `cniVersion` plugin `name` supports,
/// `None` when the config is not 1.x or the plugin speaks no 1.x.
fn downgraded(name: &str, stdin: &[u8]) -> Result<Option<Vec<u8>>, CniError> {
    let mut conf: serde_json::Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(Code::Decode, "config", e.to_string()))?;
    if !conf["cniVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("1."))
    {
        return Ok(None);
    }
    let out = exec(name, "VERSION", br#"{"cniVersion":"1.0.0"}"#)?;
    let versions: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| bad_result(e.to_string()))?;
    let best = versions["supportedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|v| v.starts_with("1."))
        .max_by_key(|v| {
            v.split('.')
                .filter_map(|n| n.parse::<u32>().ok())
                .collect::<Vec<_>>()
        });
    let Some(best) = best else { return Ok(None) };
    tracing::info!(plugin = name, from = %conf["cniVersion"], to = best, "delegating with the plugin's highest version");
    conf["cniVersion"] = best.into();
    serde_json::to_vec(&conf)
        .map(Some)
        .map_err(|e| CniError::new(Code::Io, "config", e.to_string()))
}

/// IPAM ADD: lease addresses for this attachment.
pub fn add(name: &str, stdin: &[u8]) -> Result<Lease, CniError> {
    let out = exec_negotiated(name, "ADD", stdin)?;
    let lease: Lease = serde_json::from_slice(&out).map_err(|e| bad_result(e.to_string()))?;
    tracing::info!(plugin = name, ips = ?lease.addresses().ok(), "IPAM lease");
    Ok(lease)
}

/// IPAM DEL: release this attachment's lease (idempotent in the plugins).
pub fn del(name: &str, stdin: &[u8]) -> Result<(), CniError> {
    exec_negotiated(name, "DEL", stdin)
        .map(|_| tracing::info!(plugin = name, "IPAM lease released"))
}

/// IPAM GC (best effort): plugins older than spec 1.1 do not speak it.
pub fn gc(name: &str, stdin: &[u8]) {
    match exec(name, "GC", stdin) {
        Ok(_) => tracing::info!(plugin = name, "IPAM GC done"),
        Err(e) if e.code == Code::IncompatibleVersion as u32 => {
            tracing::info!(plugin = name, "IPAM plugin has no GC (spec 1.1)")
        }
        Err(e) => tracing::warn!(plugin = name, error = %e, "IPAM GC failed"),
    }
}

/// Apply `lease`'s addresses, then its routes, to `device` in `pod`.
pub fn apply(pod: &NetnsHandle, device: &str, lease: &Lease) -> Result<(), CniError> {
    let netlink = |what: &'static str| {
        move |e: afxdp_netdev::NetdevError| CniError::new(Code::Netlink, what, e.to_string())
    };
    for ip in lease.addresses()? {
        afxdp_netdev::add_address(pod, device, ip.address, ip.prefix)
            .map_err(netlink("adding an address"))?;
    }
    for r in lease.routes()? {
        afxdp_netdev::add_route(pod, device, r.dst, r.prefix, r.gw)
            .map_err(netlink("adding a route"))?;
    }
    Ok(())
}

/// CHECK against `prev` (the ADD result): every address `prev` puts on
/// `device` is on it (`have`: the device's addresses now), and, when it
/// has any, every route of `prev` is out of `device` in `pod`. The error
/// names what differs.
pub fn check(
    pod: &NetnsHandle,
    device: &str,
    have: &[IpAddr],
    prev: &serde_json::Value,
) -> Result<(), CniError> {
    let differs = |what: String| CniError::new(Code::CheckFailed, what, "");
    let ours = |ip: &serde_json::Value| match ip.get("interface").and_then(|i| i.as_u64()) {
        Some(i) => prev["interfaces"][i as usize]["name"].as_str() == Some(device),
        None => true,
    };
    let lease = Lease {
        ips: prev["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ip| ours(ip))
            .cloned()
            .collect(),
        routes: prev["routes"].as_array().cloned().unwrap_or_default(),
        dns: None,
    };
    let addresses = lease.addresses()?;
    for a in &addresses {
        if !have.contains(&a.address) {
            return Err(differs(format!(
                "address {}/{} is not on {device} (it has {have:?})",
                a.address, a.prefix
            )));
        }
    }
    if addresses.is_empty() {
        return Ok(());
    }
    let present = afxdp_netdev::routes(pod, device)
        .map_err(|e| CniError::new(Code::Netlink, "listing routes", e.to_string()))?;
    for r in lease.routes()? {
        let found = present.iter().any(|p| {
            p.dst == r.dst && p.prefix == r.prefix && (r.gw.is_none() || p.gateway == r.gw)
        });
        if !found {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(differs(format!(
                "route {}/{}{via} is not out of {device}",
                r.dst, r.prefix
            )));
        }
    }
    Ok(())
}

/// Releases a lease on drop unless disarmed: every ADD step after the
/// lease that fails gives it back.
pub struct LeaseGuard<'a> {
    plugin: &'a str,
    stdin: &'a [u8],
    armed: bool,
}

impl<'a> LeaseGuard<'a> {
    pub fn new(plugin: &'a str, stdin: &'a [u8]) -> Self {
        Self {
            plugin,
            stdin,
            armed: true,
        }
    }

    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = del(self.plugin, self.stdin) {
                tracing::error!(plugin = self.plugin, error = %e, "undo: releasing the IPAM lease failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_default_to_the_gateway_of_their_family() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "ips": [
                { "address": "10.1.0.5/24", "gateway": "10.1.0.1" },
                { "address": "fd00::5/64" }
            ],
            "routes": [
                { "dst": "0.0.0.0/0" },
                { "dst": "10.9.0.0/16", "gw": "10.1.0.254" },
                { "dst": "fd01::/48" }
            ]
        }))
        .expect("lease");
        let v4 = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            lease.addresses().expect("addresses")[0],
            LeasedIp {
                address: v4("10.1.0.5"),
                prefix: 24,
                gateway: Some(v4("10.1.0.1"))
            }
        );
        let routes = lease.routes().expect("routes");
        assert_eq!(routes[0].gw, Some(v4("10.1.0.1")));
        assert_eq!(routes[1].gw, Some(v4("10.1.0.254")));
        assert_eq!(routes[2].gw, None, "no v6 gateway: on-link");
        assert_eq!(lease.result_ips()[1]["interface"], 0);
    }

    #[test]
    fn bad_leases_and_configs_are_clear_errors() {
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("fd00::1/129").is_err());
        let lease: Lease =
            serde_json::from_value(serde_json::json!({ "ips": [{ "address": "nonsense" }] }))
                .expect("lease");
        assert_eq!(
            lease.addresses().expect_err("bad").code,
            Code::Decode as u32
        );
        let bad = serde_json::json!({ "type": "../evil" });
        assert_eq!(
            plugin_of(Some(&bad)).expect_err("path").code,
            Code::InvalidConfig as u32
        );
        assert_eq!(plugin_of(None).expect("none"), None);
    }

    #[test]
    fn a_delegated_error_keeps_its_code() {
        use std::os::unix::process::ExitStatusExt;
        let e = delegated_error(
            "host-local",
            br#"{"cniVersion":"1.1.0","code":11,"msg":"no IP addresses available"}"#,
            std::process::ExitStatus::from_raw(256),
        );
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("no IP addresses available"), "{e:?}");
    }
}
