//! How a pod gets the XSKMAP of its device: a UDS handshake server per device
//! (FD over SCM_RIGHTS) or the pinned map's bpffs directory mounted into the pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use afxdp_handshake::{Backend, DeviceSocket, ServerConfig};

/// Where the per-device directory appears inside the container (upstream-compatible:
/// DPDK's `dp_path=/tmp/afxdp_dp/<dev>/afxdp.sock` or `.../xsks_map`).
pub const CONTAINER_DIR: &str = "/tmp/afxdp_dp";
/// The UDS file name inside the per-device directory.
pub const UDS_FILE: &str = "afxdp.sock";
/// The pinned map file name inside the per-device directory.
pub const MAP_FILE: &str = "xsks_map";

/// The sharing mode of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharingKind {
    Uds,
    Pinned,
    /// The CSI node plugin pins the map into the pod's inline volume
    /// ([`crate::csi`]); Allocate mounts nothing.
    Csi,
}

impl SharingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SharingKind::Uds => "uds",
            SharingKind::Pinned => "pinned",
            SharingKind::Csi => "csi",
        }
    }
}

/// The container path of a device's directory.
pub fn container_dir(device: &str) -> PathBuf {
    Path::new(CONTAINER_DIR).join(device)
}

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error("UDS server for {device}: {source}")]
    Uds {
        device: String,
        #[source]
        source: afxdp_handshake::HandshakeError,
    },
}

/// The running UDS handshake servers, one per allocated device in UDS mode.
pub struct UdsServers {
    root: PathBuf,
    backend: Arc<dyn Backend>,
    running: HashMap<String, DeviceSocket>,
}

impl UdsServers {
    /// `root` is `<state-dir>/uds`; each device gets `<root>/<device>/afxdp.sock`.
    pub fn new(root: PathBuf, backend: Arc<dyn Backend>) -> Self {
        Self {
            root,
            backend,
            running: HashMap::new(),
        }
    }

    /// The host directory of `device` (mounted into the container).
    pub fn host_dir(&self, device: &str) -> PathBuf {
        self.root.join(device)
    }

    /// Start (or restart) the handshake server of `device`. The directory is kept
    /// across restarts: a running container's bind mount refers to it.
    pub fn start(
        &mut self,
        device: &str,
        owner_uid: u32,
        timeout: Duration,
    ) -> Result<PathBuf, SharingError> {
        if let Some(old) = self.running.remove(device) {
            old.stop();
        }
        let dir = self.host_dir(device);
        let path = dir.join(UDS_FILE);
        let cfg = ServerConfig {
            idle_timeout: timeout,
            allowed_uid: Some(owner_uid),
        };
        let sock = DeviceSocket::serve(
            &path,
            device.to_string(),
            owner_uid,
            cfg,
            self.backend.clone(),
        )
        .map_err(|source| SharingError::Uds {
            device: device.to_string(),
            source,
        })?;
        self.running.insert(device.to_string(), sock);
        Ok(dir)
    }

    /// Stop the server of `device` and remove its directory. Idempotent.
    pub fn stop(&mut self, device: &str) -> bool {
        let was = match self.running.remove(device) {
            Some(sock) => {
                sock.stop();
                true
            }
            None => false,
        };
        remove_host_dir(&self.host_dir(device));
        was
    }

    pub fn is_running(&self, device: &str) -> bool {
        self.running.contains_key(device)
    }

    /// Stop every server but keep the directories (daemon shutdown: the next run
    /// serves the same directories again).
    pub fn shutdown(&mut self) {
        for (_, sock) in self.running.drain() {
            sock.stop();
        }
    }
}

/// Remove a device's UDS directory (its socket with it). Idempotent.
pub fn remove_host_dir(dir: &std::path::Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove UDS directory")
        }
    }
}
