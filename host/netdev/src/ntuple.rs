//! NIC ntuple filter rules (`ethtool -N`): `ETHTOOL_SRXCLSRLINS` / `SRXCLSRLDEL`.
//!
//! A rule steers matching IPv4/IPv6 TCP/UDP/SCTP packets to one rx queue (or
//! drops them) in NIC hardware. Drivers without ntuple support (veth among
//! them) answer `EOPNOTSUPP`: [`NetdevError::is_not_supported`].
//!
//! Why an ioctl and not ethtool netlink like channels: the kernel's ethtool
//! netlink API has no command for rx classification rules (`ethtool -N` itself
//! still uses `ETHTOOL_SRXCLSRLINS`), so no crate can cover them either.

use std::net::IpAddr;

use crate::ethtool::ioctl;
use crate::NetdevError;

const ETHTOOL_SRXCLSRLDEL: u32 = 0x31;
const ETHTOOL_SRXCLSRLINS: u32 = 0x32;
/// `RX_CLS_FLOW_DISC`: drop matching packets.
const RX_CLS_FLOW_DISC: u64 = u64::MAX;
/// `RX_CLS_LOC_ANY`: let the driver pick the rule location.
const RX_CLS_LOC_ANY: u32 = 0xffff_ffff;

/// The flow types of `ethtool.h` that rules here match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowType {
    /// `TCP_V4_FLOW`
    Tcp4,
    /// `UDP_V4_FLOW`
    Udp4,
    /// `SCTP_V4_FLOW`
    Sctp4,
    /// `TCP_V6_FLOW`
    Tcp6,
    /// `UDP_V6_FLOW`
    Udp6,
    /// `SCTP_V6_FLOW`
    Sctp6,
}

impl FlowType {
    fn code(self) -> u32 {
        match self {
            FlowType::Tcp4 => 0x01,
            FlowType::Udp4 => 0x02,
            FlowType::Sctp4 => 0x03,
            FlowType::Tcp6 => 0x05,
            FlowType::Udp6 => 0x06,
            FlowType::Sctp6 => 0x07,
        }
    }

    /// IPv6 flow?
    pub fn is_v6(self) -> bool {
        matches!(self, FlowType::Tcp6 | FlowType::Udp6 | FlowType::Sctp6)
    }
}

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtupleAction {
    /// Deliver on this rx queue.
    Queue(u32),
    /// Drop in hardware.
    Drop,
}

/// One rule. Each field is `(value, mask)`; mask bits set must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtupleRule {
    /// Protocol and IP version.
    pub flow_type: FlowType,
    /// Source address and mask.
    pub src_ip: Option<(IpAddr, IpAddr)>,
    /// Destination address and mask.
    pub dst_ip: Option<(IpAddr, IpAddr)>,
    /// Source port and mask.
    pub src_port: Option<(u16, u16)>,
    /// Destination port and mask.
    pub dst_port: Option<(u16, u16)>,
    /// What to do with a match.
    pub action: NtupleAction,
}

/// `union ethtool_flow_union`: 52 bytes.
const FLOW_UNION: usize = 52;
/// `struct ethtool_flow_ext`: 20 bytes.
const FLOW_EXT: usize = 20;

/// `struct ethtool_rxnfc` with its `ethtool_rx_flow_spec` (192 bytes, 8-aligned).
#[repr(C)]
struct RxNfc {
    cmd: u32,
    flow_type: u32,
    data: u64,
    // struct ethtool_rx_flow_spec
    fs_flow_type: u32,
    h_u: [u8; FLOW_UNION],
    h_ext: [u8; FLOW_EXT],
    m_u: [u8; FLOW_UNION],
    m_ext: [u8; FLOW_EXT],
    ring_cookie: u64,
    location: u32,
    _fs_pad: u32,
    rule_cnt: u32,
    _pad: u32,
}

impl RxNfc {
    fn new(cmd: u32) -> Self {
        RxNfc {
            cmd,
            flow_type: 0,
            data: 0,
            fs_flow_type: 0,
            h_u: [0; FLOW_UNION],
            h_ext: [0; FLOW_EXT],
            m_u: [0; FLOW_UNION],
            m_ext: [0; FLOW_EXT],
            ring_cookie: 0,
            location: 0,
            _fs_pad: 0,
            rule_cnt: 0,
            _pad: 0,
        }
    }
}

/// Where the fields sit in `ethtool_tcpip4_spec` / `ethtool_tcpip6_spec`:
/// (src ip, dst ip, src port, dst port) byte offsets and address length.
fn layout(v6: bool) -> (usize, usize, usize, usize, usize) {
    if v6 {
        (0, 16, 32, 34, 16)
    } else {
        (0, 4, 8, 10, 4)
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Fill the header and mask unions of `rule` (network byte order).
fn encode(rule: &NtupleRule) -> Result<RxNfc, String> {
    let v6 = rule.flow_type.is_v6();
    let (src, dst, sport, dport, alen) = layout(v6);
    let mut r = RxNfc::new(ETHTOOL_SRXCLSRLINS);
    r.fs_flow_type = rule.flow_type.code();
    for (field, off) in [(rule.src_ip, src), (rule.dst_ip, dst)] {
        if let Some((ip, mask)) = field {
            if ip.is_ipv6() != v6 || mask.is_ipv6() != v6 {
                return Err(format!(
                    "address {ip}/{mask} does not fit flow type {:?}",
                    rule.flow_type
                ));
            }
            r.h_u[off..off + alen].copy_from_slice(&ip_bytes(ip));
            r.m_u[off..off + alen].copy_from_slice(&ip_bytes(mask));
        }
    }
    for (field, off) in [(rule.src_port, sport), (rule.dst_port, dport)] {
        if let Some((port, mask)) = field {
            r.h_u[off..off + 2].copy_from_slice(&port.to_be_bytes());
            r.m_u[off..off + 2].copy_from_slice(&mask.to_be_bytes());
        }
    }
    r.ring_cookie = match rule.action {
        NtupleAction::Queue(q) => u64::from(q),
        NtupleAction::Drop => RX_CLS_FLOW_DISC,
    };
    r.location = RX_CLS_LOC_ANY;
    Ok(r)
}

/// Insert `rule` on `ifname` (current netns); returns the rule location the
/// driver chose (for [`delete`]).
///
/// # Errors
/// `EOPNOTSUPP` from drivers without ntuple filters, `EINVAL` for rules the
/// NIC cannot express, [`NetdevError::NoSuchLink`], or an address that does
/// not fit the flow type ([`NetdevError::Malformed`]).
pub fn insert(ifname: &str, rule: &NtupleRule) -> Result<u32, NetdevError> {
    let mut r = encode(rule).map_err(|detail| NetdevError::Malformed {
        op: "ntuple rule",
        detail,
    })?;
    ioctl(ifname, "ETHTOOL_SRXCLSRLINS", &mut r)?;
    Ok(r.location)
}

/// Delete the rule at `location` on `ifname`.
///
/// # Errors
/// As [`insert`]; `ENOENT` when no rule is there.
pub fn delete(ifname: &str, location: u32) -> Result<(), NetdevError> {
    let mut r = RxNfc::new(ETHTOOL_SRXCLSRLDEL);
    r.location = location;
    ioctl(ifname, "ETHTOOL_SRXCLSRLDEL", &mut r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<RxNfc>(), 192);
        assert_eq!(std::mem::offset_of!(RxNfc, fs_flow_type), 16);
        assert_eq!(std::mem::offset_of!(RxNfc, m_u), 16 + 4 + 52 + 20);
        assert_eq!(std::mem::offset_of!(RxNfc, ring_cookie), 16 + 152);
        assert_eq!(std::mem::offset_of!(RxNfc, location), 16 + 160);
        assert_eq!(std::mem::offset_of!(RxNfc, rule_cnt), 184);
    }

    #[test]
    fn udp4_dst_port_to_queue_encodes_in_network_order() {
        let rule = NtupleRule {
            flow_type: FlowType::Udp4,
            src_ip: None,
            dst_ip: Some((
                "10.0.0.2".parse().expect("ip"),
                "255.255.255.255".parse().expect("mask"),
            )),
            src_port: None,
            dst_port: Some((4789, 0xffff)),
            action: NtupleAction::Queue(3),
        };
        let r = encode(&rule).expect("encode");
        assert_eq!(r.fs_flow_type, 0x02);
        assert_eq!(&r.h_u[4..8], &[10, 0, 0, 2]);
        assert_eq!(&r.m_u[4..8], &[255; 4]);
        assert_eq!(&r.h_u[10..12], &4789u16.to_be_bytes());
        assert_eq!(&r.m_u[10..12], &[0xff, 0xff]);
        assert_eq!(r.ring_cookie, 3);
        assert_eq!(r.location, RX_CLS_LOC_ANY);
    }

    #[test]
    fn v6_layout_drop_and_family_mismatch() {
        let rule = NtupleRule {
            flow_type: FlowType::Tcp6,
            src_ip: Some((
                "fd00::1".parse().expect("ip"),
                "ffff:ffff::".parse().expect("mask"),
            )),
            dst_ip: None,
            src_port: Some((80, 0xffff)),
            dst_port: None,
            action: NtupleAction::Drop,
        };
        let r = encode(&rule).expect("encode");
        assert_eq!(r.h_u[0..2], [0xfd, 0x00]);
        assert_eq!(r.m_u[0..4], [0xff; 4]);
        assert_eq!(&r.h_u[32..34], &80u16.to_be_bytes());
        assert_eq!(r.ring_cookie, u64::MAX);
        let bad = NtupleRule {
            flow_type: FlowType::Udp4,
            ..rule
        };
        assert!(encode(&bad).is_err());
    }
}
