//! What afxdp-rs knows about one host network device.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Operational state of a link, as the kernel reports it (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// `IF_OPER_UP`: ready to pass packets.
    Up,
    /// `IF_OPER_DOWN`: no carrier or administratively down.
    Down,
    /// Lower-layer down, dormant, testing, not present or unknown.
    Other,
}

/// One network device as discovered from netlink and sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDev {
    /// Interface name, unique within its network namespace.
    pub name: String,
    /// Interface index in its network namespace (may change when the device changes namespace).
    pub ifindex: u32,
    /// Kernel driver name (`ethtool -i`), e.g. `ice`, `veth`.
    pub driver: Option<String>,
    /// PCI address (`0000:18:00.0`) when the device sits on PCI.
    pub pci: Option<String>,
    /// MAC address, lower-case colon-separated.
    pub mac: Option<String>,
    /// NUMA node of the device; `None` when the platform does not say (sysfs `-1`).
    pub numa_node: Option<i64>,
    /// RX queues in use (`ethtool -l` RX + combined channels when the driver reports them,
    /// else the queues the device was created with). AF_XDP binds queue ids below this.
    pub rx_queues: u32,
    /// TX queues in use, counted like `rx_queues`.
    pub tx_queues: u32,
    /// Link speed in Mb/s when known.
    pub speed_mbps: Option<u32>,
    /// IPv4 and IPv6 addresses configured on the device.
    pub addresses: Vec<IpAddr>,
    /// Operational state.
    pub state: LinkState,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// MTU in bytes.
    pub mtu: u32,
}

impl NetDev {
    /// A device known only by its name and index (e.g. a record that
    /// outlived what was discovered of it): one queue each way,
    /// administratively up, every other fact unknown (no driver, PCI, MAC,
    /// NUMA node, speed or addresses; state [`LinkState::Other`], MTU 0).
    pub fn named(name: impl Into<String>, ifindex: u32) -> Self {
        Self {
            name: name.into(),
            ifindex,
            driver: None,
            pci: None,
            mac: None,
            numa_node: None,
            rx_queues: 1,
            tx_queues: 1,
            speed_mbps: None,
            addresses: Vec::new(),
            state: LinkState::Other,
            admin_up: true,
            mtu: 0,
        }
    }

    /// For tests: [`NetDev::named`] with its link up at MTU 1500; set the
    /// facts a test needs with struct update syntax.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_test(name: impl Into<String>, ifindex: u32) -> Self {
        Self {
            state: LinkState::Up,
            mtu: 1500,
            ..Self::named(name, ifindex)
        }
    }

    /// Whether someone configured an address on the device: any address but
    /// IPv6 link-local (`fe80::/10`), which the kernel adds by itself to
    /// every link that comes up (afxdp-dp's own bring-up of a pool device
    /// would otherwise make it look "addressed").
    pub fn has_configured_addresses(&self) -> bool {
        self.addresses.iter().any(|a| !is_ipv6_link_local(a))
    }
}

fn is_ipv6_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_addresses(addresses: &[&str]) -> NetDev {
        NetDev {
            addresses: addresses
                .iter()
                .map(|a| a.parse().expect("address"))
                .collect(),
            ..NetDev::for_test("t0", 1)
        }
    }

    #[test]
    fn ipv6_link_local_alone_is_not_a_configured_address() {
        assert!(!with_addresses(&[]).has_configured_addresses());
        assert!(!with_addresses(&["fe80::1", "febf::2"]).has_configured_addresses());
        assert!(with_addresses(&["fe80::1", "10.0.0.1"]).has_configured_addresses());
        assert!(with_addresses(&["2001:db8::1"]).has_configured_addresses());
        // fec0::/10 (site-local, deprecated) is not link-local.
        assert!(with_addresses(&["fec0::1"]).has_configured_addresses());
    }
}
