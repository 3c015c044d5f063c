//! The node agent's core: allocate and release devices. Synchronous; the gRPC edges
//! (device plugin, node API) call it from `spawn_blocking`.
//!
//! Every allocation is a sequence of undoable steps (attach, share, persist); a
//! guard undoes the steps done so far unless the whole allocation succeeded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use afxdp_program::{AttachRequest, ProgramManager};
use afxdp_proto::deviceplugin as dp;

use crate::images::ImageResolver;
use crate::policies::{self, PolicyStore};
use crate::pool::{self, Inventory};
use crate::sharing::{self, SharingKind, UdsServers};
use crate::state::{Allocation, StateError, StateFile, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("unknown pool {0}")]
    UnknownPool(String),
    #[error("device {device} is not in pool {pool}")]
    NotInPool { pool: String, device: String },
    #[error("device {0} is not present in the host network namespace")]
    NotPresent(String),
    #[error("device {device} is unhealthy (link {state:?})")]
    Unhealthy {
        device: String,
        state: afxdp_netdev::LinkState,
    },
    #[error("attaching the XDP program to {device}: {source}")]
    Attach {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error(transparent)]
    Sharing(#[from] sharing::SharingError),
    #[error("sharing the pinned map of {device}: {source}")]
    SharePin {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error("pool {pool}: {what} is not supported by the native program manager")]
    Unsupported { pool: String, what: String },
    #[error("pool {pool}: policy {digest} failed {decision}: {source}")]
    Policy {
        pool: String,
        digest: String,
        decision: &'static str,
        #[source]
        source: afxdp_policy::DecisionError,
    },
    #[error("pool {pool}: its policy is not loaded: {reason}")]
    PolicyUnavailable { pool: String, reason: String },
    #[error("pool {pool}: {source}")]
    Image {
        pool: String,
        #[source]
        source: crate::images::ImageError,
    },
    #[error("persisting state: {0}")]
    State(#[from] StateError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("detaching the XDP program from {device}: {source}")]
    Detach {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error("persisting state: {0}")]
    State(#[from] StateError),
}

/// What afxdp-cni applies for an allocated device.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    pub allocation: Allocation,
    pub filter_rules: Vec<afxdp_policy::FilterRule>,
    /// A rule the NIC refuses fails the ADD (policy failurePolicy Fail).
    pub filters_required: bool,
    pub policy_digest: Option<String>,
}

/// The answer to one container's Allocate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerGrant {
    pub envs: BTreeMap<String, String>,
    /// (container path, host path)
    pub mounts: Vec<(PathBuf, PathBuf)>,
}

struct Inner {
    inventory: Inventory,
    state: StateFile,
    uds: UdsServers,
}

/// The agent. Cheap to share (`Arc`).
pub struct Agent {
    /// Keep prepared attachments on free devices (re-prepare after release).
    prepare: bool,
    inner: Mutex<Inner>,
    programs: Arc<dyn ProgramManager>,
    policies: Option<Arc<PolicyStore>>,
    /// Pulls the bytecode images policies choose; `None`: images are refused.
    images: Option<Arc<ImageResolver>>,
    store: StateStore,
    /// One sender per pool: the ListAndWatch device list.
    lists: BTreeMap<String, watch::Sender<Vec<dp::Device>>>,
}

impl Agent {
    pub fn new(
        inventory: Inventory,
        state: StateFile,
        store: StateStore,
        programs: Arc<dyn ProgramManager>,
        uds: UdsServers,
        policies: Option<Arc<PolicyStore>>,
    ) -> Self {
        let lists = inventory
            .pools()
            .map(|p| {
                let alloc = |d: &str| state.allocations.contains_key(d);
                (
                    p.config.name.clone(),
                    watch::channel(inventory.device_list(&p.config.name, &alloc)).0,
                )
            })
            .collect();
        Self {
            prepare: false,
            inner: Mutex::new(Inner {
                inventory,
                state,
                uds,
            }),
            programs,
            policies,
            images: None,
            store,
            lists,
        }
    }

    /// Turn attachment preparation on or off (see [`Agent::prepare_free_devices`]).
    pub fn with_preparation(prepare: bool, agent: Agent) -> Agent {
        Agent { prepare, ..agent }
    }

    /// Let policies choose bytecode images (pulled through `images`).
    pub fn with_images(images: Arc<ImageResolver>, agent: Agent) -> Agent {
        Agent {
            images: Some(images),
            ..agent
        }
    }

    /// The policy in force for `pool`, if any (one snapshot per decision set).
    fn policy(&self, pool: &str) -> Option<Arc<policies::PoolPolicy>> {
        self.policies.as_ref().and_then(|s| s.get(pool))
    }

    /// The policy state of a pool for one allocation.
    fn snapshot(&self, cfg: &afxdp_config::PoolConfig) -> PolicySnapshot {
        let Some(pc) = &cfg.policy else {
            return PolicySnapshot::None;
        };
        if let Some(p) = self.policy(&cfg.name) {
            return PolicySnapshot::InForce(p);
        }
        let reason = self
            .policies
            .as_ref()
            .and_then(|s| s.unavailable(&cfg.name))
            .unwrap_or_else(|| "not loaded yet".to_string());
        PolicySnapshot::Unavailable {
            reason,
            fail: pc.failure_policy == afxdp_config::FailurePolicy::Fail,
        }
    }

    /// A pool's policy configuration changed (config reload): the inventory
    /// keeps the new one (the policy store swaps the component).
    pub fn set_pool_policy(&self, pool: &str, policy: Option<afxdp_config::PolicyConfig>) {
        let mut inner = self.lock();
        inner.inventory.set_policy(pool, policy);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough data (every
        // step persists before it returns); keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe to the ListAndWatch device list of `pool`.
    pub fn watch_devices(&self, pool: &str) -> Option<watch::Receiver<Vec<dp::Device>>> {
        self.lists.get(pool).map(|s| s.subscribe())
    }

    pub fn pool_names(&self) -> Vec<String> {
        self.lists.keys().cloned().collect()
    }

    /// Republish the device list of `pool` if it changed.
    fn publish(&self, inner: &Inner, pool: &str) {
        if let Some(tx) = self.lists.get(pool) {
            let alloc = |d: &str| inner.state.allocations.contains_key(d);
            let list = inner.inventory.device_list(pool, &alloc);
            tx.send_if_modified(|cur| {
                if *cur != list {
                    *cur = list;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Apply a link event seen in the host netns.
    pub fn link_seen(&self, nd: &afxdp_netdev::NetDev) {
        let mut inner = self.lock();
        if let Some(c) = inner.inventory.device_seen(nd) {
            tracing::info!(pool = %c.pool, device = %c.device, state = ?nd.state, ifindex = nd.ifindex, "device changed");
            self.publish(&inner, &c.pool);
        }
    }

    /// A link left the host netns (by ifindex, as netlink reports it).
    pub fn link_gone(&self, ifindex: u32, name: Option<&str>) {
        let mut inner = self.lock();
        let name = match name {
            Some(n) => Some(n.to_string()),
            None => inner.inventory.name_of_ifindex(ifindex),
        };
        let Some(name) = name else { return };
        if let Some(c) = inner.inventory.device_gone(&name) {
            let allocated = inner.state.allocations.contains_key(&name);
            tracing::info!(pool = %c.pool, device = %c.device, allocated, "device left the host netns");
            self.publish(&inner, &c.pool);
        }
    }

    /// GetPreferredAllocation for one container.
    pub fn preferred(
        &self,
        pool: &str,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> Vec<String> {
        let views: Vec<afxdp_policy::Netdev> = {
            let inner = self.lock();
            let Some(p) = inner.inventory.pool(pool) else {
                return Vec::new();
            };
            available
                .iter()
                .filter_map(|id| p.devices.get(id))
                .map(|d| policies::netdev_view(&d.netdev))
                .collect()
        };
        let default = || afxdp_policy::defaults::preferred_allocation(&views, must_include, size);
        match self.policy(pool) {
            None => default(),
            Some(p) if !p.loaded.makes(afxdp_policy::Decision::PreferredAllocation) => default(),
            Some(p) => {
                let r = p.call(|l, ctx| l.preferred_allocation(ctx, &views, must_include, size));
                match afxdp_policy::decide(pool, &p.digest, p.failure, r, default) {
                    Ok(d) => d.value,
                    // GetPreferredAllocation is advisory: kubelet falls back to
                    // its own choice when the answer is empty.
                    Err(e) => {
                        tracing::warn!(pool, digest = %p.digest, error = %e, "preferred allocation failed");
                        Vec::new()
                    }
                }
            }
        }
    }

    /// Whether `pool` has a policy configured (its decisions may read the pod).
    pub fn pool_has_policy(&self, pool: &str) -> bool {
        self.lock()
            .inventory
            .pool(pool)
            .is_some_and(|p| p.config.policy.is_some())
    }

    /// Allocate `devices` of `pool` to one container of `pod` (as far as it
    /// is known; `requested` is set here): attach, share, persist. On any
    /// error, every step done so far is undone.
    pub fn allocate(
        &self,
        pool_name: &str,
        devices: &[String],
        mut pod: afxdp_policy::Pod,
    ) -> Result<ContainerGrant, AllocateError> {
        pod.requested = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        let mut inner = self.lock();
        let mut undo = Undo::new(self.programs.as_ref());
        let result = self.allocate_steps(&mut inner, pool_name, devices, &pod, &mut undo);
        match result {
            Ok(grant) => {
                undo.disarm();
                self.publish(&inner, pool_name);
                Ok(grant)
            }
            Err(e) => {
                undo.run(&mut inner.uds);
                Err(e)
            }
        }
    }

    fn allocate_steps(
        &self,
        inner: &mut Inner,
        pool_name: &str,
        devices: &[String],
        pod: &afxdp_policy::Pod,
        undo: &mut Undo<'_>,
    ) -> Result<ContainerGrant, AllocateError> {
        let pool = inner
            .inventory
            .pool(pool_name)
            .ok_or_else(|| AllocateError::UnknownPool(pool_name.into()))?
            .clone();
        let cfg = &pool.config;
        let mut grant = ContainerGrant::default();
        let mut new_allocs = Vec::new();
        // One policy snapshot decides the whole allocation.
        let policy = self.snapshot(cfg);
        for device in devices {
            let dev = pool
                .devices
                .get(device)
                .ok_or_else(|| AllocateError::NotInPool {
                    pool: pool_name.into(),
                    device: device.clone(),
                })?;
            // Kubelet may allocate a device again (a new pod after an old one went
            // without a CNI DEL): start from a clean slate for it.
            if inner.state.allocations.contains_key(device) {
                tracing::warn!(device, "device was still allocated; re-allocating");
                inner.uds.stop(device);
                if let Err(e) = self.programs.detach(device) {
                    tracing::warn!(device, error = %e, "detach before re-allocation failed");
                }
                let mut next = inner.state.clone();
                next.allocations.remove(device);
                self.store.save(&next)?;
                inner.state = next;
            }
            if !dev.present {
                return Err(AllocateError::NotPresent(device.clone()));
            }
            if !Inventory::is_healthy(dev, false) {
                return Err(AllocateError::Unhealthy {
                    device: device.clone(),
                    state: dev.netdev.state,
                });
            }
            let view = policies::netdev_view(&dev.netdev);
            let choice = decide(
                &policy,
                pool_name,
                afxdp_policy::Decision::SelectProgram,
                |p| p.call(|l, ctx| l.select_program(ctx, &view, pod)),
                || policies::configured_program(cfg),
            )?;
            let plan = decide(
                &policy,
                pool_name,
                afxdp_policy::Decision::AssignQueues,
                |p| p.call(|l, ctx| l.assign_queues(ctx, &view, pod)),
                || policies::configured_queues(cfg, &view),
            )?;
            let function = choice.value.function.as_deref();
            let (program, function, program_desc) = match &choice.value.source {
                afxdp_policy::ProgramSource::Builtin => {
                    (None, function.map(str::to_string), "builtin".to_string())
                }
                afxdp_policy::ProgramSource::File(path) => (
                    Some(path.clone()),
                    function.map(str::to_string),
                    format!("file {}", path.display()),
                ),
                afxdp_policy::ProgramSource::Image(image) => {
                    let Some(images) = &self.images else {
                        return Err(AllocateError::Unsupported {
                            pool: pool_name.into(),
                            what: format!("bytecode image {image} (no image puller configured)"),
                        });
                    };
                    let r =
                        images
                            .resolve(image, function)
                            .map_err(|source| AllocateError::Image {
                                pool: pool_name.into(),
                                source,
                            })?;
                    let desc = format!("image {}", r.pinned);
                    (Some(r.object), r.function, desc)
                }
            };
            let req = AttachRequest {
                device,
                ifindex: dev.netdev.ifindex,
                mode: attach_mode(choice.value.mode),
                program: program.as_deref(),
                function: function.as_deref(),
            };
            // A free device carries a prepared attachment (see `prepare`): the
            // same request returns it at once. A policy that chose another
            // program or mode pays for a fresh attach.
            let att = match self.programs.attach(&req) {
                Err(afxdp_program::ProgramError::AlreadyAttached { .. }) => {
                    self.programs
                        .detach(device)
                        .map_err(|source| AllocateError::Attach {
                            device: device.clone(),
                            source,
                        })?;
                    self.programs.attach(&req)
                }
                other => other,
            }
            .map_err(|source| AllocateError::Attach {
                device: device.clone(),
                source,
            })?;
            undo.attached.push(device.clone());
            let (sharing, host_dir) = match cfg.sharing {
                afxdp_config::SharingMode::Uds => {
                    let dir = inner.uds.start(device, cfg.uid, cfg.uds_timeout)?;
                    undo.uds.push(device.clone());
                    (SharingKind::Uds, dir)
                }
                afxdp_config::SharingMode::PinnedMap => {
                    self.programs
                        .share_map_with(device, cfg.uid)
                        .map_err(|source| AllocateError::SharePin {
                            device: device.clone(),
                            source,
                        })?;
                    (SharingKind::Pinned, att.map_dir.clone())
                }
                other => {
                    return Err(AllocateError::Unsupported {
                        pool: pool_name.into(),
                        what: format!("sharing mode {other:?}"),
                    })
                }
            };
            grant
                .mounts
                .push((sharing::container_dir(device), host_dir.clone()));
            let queue_list: Vec<String> = plan.value.queues.iter().map(u32::to_string).collect();
            grant
                .envs
                .insert(queues_env_name(device), queue_list.join(","));
            new_allocs.push(Allocation {
                pool: pool_name.to_string(),
                device: device.clone(),
                ifindex: att.ifindex,
                program_id: att.program_id,
                sharing,
                host_dir,
                queues: plan.value.queues.clone(),
                channels: plan.value.channels.unwrap_or(0),
                allocated_at: Allocation::now(),
                netdev: dev.netdev.clone(),
                decided_by: decided_by(&choice.by, &plan.by),
                pod: if pod.name.is_empty() {
                    String::new()
                } else {
                    format!("{}/{}", pod.namespace, pod.name)
                },
                program: match &function {
                    Some(f) => format!("{program_desc} ({f})"),
                    None => program_desc,
                },
            });
        }
        let mut next = inner.state.clone();
        for a in &new_allocs {
            next.allocations.insert(a.device.clone(), a.clone());
        }
        self.store.save(&next)?;
        inner.state = next;
        grant
            .envs
            .insert(pool::devices_env_name(pool_name), devices.join(" "));
        for a in &new_allocs {
            tracing::info!(pool = pool_name, device = %a.device, program_id = a.program_id, sharing = a.sharing.as_str(), "allocated");
        }
        Ok(grant)
    }

    /// What CNI ADD applies to `device`: its allocation, the filter rules the
    /// pool's policy decides for this pod, whether a refused rule must fail
    /// the ADD, and who decided the rules. `Ok(None)`: not allocated.
    pub fn device_settings(
        &self,
        device: &str,
        pod: afxdp_policy::Pod,
        addresses: &[std::net::IpAddr],
    ) -> Result<Option<DeviceSettings>, AllocateError> {
        let (alloc, cfg) = {
            let inner = self.lock();
            let Some(alloc) = inner.state.allocations.get(device).cloned() else {
                return Ok(None);
            };
            let Some(cfg) = inner.inventory.pool(&alloc.pool).map(|p| p.config.clone()) else {
                return Err(AllocateError::UnknownPool(alloc.pool.clone()));
            };
            (alloc, cfg)
        };
        if !alloc.pod.is_empty()
            && !pod.name.is_empty()
            && alloc.pod != format!("{}/{}", pod.namespace, pod.name)
        {
            tracing::warn!(device, decided_for = %alloc.pod, cni_pod = %format!("{}/{}", pod.namespace, pod.name), "the device was allocated for another pod than the one plumbing it");
        }
        let snapshot = self.snapshot(&cfg);
        let view = policies::netdev_view(&alloc.netdev);
        let rules = decide(
            &snapshot,
            &cfg.name,
            afxdp_policy::Decision::FilterRules,
            |p| p.call(|l, ctx| l.filter_rules(ctx, &view, &pod, addresses)),
            afxdp_policy::defaults::filter_rules,
        )?;
        let (required, digest) = match &snapshot {
            PolicySnapshot::InForce(p) => (
                p.failure == afxdp_policy::FailurePolicy::Fail,
                Some(p.digest.clone()),
            ),
            _ => (false, None),
        };
        Ok(Some(DeviceSettings {
            allocation: alloc,
            filter_rules: rules.value,
            filters_required: required,
            policy_digest: digest,
        }))
    }

    /// The allocation of `device`, if any (CNI ADD/CHECK ask for it).
    pub fn allocation(&self, device: &str) -> Option<Allocation> {
        self.lock().state.allocations.get(device).cloned()
    }

    /// Release `device`: stop its UDS server, detach its program, remove pins,
    /// forget the allocation. Idempotent: `Ok(false)` when nothing was allocated.
    pub fn release(&self, device: &str) -> Result<bool, ReleaseError> {
        let mut inner = self.lock();
        let had_uds = inner.uds.stop(device);
        let detached = self
            .programs
            .detach(device)
            .map_err(|source| ReleaseError::Detach {
                device: device.into(),
                source,
            })?;
        let Some(alloc) = inner.state.allocations.get(device).cloned() else {
            return Ok(had_uds || detached);
        };
        let mut next = inner.state.clone();
        next.allocations.remove(device);
        self.store.save(&next)?;
        inner.state = next;
        // The device is back in the host netns now (CNI DEL moved it): up
        // again, ready for the next pod.
        if let Some(nd) = bring_up(device) {
            inner.inventory.device_seen(&nd);
            if self.prepare {
                if let Some(cfg) = inner.inventory.pool(&alloc.pool).map(|p| p.config.clone()) {
                    self.prepare(&cfg, &nd);
                }
            }
        }
        self.publish(&inner, &alloc.pool);
        tracing::info!(pool = %alloc.pool, device, "released");
        Ok(true)
    }

    /// Attach the pool's configured program to every free device ahead of
    /// Allocate: attaching XDP costs a kernel RCU grace period or a driver
    /// ring reset (10+ ms on veth, far more on NICs), which must not sit on
    /// the kubelet's Allocate path. The program passes traffic until a pod
    /// binds sockets, and its map reaches no one before the device is
    /// allocated; a release detaches (dropping the map the pod saw) and
    /// prepares a fresh one.
    pub fn prepare_free_devices(&self) {
        let inner = self.lock();
        let free: Vec<(afxdp_config::PoolConfig, afxdp_netdev::NetDev)> = inner
            .inventory
            .pools()
            .flat_map(|p| p.devices.values().map(move |d| (p, d)))
            .filter(|(_, d)| d.present && !inner.state.allocations.contains_key(&d.netdev.name))
            .map(|(p, d)| (p.config.clone(), d.netdev.clone()))
            .collect();
        drop(inner);
        for (cfg, nd) in free {
            self.prepare(&cfg, &nd);
        }
    }

    /// Attach `cfg`'s configured program to the free device `nd` (best effort).
    fn prepare(&self, cfg: &afxdp_config::PoolConfig, nd: &afxdp_netdev::NetDev) {
        let choice = policies::configured_program(cfg);
        let program = match &choice.source {
            afxdp_policy::ProgramSource::Builtin => None,
            afxdp_policy::ProgramSource::File(p) => Some(p.as_path()),
            afxdp_policy::ProgramSource::Image(_) => return,
        };
        let req = AttachRequest {
            device: &nd.name,
            ifindex: nd.ifindex,
            mode: attach_mode(choice.mode),
            program,
            function: choice.function.as_deref(),
        };
        match self.programs.attach(&req) {
            Ok(a) => {
                tracing::debug!(device = %nd.name, program_id = a.program_id, "attachment prepared")
            }
            Err(e) => {
                tracing::warn!(device = %nd.name, error = %e, "preparing the attachment failed; Allocate will attach")
            }
        }
    }

    /// Restart the UDS servers of persisted UDS allocations (after a daemon restart).
    pub fn resume_sharing(&self) -> Result<(), AllocateError> {
        let mut inner = self.lock();
        let allocs: Vec<Allocation> = inner.state.allocations.values().cloned().collect();
        for a in allocs {
            if a.sharing != SharingKind::Uds {
                continue;
            }
            let Some(cfg) = inner.inventory.pool(&a.pool).map(|p| p.config.clone()) else {
                continue;
            };
            inner.uds.start(&a.device, cfg.uid, cfg.uds_timeout)?;
            tracing::info!(device = %a.device, "UDS server resumed");
        }
        Ok(())
    }

    /// Stop serving UDS (daemon shutdown); attachments and pins stay.
    pub fn shutdown(&self) {
        self.lock().uds.shutdown();
    }
}

/// Set a pool device in the host netns up if it is down (pool devices are the
/// daemon's to manage); returns its fresh view, `None` when it is not here.
pub fn bring_up(device: &str) -> Option<afxdp_netdev::NetDev> {
    let nd = afxdp_netdev::get(device).ok().flatten()?;
    if nd.admin_up {
        return Some(nd);
    }
    let here = afxdp_netdev::NetnsHandle::current().ok()?;
    match afxdp_netdev::set_link_up(&here, device) {
        Ok(()) => tracing::info!(device, "set pool device up"),
        Err(e) => tracing::warn!(device, error = %e, "cannot set pool device up"),
    }
    afxdp_netdev::get(device).ok().flatten()
}

/// The program manager's attach mode for a decided one.
fn attach_mode(m: afxdp_policy::XdpMode) -> afxdp_program::XdpMode {
    match m {
        afxdp_policy::XdpMode::Native => afxdp_program::XdpMode::Native,
        afxdp_policy::XdpMode::Generic => afxdp_program::XdpMode::Generic,
        afxdp_policy::XdpMode::Auto => afxdp_program::XdpMode::Auto,
    }
}

pub use afxdp_handshake::env::queues_env_name;

/// One decision: by the pool's policy (with its failure policy), or the
/// built-in default when the pool has none.
fn decide<T>(
    policy: &PolicySnapshot,
    pool: &str,
    decision: afxdp_policy::Decision,
    call: impl FnOnce(&policies::PoolPolicy) -> Result<T, afxdp_policy::DecisionError>,
    default: impl FnOnce() -> T,
) -> Result<afxdp_policy::Decided<T>, AllocateError> {
    match policy {
        PolicySnapshot::None => Ok(afxdp_policy::Decided::by_default(default(), "no policy")),
        PolicySnapshot::Unavailable { reason, fail: true } => {
            Err(AllocateError::PolicyUnavailable {
                pool: pool.into(),
                reason: reason.clone(),
            })
        }
        PolicySnapshot::Unavailable {
            reason,
            fail: false,
        } => {
            tracing::warn!(pool, decision = decision.as_str(), reason = %reason, "policy not loaded; using the default");
            Ok(afxdp_policy::Decided::by_default(
                default(),
                format!("policy not loaded: {reason}"),
            ))
        }
        // A decision the policy does not make (its metadata does not list
        // it) is the pool's configured default, on the policy's behalf.
        PolicySnapshot::InForce(p) if !p.loaded.makes(decision) => Ok(afxdp_policy::Decided {
            value: default(),
            by: afxdp_policy::DecidedBy::Policy {
                digest: p.digest.clone(),
            },
        }),
        PolicySnapshot::InForce(p) => {
            afxdp_policy::decide(pool, &p.digest, p.failure, call(p), default).map_err(|source| {
                AllocateError::Policy {
                    pool: pool.into(),
                    digest: p.digest.clone(),
                    decision: decision.as_str(),
                    source,
                }
            })
        }
    }
}

/// The policy state an allocation decides with (taken once).
enum PolicySnapshot {
    /// The pool has no policy configured.
    None,
    /// Configured but not loaded; `fail`: its failurePolicy is Fail.
    Unavailable {
        reason: String,
        fail: bool,
    },
    InForce(Arc<policies::PoolPolicy>),
}

/// Who decided an allocation, for the record: `policy sha256:...` or
/// `default (<reason>)`; the first decision that fell back names the reason.
fn decided_by(a: &afxdp_policy::DecidedBy, b: &afxdp_policy::DecidedBy) -> String {
    use afxdp_policy::DecidedBy::{Default, Policy};
    match (a, b) {
        (Policy { digest }, Policy { .. }) => format!("policy {digest}"),
        (Default { reason }, _) | (_, Default { reason }) => format!("default ({reason})"),
    }
}

/// Undo of a partly done allocation, run on drop unless disarmed.
struct Undo<'a> {
    programs: &'a dyn ProgramManager,
    attached: Vec<String>,
    uds: Vec<String>,
    armed: bool,
}

impl<'a> Undo<'a> {
    fn new(programs: &'a dyn ProgramManager) -> Self {
        Self {
            programs,
            attached: Vec::new(),
            uds: Vec::new(),
            armed: true,
        }
    }

    fn run(&mut self, uds: &mut UdsServers) {
        for d in self.uds.drain(..) {
            uds.stop(&d);
        }
        self.undo_attach();
        self.armed = false;
    }

    fn undo_attach(&mut self) {
        for d in self.attached.drain(..) {
            if let Err(e) = self.programs.detach(&d) {
                tracing::error!(device = %d, error = %e, "undo attach failed");
            }
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            // UDS servers started for a failed allocation are stopped by the
            // caller's error path in `allocate` (it owns the server table).
            self.undo_attach();
        }
    }
}
