//! Shared helpers of the end-to-end tests: the lab node (`afxdp-lab`) does the
//! heavy lifting; this adds the checks every test repeats.

pub mod libcni;

use std::path::Path;

/// Does `device` (in the current netns) have an XDP program attached?
pub fn xdp_attached(device: &str) -> bool {
    std::process::Command::new("ip")
        .args(["-d", "link", "show", "dev", device])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
        .unwrap_or(false)
}

/// Does a named netns exist?
pub fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Entries under a directory (recursively), for "nothing left behind" checks.
pub fn entries_under(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                out.push(e.path().display().to_string());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// The addresses Debian's host-local has leased for `network` under its
/// `data_dir` (one file per address), sorted.
pub fn host_local_leases(data_dir: &Path, network: &str) -> Vec<String> {
    let mut l: Vec<String> = std::fs::read_dir(data_dir.join(network))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l
}

/// Does `device` inside `netns` have an XDP program attached?
pub fn xdp_attached_in(netns: &afxdp_testnet::Netns, device: &str) -> bool {
    netns
        .exec(&["ip", "-d", "link", "show", "dev", device])
        .map(|o| o.contains("prog/xdp"))
        .unwrap_or(false)
}

/// Run `probe` (the `afxdp-handshake-probe` binary) inside `netns` as the pod
/// `namespace/pod`, in `mode` (see the binary); its stderr when it fails.
/// A process of its own: the daemon checks a peer's netns by its pid.
pub fn handshake_probe(
    probe: &Path,
    netns: &afxdp_testnet::Netns,
    sock: &Path,
    device: &str,
    (namespace, pod): (&str, &str),
    mode: &str,
) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns.name()])
        .arg(probe)
        .arg(sock)
        .args([device, namespace, pod, mode])
        .output()
        .map_err(|e| format!("running the probe: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A lab node of `nics` NICs with the default settings, for a test that
/// needs root (fails without it).
///
/// # Panics
/// Without root, or when the lab does not come up.
pub async fn default_lab(nics: usize) -> afxdp_lab::Lab {
    afxdp_testnet::require_root();
    afxdp_lab::Lab::start(afxdp_lab::LabConfig {
        nics,
        ..Default::default()
    })
    .await
    .expect("lab")
}

/// afxdp-cni ADD of `conf` for container `container` (also the pod's name,
/// in namespace `lab`) into `netns`, as `net1`.
pub fn cni_add(
    lab: &afxdp_lab::Lab,
    conf: &serde_json::Value,
    container: &str,
    netns: &Path,
) -> afxdp_lab::cni::CniOutcome {
    afxdp_lab::cni::exec(
        &lab.cni,
        "ADD",
        container,
        Some(netns),
        "net1",
        "lab",
        container,
        conf,
    )
    .expect("exec ADD")
}

/// The CNI error code of an outcome (0: none).
pub fn cni_code(out: &afxdp_lab::cni::CniOutcome) -> u64 {
    out.json().and_then(|j| j["code"].as_u64()).unwrap_or(0)
}
