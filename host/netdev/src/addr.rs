//! Addresses and routes on a link (what CNI ADD applies from an IPAM
//! result): `RTM_NEWADDR` and `RTM_NEWROUTE`, replacing what exists so a
//! retried ADD converges. Removing them is never needed here: moving a
//! link to another netns drops its addresses and routes.
//!
//! Messages are netlink-packet-route's `AddressMessage` and `RouteMessage`.

use std::net::IpAddr;

use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::discover::is_ip_family;
use crate::ethtool::validate_ifname;
use crate::netns::{in_netns, NetnsHandle};
use crate::nl::{NlSocket, NLM_F_CREATE, NLM_F_REPLACE};
use crate::NetdevError;

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The ifindex of `ifname`; blocks on the socket.
fn ifindex(sock: &mut NlSocket, op: &'static str, ifname: &str) -> Result<u32, NetdevError> {
    crate::discover::link_by_name(sock, ifname)?
        .map(|l| l.ifindex)
        .ok_or_else(|| NetdevError::NoSuchLink {
            op,
            name: ifname.to_string(),
        })
}

/// `RTM_NEWADDR` for a permanent `ip/prefix` on link `index`.
fn new_address(index: u32, ip: IpAddr, prefix: u8) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(&ip);
    m.header.prefix_len = prefix;
    m.header.flags = AddressHeaderFlags::Permanent;
    m.header.scope = AddressScope::Universe;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(ip));
    m.attributes.push(AddressAttribute::Address(ip));
    RouteNetlinkMessage::NewAddress(m)
}

/// `RTM_NEWROUTE` for a main-table unicast route out of link `index`.
fn new_route(index: u32, dst: IpAddr, prefix: u8, gateway: Option<IpAddr>) -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(&dst);
    m.header.destination_prefix_length = prefix;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = if gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    m.header.kind = RouteType::Unicast;
    if prefix > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    if let Some(gw) = gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    m.attributes.push(RouteAttribute::Oif(index));
    RouteNetlinkMessage::NewRoute(m)
}

/// Add `ip/prefix` to `ifname` in `ns` (`ip addr replace`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; `EINVAL` for a prefix too long for the family.
pub fn add_address(
    ns: &NetnsHandle,
    ifname: &str,
    ip: IpAddr,
    prefix: u8,
) -> Result<(), NetdevError> {
    validate_ifname(ifname)?;
    in_netns(ns, || {
        let mut sock = NlSocket::open(0)?;
        let index = ifindex(&mut sock, "RTM_NEWADDR", ifname)?;
        let req = new_address(index, ip, prefix);
        sock.request_ack("RTM_NEWADDR", req, NLM_F_CREATE | NLM_F_REPLACE)
    })?
}

/// Add a route to `dst/prefix` out of `ifname` in `ns`, through `gateway`
/// when given (else on-link), in the main table (`ip route replace`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; `ENETUNREACH` when the gateway is not on a
/// connected subnet.
pub fn add_route(
    ns: &NetnsHandle,
    ifname: &str,
    dst: IpAddr,
    prefix: u8,
    gateway: Option<IpAddr>,
) -> Result<(), NetdevError> {
    validate_ifname(ifname)?;
    in_netns(ns, || {
        let mut sock = NlSocket::open(0)?;
        let index = ifindex(&mut sock, "RTM_NEWROUTE", ifname)?;
        let req = new_route(index, dst, prefix, gateway);
        sock.request_ack("RTM_NEWROUTE", req, NLM_F_CREATE | NLM_F_REPLACE)
    })?
}

/// A route of the main table out of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`0.0.0.0` / `::` with prefix 0 for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Gateway, `None` when on-link.
    pub gateway: Option<IpAddr>,
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A main-table unicast IP route and its output link; `None` for any other route.
fn parse_route(msg: &RouteMessage) -> Option<(Route, Option<u32>)> {
    let h = &msg.header;
    if !is_ip_family(h.address_family)
        || h.table != RouteHeader::RT_TABLE_MAIN
        || h.kind != RouteType::Unicast
    {
        return None;
    }
    let mut route = Route {
        dst: if h.address_family == AddressFamily::Inet {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        },
        prefix: h.destination_prefix_length,
        gateway: None,
    };
    let mut oif = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(d) => route.dst = route_ip(d).unwrap_or(route.dst),
            RouteAttribute::Gateway(g) => route.gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some((route, oif))
}

/// The main table's routes out of `ifname` in `ns` (`ip route show dev`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; netlink failures.
pub fn routes(ns: &NetnsHandle, ifname: &str) -> Result<Vec<Route>, NetdevError> {
    const OP: &str = "RTM_GETROUTE (dump)";
    validate_ifname(ifname)?;
    in_netns(ns, || {
        let mut sock = NlSocket::open(0)?;
        let index = ifindex(&mut sock, OP, ifname)?;
        let mut out = Vec::new();
        let req = RouteNetlinkMessage::GetRoute(RouteMessage::default());
        for m in sock.dump(OP, &req)? {
            let RouteNetlinkMessage::NewRoute(m) = m else {
                continue;
            };
            if let Some((r, Some(oif))) = parse_route(&m) {
                if oif == index {
                    out.push(r);
                }
            }
        }
        Ok(out)
    })?
}
