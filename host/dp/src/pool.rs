//! Pools and their devices: who is in which pool, and each device's health.
//!
//! Built once at start from the config's selectors and the discovered netdevs,
//! then kept current by link events. Never talks to kubelet: the device-plugin
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
}

/// One pool: its config and its devices by name.
#[derive(Debug, Clone)]
pub struct Pool {
    pub config: PoolConfig,
    pub devices: BTreeMap<String, PoolDevice>,
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
        let facts: Vec<afxdp_config::selector::DeviceFacts<'_>> = netdevs
            .iter()
            .map(|d| afxdp_config::selector::DeviceFacts {
                name: &d.name,
                driver: d.driver.as_deref(),
                pci: d.pci.as_deref(),
                mac: d.mac.as_deref(),
                has_addresses: !d.addresses.is_empty(),
                is_primary_host_interface: default_route.iter().any(|r| r == &d.name),
            })
            .collect();
        let assigned = afxdp_config::selector::assign_pools(config, node_name, &facts);
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
        for (pool, names) in assigned {
            let Some(p) = pools.get_mut(&pool) else {
                continue;
            };
            for name in names {
                if let Some(nd) = netdevs.iter().find(|d| d.name == name) {
                    p.devices.insert(
                        name.clone(),
                        PoolDevice {
                            netdev: nd.clone(),
                            present: true,
                        },
                    );
                }
            }
        }
        for (pool, nd) in allocated_elsewhere {
            if let Some(p) = pools.get_mut(pool) {
                p.devices.entry(nd.name.clone()).or_insert(PoolDevice {
                    netdev: nd.clone(),
                    present: false,
                });
            }
        }
        Self { pools }
    }

    /// Replace `pool`'s policy configuration (config reload).
    pub fn set_policy(&mut self, pool: &str, policy: Option<afxdp_config::PolicyConfig>) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.config.policy = policy;
        }
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
    /// or when it is allocated (it then lives in its pod's netns).
    pub fn is_healthy(dev: &PoolDevice, allocated: bool) -> bool {
        allocated || (dev.present && dev.netdev.state == LinkState::Up)
    }

    /// The ListAndWatch device list of `pool`.
    pub fn device_list(&self, pool: &str, is_allocated: &dyn Fn(&str) -> bool) -> Vec<dp::Device> {
        let Some(p) = self.pools.get(pool) else {
            return Vec::new();
        };
        p.devices
            .values()
            .map(|d| dp::Device {
                id: d.netdev.name.clone(),
                health: if Self::is_healthy(d, is_allocated(&d.netdev.name)) {
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

    /// Apply a fresh view of a device seen in the host netns (link changed, or it came back).
    pub fn device_seen(&mut self, nd: &NetDev) -> Option<Changed> {
        for p in self.pools.values_mut() {
            if let Some(d) = p.devices.get_mut(&nd.name) {
                let before = (d.present, d.netdev.state, d.netdev.ifindex);
                d.present = true;
                d.netdev = nd.clone();
                if before != (d.present, d.netdev.state, d.netdev.ifindex) {
                    return Some(Changed {
                        pool: p.config.name.clone(),
                        device: nd.name.clone(),
                    });
                }
                return None;
            }
        }
        None
    }

    /// A device left the host netns (moved into a pod, or removed).
    pub fn device_gone(&mut self, name: &str) -> Option<Changed> {
        for p in self.pools.values_mut() {
            if let Some(d) = p.devices.get_mut(name) {
                if d.present {
                    d.present = false;
                    return Some(Changed {
                        pool: p.config.name.clone(),
                        device: name.to_string(),
                    });
                }
                return None;
            }
        }
        None
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
