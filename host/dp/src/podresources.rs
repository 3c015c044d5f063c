//! Kubelet's PodResources API: which pod holds a device right now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_proto::podresources::{
    pod_resources_lister_client::PodResourcesListerClient, ListPodResourcesRequest,
};

/// A pod, namespace-qualified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    #[error("PodResources at {path}: {detail}")]
    Call { path: PathBuf, detail: String },
}

/// Kubelet's view of every pod and its devices (`List`).
async fn list(
    socket: &Path,
    timeout: Duration,
) -> Result<Vec<afxdp_proto::podresources::PodResources>, PodResourcesError> {
    let err = |detail: String| PodResourcesError::Call {
        path: socket.to_path_buf(),
        detail,
    };
    let ch = afxdp_proto::unix::connect(socket, timeout)
        .await
        .map_err(|e| err(e.to_string()))?;
    let list = tokio::time::timeout(
        timeout,
        PodResourcesListerClient::new(ch).list(ListPodResourcesRequest {}),
    )
    .await
    .map_err(|_| err(format!("List timed out after {timeout:?}")))?
    .map_err(|e| err(format!("{}: {}", e.code(), e.message())))?
    .into_inner();
    Ok(list.pod_resources)
}

/// Ask kubelet which pod holds `device` of an `afxdp/*` resource.
pub async fn holder_of(
    socket: &Path,
    device: &str,
    timeout: Duration,
) -> Result<Option<PodKey>, PodResourcesError> {
    for pod in list(socket, timeout).await? {
        let holds = pod
            .containers
            .iter()
            .flat_map(|c| c.devices.iter())
            .any(|d| {
                d.resource_name.starts_with("afxdp/") && d.device_ids.iter().any(|id| id == device)
            });
        if holds {
            return Ok(Some(PodKey {
                namespace: pod.namespace,
                name: pod.name,
            }));
        }
    }
    Ok(None)
}

/// Every device of an `afxdp/*` resource kubelet has given to a pod.
pub async fn held_devices(
    socket: &Path,
    timeout: Duration,
) -> Result<std::collections::BTreeSet<String>, PodResourcesError> {
    Ok(list(socket, timeout)
        .await?
        .into_iter()
        .flat_map(|p| p.containers)
        .flat_map(|c| c.devices)
        .filter(|d| d.resource_name.starts_with("afxdp/"))
        .flat_map(|d| d.device_ids)
        .collect())
}

/// Per pod, how many of its containers already hold devices of `resource`.
pub async fn holders_of(
    socket: &Path,
    resource: &str,
    timeout: Duration,
) -> Result<BTreeMap<PodKey, usize>, PodResourcesError> {
    let mut out = BTreeMap::new();
    for pod in list(socket, timeout).await? {
        let holding = pod
            .containers
            .iter()
            .filter(|c| {
                c.devices
                    .iter()
                    .any(|d| d.resource_name == resource && !d.device_ids.is_empty())
            })
            .count();
        if holding > 0 {
            out.insert(
                PodKey {
                    namespace: pod.namespace,
                    name: pod.name,
                },
                holding,
            );
        }
    }
    Ok(out)
}
