//! Start-up and wiring of afxdp-dp (DESIGN.md flow 1): config → discovery →
//! pools → reconcile persisted state with the kernel → servers → registration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use afxdp_program::NativeManager;

use crate::agent::Agent;
use crate::deviceplugin::{self, PluginDirs};
use crate::handshake_backend::HandshakeBackend;
use crate::nodeapi::{self, NodeApiService};
use crate::policies::{PolicyPaths, PolicyStore};
use crate::pool::Inventory;
use crate::programs::Programs;
use crate::sharing::UdsServers;
use crate::state::StateStore;

/// Everything the daemon needs to know to start (the command line).
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub device_plugin_dir: PathBuf,
    pub pod_resources_socket: PathBuf,
    pub state_dir: PathBuf,
    pub node_api_socket: PathBuf,
    pub node_name: String,
    /// How often the device-plugin dir is checked for a kubelet restart.
    pub kubelet_poll: Duration,
    /// Policy artifacts and precompiled components (on disk: a restarted node
    /// starts from it with the registry down).
    pub policy_cache_dir: PathBuf,
    /// How often the config file is checked for changes (policy rollout).
    pub config_poll: Duration,
    /// Kubeconfig for pod metadata reads; `None`: the in-cluster service
    /// account, or no API server at all (policies then see no annotations).
    pub kubeconfig: Option<PathBuf>,
    /// Keep a fresh program attached to every free device so Allocate does
    /// not pay for the XDP attach (see [`Agent::prepare_free_devices`]). Off:
    /// free devices carry no program (attach at Allocate, detach at DEL).
    pub prepare_attachments: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (port 0: any
    /// free port, see [`Daemon::metrics_address`]); `None`: not served.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// How bpfman pools reach bpfman (socket, paths, hook).
    pub bpfman: crate::programs::BpfmanOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config {path}:\n{errors}")]
    Config {
        path: PathBuf,
        errors: afxdp_config::ConfigErrors,
    },
    #[error("{what}: {detail}")]
    Setup { what: &'static str, detail: String },
}

fn setup(what: &'static str) -> impl FnOnce(String) -> StartError {
    move |detail| StartError::Setup { what, detail }
}

/// A running daemon: its agent and the handle that stops it.
pub struct Daemon {
    pub agent: Arc<Agent>,
    pub policies: Arc<PolicyStore>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The bound address of the metrics endpoint, when served.
    pub metrics_address: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _link_watcher: afxdp_netdev::LinkWatcher,
    /// The API server's pods (the CSI node plugin reads annotations there).
    pods: Option<crate::pods::PodDirectory>,
    node_name: String,
}

impl Daemon {
    /// Start everything; returns once the servers are spawned (registration
    /// proceeds in the background and retries until kubelet answers).
    pub async fn start(opts: Options) -> Result<Self, StartError> {
        let config = afxdp_config::load(&opts.config).map_err(|errors| StartError::Config {
            path: opts.config.clone(),
            errors,
        })?;
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| setup("state dir")(e.to_string()))?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // The agent, once made (the handshake backend's claims, /status).
        let agent_ref: Arc<std::sync::OnceLock<std::sync::Weak<Agent>>> = Arc::default();
        let status: crate::observe::StatusSource = {
            let agent_ref = agent_ref.clone();
            Arc::new(move || {
                agent_ref
                    .get()
                    .and_then(std::sync::Weak::upgrade)
                    .map_or_else(|| serde_json::json!({ "starting": true }), |a| a.status())
            })
        };
        let metrics_address = match opts.metrics_address {
            Some(addr) => {
                let (bound, task) =
                    crate::observe::serve(addr, metrics.clone(), status, shutdown_rx.clone())
                        .await
                        .map_err(|e| setup("metrics address")(format!("{addr}: {e}")))?;
                tasks.push(task);
                Some(bound)
            }
            None => None,
        };

        let native = NativeManager::new(opts.state_dir.join("pins"))
            .map_err(|e| setup("program manager")(e.to_string()))?;
        let programs = Arc::new(
            Programs::new(
                native,
                &opts.node_name,
                opts.bpfman.clone(),
                &opts.state_dir,
            )
            .map_err(|e| setup("program manager")(e.to_string()))?,
        );
        let store = StateStore::new(&opts.state_dir);
        let state = tokio::task::spawn_blocking({
            let store = store.clone();
            let programs = programs.clone();
            let uds_root = opts.state_dir.join("uds");
            let (config, node) = (config.clone(), opts.node_name.clone());
            move || {
                programs.reconcile(&config);
                let pool_of = |device: &str| pool_by_name(&config, &node, device);
                let allocation_of = |device: &str| programs.allocation_of(device);
                let unreachable = |pool: &str| programs.unreachable(pool);
                crate::recover::reconcile(
                    &store,
                    programs.as_ref(),
                    &pool_of,
                    &allocation_of,
                    &unreachable,
                    &uds_root,
                )
            }
        })
        .await
        .map_err(|e| setup("reconcile")(e.to_string()))?
        .map_err(|e| setup("state")(e.to_string()))?;
        let (state, lost) = (state.state, state.lost);

        // Devices in pods: allocated, or lost (listed Unhealthy with why).
        let elsewhere: Vec<(String, afxdp_netdev::NetDev)> = state
            .allocations
            .values()
            .chain(lost.iter().map(|(a, _)| a))
            .map(|a| (a.pool.clone(), a.netdev.clone()))
            .collect();
        let inventory = select_devices(&config, &opts.node_name, Vec::new(), elsewhere)
            .await
            .map_err(setup("discovery"))?;
        for p in inventory.pools() {
            tracing::info!(pool = %p.config.name, devices = ?p.devices.keys().collect::<Vec<_>>(), "pool");
        }

        let policies = Arc::new(
            PolicyStore::new(
                &PolicyPaths {
                    oci_cache: opts.policy_cache_dir.join("oci"),
                    compiled_cache: opts.policy_cache_dir.join("compiled"),
                    pull_secret: None,
                },
                Vec::new(),
                metrics.clone(),
            )
            .map_err(|e| setup("policy engine")(e.to_string()))?,
        );
        for pool in &config.pools {
            // A failure is logged and remembered; the pool's failurePolicy decides.
            let _ = policies.reconcile(pool).await;
        }

        let backend = Arc::new(HandshakeBackend {
            runtime: tokio::runtime::Handle::current(),
            pod_resources: opts.pod_resources_socket.clone(),
            programs: programs.clone(),
            timeout: Duration::from_secs(5),
            agent: agent_ref.clone(),
            metrics: metrics.clone(),
        });
        let uds = UdsServers::new(opts.state_dir.join("uds"), backend);
        let images = Arc::new(crate::images::ImageResolver::new(
            policies.fetcher(),
            tokio::runtime::Handle::current(),
            metrics.clone(),
        ));
        let agent = Arc::new(Agent::with_metrics(
            metrics.clone(),
            Agent::with_images(
                images,
                Agent::with_preparation(
                    opts.prepare_attachments,
                    Agent::new(
                        inventory,
                        state,
                        store,
                        programs,
                        uds,
                        Some(policies.clone()),
                    ),
                ),
            ),
        ));
        let _ = agent_ref.set(Arc::downgrade(&agent));
        agent.note_lost(lost.into_iter().map(|(a, why)| (a.device, why)));
        for pool in agent.pool_names() {
            agent.publish(&pool); // the device gauges start right
        }
        agent
            .resume_sharing()
            .map_err(|e| setup("resume UDS servers")(e.to_string()))?;
        {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || {
                agent.finish_pending_releases();
            })
            .await
            .map_err(|e| setup("finish pending releases")(e.to_string()))?;
        }
        release_not_held(&agent, &opts.pod_resources_socket).await;
        if opts.prepare_attachments {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || agent.prepare_free_devices())
                .await
                .map_err(|e| setup("prepare attachments")(e.to_string()))?;
        }

        // Config changes roll policies out.
        let reloader = Arc::new(Reloader {
            path: opts.config.clone(),
            node: opts.node_name.clone(),
            agent: agent.clone(),
            policies: policies.clone(),
            last_good: tokio::sync::Mutex::new(config),
            outcomes: watch::channel((0, None)).0,
            pool_changes: Default::default(),
        });
        tasks.push(tokio::spawn(watch_config(
            reloader.clone(),
            opts.config_poll,
            shutdown_rx.clone(),
        )));
        // Policies that failed to load (registry down, no cache) are retried.
        tasks.push(tokio::spawn(retry_policies(
            reloader.clone(),
            shutdown_rx.clone(),
        )));

        // Link watcher → health.
        let (tx, rx) = std::sync::mpsc::channel();
        let link_watcher = afxdp_netdev::spawn_link_watcher(tx)
            .map_err(|e| setup("link watcher")(e.to_string()))?;
        {
            let agent = agent.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                crate::link_events::apply_all(&agent, &rx);
            }));
        }

        // Pod metadata for policies (annotations, labels).
        let pods = match &opts.kubeconfig {
            Some(path) => match crate::pods::PodDirectory::from_kubeconfig(path).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "no API server: policies see no pod annotations");
                    None
                }
            },
            None => match crate::pods::PodDirectory::in_cluster() {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::info!(error = %e, "not in a cluster: policies see no pod annotations");
                    None
                }
            },
        };

        // Node API for afxdp-cni.
        let incoming = nodeapi::bind(&opts.node_api_socket)
            .map_err(|e| setup("node API socket")(e.to_string()))?;
        {
            let svc = NodeApiService::new(agent.clone(), pods.clone(), opts.node_name.clone());
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let r = nodeapi::LIMITS
                    .server()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "node API server failed");
                }
            }));
        }

        // One device-plugin server per pool.
        let dirs = PluginDirs {
            dir: opts.device_plugin_dir.clone(),
            poll: opts.kubelet_poll,
        };
        let csi_pods = pods.clone();
        let finder = pods.map(|pods| {
            Arc::new(crate::admitting::PodFinder {
                pods,
                node: opts.node_name.clone(),
                pod_resources_socket: opts.pod_resources_socket.clone(),
                timeout: Duration::from_secs(2),
            })
        });
        tasks.push(tokio::spawn(deviceplugin::serve_pools(
            agent.clone(),
            finder,
            dirs,
            shutdown_rx.clone(),
        )));
        let node_api = opts.node_api_socket.clone();
        tasks.push(tokio::spawn({
            let mut stop = shutdown_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
                let _ = std::fs::remove_file(&node_api);
            }
        }));
        metrics.config_loaded(agent.pool_names());
        Ok(Self {
            agent,
            policies,
            reloader,
            metrics,
            metrics_address,
            shutdown,
            tasks,
            _link_watcher: link_watcher,
            pods: csi_pods,
            node_name: opts.node_name.clone(),
        })
    }

    /// Serve the CSI node plugin `csi.afxdp.io` (pools with sharing `csi`)
    /// on `opts.socket`, registered in kubelet's `plugins_registry`, until
    /// [`Daemon::stop`].
    pub fn serve_csi(&mut self, opts: &crate::csi::CsiOptions) -> Result<(), StartError> {
        let service = crate::csi::node_service(
            self.node_name.clone(),
            self.agent.clone(),
            self.pods.clone(),
        );
        let tasks = crate::csi::serve(opts, service, self.shutdown.subscribe())
            .map_err(|e| setup("CSI sockets")(e.to_string()))?;
        self.tasks.extend(tasks);
        Ok(())
    }

    /// Stop serving; attachments, pins and state stay for the next run.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let agent = self.agent.clone();
        let _ = tokio::task::spawn_blocking(move || agent.settle_all()).await;
        self.agent.shutdown();
        drop(self._link_watcher);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }
}

/// Release allocations a previous run persisted that kubelet does not hold
/// ([`Agent::release_not_held`]). Without kubelet's PodResources nothing
/// is released: a later Allocate of such a device starts it clean.
async fn release_not_held(agent: &Arc<Agent>, pod_resources: &std::path::Path) {
    if agent.allocated_devices().is_empty() {
        return;
    }
    let held = match crate::podresources::held_devices(pod_resources, Duration::from_secs(2)).await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "kubelet's PodResources unavailable: allocations it does not hold stay until reallocated");
            return;
        }
    };
    let agent = agent.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || agent.release_not_held(&held)).await {
        tracing::error!(error = %e, "releasing allocations kubelet does not hold panicked");
    }
}

/// What a config reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file is invalid: the last good config stays in force.
    Invalid(String),
    /// The file is valid but could not be applied (device discovery failed):
    /// the last good config stays in force.
    NotApplied(String),
    /// Applied: per pool whose policy changed, the load result (`Err`: the
    /// previous policy stays in force). Pool changes are in
    /// [`Reloader::last_pool_changes`] and the log.
    Applied(Vec<(String, Result<(), String>)>),
}

/// Re-reads the config; serves its pools (devices move once free, see
/// `agent::reconfigure`) and rolls out policy changes.
pub struct Reloader {
    path: PathBuf,
    node: String,
    agent: Arc<Agent>,
    policies: Arc<PolicyStore>,
    last_good: tokio::sync::Mutex<afxdp_config::Config>,
    outcomes: watch::Sender<(u64, Option<ReloadOutcome>)>,
    pool_changes: std::sync::Mutex<crate::agent::PoolChanges>,
}

impl Reloader {
    /// Load the config file again and apply it: new pools served, dropped
    /// ones once they hold no device, devices moved between pools once
    /// released, changed pool settings for allocations from now on (live
    /// ones keep what they were given), policies swapped.
    pub async fn reload(&self) -> ReloadOutcome {
        let outcome = self.reload_once().await;
        self.outcomes.send_modify(|(n, last)| {
            *n += 1;
            *last = Some(outcome.clone());
        });
        outcome
    }

    /// Every reload's outcome, numbered (the watcher's too): `(count, last)`.
    pub fn outcomes(&self) -> watch::Receiver<(u64, Option<ReloadOutcome>)> {
        self.outcomes.subscribe()
    }

    /// What the last applied reload changed in the pools.
    pub fn last_pool_changes(&self) -> crate::agent::PoolChanges {
        self.pool_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn reload_once(&self) -> ReloadOutcome {
        let cfg = match afxdp_config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                tracing::error!(path = %self.path.display(), %errors, "config invalid; keeping the last good one");
                return ReloadOutcome::Invalid(errors.to_string());
            }
        };
        let mut last = self.last_good.lock().await;
        // Policies first: a new pool is served with its policy in force.
        let results = self.roll_out_policies(&last, &cfg).await;
        if let Err(e) = self.serve_pools_of(&cfg).await {
            tracing::error!(path = %self.path.display(), error = %e, "pools not reconfigured; they stay as they were");
            return ReloadOutcome::NotApplied(e);
        }
        log_settings_changes(&last, &cfg);
        *last = cfg;
        ReloadOutcome::Applied(results)
    }

    /// Select `cfg`'s devices (pod-held ones as last seen) and have the
    /// agent serve them.
    async fn serve_pools_of(&self, cfg: &afxdp_config::Config) -> Result<(), String> {
        let in_pods: Vec<afxdp_netdev::NetDev> = self
            .agent
            .allocations()
            .into_iter()
            .map(|a| a.netdev)
            .collect();
        let target = select_devices(cfg, &self.node, in_pods, Vec::new()).await?;
        let agent = self.agent.clone();
        let changes = tokio::task::spawn_blocking(move || agent.reconfigure(target))
            .await
            .map_err(|e| e.to_string())?;
        self.agent.metrics().config_loaded(self.agent.pool_names());
        *self
            .pool_changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = changes;
        Ok(())
    }

    /// Load the policies of pools whose policy changed (or that are new
    /// with one); per pool, the result.
    async fn roll_out_policies(
        &self,
        last: &afxdp_config::Config,
        cfg: &afxdp_config::Config,
    ) -> Vec<(String, Result<(), String>)> {
        let mut results = Vec::new();
        for pool in &cfg.pools {
            let old = last.pools.iter().find(|p| p.name == pool.name);
            let changed = match old {
                Some(old) => old.policy != pool.policy,
                None => pool.policy.is_some(),
            };
            if changed {
                let r = self
                    .policies
                    .reconcile(pool)
                    .await
                    .map_err(|e| e.to_string());
                results.push((pool.name.clone(), r));
            }
        }
        results
    }
}

/// Log pools whose settings other than the policy changed: they apply to
/// allocations from now on.
fn log_settings_changes(last: &afxdp_config::Config, cfg: &afxdp_config::Config) {
    for pool in &cfg.pools {
        let Some(old) = last.pools.iter().find(|p| p.name == pool.name) else {
            continue;
        };
        let mut old_rest = old.clone();
        old_rest.policy = pool.policy.clone();
        if old_rest != *pool {
            tracing::info!(pool = %pool.name, "pool settings changed: they apply to allocations from now on; live ones keep what they were given");
        }
    }
}

impl Reloader {
    /// Load again every configured policy that is not in force (a failed
    /// load); `true` when none is left. Holds the config lock, so a reload
    /// and a retry never interleave.
    async fn retry_failed_policies(&self) -> bool {
        let last = self.last_good.lock().await;
        let mut all_loaded = true;
        for pool in self.policies.pending(&last.pools) {
            match self.policies.reconcile(pool).await {
                Ok(()) => tracing::info!(pool = %pool.name, "policy loaded on retry"),
                Err(_) => all_loaded = false,
            }
        }
        all_loaded
    }
}

/// First and longest wait between retries of policies that failed to load.
const POLICY_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Retry failed policy loads, backing off from 1 s to 60 s while they keep
/// failing (the pool's failurePolicy answers meanwhile; the failure and its
/// attempt count are in [`PolicyStore::failure`]).
async fn retry_policies(reloader: Arc<Reloader>, mut shutdown: watch::Receiver<bool>) {
    let (first, longest) = POLICY_RETRY;
    let mut wait = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
        wait = if reloader.retry_failed_policies().await {
            first
        } else {
            (wait * 2).min(longest)
        };
    }
}

/// What tells a changed config file: its target's inode (a ConfigMap
/// update swaps a symlink to a new file), mtime and size.
fn file_stamp(path: &std::path::Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

/// Reload whenever the config file changes (see [`file_stamp`]).
async fn watch_config(
    reloader: Arc<Reloader>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stamp = file_stamp(&reloader.path);
    let mut tick = tokio::time::interval(poll);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
        let now = file_stamp(&reloader.path);
        if now != stamp {
            stamp = now;
            tracing::info!(path = %reloader.path.display(), "config changed; reloading");
            reloader.reload().await;
        }
    }
}

/// The pools `config` selects on `node` from the devices in the host netns
/// (pool devices brought up: they are the daemon's to manage), plus
/// `extra` devices offered to the selectors as if here (a reload: devices
/// in pods, as last seen), plus devices `elsewhere` placed in their pool
/// as given (a start: allocations a previous run made). Blocking work on
/// the blocking pool.
async fn select_devices(
    config: &afxdp_config::Config,
    node: &str,
    extra: Vec<afxdp_netdev::NetDev>,
    elsewhere: Vec<(String, afxdp_netdev::NetDev)>,
) -> Result<Inventory, String> {
    let (netdevs, default_route) = tokio::task::spawn_blocking(|| {
        Ok::<_, afxdp_netdev::NetdevError>((
            afxdp_netdev::list()?,
            afxdp_netdev::default_route_interfaces()?,
        ))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let build = |netdevs: &[afxdp_netdev::NetDev]| {
        let mut offered = netdevs.to_vec();
        offered.extend(
            extra
                .iter()
                .filter(|x| !netdevs.iter().any(|n| n.name == x.name))
                .cloned(),
        );
        let elsewhere: Vec<_> = elsewhere
            .iter()
            .filter(|(_, nd)| !netdevs.iter().any(|n| n.name == nd.name))
            .cloned()
            .collect();
        Inventory::build(config, node, &offered, &default_route, &elsewhere)
    };
    let netdevs = bring_up_pool_devices(&build(&netdevs), netdevs).await;
    Ok(build(&netdevs))
}

/// Pool devices are the daemon's to manage: bring down ones up so they can carry
/// traffic (a device an operator sets down later is reported Unhealthy).
async fn bring_up_pool_devices(
    inventory: &Inventory,
    netdevs: Vec<afxdp_netdev::NetDev>,
) -> Vec<afxdp_netdev::NetDev> {
    let down: Vec<String> = inventory
        .pools()
        .flat_map(|p| p.devices.values())
        .filter(|d| d.present && !d.netdev.admin_up)
        .map(|d| d.netdev.name.clone())
        .collect();
    if down.is_empty() {
        return netdevs;
    }
    tokio::task::spawn_blocking(move || {
        for name in &down {
            crate::agent::bring_up(name);
        }
        afxdp_netdev::list().unwrap_or(netdevs)
    })
    .await
    .unwrap_or_default()
}

/// The pool that would hold `device` by its name alone (a device in a pod's
/// netns shows nothing else): for allocations recovered from the kernel.
fn pool_by_name(config: &afxdp_config::Config, node: &str, device: &str) -> Option<String> {
    let facts = afxdp_config::selector::DeviceFacts {
        name: device,
        driver: None,
        pci: None,
        mac: None,
        has_addresses: false,
        is_primary_host_interface: false,
    };
    afxdp_config::selector::assign_pools(config, node, std::slice::from_ref(&facts))
        .into_iter()
        .find(|(_, names)| names.iter().any(|n| n == device))
        .map(|(pool, _)| pool)
}
