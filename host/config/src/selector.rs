//! Pool selection: which of a node's netdevs each pool takes. Pure logic;
//! the daemon supplies the facts it discovered.
//!
//! # Semantics
//! For each pool, in configuration order:
//! 1. **Node override.** If the pool's `nodes` has an entry whose hostname
//!    equals the node name (case-insensitively), that entry's `drivers` and
//!    `devices` replace the pool's own; an entry with neither takes nothing.
//!    Otherwise the pool's own lists apply.
//! 2. **Devices** are taken first, in list order. A name selector matches the
//!    interface name exactly, a PCI selector the device's PCI address, a MAC
//!    selector its MAC (both compared after normalisation, so case and `-`
//!    vs `:` do not matter). Upstream only ever looked devices up by name,
//!    so PCI and MAC entries silently matched nothing; here they match.
//!    Explicit devices are not subject to `excludeAddressed`: naming a
//!    device is a deliberate choice.
//! 3. **Drivers** then take the remaining devices whose driver equals the
//!    selector's name, skipping its `exclude` list and, with
//!    `excludeAddressed`, devices that have IP addresses. `max_devices`
//!    (upstream `primary`) caps how many devices this driver entry takes on
//!    the node. Candidates are visited in name order, so the choice is
//!    stable (upstream iterated a Go map: which N devices it took varied
//!    from run to run).
//! 4. A device belongs to **one pool at most**: the first pool (in file
//!    order) that selects it wins, later pools skip it.
//!
//! **Virtual netdevs** (veth, bridges, VLANs, tunnels, bonds: a device
//! without a PCI address whose driver is one of [`VIRTUAL_DRIVERS`]) are
//! taken by driver selectors only with [`Config::include_virtual_devices`]
//! (upstream `kindCluster`); a device named in `devices` is taken either
//! way, as for `excludeAddressed`.
//!
//! Never taken, whatever the selectors: the node's primary host interface
//! (the default-route netdev, [`DeviceFacts::is_primary_host_interface`])
//! and `lo`. Upstream's name-prefix blacklist (`eth`, `eno`, `docker`, ...)
//! is not applied: it rejected legitimate secondary NICs named `eth1` while
//! not protecting a default-route NIC named `ens1f0`; discovery decides
//! which kinds of netdev are candidates.

use std::collections::HashSet;

use crate::model::{
    Config, DeviceMatch, DeviceSelector, DriverSelector, MacAddress, PciAddress, PoolConfig,
    Selector,
};

/// What the daemon knows about one netdev on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceFacts<'a> {
    /// Interface name.
    pub name: &'a str,
    /// Kernel driver bound to the device, if any.
    pub driver: Option<&'a str>,
    /// PCI address (`0000:81:00.1`), if the device is on PCI.
    pub pci: Option<&'a str>,
    /// MAC address, any case, `:` or `-` separated.
    pub mac: Option<&'a str>,
    /// The device has an address someone configured (not counting IPv6
    /// link-local, see `NetDev::has_configured_addresses` in afxdp-netdev).
    pub has_addresses: bool,
    /// The device carries the node's default route; it is never taken.
    pub is_primary_host_interface: bool,
}

/// One device assigned to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedDevice {
    /// Interface name.
    pub name: String,
    /// Secondary devices (CDQ subfunctions) to create on it, from the device
    /// entry or inherited from the driver entry that selected it.
    pub secondary: Option<u32>,
}

/// The devices one pool gets on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAssignment {
    /// Pool name.
    pub pool: String,
    /// Devices, in selection order (explicit devices first, then by driver).
    pub devices: Vec<AssignedDevice>,
}

/// Drivers of virtual netdevs, as `ethtool -i` names them.
pub const VIRTUAL_DRIVERS: &[&str] = &[
    "veth",
    "bridge",
    "dummy",
    "tun",
    "macvlan",
    "ipvlan",
    "vxlan",
    "geneve",
    "bonding",
    "team",
    "vrf",
    "netkit",
    "802.1Q VLAN Support",
    "openvswitch",
    "wireguard",
    "ifb",
    "nlmon",
];

impl DeviceFacts<'_> {
    /// A virtual netdev (see the [module docs](self)).
    pub fn is_virtual(&self) -> bool {
        self.pci.is_none() && self.driver.is_some_and(|d| VIRTUAL_DRIVERS.contains(&d))
    }
}

fn never_taken(dev: &DeviceFacts<'_>) -> bool {
    dev.is_primary_host_interface || dev.name == "lo"
}

impl DeviceMatch {
    /// Whether this identification designates `dev`.
    pub fn matches(&self, dev: &DeviceFacts<'_>) -> bool {
        match self {
            DeviceMatch::Name(n) => dev.name == n,
            DeviceMatch::Pci(p) => dev
                .pci
                .and_then(|s| s.parse::<PciAddress>().ok())
                .is_some_and(|d| d == *p),
            DeviceMatch::Mac(m) => dev
                .mac
                .and_then(|s| s.parse::<MacAddress>().ok())
                .is_some_and(|d| d == *m),
        }
    }
}

impl DriverSelector {
    /// Whether this driver entry would take `dev` (ignoring `max_devices`
    /// and other pools).
    pub fn matches(&self, dev: &DeviceFacts<'_>) -> bool {
        dev.driver == Some(self.name.as_str())
            && !never_taken(dev)
            && !self.exclude.iter().any(|m| m.matches(dev))
            && (!self.exclude_addressed || !dev.has_addresses)
    }
}

impl Selector {
    /// The driver and device lists that apply on `node_name`: a matching
    /// `nodes` entry's, else the selector's own.
    pub fn effective(&self, node_name: &str) -> (&[DriverSelector], &[DeviceSelector]) {
        match self
            .nodes
            .iter()
            .find(|n| n.hostname.eq_ignore_ascii_case(node_name))
        {
            Some(n) => (&n.drivers, &n.devices),
            None => (&self.drivers, &self.devices),
        }
    }

    /// Whether this selector selects `dev` on `node_name`. This is the
    /// per-device predicate only: `max_devices` limits, the first-pool-wins
    /// rule and [`Config::include_virtual_devices`] (for driver entries)
    /// need the whole config and device list, see [`assign_pools`].
    pub fn matches(&self, node_name: &str, dev: &DeviceFacts<'_>) -> bool {
        if never_taken(dev) {
            return false;
        }
        let (drivers, devices) = self.effective(node_name);
        devices.iter().any(|d| d.matcher.matches(dev)) || drivers.iter().any(|d| d.matches(dev))
    }
}

fn select_for_pool(
    pool: &PoolConfig,
    node_name: &str,
    sorted: &[&DeviceFacts<'_>],
    include_virtual: bool,
    taken: &mut HashSet<String>,
) -> Vec<AssignedDevice> {
    let (drivers, devices) = pool.selector.effective(node_name);
    let mut out = Vec::new();
    for sel in devices {
        for dev in sorted {
            if !never_taken(dev) && !taken.contains(dev.name) && sel.matcher.matches(dev) {
                taken.insert(dev.name.to_owned());
                out.push(AssignedDevice {
                    name: dev.name.to_owned(),
                    secondary: sel.secondary,
                });
            }
        }
    }
    for sel in drivers {
        let mut count = 0u32;
        for dev in sorted.iter().filter(|d| include_virtual || !d.is_virtual()) {
            if sel.max_devices.is_some_and(|max| count >= max) {
                break;
            }
            if !taken.contains(dev.name) && sel.matches(dev) {
                taken.insert(dev.name.to_owned());
                count += 1;
                out.push(AssignedDevice {
                    name: dev.name.to_owned(),
                    secondary: sel.secondary,
                });
            }
        }
    }
    out
}

/// Assigns the node's devices to pools, with the details the daemon needs
/// (secondary counts). Every pool of the config appears once, in config
/// order, possibly with no device (upstream would not advertise such a
/// pool; the caller decides).
pub fn assign_pools_detailed(
    config: &Config,
    node_name: &str,
    devices: &[DeviceFacts<'_>],
) -> Vec<PoolAssignment> {
    let mut sorted: Vec<&DeviceFacts<'_>> = devices.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    sorted.dedup_by(|a, b| a.name == b.name);
    let mut taken = HashSet::new();
    config
        .pools
        .iter()
        .map(|pool| PoolAssignment {
            pool: pool.name.clone(),
            devices: select_for_pool(
                pool,
                node_name,
                &sorted,
                config.include_virtual_devices,
                &mut taken,
            ),
        })
        .collect()
}

/// Assigns the node's devices to pools: `(pool name, device names)` for
/// every pool in config order. See the [module docs](self) for the rules and
/// [`assign_pools_detailed`] for secondary counts.
pub fn assign_pools(
    config: &Config,
    node_name: &str,
    devices: &[DeviceFacts<'_>],
) -> Vec<(String, Vec<String>)> {
    assign_pools_detailed(config, node_name, devices)
        .into_iter()
        .map(|a| (a.pool, a.devices.into_iter().map(|d| d.name).collect()))
        .collect()
}
