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
    inner: Mutex<Inner>,
    programs: Arc<dyn ProgramManager>,
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
            inner: Mutex::new(Inner {
                inventory,
                state,
                uds,
            }),
            programs,
            store,
            lists,
        }
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
        let inner = self.lock();
        match inner.inventory.pool(pool) {
            Some(p) => pool::preferred_allocation(p, available, must_include, size),
            None => Vec::new(),
        }
    }

    /// Allocate `devices` of `pool` to one container: attach, share, persist.
    /// On any error, every step done so far is undone.
    pub fn allocate(
        &self,
        pool_name: &str,
        devices: &[String],
    ) -> Result<ContainerGrant, AllocateError> {
        let mut inner = self.lock();
        let mut undo = Undo::new(self.programs.as_ref());
        let result = self.allocate_steps(&mut inner, pool_name, devices, &mut undo);
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
            let program = match &cfg.program {
                None => None,
                Some(afxdp_config::ProgramSource::File { path, .. }) => Some(path.as_path()),
                Some(afxdp_config::ProgramSource::Image { image, .. }) => {
                    return Err(AllocateError::Unsupported {
                        pool: pool_name.into(),
                        what: format!("bytecode image {image}"),
                    })
                }
            };
            let req = AttachRequest {
                device,
                ifindex: dev.netdev.ifindex,
                mode: xdp_mode(cfg.xdp_mode),
                program,
            };
            let att = self
                .programs
                .attach(&req)
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
            new_allocs.push(Allocation {
                pool: pool_name.to_string(),
                device: device.clone(),
                ifindex: att.ifindex,
                program_id: att.program_id,
                sharing,
                host_dir,
                queues: (0..dev.netdev.rx_queues.max(1)).collect(),
                channels: cfg.channels.unwrap_or(0),
                allocated_at: Allocation::now(),
                netdev: dev.netdev.clone(),
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
        }
        self.publish(&inner, &alloc.pool);
        tracing::info!(pool = %alloc.pool, device, "released");
        Ok(true)
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

/// The program manager's attach mode for the config's.
fn xdp_mode(m: afxdp_config::XdpMode) -> afxdp_program::XdpMode {
    match m {
        afxdp_config::XdpMode::Native => afxdp_program::XdpMode::Native,
        afxdp_config::XdpMode::Generic => afxdp_program::XdpMode::Generic,
        afxdp_config::XdpMode::Auto => afxdp_program::XdpMode::Auto,
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
