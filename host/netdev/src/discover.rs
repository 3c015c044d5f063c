//! Discovery of the network devices of the current network namespace.
//!
//! Links and addresses come from rtnetlink; channel counts from ethtool netlink; driver, bus
//! address and speed from the ethtool ioctl; the NUMA node from `/sys/bus/pci/devices/<addr>/numa_node`.
//!
//! Why not `/sys/class/net/<name>/…`: sysfs shows the devices of the network namespace that
//! *mounted* it, not those of the calling thread, so it lies when this module runs inside
//! [`in_netns`](crate::netns::in_netns). Everything here is looked up through sockets of the
//! calling thread's namespace instead; only the PCI device directory, which belongs to no
//! network namespace, is read from sysfs.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, NlasIterator,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage, State};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ethtool;
use crate::nl::NlSocket;
use crate::{LinkState, NetDev, NetdevError};

/// `RTM_NEWNEXTHOP` / `RTM_GETNEXTHOP` and the `NHA_*` attributes read here
/// (`include/uapi/linux/nexthop.h`): netlink-packet-route has no nexthop-object messages, so
/// [`NexthopMsg`] carries them raw.
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_GETNEXTHOP: u16 = 106;
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_OIF: u16 = 5;

/// What one `RTM_NEWLINK` message says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkMsg {
    pub ifindex: u32,
    pub name: String,
    pub admin_up: bool,
    pub state: LinkState,
    pub mtu: u32,
    pub mac: Option<String>,
    pub num_rx_queues: u32,
    pub num_tx_queues: u32,
}

impl LinkMsg {
    pub(crate) fn admin_up(&self) -> bool {
        self.admin_up
    }
}

/// Maps `IFLA_OPERSTATE` (RFC 2863 `IF_OPER_*`) to [`LinkState`].
pub(crate) fn link_state(operstate: &State) -> LinkState {
    match operstate {
        State::Up => LinkState::Up,
        State::Down => LinkState::Down,
        _ => LinkState::Other,
    }
}

/// Formats a hardware address as lower-case colon-separated hex; `None` for absent or all-zero.
pub(crate) fn format_mac(b: &[u8]) -> Option<String> {
    if b.is_empty() || b.iter().all(|&x| x == 0) {
        return None;
    }
    Some(
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// What this crate needs of an `RTM_NEWLINK`/`RTM_DELLINK` message.
pub(crate) fn parse_link(msg: &LinkMessage) -> Result<LinkMsg, String> {
    let mut link = LinkMsg {
        ifindex: msg.header.index,
        name: String::new(),
        admin_up: msg.header.flags.contains(LinkFlags::Up),
        state: LinkState::Other,
        mtu: 0,
        mac: None,
        num_rx_queues: 1,
        num_tx_queues: 1,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Address(a) => link.mac = format_mac(a),
            LinkAttribute::OperState(s) => link.state = link_state(s),
            LinkAttribute::NumRxQueues(n) => link.num_rx_queues = *n,
            LinkAttribute::NumTxQueues(n) => link.num_tx_queues = *n,
            _ => {}
        }
    }
    if link.name.is_empty() {
        return Err(format!("link {} has no IFLA_IFNAME", link.ifindex));
    }
    Ok(link)
}

/// `(ifindex, address)` of an `RTM_NEWADDR` message; `None` when it has no IP address.
pub(crate) fn parse_addr(msg: &AddressMessage) -> Option<(u32, IpAddr)> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    let find = |local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let ip = find(true).or_else(|| find(false))?;
    Some((msg.header.index, ip))
}

/// Where a default route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DefaultRoute {
    pub oifs: Vec<u32>,
    pub nexthop_ids: Vec<u32>,
}

/// True for an IPv4 or IPv6 family.
pub(crate) fn is_ip_family(f: AddressFamily) -> bool {
    matches!(f, AddressFamily::Inet | AddressFamily::Inet6)
}

/// Where an `RTM_NEWROUTE` sends packets; `None` unless it is an IPv4/IPv6 unicast default route.
pub(crate) fn parse_default_route(msg: &RouteMessage) -> Option<DefaultRoute> {
    let h = &msg.header;
    if !is_ip_family(h.address_family)
        || h.destination_prefix_length != 0
        || h.kind != RouteType::Unicast
    {
        return None;
    }
    let mut r = DefaultRoute::default();
    for a in &msg.attributes {
        match a {
            RouteAttribute::Oif(i) => r.oifs.push(*i),
            RouteAttribute::NhId(id) => r.nexthop_ids.push(*id),
            RouteAttribute::MultiPath(hops) => {
                r.oifs.extend(hops.iter().map(|h| h.interface_index))
            }
            _ => {}
        }
    }
    Some(r)
}

/// A raw nexthop-object message (`struct nhmsg` + attributes): netlink-packet-route has no
/// `RTM_*NEXTHOP` types, so the request is built and the reply read here.
#[derive(Debug, Clone, Default)]
struct NexthopMsg {
    /// The payload after the netlink header (empty for the dump request).
    payload: Vec<u8>,
}

impl NetlinkSerializable for NexthopMsg {
    fn message_type(&self) -> u16 {
        RTM_GETNEXTHOP
    }
    fn buffer_len(&self) -> usize {
        // struct nhmsg { u8 family, scope, protocol, resvd; u32 flags; }, all zero: any nexthop.
        8
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..8].fill(0);
    }
}

impl NetlinkDeserializable for NexthopMsg {
    type Error = DecodeError;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, Self::Error> {
        if header.message_type != RTM_NEWNEXTHOP {
            return Err(format!("unexpected message type {}", header.message_type).into());
        }
        Ok(NexthopMsg {
            payload: payload.to_vec(),
        })
    }
}

fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// Decodes an `RTM_NEWNEXTHOP` payload into `(id, oif, group member ids)`.
fn parse_nexthop(payload: &[u8]) -> Result<(u32, Option<u32>, Vec<u32>), String> {
    let mut id = 0;
    let mut oif = None;
    let mut group = Vec::new();
    for nla in NlasIterator::new(payload.get(8..).ok_or("short nhmsg")?) {
        let nla = nla.map_err(|e| e.to_string())?;
        let p = nla.value();
        match nla.kind() {
            NHA_ID => id = u32_of(p).unwrap_or(0),
            NHA_OIF => oif = u32_of(p),
            // struct nexthop_grp { u32 id; u8 weight; u8 resvd1; u16 resvd2; }
            NHA_GROUP => group.extend(p.chunks_exact(8).filter_map(u32_of)),
            _ => {}
        }
    }
    Ok((id, oif, group))
}

/// An `RTM_GETLINK` without statistics (they are large and unused here).
fn get_link_message(name: Option<&str>) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    if let Some(n) = name {
        m.attributes.push(LinkAttribute::IfName(n.to_owned()));
    }
    m.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(m)
}

fn malformed(op: &'static str) -> impl Fn(String) -> NetdevError {
    move |detail| NetdevError::Malformed { op, detail }
}

/// Every link of the socket's namespace. Blocks on the socket.
pub(crate) fn dump_links(sock: &mut NlSocket) -> Result<Vec<LinkMsg>, NetdevError> {
    const OP: &str = "RTM_GETLINK (dump)";
    sock.dump(OP, &get_link_message(None))?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(parse_link(l).map_err(malformed(OP))),
            _ => None,
        })
        .collect()
}

/// One link by name; `Ok(None)` when there is none (`ENODEV`). Blocks on the socket.
pub(crate) fn link_by_name(
    sock: &mut NlSocket,
    name: &str,
) -> Result<Option<LinkMsg>, NetdevError> {
    const OP: &str = "RTM_GETLINK";
    ethtool::validate_ifname(name)?;
    match sock.request_one(OP, get_link_message(Some(name))) {
        Ok(RouteNetlinkMessage::NewLink(l)) => parse_link(&l).map(Some).map_err(malformed(OP)),
        Ok(other) => Err(malformed(OP)(format!("unexpected answer {other:?}"))),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every IP address of the socket's namespace by ifindex. Blocks on the socket.
fn dump_addrs(sock: &mut NlSocket) -> Result<HashMap<u32, Vec<IpAddr>>, NetdevError> {
    const OP: &str = "RTM_GETADDR (dump)";
    let req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
    let mut out: HashMap<u32, Vec<IpAddr>> = HashMap::new();
    for m in sock.dump(OP, &req)? {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            if let Some((index, ip)) = parse_addr(&a) {
                out.entry(index).or_default().push(ip);
            }
        }
    }
    Ok(out)
}

/// Accepts `DDDD:BB:DD.F` (domain may be longer than 4 hex digits), lower- or upper-case.
pub(crate) fn is_pci_address(s: &str) -> bool {
    let Some((dbd, func)) = s.rsplit_once('.') else {
        return false;
    };
    let parts: Vec<&str> = dbd.split(':').collect();
    let hex = |p: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
    };
    parts.len() == 3
        && hex(parts[0], 4..=8)
        && hex(parts[1], 2..=2)
        && hex(parts[2], 2..=2)
        && func.len() == 1
        && matches!(func.as_bytes()[0], b'0'..=b'7')
}

/// Parses a sysfs `numa_node` value; `-1` (platform does not say) becomes `None`.
pub(crate) fn parse_numa_node(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|n| *n >= 0)
}

fn read_sysfs(path: &Path) -> Result<Option<String>, NetdevError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NetdevError::Sysfs {
            path: path.to_owned(),
            source,
        }),
    }
}

fn pci_numa_node(pci: &str) -> Option<i64> {
    let path = PathBuf::from(format!("/sys/bus/pci/devices/{pci}/numa_node"));
    match read_sysfs(&path) {
        Ok(s) => s.as_deref().and_then(parse_numa_node),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read NUMA node");
            None
        }
    }
}

/// Logs an ethtool failure that only costs a [`NetDev`] field. `EOPNOTSUPP` and a link that
/// vanished meanwhile are expected and logged at debug level.
fn optional<T>(name: &str, r: Result<T, NetdevError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.is_not_supported() || e.is_no_such_link() => {
            tracing::debug!(ifname = name, error = %e, "device detail not available");
            None
        }
        Err(e) => {
            tracing::warn!(ifname = name, error = %e, "device detail not available");
            None
        }
    }
}

fn enrich(link: LinkMsg, addresses: Vec<IpAddr>) -> NetDev {
    let name = link.name.as_str();
    let drv = optional(name, ethtool::driver_info(name));
    let pci = drv
        .as_ref()
        .map(|d| d.bus_info.to_ascii_lowercase())
        .filter(|b| is_pci_address(b) && Path::new("/sys/bus/pci/devices").join(b).exists());
    let numa_node = pci.as_deref().and_then(pci_numa_node);
    let speed_mbps = optional(name, ethtool::speed_mbps(name)).flatten();
    // Usable queues are the channels in use; the netlink numbers are what was allocated.
    let ch = optional(name, ethtool::channels(name));
    let rx_queues = ch
        .map(|c| c.rx_queues())
        .filter(|n| *n > 0)
        .unwrap_or(link.num_rx_queues);
    let tx_queues = ch
        .map(|c| c.tx_queues())
        .filter(|n| *n > 0)
        .unwrap_or(link.num_tx_queues);
    NetDev {
        admin_up: link.admin_up(),
        name: link.name,
        ifindex: link.ifindex,
        driver: drv.map(|d| d.driver).filter(|d| !d.is_empty()),
        pci,
        mac: link.mac,
        numa_node,
        rx_queues,
        tx_queues,
        speed_mbps,
        addresses,
        state: link.state,
        mtu: link.mtu,
    }
}

/// Every network device of the calling thread's network namespace, sorted by ifindex.
///
/// `rx_queues`/`tx_queues` are the channels in use (`ethtool -l`) when the driver reports
/// them, else the queues the device was created with. Details that ethtool or sysfs cannot
/// give (`lo` has no driver info) are `None`; only netlink failures are errors.
///
/// # Errors
/// A netlink socket cannot be opened or a dump fails.
pub fn list() -> Result<Vec<NetDev>, NetdevError> {
    let mut sock = NlSocket::open(0)?;
    let links = dump_links(&mut sock)?;
    let mut addrs = dump_addrs(&mut sock)?;
    let mut out: Vec<NetDev> = links
        .into_iter()
        .map(|l| {
            let a = addrs.remove(&l.ifindex).unwrap_or_default();
            enrich(l, a)
        })
        .collect();
    out.sort_by_key(|d| d.ifindex);
    Ok(out)
}

/// The network device called `name` in the calling thread's network namespace, or `None`.
///
/// # Errors
/// [`NetdevError::InvalidName`] for a name Linux cannot have; netlink failures.
pub fn get(name: &str) -> Result<Option<NetDev>, NetdevError> {
    let mut sock = NlSocket::open(0)?;
    let Some(link) = link_by_name(&mut sock, name)? else {
        return Ok(None);
    };
    let addrs = dump_addrs(&mut sock)?
        .remove(&link.ifindex)
        .unwrap_or_default();
    Ok(Some(enrich(link, addrs)))
}

/// Names of the devices that carry an IPv4 or IPv6 default route (any routing table),
/// sorted and without duplicates. The daemon never hands these out.
///
/// Multipath routes count every path's device; routes through nexthop objects
/// (`ip route add default nhid N`) are resolved, groups included.
///
/// Unlike a plain `Vec`, this returns a `Result`: a failed lookup must not look like
/// "no default route", or the node's uplink could be handed to a pod.
///
/// # Errors
/// Netlink failures.
pub fn default_route_interfaces() -> Result<Vec<String>, NetdevError> {
    const OP: &str = "RTM_GETROUTE (dump)";
    let mut sock = NlSocket::open(0)?;
    let mut oifs = BTreeSet::new();
    let mut nh_ids = Vec::new();
    let req = RouteNetlinkMessage::GetRoute(RouteMessage::default());
    for m in sock.dump(OP, &req)? {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            if let Some(r) = parse_default_route(&r) {
                oifs.extend(r.oifs);
                nh_ids.extend(r.nexthop_ids);
            }
        }
    }
    if !nh_ids.is_empty() {
        const NH_OP: &str = "RTM_GETNEXTHOP (dump)";
        let mut table = HashMap::new();
        for m in sock.dump(NH_OP, &NexthopMsg::default())? {
            let (id, oif, group) = parse_nexthop(&m.payload).map_err(malformed(NH_OP))?;
            table.insert(id, (oif, group));
        }
        // Groups hold plain nexthops (the kernel does not nest groups); one level suffices.
        for id in nh_ids {
            let Some((oif, group)) = table.get(&id) else {
                continue;
            };
            oifs.extend(*oif);
            for member in group {
                if let Some((Some(o), _)) = table.get(member) {
                    oifs.insert(*o);
                }
            }
        }
    }
    let names: HashMap<u32, String> = dump_links(&mut sock)?
        .into_iter()
        .map(|l| (l.ifindex, l.name))
        .collect();
    let mut out: Vec<String> = oifs
        .into_iter()
        .filter_map(|i| names.get(&i).cloned())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const IFF_UP: u32 = libc::IFF_UP as u32;
    const RTM_NEWLINK: u16 = 16;
    const RTM_NEWADDR: u16 = 20;
    const RTM_NEWROUTE: u16 = 24;
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_OPERSTATE: u16 = 16;
    const IFLA_NUM_TX_QUEUES: u16 = 31;
    const IFLA_NUM_RX_QUEUES: u16 = 32;
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;
    const RTA_OIF: u16 = 4;
    const RTA_MULTIPATH: u16 = 9;
    const RTA_NH_ID: u16 = 30;
    const RTN_UNICAST: u8 = 1;

    /// Decodes a kernel-layout payload through netlink-packet-route, as a reply would be.
    fn decode(ty: u16, payload: &[u8]) -> RouteNetlinkMessage {
        let mut h = NetlinkHeader::default();
        h.message_type = ty;
        RouteNetlinkMessage::deserialize(&h, payload).unwrap()
    }

    fn link(p: &[u8]) -> LinkMessage {
        match decode(RTM_NEWLINK, p) {
            RouteNetlinkMessage::NewLink(l) => l,
            other => panic!("{other:?}"),
        }
    }

    fn addr_of(p: &[u8]) -> Option<(u32, IpAddr)> {
        match decode(RTM_NEWADDR, p) {
            RouteNetlinkMessage::NewAddress(a) => parse_addr(&a),
            other => panic!("{other:?}"),
        }
    }

    fn default_route(p: &[u8]) -> Option<DefaultRoute> {
        match decode(RTM_NEWROUTE, p) {
            RouteNetlinkMessage::NewRoute(r) => parse_default_route(&r),
            other => panic!("{other:?}"),
        }
    }

    fn ifinfomsg(index: i32, flags: u32) -> Vec<u8> {
        let mut h = vec![0u8; 16];
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        h[8..12].copy_from_slice(&flags.to_ne_bytes());
        h
    }

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    #[test]
    fn link_message_is_decoded() {
        let mut p = ifinfomsg(7, IFF_UP);
        p.extend(attr(IFLA_IFNAME, b"veth0\0"));
        p.extend(attr(IFLA_MTU, &1500u32.to_ne_bytes()));
        p.extend(attr(IFLA_ADDRESS, &[0x02, 0, 0, 0xab, 0xcd, 0xef]));
        p.extend(attr(IFLA_OPERSTATE, &[6]));
        p.extend(attr(IFLA_NUM_RX_QUEUES, &4u32.to_ne_bytes()));
        p.extend(attr(IFLA_NUM_TX_QUEUES, &2u32.to_ne_bytes()));
        let l = parse_link(&link(&p)).unwrap();
        assert_eq!(l.ifindex, 7);
        assert_eq!(l.name, "veth0");
        assert!(l.admin_up());
        assert_eq!(l.state, LinkState::Up);
        assert_eq!(l.mtu, 1500);
        assert_eq!(l.mac.as_deref(), Some("02:00:00:ab:cd:ef"));
        assert_eq!((l.num_rx_queues, l.num_tx_queues), (4, 2));
    }

    #[test]
    fn link_without_name_or_header_is_rejected() {
        assert!(parse_link(&link(&ifinfomsg(3, 0))).is_err());
    }

    #[test]
    fn operstates_map() {
        assert_eq!(link_state(&State::Up), LinkState::Up);
        assert_eq!(link_state(&State::Down), LinkState::Down);
        for s in [0u8, 1, 3, 4, 5, 200] {
            assert_eq!(link_state(&State::from(s)), LinkState::Other);
        }
    }

    #[test]
    fn macs_format_and_zero_is_none() {
        assert_eq!(format_mac(&[0; 6]), None);
        assert_eq!(format_mac(&[]), None);
        assert_eq!(
            format_mac(&[0xAA, 1, 2, 3, 4, 0xff]).as_deref(),
            Some("aa:01:02:03:04:ff")
        );
    }

    #[test]
    fn addresses_prefer_local() {
        let mut p = vec![libc::AF_INET as u8, 24, 0, 0];
        p.extend_from_slice(&5u32.to_ne_bytes());
        p.extend(attr(IFA_ADDRESS, &[10, 0, 0, 2]));
        p.extend(attr(IFA_LOCAL, &[10, 0, 0, 1]));
        assert_eq!(
            addr_of(&p),
            Some((5, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))))
        );
        let mut p6 = vec![libc::AF_INET6 as u8, 64, 0, 0];
        p6.extend_from_slice(&9u32.to_ne_bytes());
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        p6.extend(attr(IFA_ADDRESS, &v6.octets()));
        assert_eq!(addr_of(&p6), Some((9, IpAddr::V6(v6))));
    }

    fn rtmsg(family: u8, dst_len: u8, rtype: u8) -> Vec<u8> {
        vec![family, dst_len, 0, 0, 254, 3, 0, rtype, 0, 0, 0, 0]
    }

    #[test]
    fn default_routes_single_multipath_and_nexthop() {
        let mut p = rtmsg(libc::AF_INET as u8, 0, RTN_UNICAST);
        p.extend(attr(RTA_OIF, &3u32.to_ne_bytes()));
        assert_eq!(
            default_route(&p),
            Some(DefaultRoute {
                oifs: vec![3],
                nexthop_ids: vec![]
            })
        );

        let mut mp = Vec::new();
        for idx in [4i32, 5] {
            mp.extend_from_slice(&8u16.to_ne_bytes());
            mp.extend_from_slice(&[0, 0]);
            mp.extend_from_slice(&idx.to_ne_bytes());
        }
        let mut p = rtmsg(libc::AF_INET6 as u8, 0, RTN_UNICAST);
        p.extend(attr(RTA_MULTIPATH, &mp));
        p.extend(attr(RTA_NH_ID, &77u32.to_ne_bytes()));
        assert_eq!(
            default_route(&p),
            Some(DefaultRoute {
                oifs: vec![4, 5],
                nexthop_ids: vec![77]
            })
        );

        // not default, not unicast, not IP
        let mut p = rtmsg(libc::AF_INET as u8, 24, RTN_UNICAST);
        p.extend(attr(RTA_OIF, &3u32.to_ne_bytes()));
        assert_eq!(default_route(&p), None);
        assert_eq!(default_route(&rtmsg(libc::AF_INET as u8, 0, 2)), None);
        assert_eq!(default_route(&rtmsg(28, 0, 1)), None);
    }

    #[test]
    fn nexthop_group_is_decoded() {
        let mut p = vec![0u8; 8];
        p.extend(attr(NHA_ID, &10u32.to_ne_bytes()));
        let mut grp = Vec::new();
        for id in [1u32, 2] {
            grp.extend_from_slice(&id.to_ne_bytes());
            grp.extend_from_slice(&[1, 0, 0, 0]);
        }
        p.extend(attr(NHA_GROUP, &grp));
        assert_eq!(parse_nexthop(&p).unwrap(), (10, None, vec![1, 2]));
        let mut p = vec![0u8; 8];
        p.extend(attr(NHA_ID, &1u32.to_ne_bytes()));
        p.extend(attr(NHA_OIF, &6u32.to_ne_bytes()));
        assert_eq!(parse_nexthop(&p).unwrap(), (1, Some(6), vec![]));
    }

    #[test]
    fn pci_addresses_and_numa() {
        assert!(is_pci_address("0000:18:00.0"));
        assert!(is_pci_address("10000:af:1f.7"));
        for bad in [
            "",
            "virtio0",
            "0000:18:00",
            "0000:18:00.8",
            "00:18:00.0",
            "0000:g8:00.0",
        ] {
            assert!(!is_pci_address(bad), "{bad}");
        }
        assert_eq!(parse_numa_node("-1\n"), None);
        assert_eq!(parse_numa_node("1\n"), Some(1));
        assert_eq!(parse_numa_node("x"), None);
    }
}
