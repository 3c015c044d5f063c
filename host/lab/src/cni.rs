//! Exec'ing afxdp-cni exactly as a container runtime does: CNI_* env, config on stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One CNI invocation's outcome.
#[derive(Debug, Clone)]
pub struct CniOutcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CniOutcome {
    /// The outcome of an invocation not made yet.
    pub fn not_run() -> Self {
        Self {
            success: false,
            stdout: String::new(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// stdout parsed as JSON (result or spec error).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }
}

/// The network config the lab hands afxdp-cni.
pub fn net_conf(device: &str, node_api_socket: &Path, cni_version: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": cni_version,
        "name": "afxdp-lab",
        "type": "afxdp-cni",
        "deviceID": device,
        "nodeApiSocket": node_api_socket,
        "nodeApiTimeoutMs": 1000,
    })
}

/// Exec `cni` with `command` for a pod.
#[allow(clippy::too_many_arguments)]
pub fn exec(
    cni: &Path,
    command: &str,
    container_id: &str,
    netns: Option<&Path>,
    ifname: &str,
    pod_namespace: &str,
    pod_name: &str,
    conf: &serde_json::Value,
) -> std::io::Result<CniOutcome> {
    let start = Instant::now();
    let mut cmd = Command::new(cni);
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={pod_namespace};K8S_POD_NAME={pod_name}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = netns {
        cmd.env("CNI_NETNS", ns);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(CniOutcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    })
}
