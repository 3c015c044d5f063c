//! The kubelet device-plugin API v1beta1: one gRPC server and socket per pool,
//! registration with kubelet, and re-registration when kubelet restarts.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use afxdp_proto::deviceplugin::{
    self as dp, device_plugin_client::DevicePluginClient, device_plugin_server::DevicePlugin,
    device_plugin_server::DevicePluginServer, registration_client::RegistrationClient,
};

use crate::admitting::PodFinder;
use crate::agent::{Agent, AllocateError};
use crate::pool::resource_name;

/// The device-plugin servers' bounds (see `afxdp_proto::limits`): no
/// request deadline (Allocate waits on image pulls and busy devices by
/// design, and kubelet sets its own); 1 MiB messages (device ID lists of
/// large pools).
static LIMITS: std::sync::LazyLock<afxdp_proto::limits::Limits> =
    std::sync::LazyLock::new(|| afxdp_proto::limits::Limits {
        request_timeout: None,
        max_message: 1024 * 1024,
        ..Default::default()
    });

/// Kubelet's registration socket inside the device-plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// The device-plugin service of one pool.
#[derive(Clone)]
pub struct PoolPlugin {
    pool: String,
    agent: Arc<Agent>,
    finder: Option<Arc<PodFinder>>,
}

impl PoolPlugin {
    /// The pod this container allocation is for, as far as it can be told
    /// (only pools with a policy, or sharing through CSI, ask: the default
    /// decisions do not read it).
    async fn pod_for(&self, devices: &[String], csi: bool) -> afxdp_policy::Pod {
        let mut pod = afxdp_policy::Pod::default();
        let Some(finder) = &self.finder else {
            return pod;
        };
        if !csi && !self.agent.pool_has_policy(&self.pool) {
            return pod;
        }
        if let Some(found) = finder.find(&resource_name(&self.pool), devices.len()).await {
            pod.namespace = found.key.namespace;
            pod.name = found.key.name;
            pod.annotations = found.meta.annotations;
            pod.labels = found.meta.labels;
        }
        pod
    }
}

impl PoolPlugin {
    /// A failed Allocate as a Warning Event on the pod kubelet is admitting
    /// (found now if the allocation did not need it), when the API server is
    /// reachable; best effort.
    async fn report_failure(&self, known: (String, String), count: usize, message: &str) {
        let Some(finder) = &self.finder else {
            return;
        };
        let (namespace, name) = if known.1.is_empty() {
            match finder.find(&resource_name(&self.pool), count).await {
                Some(f) => (f.key.namespace, f.key.name),
                None => return,
            }
        } else {
            known
        };
        if let Err(e) = finder
            .pods
            .warn(
                (&namespace, &name),
                "AllocationFailed",
                message,
                &finder.node,
            )
            .await
        {
            tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "allocation failure event not posted");
        }
    }
}

/// The gRPC status of an allocation error: one mapping, used everywhere.
pub fn allocate_status(e: &AllocateError) -> Status {
    let msg = e.to_string();
    match e {
        AllocateError::UnknownPool(_)
        | AllocateError::NotInPool { .. }
        | AllocateError::Duplicate(_) => Status::invalid_argument(msg),
        AllocateError::Busy(_) => Status::unavailable(msg),
        AllocateError::NotOwner { .. } => Status::permission_denied(msg),
        AllocateError::NotPresent(_)
        | AllocateError::Unhealthy { .. }
        | AllocateError::Leaving { .. }
        | AllocateError::Unsupported { .. } => Status::failed_precondition(msg),
        AllocateError::Attach { .. }
        | AllocateError::SharePin { .. }
        | AllocateError::Sharing(_) => Status::internal(msg),
        AllocateError::Policy { .. }
        | AllocateError::PolicyUnavailable { .. }
        | AllocateError::FilterTemplate { .. }
        | AllocateError::Image { .. }
        | AllocateError::Subfunction { .. } => Status::failed_precondition(msg),
        AllocateError::State(_) => Status::unavailable(msg),
    }
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<dp::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PoolPlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<dp::Empty>,
    ) -> Result<Response<dp::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _: Request<dp::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let rx = self
            .agent
            .watch_devices(&self.pool)
            .ok_or_else(|| Status::not_found("pool gone"))?;
        let stream = tokio_stream::wrappers::WatchStream::new(rx)
            .map(|devices| Ok(dp::ListAndWatchResponse { devices }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<dp::PreferredAllocationRequest>,
    ) -> Result<Response<dp::PreferredAllocationResponse>, Status> {
        let requests = req.into_inner().container_requests;
        let (agent, pool) = (self.agent.clone(), self.pool.clone());
        // Policy calls block: on the blocking pool, never on this thread.
        let container_responses = afxdp_policy::Blocking::spawn(move |b| {
            requests
                .into_iter()
                .map(|c| dp::ContainerPreferredAllocationResponse {
                    device_i_ds: agent.preferred(
                        b,
                        &pool,
                        &c.available_device_i_ds,
                        &c.must_include_device_i_ds,
                        usize::try_from(c.allocation_size).unwrap_or(0),
                    ),
                })
                .collect()
        })
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(dp::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<dp::AllocateRequest>,
    ) -> Result<Response<dp::AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            let agent = self.agent.clone();
            let pool = self.pool.clone();
            let csi = self.agent.pool_shares_by_csi(&self.pool);
            let pod = self.pod_for(&c.devices_i_ds, csi).await;
            let known = (pod.namespace.clone(), pod.name.clone());
            let devices = c.devices_i_ds.clone();
            let count = c.devices_i_ds.len();
            let span = tracing::info_span!("allocate", pool = %pool, devices = ?c.devices_i_ds, pod = %format!("{}/{}", pod.namespace, pod.name));
            let grant = afxdp_policy::Blocking::spawn(move |b| {
                span.in_scope(|| agent.allocate(b, &pool, &c.devices_i_ds, pod))
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
            let grant = match grant {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(pool = %self.pool, error = %e, "allocate failed");
                    self.report_failure(known, count, &e.to_string()).await;
                    return Err(allocate_status(&e));
                }
            };
            if csi {
                let pods = self.finder.as_ref().map(|f| &f.pods);
                let pod = (known.0.as_str(), known.1.as_str());
                if let Err(e) = crate::csi::admit::annotate_admitted(
                    pods,
                    &self.agent,
                    &self.pool,
                    pod,
                    &devices,
                )
                .await
                {
                    tracing::error!(pool = %self.pool, error = %e, "allocate failed");
                    self.report_failure(known, count, &e.to_string()).await;
                    return Err(Status::failed_precondition(e.to_string()));
                }
            }
            container_responses.push(dp::ContainerAllocateResponse {
                envs: grant.envs.into_iter().collect(),
                mounts: grant
                    .mounts
                    .into_iter()
                    .map(|(c, h)| dp::Mount {
                        container_path: c.display().to_string(),
                        host_path: h.display().to_string(),
                        read_only: false,
                    })
                    .collect(),
                ..Default::default()
            });
        }
        Ok(Response::new(dp::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<dp::PreStartContainerRequest>,
    ) -> Result<Response<dp::PreStartContainerResponse>, Status> {
        Ok(Response::new(dp::PreStartContainerResponse {}))
    }
}

fn options() -> dp::DevicePluginOptions {
    dp::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// Where the pool servers live and how they find kubelet.
#[derive(Debug, Clone)]
pub struct PluginDirs {
    /// `/var/lib/kubelet/device-plugins`: holds `kubelet.sock` and the pool sockets.
    pub dir: PathBuf,
    /// How often the socket dir is checked for a kubelet restart.
    pub poll: Duration,
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Serve one device plugin per pool the agent serves, starting and stopping
/// them as the pool set changes (config reload), until `shutdown` flips.
pub async fn serve_pools(
    agent: Arc<Agent>,
    finder: Option<Arc<PodFinder>>,
    dirs: PluginDirs,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut names = agent.watch_pool_names();
    let mut running: std::collections::BTreeMap<String, PoolServer> = Default::default();
    loop {
        let wanted: Vec<String> = names.borrow_and_update().clone();
        let gone: Vec<String> = running
            .keys()
            .filter(|p| !wanted.contains(p))
            .cloned()
            .collect();
        for pool in gone {
            if let Some(server) = running.remove(&pool) {
                tracing::info!(pool = %pool, "pool no longer served; its device plugin stops");
                server.stop().await;
            }
        }
        for pool in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(pool) {
                let (stop, stop_rx) = watch::channel(false);
                let task = tokio::spawn(run_pool(
                    slot.key().clone(),
                    agent.clone(),
                    finder.clone(),
                    dirs.clone(),
                    stop_rx,
                ));
                slot.insert(PoolServer { stop, task });
            }
        }
        tokio::select! {
            r = names.changed() => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for server in running.values() {
        let _ = server.stop.send(true);
    }
    for (_, server) in running {
        server.stop().await;
    }
}

/// One pool's device-plugin task and what stops it.
struct PoolServer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolServer {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// Serve one pool until `shutdown` flips: bind the socket, prove it answers,
/// register with kubelet, and start over whenever kubelet restarts (its socket
/// dir is wiped and `kubelet.sock` recreated).
pub async fn run_pool(
    pool: String,
    agent: Arc<Agent>,
    finder: Option<Arc<PodFinder>>,
    dirs: PluginDirs,
    mut shutdown: watch::Receiver<bool>,
) {
    let kubelet = dirs.dir.join(KUBELET_SOCKET);
    let plugin = PoolPlugin {
        pool: pool.clone(),
        agent,
        finder,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let endpoint = format!("afxdp-{pool}-{secs}.sock");
        let path = dirs.dir.join(&endpoint);
        match serve_and_register(&plugin, &dirs, &path, &endpoint, &kubelet, &mut shutdown).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(pool = %pool, error = %e, retry_in = ?backoff, "device plugin not registered");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("bind {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("own socket {path} does not answer: {detail}")]
    SelfCheck { path: PathBuf, detail: String },
    #[error("kubelet at {path}: {detail}")]
    Kubelet { path: PathBuf, detail: String },
}

/// One serving period: returns Ok when kubelet restarted (re-register), Err when
/// registration failed (retry), and returns Ok on shutdown too.
async fn serve_and_register(
    plugin: &PoolPlugin,
    dirs: &PluginDirs,
    path: &Path,
    endpoint: &str,
    kubelet: &Path,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), PluginError> {
    let incoming = LIMITS.bind(path).map_err(|source| PluginError::Bind {
        path: path.into(),
        source,
    })?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pool = plugin.pool.as_str();
    let svc = DevicePluginServer::new(plugin.clone()).max_decoding_message_size(LIMITS.max_message);
    let server = tokio::spawn(
        LIMITS
            .server()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    let stop = |server: tokio::task::JoinHandle<_>, stop_tx: tokio::sync::oneshot::Sender<()>| async move {
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        let _ = std::fs::remove_file(path);
    };

    // Prove our own socket accepts connections before telling kubelet about it.
    let check = async {
        let ch = afxdp_proto::unix::connect(path, Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        DevicePluginClient::new(ch)
            .get_device_plugin_options(dp::Empty {})
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(detail) = check.await {
        stop(server, stop_tx).await;
        return Err(PluginError::SelfCheck {
            path: path.into(),
            detail,
        });
    }

    let register = async {
        let ch = afxdp_proto::unix::connect(kubelet, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        RegistrationClient::new(ch)
            .register(dp::RegisterRequest {
                version: dp::VERSION.to_string(),
                endpoint: endpoint.to_string(),
                resource_name: resource_name(pool),
                options: Some(options()),
            })
            .await
            .map_err(|e| format!("{}: {}", e.code(), e.message()))
    };
    let kubelet_inode = inode(kubelet);
    if let Err(detail) = register.await {
        stop(server, stop_tx).await;
        return Err(PluginError::Kubelet {
            path: kubelet.into(),
            detail,
        });
    }
    tracing::info!(pool, resource = %resource_name(pool), endpoint, "registered with kubelet");
    plugin.agent.metrics().registered(pool, true);

    // Watch for a kubelet restart: our socket removed or kubelet.sock replaced.
    let mut tick = tokio::time::interval(dirs.poll);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let gone = !path.exists();
                let replaced = inode(kubelet) != kubelet_inode;
                if gone || replaced {
                    tracing::info!(pool, socket_gone = gone, kubelet_replaced = replaced, "kubelet restarted; re-registering");
                    break;
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
        }
    }
    plugin.agent.metrics().registered(pool, false);
    stop(server, stop_tx).await;
    Ok(())
}
