//! Who an allocated device belongs to once CNI ADD plumbed it: the claim.
//!
//! Kubelet's Allocate names devices, never a pod or a container; the first
//! CNI ADD for an allocated device records the container (sandbox) id, the
//! pod and the pod's network namespace. From then on:
//! - a CNI DEL releases the device only when it comes from that container.
//!   Runtimes retry DEL, and a DEL replayed for an old pod must not take the
//!   device from the pod kubelet has since given it to (a mismatch is a no-op
//!   success, as the spec wants DEL to be);
//! - a CNI ADD from another container is refused, unless it is the same pod
//!   (its sandbox was recreated): then the claim moves to the new container;
//! - the UDS handshake checks its peer against the claimed pod and netns.

use serde::{Deserialize, Serialize};

use crate::state::Allocation;

/// A network namespace's identity: the (device, inode) of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    /// The netns `path` (`/proc/<pid>/ns/net`, `/var/run/netns/<name>`) refers to.
    pub fn of(path: &std::path::Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The container a device was plumbed into (persisted with the allocation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// `CNI_CONTAINERID`: the pod sandbox's id.
    pub container_id: String,
    /// `namespace/name` from the CNI's `K8S_POD_*` args; empty when not given.
    #[serde(default)]
    pub pod: String,
    /// The pod's network namespace, when the CNI could tell.
    #[serde(default)]
    pub netns: Option<NetnsId>,
    /// The CNI network (config `name`) and interface of the attachment
    /// (empty from a CNI that did not say): CNI GC matches on them.
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub ifname: String,
}

/// A CNI request about a device: who is asking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimant {
    pub container_id: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub netns: Option<NetnsId>,
    pub network: String,
    pub ifname: String,
}

impl Claimant {
    /// `namespace/name`, or empty when the CNI named no pod.
    pub fn pod(&self) -> String {
        pod_key(&self.pod_namespace, &self.pod_name)
    }

    /// The claim this claimant makes.
    pub fn claim(&self) -> Claim {
        Claim {
            container_id: self.container_id.clone(),
            pod: self.pod(),
            netns: self.netns,
            network: self.network.clone(),
            ifname: self.ifname.clone(),
        }
    }

    fn describe(&self) -> String {
        describe(&self.container_id, &self.pod())
    }
}

/// `namespace/name`, or empty when either is unknown.
pub fn pod_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || name.is_empty() {
        String::new()
    } else {
        format!("{namespace}/{name}")
    }
}

fn describe(container_id: &str, pod: &str) -> String {
    if pod.is_empty() {
        format!("container {container_id}")
    } else {
        format!("container {container_id} of pod {pod}")
    }
}

/// What a CNI ADD may do with an allocation.
#[derive(Debug, PartialEq, Eq)]
pub enum AddVerdict {
    /// The claimant already holds it, or names no container (a root tool
    /// reading the settings: the node API socket is root-only).
    Holds,
    /// Record the claimant's claim (first ADD, or the same pod's new sandbox).
    Claim,
    /// Another pod's container holds it.
    Refuse { holder: String, claimant: String },
}

/// ADD (and CHECK) for `alloc` from `who`.
pub fn on_add(alloc: &Allocation, who: &Claimant) -> AddVerdict {
    if who.container_id.is_empty() {
        return AddVerdict::Holds;
    }
    match &alloc.claim {
        None => AddVerdict::Claim,
        Some(c) if c.container_id == who.container_id => AddVerdict::Holds,
        Some(c) if !c.pod.is_empty() && c.pod == who.pod() => AddVerdict::Claim,
        Some(c) => AddVerdict::Refuse {
            holder: describe(&c.container_id, &c.pod),
            claimant: who.describe(),
        },
    }
}

/// Whether a CNI DEL from `who` releases `alloc`: only from the container
/// that holds it. An allocation no ADD claimed yet is kubelet's latest
/// grant, which an old pod's DEL must not undo.
pub fn releases(alloc: &Allocation, who: &Claimant) -> Result<(), String> {
    match &alloc.claim {
        Some(c) if c.container_id == who.container_id => Ok(()),
        Some(c) => Err(describe(&c.container_id, &c.pod)),
        None if alloc.recovered => Ok(()),
        None => Err("no container yet (allocated, not plumbed)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(claim: Option<Claim>) -> Allocation {
        let mut a = crate::state::tests::sample("eth1");
        a.claim = claim;
        a
    }

    fn who(container: &str, ns: &str, name: &str) -> Claimant {
        Claimant {
            container_id: container.into(),
            pod_namespace: ns.into(),
            pod_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_add_claims_and_the_holder_holds() {
        let a = alloc(None);
        assert_eq!(on_add(&a, &who("c1", "ns", "p")), AddVerdict::Claim);
        let a = alloc(Some(who("c1", "ns", "p").claim()));
        assert_eq!(on_add(&a, &who("c1", "ns", "p")), AddVerdict::Holds);
        // A reader naming no container neither claims nor is refused.
        assert_eq!(on_add(&a, &who("", "other", "x")), AddVerdict::Holds);
        assert_eq!(on_add(&alloc(None), &who("", "", "")), AddVerdict::Holds);
    }

    #[test]
    fn another_pods_add_is_refused_the_same_pods_new_sandbox_reclaims() {
        let a = alloc(Some(who("c1", "ns", "p").claim()));
        match on_add(&a, &who("c2", "ns", "q")) {
            AddVerdict::Refuse { holder, claimant } => {
                assert!(holder.contains("c1") && holder.contains("ns/p"), "{holder}");
                assert!(claimant.contains("c2") && claimant.contains("ns/q"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(on_add(&a, &who("c2", "ns", "p")), AddVerdict::Claim);
        // Without pod names nothing ties two containers together.
        let a = alloc(Some(who("c1", "", "").claim()));
        assert!(matches!(
            on_add(&a, &who("c2", "", "")),
            AddVerdict::Refuse { .. }
        ));
    }

    #[test]
    fn only_the_holding_container_releases() {
        let a = alloc(Some(who("c1", "ns", "p").claim()));
        assert!(releases(&a, &who("c1", "ns", "p")).is_ok());
        // A replayed DEL of an older sandbox of the same pod, another pod, or
        // a DEL before any ADD: no release.
        assert!(releases(&a, &who("c0", "ns", "p")).is_err());
        assert!(releases(&a, &who("c9", "other", "x")).is_err());
        assert!(releases(&alloc(None), &who("c1", "ns", "p")).is_err());
        // What recovery rebuilt from the kernel names no container: any DEL.
        let mut recovered = alloc(None);
        recovered.recovered = true;
        assert!(releases(&recovered, &who("c7", "ns", "p")).is_ok());
    }
}
