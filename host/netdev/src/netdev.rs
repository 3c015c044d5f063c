//! What afxdp-rs knows about one host network device.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Operational state of a link, as the kernel reports it (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Up,
    Down,
    /// Lower-layer down, dormant, testing, not present or unknown.
    Other,
}

/// One network device as discovered from netlink and sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDev {
    pub name: String,
    pub ifindex: u32,
    /// Kernel driver name (`ethtool -i`), e.g. `ice`, `veth`.
    pub driver: Option<String>,
    /// PCI address (`0000:18:00.0`) when the device sits on PCI.
    pub pci: Option<String>,
    /// MAC address, lower-case colon-separated.
    pub mac: Option<String>,
    /// NUMA node of the device; `None` when the platform does not say (sysfs `-1`).
    pub numa_node: Option<i64>,
    pub rx_queues: u32,
    pub tx_queues: u32,
    /// Link speed in Mb/s when known.
    pub speed_mbps: Option<u32>,
    pub addresses: Vec<IpAddr>,
    pub state: LinkState,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    pub mtu: u32,
}
