//! Publishing: each pool's ListAndWatch device list, republished when an
//! allocation, a release or a link event (see `links`) changes it.

use tokio::sync::watch;

use afxdp_proto::deviceplugin as dp;

use super::{Agent, Inner};

impl Agent {
    /// Subscribe to the ListAndWatch device list of `pool`.
    pub fn watch_devices(&self, pool: &str) -> Option<watch::Receiver<Vec<dp::Device>>> {
        self.lists.get(pool).map(|s| s.subscribe())
    }

    pub fn pool_names(&self) -> Vec<String> {
        self.lists.keys().cloned().collect()
    }

    /// Republish the device list of `pool` if it changed.
    pub(crate) fn publish(&self, pool: &str) {
        let inner = self.lock();
        self.publish_locked(&inner, pool);
    }

    /// [`Self::publish`] for a caller that holds the lock.
    pub(super) fn publish_locked(&self, inner: &Inner, pool: &str) {
        if let Some(tx) = self.lists.get(pool) {
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
