//! The node agent's core: allocate and release devices. Synchronous and
//! blocking; the gRPC edges (device plugin, node API) call it from the
//! blocking pool (`afxdp_policy::Blocking::spawn`: policy decisions need its
//! proof).
//!
//! One lock (`inner`: inventory, state, devices in flight) is held only to
//! reserve devices and to commit results; policy calls, image pulls, XDP
//! attach/detach and fsync run outside it (`transaction`), so health events,
//! releases and GetPreferredAllocation never wait behind a slow Allocate.
//!
//! - `transaction`: reserve / undo / commit / persist;
//! - `allocate`: the Allocate steps; `release`: CNI settings and release;
//! - `claim`: which container a device belongs to once plumbed;
//! - `decide`: policy dispatch; `publish`: ListAndWatch lists; `links`: link events;
//! - `reconfigure`: a reloaded config's pools, devices moving once free;
//! - `status`: what `afxdpctl status` shows.

mod allocate;
pub mod claim;
mod configured_rules;
mod decide;
mod error;
mod links;
mod publish;
mod reconfigure;
mod release;
mod status;
mod transaction;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::watch;

use afxdp_program::AttachRequest;
use afxdp_proto::deviceplugin as dp;

pub use claim::{Claim, Claimant, NetnsId};
pub use error::{AllocateError, ReleaseError};
pub use reconfigure::PoolChanges;
pub use release::{PendingRelease, ReleaseBy, Released};

use crate::images::ImageResolver;
use crate::metrics::Metrics;
use crate::policies::{self, PolicyStore};
use crate::pool::Inventory;
use crate::programs::Programs;
use crate::sharing::{SharingKind, UdsServers};
use crate::state::{Allocation, StateFile, StateStore};
use crate::subfunction::{Devlink, KernelDevlink};

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
    /// What is served: `target` as far as live allocations let it be.
    inventory: Inventory,
    /// The config's selection (see `reconfigure`).
    target: Inventory,
    state: StateFile,
    /// Devices with an allocation or a release in flight (`transaction`).
    busy: BTreeSet<String>,
    /// One sender per served pool: the ListAndWatch device list.
    lists: BTreeMap<String, watch::Sender<Vec<dp::Device>>>,
    /// Why a device could not be recovered at start (shown while it is
    /// unhealthy; forgotten once it is allocated again).
    lost: BTreeMap<String, String>,
}

impl Inner {
    fn unhealthy_reason(&self, device: &str) -> Option<String> {
        let dev = self.inventory.device(device)?;
        let reason = Inventory::unhealthy_reason(dev, self.state.allocations.contains_key(device))?;
        Some(match self.lost.get(device) {
            Some(lost) => format!("{reason}: {lost}"),
            None => reason,
        })
    }
}

/// The agent. Cheap to share (`Arc`).
pub struct Agent {
    /// Keep prepared attachments on free devices (re-prepare after release).
    prepare: bool,
    inner: Mutex<Inner>,
    /// Signalled when devices stop being busy.
    idle: Condvar,
    /// The UDS servers (their own lock: starting one is quick, and never
    /// needs the state).
    uds: Mutex<UdsServers>,
    /// Serializes state-file writes (`transaction`).
    writer: Mutex<()>,
    /// The program manager of each pool (native or bpfman).
    programs: Arc<Programs>,
    policies: Option<Arc<PolicyStore>>,
    /// Pulls the bytecode images policies choose; `None`: images are refused.
    images: Option<Arc<ImageResolver>>,
    /// Creates and deletes the subfunctions of `cdq` pools.
    devlink: Arc<dyn Devlink>,
    store: StateStore,
    /// The names of the served pools (the daemon serves one device plugin each).
    pool_set: watch::Sender<Vec<String>>,
    metrics: Arc<Metrics>,
}

impl Agent {
    pub fn new(
        inventory: Inventory,
        state: StateFile,
        store: StateStore,
        programs: Arc<Programs>,
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
            .collect::<BTreeMap<_, _>>();
        let pool_set = watch::channel(lists.keys().cloned().collect()).0;
        Self {
            prepare: false,
            inner: Mutex::new(Inner {
                target: inventory.clone(),
                inventory,
                state,
                busy: BTreeSet::new(),
                lists,
                lost: BTreeMap::new(),
            }),
            idle: Condvar::new(),
            uds: Mutex::new(uds),
            writer: Mutex::new(()),
            programs,
            policies,
            images: None,
            devlink: Arc::new(KernelDevlink::default()),
            store,
            pool_set,
            metrics: Arc::default(),
        }
    }

    /// Count into `metrics` (the daemon's; a fresh set otherwise).
    pub fn with_metrics(metrics: Arc<Metrics>, agent: Agent) -> Agent {
        Agent { metrics, ..agent }
    }

    /// The metrics this agent counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Turn attachment preparation on or off (see [`Agent::prepare_free_devices`]).
    pub fn with_preparation(prepare: bool, agent: Agent) -> Agent {
        Agent { prepare, ..agent }
    }

    /// Create `cdq` pools' subfunctions through `devlink` (tests inject faults).
    pub fn with_devlink(devlink: Arc<dyn Devlink>, agent: Agent) -> Agent {
        Agent { devlink, ..agent }
    }

    /// The allocated device whose attached netdev is `netdev` (a `cdq`
    /// slot's ID for its subfunction's netdev); `netdev` itself otherwise.
    /// The UDS handshake names the netdev the pod sees.
    pub fn device_of_netdev(&self, netdev: &str) -> String {
        self.lock()
            .state
            .allocations
            .values()
            .find(|a| a.subfunction.is_some() && a.attached_device() == netdev)
            .map_or_else(|| netdev.to_string(), |a| a.device.clone())
    }

    /// Let policies choose bytecode images (pulled through `images`).
    pub fn with_images(images: Arc<ImageResolver>, agent: Agent) -> Agent {
        Agent {
            images: Some(images),
            ..agent
        }
    }

    /// Devices start-up reconciliation could not recover, with why: their
    /// status shows it while they are unhealthy.
    pub fn note_lost(&self, lost: impl IntoIterator<Item = (String, String)>) {
        self.lock().lost.extend(lost);
    }

    /// Why `device` is unhealthy, `None` when it is healthy.
    pub fn unhealthy_reason(&self, device: &str) -> Option<String> {
        let inner = self.lock();
        inner.unhealthy_reason(device)
    }

    /// Whether `pool` has a policy configured (its decisions may read the pod).
    pub fn pool_has_policy(&self, pool: &str) -> bool {
        self.lock()
            .inventory
            .pool(pool)
            .is_some_and(|p| p.config.policy.is_some())
    }

    /// Whether `pool` shares its maps through the CSI node plugin (its
    /// Allocate must annotate the pod it admits).
    pub fn pool_shares_by_csi(&self, pool: &str) -> bool {
        self.lock()
            .inventory
            .pool(pool)
            .is_some_and(|p| p.config.sharing == afxdp_config::SharingMode::Csi)
    }

    /// A fresh FD of `device`'s XSKMAP (the CSI node plugin pins it into the
    /// pod's volume). Blocks (`BPF_OBJ_GET`).
    pub fn xsk_map_fd(
        &self,
        device: &str,
    ) -> Result<std::os::fd::OwnedFd, afxdp_program::ProgramError> {
        self.programs.xsk_map_fd(device)
    }

    /// The claim CNI ADD recorded for `device`, if it is allocated and plumbed.
    pub fn claim_of(&self, device: &str) -> Option<Claim> {
        self.lock()
            .state
            .allocations
            .get(device)
            .and_then(|a| a.claim.clone())
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
            .filter(|(_, d)| d.slot.is_none())
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
        if cfg.bpfman.is_some() {
            // bpfman loads per allocation (its metadata names the allocation).
            return;
        }
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
        let uds: Vec<(String, u32, std::time::Duration)> = {
            let inner = self.lock();
            inner
                .state
                .allocations
                .values()
                .filter(|a| a.sharing == SharingKind::Uds && !a.releasing)
                .filter_map(|a| {
                    let cfg = &inner.inventory.pool(&a.pool)?.config;
                    Some((a.attached_device().to_string(), cfg.uid, cfg.uds_timeout))
                })
                .collect()
        };
        let mut servers = self.uds.lock().unwrap_or_else(PoisonError::into_inner);
        for (device, uid, timeout) in uds {
            servers.start(&device, uid, timeout)?;
            tracing::info!(device = %device, "UDS server resumed");
        }
        Ok(())
    }

    /// Stop serving UDS (daemon shutdown); attachments and pins stay.
    pub fn shutdown(&self) {
        self.uds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shutdown();
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
