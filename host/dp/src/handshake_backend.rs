//! The daemon's answer to the UDS handshake. Whatever the client sends, the
//! peer must be the pod CNI ADD plumbed the device into (namespace and name
//! recorded in the allocation's claim), that pod must be the one kubelet's
//! PodResources says holds the device, and the peer process must live in
//! the claimed pod's network namespace (its `SO_PEERCRED` pid; afxdp-dp runs
//! with the host's pid namespace to see it). The client's own `/connect`
//! name must match; a namespace, when it sends one, too.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use afxdp_handshake::protocol::PodRef;
use afxdp_handshake::{Backend, PeerCred, Refusal};
use afxdp_program::ProgramManager;

use crate::agent::{Agent, Claim, NetnsId};
use crate::podresources;

/// Backend of every device socket.
pub struct HandshakeBackend {
    pub runtime: tokio::runtime::Handle,
    pub pod_resources: PathBuf,
    pub programs: Arc<dyn ProgramManager>,
    pub timeout: Duration,
    /// The agent whose claims say who plumbed each device (set once the
    /// agent exists: it owns the UDS servers this backend serves).
    pub agent: Arc<OnceLock<Weak<Agent>>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Kubelet sets a pod's hostname (what upstream and DPDK clients send) to
/// its name cut to 63 characters, without a trailing `-` or `.`.
fn names_match(sent: &str, pod_name: &str) -> bool {
    sent == pod_name
        || (pod_name.len() > 63
            && pod_name
                .get(..63)
                .is_some_and(|h| h.trim_end_matches(['-', '.']) == sent))
}

fn refuse(device: &str, why: String) -> Refusal {
    tracing::warn!(device, reason = %why, "handshake refused");
    Refusal::NotHolder(why)
}

impl HandshakeBackend {
    /// The claim of `device`, with its pod split into (namespace, name).
    fn claim(&self, device: &str) -> Result<(Claim, String, String), Refusal> {
        let claim = self
            .agent
            .get()
            .and_then(Weak::upgrade)
            .and_then(|a| a.claim_of(device))
            .ok_or_else(|| {
                refuse(
                    device,
                    format!("{device} is not plumbed into a pod (no CNI ADD)"),
                )
            })?;
        let (ns, name) = claim
            .pod
            .split_once('/')
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .ok_or_else(|| refuse(device, format!("CNI ADD named no pod for {device}")))?;
        Ok((claim, ns, name))
    }

    /// The peer process must be in the claimed netns.
    fn check_netns(&self, device: &str, claim: &Claim, peer: &PeerCred) -> Result<(), Refusal> {
        let Some(want) = claim.netns else {
            return Err(refuse(
                device,
                format!("CNI ADD recorded no netns for {device}"),
            ));
        };
        if peer.pid <= 0 {
            return Err(refuse(
                device,
                "the peer's process is not visible (pid namespace)".into(),
            ));
        }
        let path = PathBuf::from(format!("/proc/{}/ns/net", peer.pid));
        match NetnsId::of(&path) {
            Ok(got) if got == want => Ok(()),
            Ok(_) => Err(refuse(
                device,
                format!(
                    "peer pid {} is not in the pod's network namespace",
                    peer.pid
                ),
            )),
            Err(e) => Err(refuse(device, format!("{}: {e}", path.display()))),
        }
    }
}

impl HandshakeBackend {
    fn check(&self, device: &str, pod: &PodRef, peer: &PeerCred) -> Result<(), Refusal> {
        // A `cdq` pod names its subfunction's netdev; claims and kubelet know the slot.
        let slot = self
            .agent
            .get()
            .and_then(Weak::upgrade)
            .map(|a| a.device_of_netdev(device));
        let device = slot.as_deref().unwrap_or(device);
        let (claim, ns, name) = self.claim(device)?;
        let ns_ok = pod.namespace.as_deref().is_none_or(|sent| sent == ns);
        if !names_match(&pod.name, &name) || !ns_ok {
            return Err(refuse(
                device,
                format!("{pod:?} claimed {device}, plumbed for {ns}/{name}"),
            ));
        }
        self.check_netns(device, &claim, peer)?;
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
        match holder {
            Some(h) if h.namespace == ns && h.name == name => {}
            Some(h) => {
                return Err(refuse(
                    device,
                    format!(
                        "kubelet says {}/{} holds {device}, plumbed for {ns}/{name}",
                        h.namespace, h.name
                    ),
                ))
            }
            None => return Err(refuse(device, format!("no pod holds device {device}"))),
        }
        tracing::info!(device, namespace = %ns, pod = %name, pid = peer.pid, uid = peer.uid, "handshake authorized");
        Ok(())
    }
}

impl Backend for HandshakeBackend {
    fn authorize(&self, device: &str, pod: &PodRef, peer: &PeerCred) -> Result<(), Refusal> {
        let r = self.check(device, pod, peer);
        self.metrics.handshake(match &r {
            Ok(()) => "authorized",
            Err(Refusal::Unavailable(_)) => "unavailable",
            Err(_) => "refused",
        });
        r
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, Refusal> {
        self.programs.xsk_map_fd(device).map_err(|e| {
            tracing::warn!(device, error = %e, "no XSKMAP to hand out");
            Refusal::UnknownDevice
        })
    }
}

#[cfg(test)]
mod tests {
    use super::names_match;

    #[test]
    fn hostnames_are_pod_names_cut_to_63() {
        assert!(names_match("p1", "p1"));
        assert!(!names_match("p", "p1"));
        let long = format!("{}-{}", "a".repeat(62), "tail");
        assert!(
            names_match(&"a".repeat(62), &long),
            "the trailing '-' is cut"
        );
        assert!(!names_match(&long[..40], &long));
    }
}
