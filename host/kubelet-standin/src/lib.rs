//! A kubelet stand-in for tests and `afxdpctl lab`: the one part of a node
//! that cannot run here, replaced by something speaking the same protocols
//! over the same kind of sockets.
//!
//! - `v1beta1.Registration/Register` on `<device_plugin_dir>/kubelet.sock`,
//!   validated as kubelet does; a registered plugin is dialled at
//!   `<device_plugin_dir>/<endpoint>`, asked for `GetDevicePluginOptions`,
//!   and followed over ListAndWatch (latest snapshot per resource).
//! - `v1.PodResourcesLister` (List, Get, GetAllocatableResources) on its own
//!   socket, from the assignments recorded by [`KubeletStandin::admit_pod`]
//!   and [`KubeletStandin::record_assignment`].
//! - A driver API for tests: wait for registrations and device states,
//!   admit pods the way kubelet does, restart like kubelet.
//!
//! Every wait is bounded; a timeout names what was awaited.
//!
//! Differences from kubelet worth knowing: refused registrations answer
//! `InvalidArgument` (kubelet answers `Unknown` with the same text), the
//! endpoint must be a bare file name (kubelet does not check), and
//! `PodResources.Get` of an unknown pod answers `NotFound` (kubelet:
//! `Unknown`). Assignments survive [`KubeletStandin::restart`], as kubelet's
//! checkpoint makes them survive a real restart.

#![deny(missing_docs)]

mod podresources;
mod registration;
mod state;
mod validation;

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use afxdp_proto::deviceplugin::device_plugin_client::DevicePluginClient;
use afxdp_proto::deviceplugin::registration_server::RegistrationServer;
use afxdp_proto::deviceplugin::{
    ContainerAllocateRequest, ContainerPreferredAllocationRequest, PreStartContainerRequest,
    PreferredAllocationRequest,
};
use afxdp_proto::podresources::pod_resources_lister_server::PodResourcesListerServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};
use tracing::{info, warn};

pub use afxdp_proto::deviceplugin::{
    AllocateResponse, ContainerAllocateResponse, DevicePluginOptions, RegisterRequest,
};
pub use state::{DeviceState, Health};

use podresources::PodResourcesService;
use registration::{RegistrationService, CALL_TIMEOUT};
use state::Shared;

/// File name of the registration socket inside the device-plugin dir.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// How long stopping a server may take before its task is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the stand-in's driver API.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// A socket could not be bound.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The device-plugin dir could not be created or wiped.
    #[error("cannot clean device-plugin dir {path}: {source}")]
    Cleanup {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// No plugin registered `resource` (or a restart forgot it).
    #[error("no device plugin is registered for resource {resource}")]
    NotRegistered {
        /// The resource name.
        resource: String,
    },
    /// Not enough healthy, unallocated devices to admit a pod.
    #[error(
        "resource {resource}: {requested} devices requested, {available} healthy and unallocated"
    )]
    Insufficient {
        /// The resource name.
        resource: String,
        /// How many were asked for.
        requested: usize,
        /// How many could be given.
        available: usize,
    },
    /// The container already holds devices of `resource`.
    #[error("container {container} of pod {namespace}/{pod} already holds {resource} devices")]
    AlreadyAdmitted {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// The resource name.
        resource: String,
    },
    /// A request the stand-in will not send (such as zero devices).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A call to the device plugin failed.
    #[error("{call} on the plugin of {resource} failed: {status}")]
    Rpc {
        /// The resource name.
        resource: String,
        /// The RPC, e.g. `Allocate`.
        call: &'static str,
        /// The status the plugin (or transport) returned.
        #[source]
        status: Box<tonic::Status>,
    },
    /// The plugin answered, but not as the API requires.
    #[error("{call} on the plugin of {resource} answered wrongly: {detail}")]
    BadResponse {
        /// The resource name.
        resource: String,
        /// The RPC, e.g. `Allocate`.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// What [`KubeletStandin::admit_pod`] did for one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// The device IDs chosen and sent to `Allocate`, in the order sent.
    pub device_ids: Vec<String>,
    /// The plugin's answer for the container.
    pub response: ContainerAllocateResponse,
}

/// One running gRPC server task, stopped gracefully or aborted.
struct ServerTask {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
    /// A duplicate of the listening socket, kept so the socket file's inode
    /// stays allocated until a successor is bound (see `restart`).
    pin: Option<StdUnixListener>,
}

impl ServerTask {
    fn spawn<S>(
        router: tonic::transport::server::Router,
        incoming: S,
        pin: Option<StdUnixListener>,
    ) -> Self
    where
        S: tokio_stream::Stream<Item = std::io::Result<tokio::net::UnixStream>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = rx.await;
        }));
        ServerTask {
            stop: Some(tx),
            handle,
            pin,
        }
    }

    /// Stop serving; returns the pinned listener so the caller decides when
    /// the old socket inode is released.
    async fn stop(mut self, what: &str) -> Option<StdUnixListener> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(server = what, error = %e, "server ended with an error"),
            Ok(Err(e)) => warn!(server = what, error = %e, "server task failed"),
            Err(_) => warn!(server = what, "server did not stop in time; aborted"),
        }
        self.pin.take()
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The kubelet stand-in. Dropping it aborts its servers; prefer
/// [`KubeletStandin::shutdown`].
pub struct KubeletStandin {
    shared: Arc<Shared>,
    pod_resources_socket: PathBuf,
    registration: Option<ServerTask>,
    pod_resources: Option<ServerTask>,
}

impl KubeletStandin {
    /// Start as kubelet does: create `device_plugin_dir`, delete every file
    /// in it, serve Registration on `<device_plugin_dir>/kubelet.sock`, and
    /// PodResources on `pod_resources_socket` (keep that one outside the
    /// device-plugin dir, as kubelet does).
    ///
    /// # Errors
    /// [`StandinError::Cleanup`] or [`StandinError::Bind`].
    pub async fn start(
        device_plugin_dir: &Path,
        pod_resources_socket: &Path,
    ) -> Result<Self, StandinError> {
        let shared = Arc::new(Shared::new(device_plugin_dir.to_path_buf()));
        let pod_resources_socket = pod_resources_socket.to_path_buf();
        wipe_dir(device_plugin_dir, &pod_resources_socket)?;
        let registration = serve_registration(&shared)?;

        let incoming = afxdp_proto::unix::bind(&pod_resources_socket).map_err(|source| {
            StandinError::Bind {
                path: pod_resources_socket.clone(),
                source,
            }
        })?;
        let router =
            Server::builder().add_service(PodResourcesListerServer::new(PodResourcesService {
                shared: shared.clone(),
            }));
        let pod_resources = ServerTask::spawn(router, incoming, None);
        info!(dir = %device_plugin_dir.display(), pod_resources = %pod_resources_socket.display(), "kubelet stand-in started");
        Ok(KubeletStandin {
            shared,
            pod_resources_socket,
            registration: Some(registration),
            pod_resources: Some(pod_resources),
        })
    }

    /// The device-plugin directory.
    pub fn device_plugin_dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The registration socket, `<device_plugin_dir>/kubelet.sock`.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.shared.dir.join(KUBELET_SOCKET)
    }

    /// The PodResources socket.
    pub fn pod_resources_socket(&self) -> &Path {
        &self.pod_resources_socket
    }

    /// Wait (at most `timeout`) until a plugin for `resource` has registered
    /// and is still connected; returns its `RegisterRequest`.
    ///
    /// # Errors
    /// [`StandinError::Timeout`] naming the resource.
    pub async fn wait_registered(
        &self,
        resource: &str,
        timeout: Duration,
    ) -> Result<RegisterRequest, StandinError> {
        self.shared
            .wait_for(
                || format!("a device plugin to register resource {resource}"),
                timeout,
                |s| {
                    s.plugins
                        .get(resource)
                        .filter(|p| p.connected)
                        .map(|p| p.request.clone())
                },
            )
            .await
    }

    /// Whether a plugin for `resource` is registered and its ListAndWatch
    /// stream is still open.
    pub fn is_registered(&self, resource: &str) -> bool {
        self.shared
            .read(|s| s.plugins.get(resource).is_some_and(|p| p.connected))
    }

    /// The options the plugin of `resource` returned from `GetDevicePluginOptions`.
    pub fn plugin_options(&self, resource: &str) -> Option<DevicePluginOptions> {
        self.shared
            .read(|s| s.plugins.get(resource).map(|p| p.options))
    }

    /// The latest ListAndWatch snapshot of `resource`, in the plugin's
    /// order; empty if nothing is known. After the plugin disappears its
    /// devices stay listed, all unhealthy.
    pub fn devices(&self, resource: &str) -> Vec<DeviceState> {
        self.shared.read(|s| {
            s.plugins
                .get(resource)
                .map(|p| p.devices.clone())
                .unwrap_or_default()
        })
    }

    /// Wait (at most `timeout`) until `pred` holds for the snapshot of
    /// `resource`; returns that snapshot.
    ///
    /// # Errors
    /// [`StandinError::Timeout`] naming the resource and the last snapshot.
    pub async fn wait_devices(
        &self,
        resource: &str,
        timeout: Duration,
        pred: impl Fn(&[DeviceState]) -> bool,
    ) -> Result<Vec<DeviceState>, StandinError> {
        let result = self
            .shared
            .wait_for(String::new, timeout, |s| {
                let devices = s
                    .plugins
                    .get(resource)
                    .map(|p| p.devices.as_slice())
                    .unwrap_or_default();
                pred(devices).then(|| devices.to_vec())
            })
            .await;
        result.map_err(|e| match e {
            StandinError::Timeout { timeout, .. } => StandinError::Timeout {
                what: format!(
                    "the devices of {resource} to match (last snapshot: {:?})",
                    self.devices(resource)
                ),
                timeout,
            },
            other => other,
        })
    }

    /// Admit a pod's container as kubelet does: take the healthy devices of
    /// `resource` no recorded pod holds; if the plugin offers it, ask
    /// `GetPreferredAllocation` and take its picks first (in sorted order,
    /// as kubelet), fill up in sorted order; call `Allocate` with them;
    /// record the assignment for PodResources; then call
    /// `PreStartContainer` if the plugin asked for it (a failure there
    /// leaves the assignment recorded, as a failed container start does).
    ///
    /// # Errors
    /// [`StandinError::NotRegistered`], [`StandinError::Insufficient`],
    /// [`StandinError::AlreadyAdmitted`], [`StandinError::InvalidRequest`]
    /// for `count == 0`, [`StandinError::Rpc`] / [`StandinError::BadResponse`]
    /// from the plugin.
    pub async fn admit_pod(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        resource: &str,
        count: usize,
    ) -> Result<Admission, StandinError> {
        if count == 0 {
            return Err(StandinError::InvalidRequest(
                "a pod must request at least one device".into(),
            ));
        }
        let _admitting = self.shared.admit_lock.lock().await;
        let key = (namespace.to_string(), pod.to_string());
        let (channel, options, available) = self.shared.read(|s| {
            let plugin = s
                .plugins
                .get(resource)
                .ok_or_else(|| not_registered(resource))?;
            let held = s
                .pods
                .get(&key)
                .and_then(|c| c.get(container))
                .is_some_and(|r| r.contains_key(resource));
            if held {
                return Err(StandinError::AlreadyAdmitted {
                    namespace: namespace.into(),
                    pod: pod.into(),
                    container: container.into(),
                    resource: resource.into(),
                });
            }
            let allocated = s.allocated(resource);
            let mut available: Vec<String> = plugin
                .devices
                .iter()
                .filter(|d| d.is_healthy() && !allocated.contains(&d.id))
                .map(|d| d.id.clone())
                .collect();
            available.sort();
            available.dedup();
            Ok((plugin.channel.clone(), plugin.options, available))
        })?;
        if available.len() < count {
            return Err(StandinError::Insufficient {
                resource: resource.into(),
                requested: count,
                available: available.len(),
            });
        }

        let mut chosen: Vec<String> = Vec::with_capacity(count);
        if options.get_preferred_allocation_available {
            let size = i32::try_from(count)
                .map_err(|_| StandinError::InvalidRequest(format!("{count} devices")))?;
            let mut preferred = self
                .call_preferred(resource, channel.clone(), &available, &[], size)
                .await?;
            preferred.sort();
            preferred.dedup();
            chosen.extend(
                preferred
                    .into_iter()
                    .filter(|id| available.contains(id))
                    .take(count),
            );
        }
        for id in &available {
            if chosen.len() == count {
                break;
            }
            if !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }

        let mut response = self
            .call_allocate(resource, channel.clone(), &chosen)
            .await?;
        if response.container_responses.len() != 1 {
            return Err(StandinError::BadResponse {
                resource: resource.into(),
                call: "Allocate",
                detail: format!(
                    "{} container responses for 1 container request",
                    response.container_responses.len()
                ),
            });
        }
        let response = response.container_responses.remove(0);
        self.record_assignment(namespace, pod, container, resource, &chosen);
        info!(namespace, pod, container, resource, devices = ?chosen, "pod admitted");

        if options.pre_start_required {
            let request = PreStartContainerRequest {
                devices_i_ds: chosen.clone(),
            };
            let mut client = DevicePluginClient::new(channel);
            client
                .pre_start_container(request)
                .await
                .map_err(|s| rpc_error(resource, "PreStartContainer", s))?;
        }
        Ok(Admission {
            device_ids: chosen,
            response,
        })
    }

    /// Call `Allocate` for one container with exactly `device_ids`, without
    /// any check or record (for tests of the plugin's own checks).
    ///
    /// # Errors
    /// [`StandinError::NotRegistered`] or [`StandinError::Rpc`].
    pub async fn allocate(
        &self,
        resource: &str,
        device_ids: &[String],
    ) -> Result<AllocateResponse, StandinError> {
        let channel = self.channel(resource)?;
        self.call_allocate(resource, channel, device_ids).await
    }

    /// Call `GetPreferredAllocation` for one container; returns the
    /// plugin's picks as sent.
    ///
    /// # Errors
    /// [`StandinError::NotRegistered`], [`StandinError::Rpc`], or
    /// [`StandinError::BadResponse`] if no container response came back.
    pub async fn preferred_allocation(
        &self,
        resource: &str,
        available: &[String],
        must_include: &[String],
        size: i32,
    ) -> Result<Vec<String>, StandinError> {
        let channel = self.channel(resource)?;
        self.call_preferred(resource, channel, available, must_include, size)
            .await
    }

    /// The pod was deleted: forget every device it held.
    pub fn remove_pod(&self, namespace: &str, pod: &str) {
        self.shared
            .update(|s| s.pods.remove(&(namespace.to_string(), pod.to_string())));
    }

    /// Record that the container holds `device_ids` of `resource`, replacing
    /// any previous record for that container and resource, without calling
    /// the plugin (for negative tests).
    pub fn record_assignment(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        resource: &str,
        device_ids: &[String],
    ) {
        self.shared.update(|s| {
            s.pods
                .entry((namespace.to_string(), pod.to_string()))
                .or_default()
                .entry(container.to_string())
                .or_default()
                .insert(resource.to_string(), device_ids.to_vec());
        });
    }

    /// Restart as kubelet does: stop serving Registration, delete every
    /// file in the device-plugin dir (plugin sockets included), forget
    /// every registration (closing their ListAndWatch streams), then serve
    /// `kubelet.sock` again. The new socket always has a new inode: the
    /// old one is held until the new one is bound. PodResources keeps
    /// serving and assignments are kept.
    ///
    /// # Errors
    /// [`StandinError::Cleanup`] or [`StandinError::Bind`]; the stand-in
    /// then serves no registrations until a later `restart` succeeds.
    pub async fn restart(&mut self) -> Result<(), StandinError> {
        info!(dir = %self.shared.dir.display(), "kubelet stand-in restarting");
        let pin = match self.registration.take() {
            Some(task) => task.stop("registration").await,
            None => None,
        };
        self.shared.update(|s| {
            s.generation += 1;
            s.plugins.clear();
        });
        wipe_dir(&self.shared.dir, &self.pod_resources_socket)?;
        self.registration = Some(serve_registration(&self.shared)?);
        drop(pin);
        Ok(())
    }

    /// Stop both servers and forget every plugin.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.registration.take() {
            task.stop("registration").await;
        }
        if let Some(task) = self.pod_resources.take() {
            task.stop("pod-resources").await;
        }
        self.shared.update(|s| s.plugins.clear());
        info!("kubelet stand-in stopped");
    }

    fn channel(&self, resource: &str) -> Result<Channel, StandinError> {
        self.shared
            .read(|s| s.plugins.get(resource).map(|p| p.channel.clone()))
            .ok_or_else(|| not_registered(resource))
    }

    async fn call_allocate(
        &self,
        resource: &str,
        channel: Channel,
        ids: &[String],
    ) -> Result<AllocateResponse, StandinError> {
        let request = afxdp_proto::deviceplugin::AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_i_ds: ids.to_vec(),
            }],
        };
        let mut client = DevicePluginClient::new(channel);
        let response = tokio::time::timeout(CALL_TIMEOUT, client.allocate(request))
            .await
            .map_err(|_| call_timeout(resource, "Allocate"))?;
        Ok(response
            .map_err(|s| rpc_error(resource, "Allocate", s))?
            .into_inner())
    }

    async fn call_preferred(
        &self,
        resource: &str,
        channel: Channel,
        available: &[String],
        must_include: &[String],
        size: i32,
    ) -> Result<Vec<String>, StandinError> {
        let request = PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: available.to_vec(),
                must_include_device_i_ds: must_include.to_vec(),
                allocation_size: size,
            }],
        };
        let mut client = DevicePluginClient::new(channel);
        let response = tokio::time::timeout(CALL_TIMEOUT, client.get_preferred_allocation(request))
            .await
            .map_err(|_| call_timeout(resource, "GetPreferredAllocation"))?
            .map_err(|s| rpc_error(resource, "GetPreferredAllocation", s))?
            .into_inner();
        response
            .container_responses
            .into_iter()
            .next()
            .map(|c| c.device_i_ds)
            .ok_or_else(|| StandinError::BadResponse {
                resource: resource.into(),
                call: "GetPreferredAllocation",
                detail: "no container response".into(),
            })
    }
}

fn not_registered(resource: &str) -> StandinError {
    StandinError::NotRegistered {
        resource: resource.into(),
    }
}

fn rpc_error(resource: &str, call: &'static str, status: tonic::Status) -> StandinError {
    StandinError::Rpc {
        resource: resource.into(),
        call,
        status: Box::new(status),
    }
}

fn call_timeout(resource: &str, call: &'static str) -> StandinError {
    StandinError::Timeout {
        what: format!("{call} on the plugin of {resource}"),
        timeout: CALL_TIMEOUT,
    }
}

/// Bind `kubelet.sock` and serve Registration on it.
fn serve_registration(shared: &Arc<Shared>) -> Result<ServerTask, StandinError> {
    let path = shared.dir.join(KUBELET_SOCKET);
    let (incoming, pin) = bind_pinned(&path).map_err(|source| StandinError::Bind {
        path: path.clone(),
        source,
    })?;
    let router = Server::builder().add_service(RegistrationServer::new(RegistrationService {
        shared: shared.clone(),
    }));
    Ok(ServerTask::spawn(router, incoming, Some(pin)))
}

/// Bind a unix listener at `path` (replacing a stale file) and keep a
/// duplicate of it, which pins the socket file's inode while it lives.
fn bind_pinned(path: &Path) -> std::io::Result<(UnixListenerStream, StdUnixListener)> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = StdUnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    let pin = listener.try_clone()?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    Ok((UnixListenerStream::new(listener), pin))
}

/// Create `dir` and delete every non-directory entry in it except `keep`,
/// as kubelet's `CleanupPluginDirectory` does on start.
fn wipe_dir(dir: &Path, keep: &Path) -> Result<(), StandinError> {
    fn cleanup(path: &Path) -> impl FnOnce(std::io::Error) -> StandinError + '_ {
        move |source| StandinError::Cleanup {
            path: path.to_path_buf(),
            source,
        }
    }
    std::fs::create_dir_all(dir).map_err(cleanup(dir))?;
    for entry in std::fs::read_dir(dir).map_err(cleanup(dir))? {
        let entry = entry.map_err(cleanup(dir))?;
        let path = entry.path();
        if path == keep || entry.file_type().map_err(cleanup(&path))?.is_dir() {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StandinError::Cleanup { path, source }),
        }
    }
    Ok(())
}
