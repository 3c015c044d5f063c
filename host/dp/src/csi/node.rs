//! The CSI `Identity` and `Node` services of `csi.afxdp.io`.
//!
//! `NodePublishVolume` serves ephemeral inline volumes only
//! (`csi.storage.k8s.io/ephemeral: "true"`) that ask for the pod's maps
//! through its annotations (`csi.afxdp.io/thru-annotations: "true"`), and
//! needs the pod's name, namespace and UID in the volume context
//! (`podInfoOnMount: true` in the `CSIDriver`). It reads the pod from the API
//! server, takes its devices from the [`annotations`](super::annotations),
//! asks [`DeviceMaps`] for each map (which refuses a device not allocated to
//! this pod, whatever the annotations say), and publishes a fresh bpffs
//! ([`volume`](super::volume)) owned by the pod's user and `fsGroup`.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tonic::{Request, Response, Status};

use afxdp_proto::csi::{self, identity_server::Identity, node_server::Node};

use super::annotations::{self, AnnotationError};
use super::volume::{self, MapPin, Owner, VolumeError};
use super::{DRIVER, THRU_ANNOTATIONS};
use crate::pods::{PodDirectory, PodsError};

/// Volume context keys kubelet sets (`podInfoOnMount`, inline volumes).
pub mod context {
    pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
    pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
    pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
    pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
}

/// Where pods are read from: the API server ([`PodDirectory`]) in afxdp-dp.
#[tonic::async_trait]
pub trait PodSource: Send + Sync {
    /// The pod; `None` when it does not exist.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, PodsError>;
}

#[tonic::async_trait]
impl PodSource for PodDirectory {
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, PodsError> {
        self.get(namespace, name).await
    }
}

/// Why a device's map is not given to a pod.
#[derive(Debug, thiserror::Error)]
pub enum MapRefusal {
    #[error("device {0} is not allocated")]
    NotAllocated(String),
    #[error("device {device} is allocated to {holder}, not to {pod}")]
    NotYours {
        device: String,
        holder: String,
        pod: String,
    },
    #[error("device {device} is shared by {sharing}, not through CSI")]
    NotCsi { device: String, sharing: String },
    #[error("device {device} has no map {map} (its program's maps: xsks_map)")]
    NoSuchMap { device: String, map: String },
    #[error("map {map} of {device}: {source}")]
    Program {
        device: String,
        map: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
}

/// The maps of allocated devices. Blocking (`BPF_OBJ_GET`).
pub trait DeviceMaps: Send + Sync {
    /// A fresh FD of `map` of `device`, if `device` is allocated to `pod`
    /// (`namespace/name`) in a pool that shares through CSI.
    fn map_fd(&self, pod: &str, device: &str, map: &str) -> Result<OwnedFd, MapRefusal>;
}

/// Why a publish failed; [`publish_status`] gives its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Request(String),
    #[error("pod {0} does not exist")]
    PodGone(String),
    #[error("reading pod {pod}: {source}")]
    Api {
        pod: String,
        #[source]
        source: PodsError,
    },
    #[error("pod {pod} has UID {found}, the volume is for UID {wanted}")]
    OtherPod {
        pod: String,
        found: String,
        wanted: String,
    },
    #[error("pod {0} has no csi.afxdp.io/device.* annotations: afxdp-dp writes them at Allocate for pools with sharing \"csi\"; the pod must request an afxdp/<pool> resource of such a pool")]
    NoDevices(String),
    #[error("pod {pod}: {source}")]
    Annotation {
        pod: String,
        #[source]
        source: AnnotationError,
    },
    #[error("pod {pod}: {source}")]
    Map {
        pod: String,
        #[source]
        source: Box<MapRefusal>,
    },
    #[error("publishing at {target}: {source}")]
    Volume {
        target: String,
        #[source]
        source: Box<VolumeError>,
    },
    #[error("no API server: afxdp-dp cannot read the pod's annotations")]
    NoApi,
    #[error("publish task: {0}")]
    Task(String),
}

/// The gRPC status of a publish error: one mapping.
pub fn publish_status(e: &PublishError) -> Status {
    let msg = e.to_string();
    match e {
        PublishError::Request(_) => Status::invalid_argument(msg),
        PublishError::PodGone(_) => Status::not_found(msg),
        PublishError::Api { .. } | PublishError::NoApi => Status::unavailable(msg),
        PublishError::OtherPod { .. }
        | PublishError::NoDevices(_)
        | PublishError::Annotation { .. } => Status::failed_precondition(msg),
        PublishError::Map { source, .. } => match source.as_ref() {
            MapRefusal::NotYours { .. } => Status::permission_denied(msg),
            MapRefusal::Program { .. } => Status::internal(msg),
            _ => Status::failed_precondition(msg),
        },
        PublishError::Volume { source, .. } => match source.as_ref() {
            VolumeError::Different { .. } => Status::already_exists(msg),
            _ => Status::internal(msg),
        },
        PublishError::Task(_) => Status::internal(msg),
    }
}

/// A checked `NodePublishVolume` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub target: PathBuf,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Publish {
    /// Check a request: what this driver serves, and what it needs.
    pub fn check(req: &csi::NodePublishVolumeRequest) -> Result<Self, PublishError> {
        let bad = |m: String| Err(PublishError::Request(m));
        if req.volume_id.is_empty() {
            return bad("volume_id is empty".into());
        }
        let target = PathBuf::from(&req.target_path);
        if !target.is_absolute() || target.file_name().is_none() {
            return bad(format!(
                "target_path {:?} is not an absolute path",
                req.target_path
            ));
        }
        let Some(cap) = &req.volume_capability else {
            return bad("volume_capability is missing".into());
        };
        if !matches!(
            cap.access_type,
            Some(csi::volume_capability::AccessType::Mount(_))
        ) {
            return bad(format!(
                "{DRIVER} publishes filesystem (mount) volumes, not block volumes"
            ));
        }
        if req.readonly {
            return bad(format!(
                "{DRIVER} volumes cannot be read-only: the app opens the maps read-write"
            ));
        }
        let ctx = &req.volume_context;
        let get = |k: &str| ctx.get(k).map(String::as_str).unwrap_or("");
        if get(context::EPHEMERAL) != "true" {
            return bad(format!(
                "{DRIVER} serves ephemeral inline volumes only ({} is not \"true\")",
                context::EPHEMERAL
            ));
        }
        if get(THRU_ANNOTATIONS) != "true" {
            return bad(format!(
                "volumeAttributes must set {THRU_ANNOTATIONS}: \"true\" (the maps come from the pod's annotations)"
            ));
        }
        let (namespace, name, uid) = (
            get(context::POD_NAMESPACE),
            get(context::POD_NAME),
            get(context::POD_UID),
        );
        if namespace.is_empty() || name.is_empty() || uid.is_empty() {
            return bad(format!(
                "the volume context lacks the pod ({}, {}, {}): the CSIDriver {DRIVER} must have podInfoOnMount: true",
                context::POD_NAMESPACE,
                context::POD_NAME,
                context::POD_UID
            ));
        }
        Ok(Self {
            target,
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        })
    }

    fn pod(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Who owns the volume: the pod's `runAsUser` (the pod's, else the one its
/// containers agree on) and its `fsGroup` (else `runAsGroup`).
pub fn owner_of(pod: &Pod) -> Owner {
    let Some(spec) = &pod.spec else {
        return Owner::default();
    };
    let psc = spec.security_context.as_ref();
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let containers: Vec<Option<i64>> = spec
        .containers
        .iter()
        .map(|c| c.security_context.as_ref().and_then(|s| s.run_as_user))
        .collect();
    let agreed = match containers.first() {
        Some(first) if containers.iter().all(|c| c == first) => *first,
        _ => None,
    };
    Owner {
        uid: id(psc.and_then(|s| s.run_as_user)).or(id(agreed)),
        gid: id(psc.and_then(|s| s.fs_group)).or(id(psc.and_then(|s| s.run_as_group))),
    }
}

/// The node service.
#[derive(Clone)]
pub struct NodeService {
    pub node: String,
    pub pods: Option<Arc<dyn PodSource>>,
    pub maps: Arc<dyn DeviceMaps>,
}

impl NodeService {
    /// Publish a checked request (see the module doc).
    pub async fn publish(&self, p: Publish) -> Result<(), PublishError> {
        let pods = self.pods.as_ref().ok_or(PublishError::NoApi)?;
        let pod_ref = p.pod();
        let pod = pods
            .pod(&p.namespace, &p.name)
            .await
            .map_err(|source| PublishError::Api {
                pod: pod_ref.clone(),
                source,
            })?
            .ok_or_else(|| PublishError::PodGone(pod_ref.clone()))?;
        let found = pod.metadata.uid.clone().unwrap_or_default();
        if found != p.uid {
            return Err(PublishError::OtherPod {
                pod: pod_ref,
                found,
                wanted: p.uid,
            });
        }
        let ann: BTreeMap<String, String> = pod.metadata.annotations.clone().unwrap_or_default();
        let devices = annotations::parse(&ann).map_err(|source| PublishError::Annotation {
            pod: pod_ref.clone(),
            source,
        })?;
        if devices.is_empty() {
            return Err(PublishError::NoDevices(pod_ref));
        }
        let owner = owner_of(&pod);
        let maps = self.maps.clone();
        tokio::task::spawn_blocking(move || {
            let mut pins = Vec::new();
            for (device, entry) in &devices {
                for name in &entry.maps {
                    let fd = maps.map_fd(&pod_ref, device, name).map_err(|source| {
                        PublishError::Map {
                            pod: pod_ref.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    pins.push(MapPin {
                        device: device.clone(),
                        name: name.clone(),
                        fd,
                    });
                }
            }
            volume::publish(&p.target, &pins, owner).map_err(|source| PublishError::Volume {
                target: p.target.display().to_string(),
                source: Box::new(source),
            })
        })
        .await
        .map_err(|e| PublishError::Task(e.to_string()))?
    }
}

#[tonic::async_trait]
impl Identity for NodeService {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        // A node plugin only: no controller service, no topology.
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

fn unsupported(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{DRIVER} is a node plugin for ephemeral inline volumes: {rpc} is not supported"
    ))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        _: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        Err(unsupported("NodeStageVolume"))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        Err(unsupported("NodeUnstageVolume"))
    }

    async fn node_publish_volume(
        &self,
        req: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let volume_id = req.volume_id.clone();
        let result = match Publish::check(&req) {
            Ok(p) => self.publish(p).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(Response::new(csi::NodePublishVolumeResponse {})),
            Err(e) => {
                tracing::warn!(volume_id, target = %req.target_path, error = %e, "NodePublishVolume failed");
                Err(publish_status(&e))
            }
        }
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument("volume_id is empty"));
        }
        let target = PathBuf::from(&req.target_path);
        if !target.is_absolute() || target.file_name().is_none() {
            return Err(Status::invalid_argument(format!(
                "target_path {:?} is not an absolute path",
                req.target_path
            )));
        }
        let shown = target.display().to_string();
        tokio::task::spawn_blocking(move || volume::unpublish(&target))
            .await
            .map_err(|e| Status::internal(format!("unpublish task: {e}")))?
            .map_err(|e| {
                tracing::warn!(volume_id = %req.volume_id, target = %shown, error = %e, "NodeUnpublishVolume failed");
                Status::internal(format!("unpublishing {shown}: {e}"))
            })?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        Err(unsupported("NodeGetVolumeStats"))
    }

    async fn node_get_volume_health(
        &self,
        _: Request<csi::NodeGetVolumeHealthRequest>,
    ) -> Result<Response<csi::NodeGetVolumeHealthResponse>, Status> {
        Err(unsupported("NodeGetVolumeHealth"))
    }

    async fn node_get_storage_health(
        &self,
        _: Request<csi::NodeGetStorageHealthRequest>,
    ) -> Result<Response<csi::NodeGetStorageHealthResponse>, Status> {
        Err(unsupported("NodeGetStorageHealth"))
    }

    async fn node_expand_volume(
        &self,
        _: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        Err(unsupported("NodeExpandVolume"))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        // Publish and unpublish only (no staging, stats or expansion).
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.node.clone(),
            ..Default::default()
        }))
    }
}
