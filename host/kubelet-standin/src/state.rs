//! What the stand-in remembers: registered plugins with their latest
//! ListAndWatch snapshot, and the devices assigned to pods. Every change
//! bumps a watch channel so bounded waits re-check without polling.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use afxdp_proto::deviceplugin::{self as dp, DevicePluginOptions, RegisterRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::StandinError;

/// Health of one device as last reported by its plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// The plugin reported `"Healthy"`.
    Healthy,
    /// The plugin reported anything else, or the plugin is gone (kubelet
    /// marks every device of a disconnected plugin unhealthy).
    Unhealthy,
}

/// One device of a resource, from the latest ListAndWatch snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceState {
    /// The device ID the plugin advertises (`Device.ID`).
    pub id: String,
    /// Its health.
    pub health: Health,
    /// NUMA nodes from `Device.topology`; empty when the plugin sent none.
    pub numa_nodes: Vec<i64>,
}

impl DeviceState {
    /// Whether the device is healthy.
    pub fn is_healthy(&self) -> bool {
        self.health == Health::Healthy
    }

    pub(crate) fn from_wire(d: &dp::Device) -> Self {
        DeviceState {
            id: d.id.clone(),
            // Kubelet: anything but "Healthy" counts as unhealthy.
            health: if d.health == dp::HEALTHY {
                Health::Healthy
            } else {
                Health::Unhealthy
            },
            numa_nodes: d
                .topology
                .as_ref()
                .map(|t| t.nodes.iter().map(|n| n.id).collect())
                .unwrap_or_default(),
        }
    }
}

/// A registered device plugin, one per resource.
pub(crate) struct Plugin {
    /// Unique per registration, so a stale ListAndWatch task cannot touch
    /// a newer registration of the same resource.
    pub id: u64,
    pub request: RegisterRequest,
    /// From `GetDevicePluginOptions` (what kubelet trusts), not from the request.
    pub options: DevicePluginOptions,
    /// Channel for unary calls (bounded by a call timeout).
    pub channel: Channel,
    pub devices: Vec<DeviceState>,
    /// False once ListAndWatch ended: the plugin is gone.
    pub connected: bool,
    pub watcher: Option<JoinHandle<()>>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

/// Devices per resource of one container.
pub(crate) type ContainerDevices = BTreeMap<String, Vec<String>>;
/// Containers of one pod.
pub(crate) type PodDevices = BTreeMap<String, ContainerDevices>;

#[derive(Default)]
pub(crate) struct State {
    /// Bumped by every restart; a registration begun before a restart is refused.
    pub generation: u64,
    pub next_id: u64,
    pub plugins: HashMap<String, Plugin>,
    /// (namespace, pod) → containers.
    pub pods: BTreeMap<(String, String), PodDevices>,
}

impl State {
    /// Device ids of `resource` held by any recorded pod.
    pub fn allocated(&self, resource: &str) -> BTreeSet<String> {
        self.pods
            .values()
            .flat_map(|containers| containers.values())
            .filter_map(|per_resource| per_resource.get(resource))
            .flatten()
            .cloned()
            .collect()
    }

    /// NUMA nodes of a device, from its resource's snapshot.
    pub fn numa_nodes(&self, resource: &str, id: &str) -> Vec<i64> {
        self.plugins
            .get(resource)
            .and_then(|p| p.devices.iter().find(|d| d.id == id))
            .map(|d| d.numa_nodes.clone())
            .unwrap_or_default()
    }
}

/// State shared by the driver API and the gRPC servers.
pub(crate) struct Shared {
    pub dir: PathBuf,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// Admissions are serialised, as kubelet admits one pod at a time.
    pub admit_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    pub fn new(dir: PathBuf) -> Self {
        Shared {
            dir,
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(0),
            admit_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Change the state and wake every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        r
    }

    /// Wait until `check` yields a value, at most `timeout`; the error names `what`.
    pub async fn wait_for<T>(
        &self,
        what: impl FnOnce() -> String,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, StandinError> {
        // Subscribe before the first check so no change is missed in between.
        let mut rx = self.changes.subscribe();
        let wait = async {
            loop {
                if let Some(v) = self.read(&mut check) {
                    return v;
                }
                if rx.changed().await.is_err() {
                    // Unreachable while `self` holds the sender; wait out the timeout.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| StandinError::Timeout {
                what: what(),
                timeout,
            })
    }
}
