//! NIC ntuple filter rules (WIT `filter-rule`) and a builder for them, plus
//! IP address / network parsing.
//!
//! ```
//! use afxdp_policy_sdk::rules::{FilterRule, IpNet};
//!
//! // Steer UDP port 4789 to queue 2.
//! let r = FilterRule::udp4_dst_port(4789).to_queue(2);
//! // Only when sent to 10.0.0.0/24, and drop TCP 23 outright.
//! let net: IpNet = "10.0.0.0/24".parse()?;
//! let s = FilterRule::udp4_dst_port(4789).dst_net(net).to_queue(2);
//! let d = FilterRule::tcp4_dst_port(23).drop();
//! for rule in [&r, &s, &d] {
//!     rule.check()?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// Flow type of a rule: protocol and IP version (WIT `flow-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowType {
    /// TCP over IPv4.
    Tcp4,
    /// UDP over IPv4.
    Udp4,
    /// SCTP over IPv4.
    Sctp4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv6.
    Udp6,
    /// SCTP over IPv6.
    Sctp6,
}

impl FlowType {
    /// The flow type for `proto` over IPv6 (`ipv6`) or IPv4.
    pub fn new(proto: Proto, ipv6: bool) -> Self {
        match (proto, ipv6) {
            (Proto::Tcp, false) => FlowType::Tcp4,
            (Proto::Udp, false) => FlowType::Udp4,
            (Proto::Sctp, false) => FlowType::Sctp4,
            (Proto::Tcp, true) => FlowType::Tcp6,
            (Proto::Udp, true) => FlowType::Udp6,
            (Proto::Sctp, true) => FlowType::Sctp6,
        }
    }

    /// The flow type for `proto` to or from `addr` (its IP version).
    pub fn for_addr(proto: Proto, addr: &IpAddr) -> Self {
        Self::new(proto, addr.is_ipv6())
    }

    /// Whether this is an IPv6 flow type.
    pub fn is_ipv6(self) -> bool {
        matches!(self, FlowType::Tcp6 | FlowType::Udp6 | FlowType::Sctp6)
    }

    /// The transport protocol.
    pub fn proto(self) -> Proto {
        match self {
            FlowType::Tcp4 | FlowType::Tcp6 => Proto::Tcp,
            FlowType::Udp4 | FlowType::Udp6 => Proto::Udp,
            FlowType::Sctp4 | FlowType::Sctp6 => Proto::Sctp,
        }
    }
}

impl fmt::Display for FlowType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlowType::Tcp4 => "tcp4",
            FlowType::Udp4 => "udp4",
            FlowType::Sctp4 => "sctp4",
            FlowType::Tcp6 => "tcp6",
            FlowType::Udp6 => "udp6",
            FlowType::Sctp6 => "sctp6",
        })
    }
}

/// What a rule does with matching packets (WIT `rule-action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Steer to this rx queue.
    Queue(u32),
    /// Drop.
    Drop,
}

/// One NIC ntuple rule (WIT `filter-rule`). Masks select the bits that must
/// match; `None` = exact match. Build with [`FilterRule::matching`] or the
/// `*_dst_port` shorthands, then [`RuleMatch::to_queue`] / [`RuleMatch::drop`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterRule {
    /// Protocol and IP version.
    pub flow_type: FlowType,
    /// Source address to match.
    pub src_ip: Option<IpAddr>,
    /// Bits of `src_ip` that must match.
    pub src_ip_mask: Option<IpAddr>,
    /// Destination address to match.
    pub dst_ip: Option<IpAddr>,
    /// Bits of `dst_ip` that must match.
    pub dst_ip_mask: Option<IpAddr>,
    /// Source port to match.
    pub src_port: Option<u16>,
    /// Bits of `src_port` that must match.
    pub src_port_mask: Option<u16>,
    /// Destination port to match.
    pub dst_port: Option<u16>,
    /// Bits of `dst_port` that must match.
    pub dst_port_mask: Option<u16>,
    /// What to do with a match.
    pub action: RuleAction,
}

/// A rule's match part, before its action is given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "finish the rule with .to_queue(q) or .drop()"]
pub struct RuleMatch {
    rule: FilterRule,
}

impl FilterRule {
    /// Start a rule matching every packet of `flow_type`.
    pub fn matching(flow_type: FlowType) -> RuleMatch {
        RuleMatch {
            rule: FilterRule {
                flow_type,
                src_ip: None,
                src_ip_mask: None,
                dst_ip: None,
                dst_ip_mask: None,
                src_port: None,
                src_port_mask: None,
                dst_port: None,
                dst_port_mask: None,
                action: RuleAction::Drop,
            },
        }
    }

    /// `flow_type` packets to destination port `port`.
    pub fn dst_port(flow_type: FlowType, port: u16) -> RuleMatch {
        Self::matching(flow_type).dst_port(port)
    }

    /// UDP/IPv4 to destination port `port`.
    pub fn udp4_dst_port(port: u16) -> RuleMatch {
        Self::dst_port(FlowType::Udp4, port)
    }

    /// TCP/IPv4 to destination port `port`.
    pub fn tcp4_dst_port(port: u16) -> RuleMatch {
        Self::dst_port(FlowType::Tcp4, port)
    }

    /// UDP/IPv6 to destination port `port`.
    pub fn udp6_dst_port(port: u16) -> RuleMatch {
        Self::dst_port(FlowType::Udp6, port)
    }

    /// TCP/IPv6 to destination port `port`.
    pub fn tcp6_dst_port(port: u16) -> RuleMatch {
        Self::dst_port(FlowType::Tcp6, port)
    }

    /// `proto` packets to `addr` port `port`; the IP version follows `addr`.
    pub fn to_addr_port(proto: Proto, addr: IpAddr, port: u16) -> RuleMatch {
        Self::dst_port(FlowType::for_addr(proto, &addr), port).dst_ip(addr)
    }

    /// Check the rule is consistent: addresses and masks of the flow type's IP
    /// version, masks only beside a value. The SDK checks every rule a policy
    /// returns and reports an `internal` error otherwise.
    pub fn check(&self) -> Result<(), RuleError> {
        let v6 = self.flow_type.is_ipv6();
        let fields = [
            ("src-ip", self.src_ip),
            ("src-ip-mask", self.src_ip_mask),
            ("dst-ip", self.dst_ip),
            ("dst-ip-mask", self.dst_ip_mask),
        ];
        for (field, addr) in fields {
            if let Some(a) = addr {
                if a.is_ipv6() != v6 {
                    return Err(RuleError::Family {
                        field,
                        addr: a,
                        flow_type: self.flow_type,
                    });
                }
            }
        }
        let masks = [
            (
                "src-ip-mask",
                self.src_ip_mask.is_some() && self.src_ip.is_none(),
            ),
            (
                "dst-ip-mask",
                self.dst_ip_mask.is_some() && self.dst_ip.is_none(),
            ),
            (
                "src-port-mask",
                self.src_port_mask.is_some() && self.src_port.is_none(),
            ),
            (
                "dst-port-mask",
                self.dst_port_mask.is_some() && self.dst_port.is_none(),
            ),
        ];
        for (field, orphan) in masks {
            if orphan {
                return Err(RuleError::MaskWithoutValue { field });
            }
        }
        Ok(())
    }
}

impl RuleMatch {
    /// Match source address `addr` exactly.
    pub fn src_ip(mut self, addr: IpAddr) -> Self {
        self.rule.src_ip = Some(addr);
        self.rule.src_ip_mask = None;
        self
    }

    /// Match source network `net`.
    pub fn src_net(mut self, net: IpNet) -> Self {
        self.rule.src_ip = Some(net.network());
        self.rule.src_ip_mask = net.mask_if_partial();
        self
    }

    /// Match destination address `addr` exactly.
    pub fn dst_ip(mut self, addr: IpAddr) -> Self {
        self.rule.dst_ip = Some(addr);
        self.rule.dst_ip_mask = None;
        self
    }

    /// Match destination network `net`.
    pub fn dst_net(mut self, net: IpNet) -> Self {
        self.rule.dst_ip = Some(net.network());
        self.rule.dst_ip_mask = net.mask_if_partial();
        self
    }

    /// Match source port `port` exactly.
    pub fn src_port(mut self, port: u16) -> Self {
        self.rule.src_port = Some(port);
        self.rule.src_port_mask = None;
        self
    }

    /// Match destination port `port` exactly.
    pub fn dst_port(mut self, port: u16) -> Self {
        self.rule.dst_port = Some(port);
        self.rule.dst_port_mask = None;
        self
    }

    /// Match the bits `mask` of destination port `port`.
    pub fn dst_port_masked(mut self, port: u16, mask: u16) -> Self {
        self.rule.dst_port = Some(port);
        self.rule.dst_port_mask = Some(mask);
        self
    }

    /// Finish: steer matches to rx queue `queue`.
    pub fn to_queue(mut self, queue: u32) -> FilterRule {
        self.rule.action = RuleAction::Queue(queue);
        self.rule
    }

    /// Finish: drop matches.
    pub fn drop(mut self) -> FilterRule {
        self.rule.action = RuleAction::Drop;
        self.rule
    }
}

/// An inconsistent [`FilterRule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An address of the other IP version than the flow type.
    #[error("{field} {addr} does not fit flow type {flow_type}")]
    Family {
        /// The field.
        field: &'static str,
        /// Its value.
        addr: IpAddr,
        /// The rule's flow type.
        flow_type: FlowType,
    },
    /// A mask without the value it masks.
    #[error("{field} given without the value it masks")]
    MaskWithoutValue {
        /// The mask field.
        field: &'static str,
    },
}

/// An address or network that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    /// Not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    Addr(String),
    /// A prefix length that is not a number or too long for the address.
    #[error("{0:?}: bad prefix length (IPv4 0..=32, IPv6 0..=128)")]
    Prefix(String),
}

/// Parse an IP address in text form (surrounding whitespace allowed).
pub fn parse_ip(s: &str) -> Result<IpAddr, NetParseError> {
    s.trim()
        .parse()
        .map_err(|_| NetParseError::Addr(s.to_string()))
}

/// An IP network: an address and a prefix length (`10.0.0.0/24`, `fd00::/64`).
/// Host bits are allowed in the text and cleared by [`IpNet::network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `addr/prefix`, or `None` when `prefix` is too long for the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        (prefix <= max_prefix(&addr)).then_some(IpNet { addr, prefix })
    }

    /// The single address `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        IpNet {
            addr,
            prefix: max_prefix(&addr),
        }
    }

    /// The address as given.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask (`255.255.255.0` for `/24`).
    pub fn mask(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => {
                let bits = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits))
            }
            IpAddr::V6(_) => {
                let bits = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match (self.addr, self.mask()) {
            (IpAddr::V4(a), IpAddr::V4(m)) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m)))
            }
            (IpAddr::V6(a), IpAddr::V6(m)) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::from(m)))
            }
            // mask() has the address's family.
            (a, _) => a,
        }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv6() == self.addr.is_ipv6()
            && IpNet::host(*ip).with_prefix(self.prefix).network() == self.network()
    }

    /// The mask for a rule: `None` for a single host (exact match).
    pub fn mask_if_partial(&self) -> Option<IpAddr> {
        (self.prefix < max_prefix(&self.addr)).then(|| self.mask())
    }

    fn with_prefix(self, prefix: u8) -> Self {
        IpNet { prefix, ..self }
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv6() {
        128
    } else {
        32
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    /// `addr/prefix` or a bare address (a single host).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.split_once('/') {
            None => Ok(IpNet::host(parse_ip(t)?)),
            Some((a, p)) => {
                let addr = parse_ip(a).map_err(|_| NetParseError::Addr(s.to_string()))?;
                let prefix = if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    p.parse::<u8>().ok()
                };
                prefix
                    .and_then(|p| IpNet::new(addr, p))
                    .ok_or_else(|| NetParseError::Prefix(s.to_string()))
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn builders_fill_the_fields() {
        let r = FilterRule::udp4_dst_port(4789).to_queue(3);
        assert_eq!(r.flow_type, FlowType::Udp4);
        assert_eq!(r.dst_port, Some(4789));
        assert_eq!(r.dst_port_mask, None);
        assert_eq!(r.action, RuleAction::Queue(3));
        assert_eq!(r.dst_ip, None);
        assert!(r.check().is_ok());

        let d = FilterRule::tcp6_dst_port(22).src_ip(ip("fd00::1")).drop();
        assert_eq!(d.flow_type, FlowType::Tcp6);
        assert_eq!(d.action, RuleAction::Drop);
        assert!(d.check().is_ok());

        let a = FilterRule::to_addr_port(Proto::Udp, ip("fd00::5"), 53).to_queue(0);
        assert_eq!(a.flow_type, FlowType::Udp6);
        assert_eq!(a.dst_ip, Some(ip("fd00::5")));

        let m = FilterRule::matching(FlowType::Sctp4)
            .dst_port_masked(0x1200, 0xff00)
            .to_queue(1);
        assert_eq!((m.dst_port, m.dst_port_mask), (Some(0x1200), Some(0xff00)));
    }

    #[test]
    fn nets_become_address_and_mask() {
        let net: IpNet = "10.1.2.3/24".parse().expect("net");
        let r = FilterRule::udp4_dst_port(1).dst_net(net).to_queue(0);
        assert_eq!(r.dst_ip, Some(ip("10.1.2.0")));
        assert_eq!(r.dst_ip_mask, Some(ip("255.255.255.0")));
        // A single host is an exact match: no mask.
        let h: IpNet = "10.1.2.3".parse().expect("host");
        let r = FilterRule::udp4_dst_port(1).dst_net(h).to_queue(0);
        assert_eq!((r.dst_ip, r.dst_ip_mask), (Some(ip("10.1.2.3")), None));
    }

    #[test]
    fn check_rejects_inconsistent_rules() {
        let r = FilterRule::udp4_dst_port(1)
            .dst_ip(ip("fd00::1"))
            .to_queue(0);
        assert!(matches!(
            r.check(),
            Err(RuleError::Family {
                field: "dst-ip",
                ..
            })
        ));
        let mut r = FilterRule::udp4_dst_port(1).to_queue(0);
        r.src_ip_mask = Some(ip("255.0.0.0"));
        assert_eq!(
            r.check(),
            Err(RuleError::MaskWithoutValue {
                field: "src-ip-mask"
            })
        );
        let mut r = FilterRule::matching(FlowType::Udp4).to_queue(0);
        r.dst_port_mask = Some(1);
        assert!(r.check().is_err());
    }

    #[test]
    fn ipnet_parsing_table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("10.0.0.0/8", Some(("10.0.0.0", "255.0.0.0"))),
            ("10.9.9.9/8", Some(("10.0.0.0", "255.0.0.0"))),
            ("192.168.1.7", Some(("192.168.1.7", "255.255.255.255"))),
            (" 0.0.0.0/0 ", Some(("0.0.0.0", "0.0.0.0"))),
            ("fd00::1/64", Some(("fd00::", "ffff:ffff:ffff:ffff::"))),
            ("::/0", Some(("::", "::"))),
            ("10.0.0.0/33", None),
            ("fd00::/129", None),
            ("10.0.0.0/", None),
            ("10.0.0.0/+8", None),
            ("10.0.0/8", None),
            ("", None),
            ("host.example", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<IpNet>();
            match want {
                Some((net, mask)) => {
                    let n = got.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!(n.network(), ip(net), "{text}");
                    assert_eq!(n.mask(), ip(mask), "{text}");
                }
                None => assert!(got.is_err(), "{text} should not parse"),
            }
        }
    }

    #[test]
    fn contains_and_parse_ip() {
        let net: IpNet = "10.0.0.0/16".parse().expect("net");
        assert!(net.contains(&ip("10.0.200.1")));
        assert!(!net.contains(&ip("10.1.0.1")));
        assert!(!net.contains(&ip("::1")));
        assert_eq!(parse_ip(" 1.2.3.4 "), Ok(ip("1.2.3.4")));
        assert!(parse_ip("1.2.3.4/8").is_err());
        assert_eq!(net.to_string(), "10.0.0.0/16");
    }
}
