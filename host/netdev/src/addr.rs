//! Addresses and routes on a link (what CNI ADD applies from an IPAM
//! result): `RTM_NEWADDR` and `RTM_NEWROUTE`, replacing what exists so a
//! retried ADD converges. Removing them is never needed here: moving a
//! link to another netns drops its addresses and routes.
//!
//! Layouts: `struct ifaddrmsg` and `struct rtmsg` of
//! `include/uapi/linux/{if_addr,rtnetlink}.h`.

use std::net::IpAddr;

use crate::ethtool::validate_ifname;
use crate::netns::{in_netns, NetnsHandle};
use crate::nl::{self, NlSocket, Request};
use crate::NetdevError;

const IFA_F_PERMANENT: u8 = 0x80;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ifindex(sock: &mut NlSocket, op: &'static str, ifname: &str) -> Result<u32, NetdevError> {
    crate::discover::link_by_name(sock, ifname)?
        .map(|l| l.ifindex)
        .ok_or_else(|| NetdevError::NoSuchLink {
            op,
            name: ifname.to_string(),
        })
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
        let mut header = vec![family(&ip), prefix, IFA_F_PERMANENT, RT_SCOPE_UNIVERSE];
        header.extend_from_slice(&index.to_ne_bytes());
        let req = Request::new(nl::RTM_NEWADDR, false, &header)
            .create_or_replace()
            .attr(nl::IFA_LOCAL, &octets(&ip))
            .attr(nl::IFA_ADDRESS, &octets(&ip));
        sock.request_ack("RTM_NEWADDR", req)
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
        let scope = if gateway.is_some() {
            RT_SCOPE_UNIVERSE
        } else {
            RT_SCOPE_LINK
        };
        let header = [
            family(&dst),
            prefix,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            scope,
            nl::RTN_UNICAST,
            0, // rtm_flags (u32)
            0,
            0,
            0,
        ];
        let mut req = Request::new(nl::RTM_NEWROUTE, false, &header).create_or_replace();
        if prefix > 0 {
            req = req.attr(RTA_DST, &octets(&dst));
        }
        if let Some(gw) = gateway {
            req = req.attr(RTA_GATEWAY, &octets(&gw));
        }
        let req = req.attr_u32(nl::RTA_OIF, index);
        sock.request_ack("RTM_NEWROUTE", req)
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

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    if i32::from(family) == libc::AF_INET {
        let o: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(IpAddr::from(o))
    } else {
        let o: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(IpAddr::from(o))
    }
}

/// One `RTM_NEWROUTE` payload: the route, and its output link.
fn parse_route(payload: &[u8]) -> Result<Option<(Route, Option<u32>)>, String> {
    let header = payload.get(..12).ok_or("short rtmsg")?;
    let (family, prefix, table) = (header[0], header[1], header[4]);
    let ip_family = i32::from(family) == libc::AF_INET || i32::from(family) == libc::AF_INET6;
    if !ip_family || table != RT_TABLE_MAIN || header[7] != nl::RTN_UNICAST {
        return Ok(None);
    }
    let unspecified = if i32::from(family) == libc::AF_INET {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u8; 16])
    };
    let mut route = Route {
        dst: unspecified,
        prefix,
        gateway: None,
    };
    let mut oif = None;
    for (ty, p) in nl::parse_attrs(&payload[12..])? {
        match ty {
            RTA_DST => route.dst = ip_from(family, p).ok_or("short RTA_DST")?,
            RTA_GATEWAY => route.gateway = ip_from(family, p),
            nl::RTA_OIF => oif = nl::u32_at(p, 0),
            _ => {}
        }
    }
    Ok(Some((route, oif)))
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
        for m in sock.dump(OP, &Request::new(nl::RTM_GETROUTE, true, &[0u8; 12]))? {
            if m.ty != nl::RTM_NEWROUTE {
                continue;
            }
            let parsed = parse_route(&m.payload)
                .map_err(|detail| NetdevError::Malformed { op: OP, detail })?;
            if let Some((r, Some(oif))) = parsed {
                if oif == index {
                    out.push(r);
                }
            }
        }
        Ok(out)
    })?
}
