//! Pools and their devices: who is in which pool, and each device's health.
//!
//! Built at start from the config's selectors and the discovered netdevs,
//! kept current by link events, and rebuilt toward a reloaded config's
//! selection by [`Inventory::converge`] (live allocations hold their devices
//! where they are until released). Never talks to kubelet: the device-plugin
//! servers read [`Inventory::device_list`].

use std::collections::BTreeMap;

use afxdp_config::{Config, PoolConfig};
use afxdp_netdev::{LinkState, NetDev};
use afxdp_proto::deviceplugin as dp;

/// One device of a pool.
#[derive(Debug, Clone)]
pub struct PoolDevice {
    pub netdev: NetDev,
    /// Present in the host netns (false while it is inside a pod or gone).
    pub present: bool,
    /// A reloaded config puts the device elsewhere (another pool, or none)
    /// while a live allocation holds it here: listed Unhealthy, so kubelet
    /// gives it to no one else, until the release moves it.
    pub leaving: bool,
    /// `cdq` pools: this entry is subfunction slot `sfnum` of `netdev`, its
    /// parent (the entry's ID is [`crate::subfunction::slot_id`]); `None`:
    /// the netdev itself is the device.
    pub slot: Option<u32>,
}

/// One pool: its config and its devices by name.
#[derive(Debug, Clone)]
pub struct Pool {
    pub config: PoolConfig,
    pub devices: BTreeMap<String, PoolDevice>,
}

impl PoolDevice {
    /// Whether the netdev `name` is this entry's (`id`): the device itself,
    /// or a `cdq` slot's parent.
    fn is(&self, id: &str, name: &str) -> bool {
        match self.slot {
            Some(_) => self.netdev.name == name,
            None => id == name,
        }
    }
}

impl Pool {
    /// The extended resource name, `afxdp/<pool>`.
    pub fn resource(&self) -> String {
        resource_name(&self.config.name)
    }
}

/// `afxdp/<pool>`.
pub fn resource_name(pool: &str) -> String {
    format!("afxdp/{pool}")
}

pub use afxdp_handshake::env::devices_env_name;

/// What the pool selectors see of a discovered device; `default_route`
/// names the node's default-route interfaces (never taken by a pool).
pub fn device_facts<'a>(
    d: &'a NetDev,
    default_route: &[String],
) -> afxdp_config::selector::DeviceFacts<'a> {
    afxdp_config::selector::DeviceFacts {
        name: &d.name,
        driver: d.driver.as_deref(),
        pci: d.pci.as_deref(),
        mac: d.mac.as_deref(),
        has_addresses: d.has_configured_addresses(),
        is_primary_host_interface: default_route.iter().any(|r| r == &d.name),
    }
}

/// All pools of this node.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pools: BTreeMap<String, Pool>,
}

/// What a link event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub pool: String,
    pub device: String,
}

impl Inventory {
    /// Build the pools: every discovered netdev is offered to the selectors
    /// (first pool wins; default-route interfaces are never taken), plus the
    /// devices a previous run allocated that now live in pod namespaces
    /// (`allocated_elsewhere`: pool, last known netdev).
    pub fn build(
        config: &Config,
        node_name: &str,
        netdevs: &[NetDev],
        default_route: &[String],
        allocated_elsewhere: &[(String, NetDev)],
    ) -> Self {
        let facts: Vec<_> = netdevs
            .iter()
            .map(|d| device_facts(d, default_route))
            .collect();
        let assigned = afxdp_config::selector::assign_pools_detailed(config, node_name, &facts);
        let mut pools: BTreeMap<String, Pool> = config
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Pool {
                        config: p.clone(),
                        devices: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for assignment in assigned {
            let Some(p) = pools.get_mut(&assignment.pool) else {
                continue;
            };
            let cdq = p.config.mode == afxdp_config::PoolMode::Cdq;
            for dev in assignment.devices {
                let Some(nd) = netdevs.iter().find(|d| d.name == dev.name) else {
                    continue;
                };
                let entry = |slot| PoolDevice {
                    netdev: nd.clone(),
                    present: true,
                    leaving: false,
                    slot,
                };
                if cdq {
                    for sfnum in 1..=dev.secondary.unwrap_or(1) {
                        let id = crate::subfunction::slot_id(&dev.name, sfnum);
                        p.devices.insert(id, entry(Some(sfnum)));
                    }
                } else {
                    p.devices.insert(dev.name.clone(), entry(None));
                }
            }
        }
        for (pool, nd) in allocated_elsewhere {
            // A `cdq` allocation's netdev is its subfunction's, no pool
            // entry: its slot is there while its parent is.
            if let Some(p) = pools
                .get_mut(pool)
                .filter(|p| p.config.mode != afxdp_config::PoolMode::Cdq)
            {
                p.devices.entry(nd.name.clone()).or_insert(PoolDevice {
                    netdev: nd.clone(),
                    present: false,
                    leaving: false,
                    slot: None,
                });
            }
        }
        Self { pools }
    }

    /// The inventory to serve while `target` (a reloaded config's
    /// selection) is wanted and `held` devices (device → the pool holding
    /// it: live allocations, and allocations in flight) cannot move yet:
    /// `target`'s pools and devices, with this inventory's fresher view of
    /// each device it knows, except that every held device stays in its
    /// pool, marked [`PoolDevice::leaving`] when `target` puts it
    /// elsewhere; a pool `target` drops stays (with its old config) while it
    /// holds a device, with no other devices.
    pub fn converge(&self, target: &Inventory, held: &BTreeMap<String, String>) -> Inventory {
        let mut next = target.clone();
        for p in next.pools.values_mut() {
            for (name, d) in p.devices.iter_mut() {
                if let Some(cur) = self.device(name) {
                    d.netdev = cur.netdev.clone();
                    d.present = cur.present;
                }
                d.leaving = false;
            }
        }
        for (device, pool) in held {
            let stays = target.pool_of(device).map(|p| p.config.name.as_str()) == Some(pool);
            if stays {
                continue;
            }
            let Some(view) = self.device(device).or_else(|| target.device(device)) else {
                continue;
            };
            let view = PoolDevice {
                leaving: true,
                ..view.clone()
            };
            for p in next.pools.values_mut() {
                p.devices.remove(device);
            }
            let Some(config) = next
                .pools
                .get(pool)
                .or_else(|| self.pools.get(pool))
                .map(|p| p.config.clone())
            else {
                continue;
            };
            next.pools
                .entry(pool.clone())
                .or_insert_with(|| Pool {
                    config,
                    devices: BTreeMap::new(),
                })
                .devices
                .insert(device.clone(), view);
        }
        next
    }

    /// Whether a device is leaving, or a pool stays only for its held
    /// devices: a release must converge again.
    pub fn is_converging(&self, target: &Inventory) -> bool {
        self.pools.keys().any(|p| !target.pools.contains_key(p))
            || self
                .pools
                .values()
                .flat_map(|p| p.devices.values())
                .any(|d| d.leaving)
    }

    pub fn pool_names(&self) -> impl Iterator<Item = &String> {
        self.pools.keys()
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    /// The pool holding `device`.
    pub fn pool_of(&self, device: &str) -> Option<&Pool> {
        self.pools.values().find(|p| p.devices.contains_key(device))
    }

    pub fn device(&self, device: &str) -> Option<&PoolDevice> {
        self.pools.values().find_map(|p| p.devices.get(device))
    }

    /// A device is healthy when it is present in the host netns with its link up,
    /// or when it is allocated (it then lives in its pod's netns); never
    /// while it is leaving its pool.
    pub fn is_healthy(dev: &PoolDevice, allocated: bool) -> bool {
        !dev.leaving && (allocated || (dev.present && dev.netdev.state == LinkState::Up))
    }

    /// Why a device is listed Unhealthy; `None` when it is healthy.
    pub fn unhealthy_reason(dev: &PoolDevice, allocated: bool) -> Option<String> {
        if dev.leaving {
            Some("leaving the pool: the config moved it; it moves when released".into())
        } else if Self::is_healthy(dev, allocated) {
            None
        } else if !dev.present {
            Some("not in the host network namespace".into())
        } else {
            Some(format!("link {:?}", dev.netdev.state))
        }
    }

    /// The ListAndWatch device list of `pool`.
    pub fn device_list(&self, pool: &str, is_allocated: &dyn Fn(&str) -> bool) -> Vec<dp::Device> {
        let Some(p) = self.pools.get(pool) else {
            return Vec::new();
        };
        p.devices
            .iter()
            .map(|(id, d)| dp::Device {
                id: id.clone(),
                health: if Self::is_healthy(d, is_allocated(id)) {
                    dp::HEALTHY
                } else {
                    dp::UNHEALTHY
                }
                .to_string(),
                topology: d.netdev.numa_node.map(|n| dp::TopologyInfo {
                    nodes: vec![dp::NumaNode { id: n }],
                }),
            })
            .collect()
    }

    /// Apply a fresh view of a device seen in the host netns (link changed,
    /// or it came back); a `cdq` parent updates each of its slots.
    pub fn device_seen(&mut self, nd: &NetDev) -> Option<Changed> {
        let mut changed = None;
        for p in self.pools.values_mut() {
            for (id, d) in p.devices.iter_mut() {
                if !d.is(id, &nd.name) {
                    continue;
                }
                let before = (d.present, d.netdev.state, d.netdev.ifindex);
                d.present = true;
                d.netdev = nd.clone();
                if before != (d.present, d.netdev.state, d.netdev.ifindex) && changed.is_none() {
                    changed = Some(Changed {
                        pool: p.config.name.clone(),
                        device: id.clone(),
                    });
                }
            }
        }
        changed
    }

    /// A device left the host netns (moved into a pod, or removed); a `cdq`
    /// parent takes its slots with it.
    pub fn device_gone(&mut self, name: &str) -> Option<Changed> {
        let mut changed = None;
        for p in self.pools.values_mut() {
            for (id, d) in p.devices.iter_mut() {
                if d.is(id, name) && d.present {
                    d.present = false;
                    changed.get_or_insert(Changed {
                        pool: p.config.name.clone(),
                        device: id.clone(),
                    });
                }
            }
        }
        changed
    }

    /// The device of a pool with `ifindex` in the host netns (link events carry ifindex).
    pub fn name_of_ifindex(&self, ifindex: u32) -> Option<String> {
        self.pools
            .values()
            .flat_map(|p| p.devices.values())
            .find(|d| d.present && d.netdev.ifindex == ifindex)
            .map(|d| d.netdev.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netdev(name: &str) -> NetDev {
        NetDev {
            driver: Some("veth".into()),
            rx_queues: 2,
            tx_queues: 2,
            ..NetDev::for_test(name, 10)
        }
    }

    /// An inventory of `pools` (name → device names) on a node that has `devs`.
    fn inventory(pools: &[(&str, &[&str])], devs: &[&str]) -> Inventory {
        let pools: Vec<serde_json::Value> = pools
            .iter()
            .map(|(name, ds)| {
                let ds: Vec<_> = ds
                    .iter()
                    .map(|d| serde_json::json!({ "name": d }))
                    .collect();
                serde_json::json!({ "name": name, "selectors": { "devices": ds } })
            })
            .collect();
        let text = serde_json::json!({
            "apiVersion": "afxdp.io/v1alpha1",
            "includeVirtualDevices": true,
            "pools": pools,
        });
        let cfg = afxdp_config::parse(&text.to_string()).expect("valid config");
        let netdevs: Vec<NetDev> = devs.iter().map(|d| netdev(d)).collect();
        Inventory::build(&cfg, "node", &netdevs, &[], &[])
    }

    /// A `cdq` pool advertises `secondary` slots per device, named
    /// `<parent>sf<n>` (stable: the same config and netdevs give the same
    /// IDs), each tracking its parent's link.
    #[test]
    fn cdq_pools_advertise_subfunction_slots() {
        let text = serde_json::json!({
            "apiVersion": "afxdp.io/v1alpha1",
            "includeVirtualDevices": true,
            "pools": [
                { "name": "sf", "mode": "cdq", "selectors": { "devices": [
                    { "name": "pf0", "secondary": 3 }, { "name": "pf1" } ] } },
                { "name": "whole", "selectors": { "devices": [ { "name": "eth9" } ] } },
            ],
        });
        let cfg = afxdp_config::parse(&text.to_string()).expect("valid config");
        let netdevs: Vec<NetDev> = ["pf0", "pf1", "eth9"].iter().map(|d| netdev(d)).collect();
        let mut inv = Inventory::build(&cfg, "node", &netdevs, &[], &[]);
        let ids = |inv: &Inventory, pool: &str| -> Vec<String> {
            inv.device_list(pool, &|_| false)
                .into_iter()
                .map(|d| d.id)
                .collect()
        };
        assert_eq!(ids(&inv, "sf"), ["pf0sf1", "pf0sf2", "pf0sf3", "pf1sf1"]);
        assert_eq!(ids(&inv, "whole"), ["eth9"]);
        // A restart: the same slots, and a cdq allocation's subfunction
        // netdev (in a pod) adds no entry.
        let in_pod = ("sf".to_string(), netdev("enp1s0f0s1"));
        let again = Inventory::build(&cfg, "node", &netdevs, &[], &[in_pod]);
        assert_eq!(ids(&again, "sf"), ids(&inv, "sf"));
        let slot = inv.device("pf0sf2").expect("slot");
        assert_eq!((slot.slot, slot.netdev.name.as_str()), (Some(2), "pf0"));
        assert_eq!(inv.device("eth9").and_then(|d| d.slot), None);
        // The parent's link going down makes every slot of it unhealthy.
        let mut down = netdev("pf0");
        down.state = LinkState::Down;
        assert!(inv.device_seen(&down).is_some());
        let health: Vec<String> = inv
            .device_list("sf", &|_| false)
            .into_iter()
            .map(|d| d.health)
            .collect();
        assert_eq!(
            health,
            [dp::UNHEALTHY, dp::UNHEALTHY, dp::UNHEALTHY, dp::HEALTHY]
        );
        // The parent leaving the host netns takes its slots with it.
        assert!(inv.device_gone("pf1").is_some());
        assert!(!inv.device("pf1sf1").expect("slot").present);
        assert!(inv.device("pf0sf1").expect("slot").present);
    }

    fn members(inv: &Inventory) -> Vec<(String, String, bool)> {
        inv.pools()
            .flat_map(|p| {
                p.devices
                    .iter()
                    .map(|(d, pd)| (p.config.name.clone(), d.clone(), pd.leaving))
            })
            .collect()
    }

    fn held(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(d, p)| (d.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn free_devices_move_at_once_and_held_ones_stay_leaving() {
        let all = ["a", "b", "c"];
        let now = inventory(&[("one", &["a", "b", "c"])], &all);
        let target = inventory(&[("one", &["c"]), ("two", &["a", "b"])], &all);
        let next = now.converge(&target, &held(&[("a", "one")]));
        assert_eq!(
            members(&next),
            vec![
                ("one".into(), "a".into(), true),
                ("one".into(), "c".into(), false),
                ("two".into(), "b".into(), false),
            ]
        );
        assert!(next.is_converging(&target));
        let a = next.device("a").expect("a stays");
        assert!(
            !Inventory::is_healthy(a, true),
            "a leaving device is listed Unhealthy"
        );
        // Released: it moves.
        let after = next.converge(&target, &held(&[]));
        assert_eq!(members(&after), members(&target));
        assert!(!after.is_converging(&target));
    }

    #[test]
    fn a_dropped_pool_stays_while_it_holds_a_device() {
        let all = ["a", "b"];
        let now = inventory(&[("one", &["a"]), ("two", &["b"])], &all);
        let target = inventory(&[("two", &["b"])], &all);
        let next = now.converge(&target, &held(&[("a", "one")]));
        assert_eq!(
            members(&next),
            vec![
                ("one".into(), "a".into(), true),
                ("two".into(), "b".into(), false)
            ]
        );
        assert_eq!(
            next.pool("one").map(|p| p.config.name.as_str()),
            Some("one")
        );
        assert!(next.is_converging(&target));
        let after = next.converge(&target, &held(&[]));
        assert!(after.pool("one").is_none());
        assert!(!after.is_converging(&target));
    }

    #[test]
    fn held_devices_the_target_keeps_in_place_are_not_leaving() {
        let all = ["a", "b"];
        let now = inventory(&[("one", &["a", "b"])], &all);
        let target = inventory(&[("one", &["a", "b"]), ("two", &["z"])], &all);
        let next = now.converge(&target, &held(&[("a", "one")]));
        assert_eq!(members(&next), members(&target));
        assert!(!next.is_converging(&target));
    }

    #[test]
    fn the_served_view_of_a_device_wins_over_the_target_snapshot() {
        let all = ["a"];
        let mut now = inventory(&[("one", &["a"])], &all);
        now.device_gone("a"); // moved into a pod
        let target = inventory(&[("two", &["a"])], &all);
        let next = now.converge(&target, &held(&[]));
        let a = next.device("a").expect("a moved");
        assert!(
            !a.present,
            "presence comes from what is served, not the selection"
        );
    }
}
