//! The daemon's answer to the UDS handshake: the peer must be the pod kubelet
//! says holds the device (namespace and name), and the map comes from the
//! program manager.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use afxdp_handshake::protocol::PodRef;
use afxdp_handshake::{Backend, PeerCred, Refusal};
use afxdp_program::ProgramManager;

use crate::podresources;

/// Backend of every device socket.
pub struct HandshakeBackend {
    pub runtime: tokio::runtime::Handle,
    pub pod_resources: PathBuf,
    pub programs: Arc<dyn ProgramManager>,
    pub timeout: Duration,
}

impl Backend for HandshakeBackend {
    fn authorize(&self, device: &str, pod: &PodRef, peer: &PeerCred) -> Result<(), Refusal> {
        let holder = self
            .runtime
            .block_on(podresources::holder_of(
                &self.pod_resources,
                device,
                self.timeout,
            ))
            .map_err(|e| {
                tracing::warn!(device, error = %e, "PodResources unavailable; refusing handshake");
                Refusal::Unavailable(e.to_string())
            })?;
        let Some(holder) = holder else {
            tracing::warn!(device, pod = ?pod, "no pod holds this device");
            return Err(Refusal::NotHolder(format!("no pod holds device {device}")));
        };
        let ns_ok = pod
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == holder.namespace);
        if holder.name != pod.name || !ns_ok {
            tracing::warn!(device, claimed = ?pod, holder_ns = %holder.namespace, holder = %holder.name, pid = peer.pid, "handshake from a pod that does not hold the device");
            return Err(Refusal::NotHolder(format!(
                "{pod:?} claimed {device}, held by {}/{}",
                holder.namespace, holder.name
            )));
        }
        tracing::info!(device, namespace = %holder.namespace, pod = %holder.name, pid = peer.pid, uid = peer.uid, "handshake authorized");
        Ok(())
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, Refusal> {
        self.programs.xsk_map_fd(device).map_err(|e| {
            tracing::warn!(device, error = %e, "no XSKMAP to hand out");
            Refusal::UnknownDevice
        })
    }
}
