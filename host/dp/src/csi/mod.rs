//! The CSI node plugin `csi.afxdp.io` (sharing mode `csi`): at Allocate
//! afxdp-dp annotates the pod it admits with, per device, the program, the
//! map names and the mount path ([`annotations`]); when kubelet mounts the
//! pod's inline volume (`volumeAttributes: {csi.afxdp.io/thru-annotations:
//! "true"}`), `NodePublishVolume` reads those annotations from the API
//! server and pins the device's maps into a fresh bpffs at the target path
//! ([`node`], [`volume`]); `NodeUnpublishVolume` unmounts it.
//!
//! Two sockets: the CSI `Identity` + `Node` services, and kubelet's plugin
//! registration in its `plugins_registry` directory ([`registration`]).

pub mod admit;
pub mod annotations;
pub mod node;
pub mod registration;
pub mod volume;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use afxdp_proto::csi::{identity_server::IdentityServer, node_server::NodeServer};
use afxdp_proto::pluginregistration::registration_server::RegistrationServer;

pub use node::{DeviceMaps, MapRefusal, NodeService, PodSource};

/// The driver's name.
pub const DRIVER: &str = "csi.afxdp.io";
/// The volume attribute that asks for the maps named by the pod's annotations.
pub const THRU_ANNOTATIONS: &str = "csi.afxdp.io/thru-annotations";
/// Where kubelet looks for registration sockets.
pub const DEFAULT_REGISTRY_DIR: &str = "/var/lib/kubelet/plugins_registry";
/// The CSI socket by convention (`/var/lib/kubelet/plugins/<driver>/csi.sock`).
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/plugins/csi.afxdp.io/csi.sock";

/// The servers' bounds: kubelet's calls, small messages.
static LIMITS: std::sync::LazyLock<afxdp_proto::limits::Limits> =
    std::sync::LazyLock::new(afxdp_proto::limits::Limits::default);

/// Where the CSI plugin listens.
#[derive(Debug, Clone)]
pub struct CsiOptions {
    /// The `Identity` + `Node` socket.
    pub socket: PathBuf,
    /// Kubelet's `plugins_registry` directory; `None`: not registered (tests
    /// calling the socket directly).
    pub registry_dir: Option<PathBuf>,
}

/// Serve the node plugin (and its registration) until `shutdown` flips;
/// the sockets are removed then. Returns once both sockets are bound.
pub fn serve(
    opts: &CsiOptions,
    service: NodeService,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let incoming = LIMITS.bind(&opts.socket)?;
    let router = LIMITS
        .server()
        .add_service(
            IdentityServer::new(service.clone()).max_decoding_message_size(LIMITS.max_message),
        )
        .add_service(NodeServer::new(service).max_decoding_message_size(LIMITS.max_message));
    tasks.push(spawn_server("CSI", opts.socket.clone(), {
        let mut stop = shutdown.clone();
        router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    }));
    if let Some(dir) = &opts.registry_dir {
        let path = registration::socket_in(dir);
        let incoming = LIMITS.bind(&path)?;
        let svc = registration::RegistrationService {
            endpoint: opts.socket.clone(),
        };
        let mut stop = shutdown;
        let fut = LIMITS
            .server()
            .add_service(RegistrationServer::new(svc).max_decoding_message_size(LIMITS.max_message))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        tasks.push(spawn_server("CSI registration", path, fut));
    }
    tracing::info!(driver = DRIVER, socket = %opts.socket.display(), registry = ?opts.registry_dir, "CSI node plugin serving");
    Ok(tasks)
}

fn spawn_server(
    what: &'static str,
    path: PathBuf,
    fut: impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            tracing::error!(server = what, error = %e, "server failed");
        }
        let _ = std::fs::remove_file(&path);
    })
}

/// The agent's allocations decide who gets which map.
impl DeviceMaps for crate::agent::Agent {
    fn map_fd(&self, pod: &str, device: &str, map: &str) -> Result<OwnedFd, MapRefusal> {
        let a = self
            .allocation(device)
            .ok_or_else(|| MapRefusal::NotAllocated(device.to_string()))?;
        if a.pod != pod {
            return Err(MapRefusal::NotYours {
                device: device.into(),
                holder: if a.pod.is_empty() {
                    "an unknown pod".into()
                } else {
                    a.pod
                },
                pod: pod.into(),
            });
        }
        if a.sharing != crate::sharing::SharingKind::Csi {
            return Err(MapRefusal::NotCsi {
                device: device.into(),
                sharing: a.sharing.as_str().into(),
            });
        }
        if map != afxdp_program::XSKS_MAP_NAME {
            return Err(MapRefusal::NoSuchMap {
                device: device.into(),
                map: map.into(),
            });
        }
        self.xsk_map_fd(device)
            .map_err(|source| MapRefusal::Program {
                device: device.into(),
                map: map.into(),
                source,
            })
    }
}

/// The daemon's node service over `agent` and the API server.
pub fn node_service(
    node: String,
    agent: Arc<crate::agent::Agent>,
    pods: Option<crate::pods::PodDirectory>,
) -> NodeService {
    NodeService {
        node,
        pods: pods.map(|p| Arc::new(p) as Arc<dyn PodSource>),
        maps: agent,
    }
}
