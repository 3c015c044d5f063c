//! Kubelet's PodResources API: which pod holds a device right now.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_proto::podresources::{
    pod_resources_lister_client::PodResourcesListerClient, ListPodResourcesRequest,
};

/// A pod, namespace-qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    #[error("PodResources at {path}: {detail}")]
    Call { path: PathBuf, detail: String },
}

/// Ask kubelet which pod holds `device` of an `afxdp/*` resource.
pub async fn holder_of(
    socket: &Path,
    device: &str,
    timeout: Duration,
) -> Result<Option<PodKey>, PodResourcesError> {
    let err = |detail: String| PodResourcesError::Call {
        path: socket.to_path_buf(),
        detail,
    };
    let ch = afxdp_proto::unix::connect(socket, timeout)
        .await
        .map_err(|e| err(e.to_string()))?;
    let list = PodResourcesListerClient::new(ch)
        .list(ListPodResourcesRequest {})
        .await
        .map_err(|e| err(format!("{}: {}", e.code(), e.message())))?
        .into_inner();
    for pod in list.pod_resources {
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
