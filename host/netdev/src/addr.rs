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
