//! A reloaded config's pools: the agent serves the new selection (its
//! *target*) as far as live allocations let it. A free device moves at
//! once; a held one stays, listed Unhealthy (`leaving`), until its release;
//! a dropped pool keeps being served while it holds a device. Every release
//! and every end of a transaction converges again while anything waits
//! ([`Inventory::converge`]).

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

use super::{Agent, Inner};
use crate::pool::Inventory;

/// What serving a new selection changed, for the log and the reloader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChanges {
    /// Pools served now that were not.
    pub added: Vec<String>,
    /// Pools no longer served.
    pub removed: Vec<String>,
    /// Pools the config dropped that stay served while they hold devices.
    pub retiring: Vec<String>,
    /// Free devices that changed pool, or left every pool, or joined one.
    pub moved: Vec<String>,
    /// Held devices the config puts elsewhere: they move when released.
    pub leaving: Vec<String>,
}

impl PoolChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Device → its pool, for every device of `inv`.
fn membership(inv: &Inventory) -> BTreeMap<String, String> {
    inv.pools()
        .flat_map(|p| p.devices.keys().map(|d| (d.clone(), p.config.name.clone())))
        .collect()
}

impl Agent {
    /// Serve `target`, the selection of a reloaded config (built from it and
    /// the devices seen now): see the module doc. Re-prepares the free
    /// devices that moved when the daemon prepares attachments. Blocks
    /// (detach and attach); the lock is held only to swap the inventory.
    pub fn reconfigure(&self, target: Inventory) -> PoolChanges {
        let (changes, moved_free) = {
            let mut inner = self.lock();
            let before = membership(&inner.inventory);
            let pools_before: BTreeSet<String> = inner.lists.keys().cloned().collect();
            inner.target = target;
            self.converge_locked(&mut inner);
            let changes = self.changes(&inner, &before, &pools_before);
            let moved_free: Vec<(Option<afxdp_config::PoolConfig>, String)> = changes
                .moved
                .iter()
                .filter(|d| inner.inventory.device(d).is_none_or(|d| d.present))
                .map(|d| {
                    let cfg = inner.inventory.pool_of(d).map(|p| p.config.clone());
                    (cfg, d.clone())
                })
                .collect();
            (changes, moved_free)
        };
        if self.prepare {
            self.reprepare(moved_free);
        }
        if !changes.is_empty() {
            tracing::info!(added = ?changes.added, removed = ?changes.removed, retiring = ?changes.retiring, moved = ?changes.moved, leaving = ?changes.leaving, "pools reconfigured");
        }
        changes
    }

    fn changes(
        &self,
        inner: &Inner,
        before: &BTreeMap<String, String>,
        pools_before: &BTreeSet<String>,
    ) -> PoolChanges {
        let after = membership(&inner.inventory);
        let pools_after: BTreeSet<String> = inner.lists.keys().cloned().collect();
        let allocated = |d: &str| inner.state.allocations.contains_key(d);
        let moved = before
            .keys()
            .chain(after.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|d| before.get(*d) != after.get(*d) && !allocated(d))
            .cloned()
            .collect();
        let leaving = inner
            .inventory
            .pools()
            .flat_map(|p| p.devices.iter())
            .filter(|(_, d)| d.leaving)
            .map(|(n, _)| n.clone())
            .collect();
        PoolChanges {
            added: pools_after.difference(pools_before).cloned().collect(),
            removed: pools_before.difference(&pools_after).cloned().collect(),
            retiring: pools_after
                .iter()
                .filter(|p| inner.target.pool(p).is_none())
                .cloned()
                .collect(),
            moved,
            leaving,
        }
    }

    /// Free devices that moved: their prepared attachment is of their old
    /// pool (or of none now); detach it and prepare the new pool's.
    fn reprepare(&self, moved: Vec<(Option<afxdp_config::PoolConfig>, String)>) {
        for (cfg, device) in moved {
            if let Err(e) = self.programs.detach(&device) {
                tracing::warn!(device, error = %e, "detaching the prepared attachment of a moved device failed");
            }
            let nd = cfg.as_ref().and_then(|_| super::bring_up(&device));
            if let (Some(cfg), Some(nd)) = (cfg, nd) {
                self.prepare(&cfg, &nd);
            }
        }
    }

    /// Serve `inner.target` as far as the held devices (allocations, and
    /// devices in flight) let it: the new inventory, one list per pool, the
    /// pool set; a pool no longer served loses its policy.
    pub(super) fn converge_locked(&self, inner: &mut Inner) {
        let mut held: BTreeMap<String, String> = inner
            .state
            .allocations
            .values()
            .map(|a| (a.device.clone(), a.pool.clone()))
            .collect();
        for d in &inner.busy {
            if let Some(p) = inner.inventory.pool_of(d) {
                held.entry(d.clone())
                    .or_insert_with(|| p.config.name.clone());
            }
        }
        inner.inventory = inner.inventory.converge(&inner.target, &held);
        let names: Vec<String> = inner.inventory.pool_names().cloned().collect();
        let dropped: Vec<String> = inner
            .lists
            .keys()
            .filter(|p| !names.contains(p))
            .cloned()
            .collect();
        for pool in &dropped {
            inner.lists.remove(pool);
            self.metrics.devices(pool, 0, 0);
            if let Some(store) = &self.policies {
                store.remove(pool);
            }
        }
        for pool in &names {
            inner
                .lists
                .entry(pool.clone())
                .or_insert_with(|| watch::channel(Vec::new()).0);
            self.publish_locked(inner, pool);
        }
        self.pool_set.send_if_modified(|cur| {
            let changed = *cur != names;
            if changed {
                cur.clone_from(&names);
            }
            changed
        });
    }

    /// Converge if a device is leaving or a pool retiring (after a release,
    /// after a transaction).
    pub(super) fn converge_if_pending(&self, inner: &mut Inner) {
        if inner.inventory.is_converging(&inner.target) {
            self.converge_locked(inner);
        }
    }
}
