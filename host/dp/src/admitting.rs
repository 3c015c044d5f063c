//! Which pod is kubelet admitting? Kubelet's `Allocate` names devices, not the
//! pod, yet a pool policy's `select-program` and `assign-queues` decide per
//! pod (labels, annotations). Kubelet admits pods one at a time, oldest
//! first, and records a container's devices (visible in PodResources) as
//! soon as its `Allocate` returns. So the pod being allocated is the oldest
//! pod that is
//! - bound to this node and still `Pending` (API server),
//! - has a container asking for exactly the requested count of the pool's
//!   resource,
//! - and has more containers asking for the resource than PodResources shows
//!   holding it.
//!
//! When the API server or PodResources cannot answer, or no pod fits, the
//! policy sees an anonymous pod (only `requested`), as before; the pod's own
//! metadata still reaches `filter-rules` at CNI ADD.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::podresources::{holders_of, PodKey};
use crate::pods::{PodDirectory, PodMeta};

/// How many devices of `resource` a container asks for (limits, else requests).
fn asks_for(c: &Container, resource: &str) -> Option<u64> {
    let r = c.resources.as_ref()?;
    let q = r
        .limits
        .as_ref()
        .and_then(|l| l.get(resource))
        .or_else(|| r.requests.as_ref().and_then(|l| l.get(resource)))?;
    q.0.trim().parse::<u64>().ok().filter(|n| *n > 0)
}

fn key(pod: &Pod) -> PodKey {
    PodKey {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// The pod among `pending` that kubelet is allocating `count` devices of
/// `resource` to, given `holding` (per pod, the containers PodResources
/// shows with devices of `resource`). `None` when no pod fits.
pub fn admitting<'a>(
    pending: &'a [Pod],
    resource: &str,
    count: usize,
    holding: &BTreeMap<PodKey, usize>,
) -> Option<&'a Pod> {
    let count = u64::try_from(count).ok()?;
    pending
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let Some(spec) = &pod.spec else {
                return false;
            };
            let asking: Vec<u64> = spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
                .filter_map(|c| asks_for(c, resource))
                .collect();
            let held = holding.get(&key(pod)).copied().unwrap_or(0);
            asking.len() > held && asking.contains(&count)
        })
        .min_by(|a, b| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| key(a).cmp(&key(b)))
        })
}

/// Finds the pod an `Allocate` is for, through the API server and kubelet's
/// PodResources.
pub struct PodFinder {
    pub pods: PodDirectory,
    pub node: String,
    pub pod_resources_socket: PathBuf,
    pub timeout: Duration,
}

/// The pod a decision is for, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPod {
    pub key: PodKey,
    pub meta: PodMeta,
}

impl PodFinder {
    /// The pod kubelet is allocating `count` devices of `resource` to, if it
    /// can be told; failures are logged and give `None`.
    pub async fn find(&self, resource: &str, count: usize) -> Option<FoundPod> {
        let (pending, holding) = tokio::join!(
            self.pods.pending_on(&self.node),
            holders_of(&self.pod_resources_socket, resource, self.timeout)
        );
        let pending = pending
            .map_err(
                |e| tracing::warn!(error = %e, "pending pods unavailable; the policy sees no pod"),
            )
            .ok()?;
        let holding = holding
            .map_err(
                |e| tracing::warn!(error = %e, "PodResources unavailable; the policy sees no pod"),
            )
            .ok()?;
        let Some(pod) = admitting(&pending, resource, count, &holding) else {
            tracing::warn!(resource, count, node = %self.node, pending = pending.len(), "no pending pod fits this allocation; the policy sees no pod");
            return None;
        };
        let found = FoundPod {
            key: key(pod),
            meta: PodMeta::of(pod),
        };
        tracing::debug!(namespace = %found.key.namespace, name = %found.key.name, "allocation is for this pod");
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const RES: &str = "afxdp/fast";

    fn pod(name: &str, created_s: i64, asks: &[u64]) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("ns".into());
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created_s).unwrap(),
        ));
        let containers = asks
            .iter()
            .enumerate()
            .map(|(i, n)| Container {
                name: format!("c{i}"),
                resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                    limits: Some([(RES.to_string(), Quantity(n.to_string()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers,
            ..Default::default()
        });
        p
    }

    fn held(entries: &[(&str, usize)]) -> BTreeMap<PodKey, usize> {
        entries
            .iter()
            .map(|(n, c)| {
                (
                    PodKey {
                        namespace: "ns".into(),
                        name: (*n).into(),
                    },
                    *c,
                )
            })
            .collect()
    }

    fn name(p: Option<&Pod>) -> Option<&str> {
        p.and_then(|p| p.metadata.name.as_deref())
    }

    #[test]
    fn oldest_pod_without_devices_is_admitted() {
        let pending = vec![pod("young", 20, &[1]), pod("old", 10, &[1])];
        assert_eq!(name(admitting(&pending, RES, 1, &held(&[]))), Some("old"));
        // `old` got its device: the next Allocate is for `young`.
        assert_eq!(
            name(admitting(&pending, RES, 1, &held(&[("old", 1)]))),
            Some("young")
        );
        assert_eq!(
            name(admitting(
                &pending,
                RES,
                1,
                &held(&[("old", 1), ("young", 1)])
            )),
            None
        );
    }

    #[test]
    fn count_and_resource_must_match() {
        let pending = vec![pod("two", 10, &[2]), pod("one", 20, &[1])];
        assert_eq!(name(admitting(&pending, RES, 1, &held(&[]))), Some("one"));
        assert_eq!(name(admitting(&pending, RES, 2, &held(&[]))), Some("two"));
        assert_eq!(name(admitting(&pending, RES, 3, &held(&[]))), None);
        assert_eq!(
            name(admitting(&pending, "afxdp/other", 1, &held(&[]))),
            None
        );
    }

    #[test]
    fn second_container_of_a_pod_is_still_admitting() {
        let pending = vec![pod("multi", 10, &[1, 2]), pod("later", 20, &[2])];
        assert_eq!(
            name(admitting(&pending, RES, 2, &held(&[("multi", 1)]))),
            Some("multi")
        );
        assert_eq!(
            name(admitting(&pending, RES, 2, &held(&[("multi", 2)]))),
            Some("later")
        );
    }

    #[test]
    fn terminating_and_specless_pods_are_ignored() {
        let mut gone = pod("gone", 1, &[1]);
        gone.metadata.deletion_timestamp = gone.metadata.creation_timestamp.clone();
        let mut bare = pod("bare", 2, &[1]);
        bare.spec = None;
        let pending = vec![gone, bare, pod("real", 3, &[1])];
        assert_eq!(name(admitting(&pending, RES, 1, &held(&[]))), Some("real"));
    }
}
