//! Publishing: each pool's ListAndWatch device list, republished when an
//! allocation, a release or a link event (see `links`) changes it.

use tokio::sync::watch;

use afxdp_proto::deviceplugin as dp;

use super::{Agent, Inner};

impl Agent {
    /// Subscribe to the ListAndWatch device list of `pool`.
    pub fn watch_devices(&self, pool: &str) -> Option<watch::Receiver<Vec<dp::Device>>> {
        self.lock().lists.get(pool).map(|s| s.subscribe())
    }

    /// The served pools.
    pub fn pool_names(&self) -> Vec<String> {
        self.pool_set.borrow().clone()
    }

    /// The served pools, as they change (a config reload adds pools, and
    /// drops one once nothing holds its devices).
    pub fn watch_pool_names(&self) -> watch::Receiver<Vec<String>> {
        self.pool_set.subscribe()
    }

    /// Republish the device list of `pool` if it changed.
    pub(crate) fn publish(&self, pool: &str) {
        let inner = self.lock();
        self.publish_locked(&inner, pool);
    }

    /// [`Self::publish`] for a caller that holds the lock.
    pub(super) fn publish_locked(&self, inner: &Inner, pool: &str) {
        if let Some(tx) = inner.lists.get(pool) {
            let alloc = |d: &str| inner.state.allocations.contains_key(d);
            let list = inner.inventory.device_list(pool, &alloc);
            let healthy = list.iter().filter(|d| d.health == dp::HEALTHY).count();
            self.metrics.devices(pool, healthy, list.len() - healthy);
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
}
