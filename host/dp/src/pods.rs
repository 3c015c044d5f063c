//! Pod metadata from the Kubernetes API server (kube-rs): the annotations and
//! labels a pool policy's decisions may read (e.g. flow-steering's
//! `afxdp.io/udp-ports`). Kubelet's Allocate does not name the pod; CNI ADD
//! does (CNI_ARGS), so the lookup happens when afxdp-cni asks for settings.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// What a policy may read of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("kubeconfig {path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    #[error("API server: {0}")]
    Api(String),
}

/// A read-only view of pods through the API server.
#[derive(Clone)]
pub struct PodDirectory {
    client: kube::Client,
    timeout: Duration,
}

impl PodDirectory {
    /// From a kubeconfig file (lab, tests, out-of-cluster agents).
    pub async fn from_kubeconfig(path: &Path) -> Result<Self, PodsError> {
        let err = |detail: String| PodsError::Kubeconfig {
            path: path.display().to_string(),
            detail,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            client: kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))?,
            timeout: Duration::from_secs(5),
        })
    }

    /// The in-cluster service account (the DaemonSet).
    pub fn in_cluster() -> Result<Self, PodsError> {
        let cfg = kube::Config::incluster().map_err(|e| PodsError::Api(e.to_string()))?;
        Ok(Self {
            client: kube::Client::try_from(cfg).map_err(|e| PodsError::Api(e.to_string()))?,
            timeout: Duration::from_secs(5),
        })
    }

    /// The pod's annotations and labels; `None` when it does not exist.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Result<Option<PodMeta>, PodsError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = tokio::time::timeout(self.timeout, api.get_opt(name))
            .await
            .map_err(|_| PodsError::Api(format!("GET pod {namespace}/{name} timed out")))?
            .map_err(|e| PodsError::Api(e.to_string()))?;
        Ok(pod.map(|p| PodMeta {
            annotations: p.metadata.annotations.unwrap_or_default(),
            labels: p.metadata.labels.unwrap_or_default(),
        }))
    }
}
