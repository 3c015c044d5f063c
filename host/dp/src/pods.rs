//! Pod metadata from the Kubernetes API server (kube-rs): the annotations and
//! labels a pool policy's decisions may read (e.g. flow-steering's
//! `afxdp.io/udp-ports`). CNI ADD names the pod (CNI_ARGS); kubelet's
//! Allocate does not, so there the pods pending on this node are listed and
//! [`crate::admitting`] picks the one kubelet is admitting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

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
        Ok(pod.as_ref().map(PodMeta::of))
    }
}

impl PodDirectory {
    /// The whole pod (spec, status, metadata); `None` when it does not exist.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<Pod>, PodsError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        tokio::time::timeout(self.timeout, api.get_opt(name))
            .await
            .map_err(|_| PodsError::Api(format!("GET pod {namespace}/{name} timed out")))?
            .map_err(|e| PodsError::Api(e.to_string()))
    }

    /// Add `annotations` to the pod (a JSON merge patch of
    /// `metadata.annotations`: other annotations stay, these keys are set).
    pub async fn annotate(
        &self,
        namespace: &str,
        name: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), PodsError> {
        use kube::api::{Patch, PatchParams};
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        tokio::time::timeout(
            self.timeout,
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|_| PodsError::Api(format!("PATCH pod {namespace}/{name} timed out")))?
        .map_err(|e| PodsError::Api(format!("PATCH pod {namespace}/{name}: {e}")))?;
        Ok(())
    }
}

impl PodDirectory {
    /// Pods bound to `node` that have not started yet (`status.phase=Pending`).
    pub async fn pending_on(&self, node: &str) -> Result<Vec<Pod>, PodsError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let params =
            ListParams::default().fields(&format!("spec.nodeName={node},status.phase=Pending"));
        let list = tokio::time::timeout(self.timeout, api.list(&params))
            .await
            .map_err(|_| PodsError::Api(format!("LIST pending pods on {node} timed out")))?
            .map_err(|e| PodsError::Api(e.to_string()))?;
        Ok(list.items)
    }
}

impl PodMeta {
    /// The annotations and labels of `pod`.
    pub fn of(pod: &Pod) -> Self {
        PodMeta {
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

impl PodDirectory {
    /// Report a failure on the pod as a `Warning` Event (`kubectl describe
    /// pod` shows it): `reason` (`AllocationFailed`, `DeviceSettingsFailed`)
    /// and the error as the message, from `afxdp-dp` on `node`.
    pub async fn warn(
        &self,
        (namespace, name): (&str, &str),
        reason: &str,
        message: &str,
        node: &str,
    ) -> Result<(), PodsError> {
        use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            // The API server caps an Event message at 1 KiB.
            message: Some(message.chars().take(1024).collect()),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some("afxdp-dp".into()),
                host: Some(node.to_string()),
            }),
            reporting_component: Some("afxdp-dp".into()),
            reporting_instance: Some(node.to_string()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        tokio::time::timeout(self.timeout, api.create(&Default::default(), &event))
            .await
            .map_err(|_| PodsError::Api(format!("POST event for {namespace}/{name} timed out")))?
            .map_err(|e| PodsError::Api(e.to_string()))?;
        Ok(())
    }
}
