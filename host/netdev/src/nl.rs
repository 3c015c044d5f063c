//! A minimal synchronous rtnetlink client: request encoding, reply parsing and one socket type.
//!
//! Only what this crate needs (links, addresses, routes) is here. Message layouts follow
//! `include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h`; netlink integers are in host
//! byte order.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::NetdevError;

pub(crate) const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Strips `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` from an attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_SETLINK: u16 = 19;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_GETROUTE: u16 = 26;

pub(crate) const IFLA_ADDRESS: u16 = 1;
pub(crate) const IFLA_IFNAME: u16 = 3;
pub(crate) const IFLA_MTU: u16 = 4;
pub(crate) const IFLA_OPERSTATE: u16 = 16;
pub(crate) const IFLA_NET_NS_FD: u16 = 28;
pub(crate) const IFLA_NUM_TX_QUEUES: u16 = 31;
pub(crate) const IFLA_NUM_RX_QUEUES: u16 = 32;

pub(crate) const IFA_ADDRESS: u16 = 1;
pub(crate) const IFA_LOCAL: u16 = 2;

pub(crate) const RTA_OIF: u16 = 4;
pub(crate) const RTA_MULTIPATH: u16 = 9;
pub(crate) const RTA_NH_ID: u16 = 30;
pub(crate) const RTN_UNICAST: u8 = 1;

/// Multicast group bitmask for link notifications (`RTMGRP_LINK`, i.e. `RTNLGRP_LINK`).
pub(crate) const RTMGRP_LINK: u32 = 1;

/// How long a request waits for the kernel's answer before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Large enough for any single rtnetlink datagram the kernel sends (dumps use at most 32 KiB).
const RECV_BUF: usize = 64 * 1024;
/// A dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is retried this many times.
const DUMP_RETRIES: usize = 3;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub(crate) fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// One netlink message borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// One netlink message copied out of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedMessage {
    pub ty: u16,
    pub payload: Vec<u8>,
}

/// Splits a datagram into netlink messages.
pub(crate) fn parse_messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, String> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(format!(
                "message length {len} outside [{NLMSG_HDRLEN}, {}]",
                buf.len()
            ));
        }
        out.push(Message {
            ty: u16_at(buf, 4).unwrap_or(0),
            flags: u16_at(buf, 6).unwrap_or(0),
            seq: u32_at(buf, 8).unwrap_or(0),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// Splits a run of `struct rtattr`/`struct nlattr` into `(type, payload)` pairs.
///
/// The type has the nested and byte-order flags stripped. Trailing bytes shorter than an
/// attribute header are ignored, as the kernel's own parser does.
pub(crate) fn parse_attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16_at(buf, 0).unwrap_or(0) as usize;
        let ty = u16_at(buf, 2).unwrap_or(0) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(format!(
                "attribute {ty} length {len} outside [4, {}]",
                buf.len()
            ));
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// A NUL-terminated (or not) string attribute.
pub(crate) fn attr_string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// The fixed header of link messages (`struct ifinfomsg`).
pub(crate) fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// Decoded `struct ifinfomsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IfInfo {
    pub index: u32,
    pub flags: u32,
}

pub(crate) fn parse_ifinfomsg(payload: &[u8]) -> Option<(IfInfo, &[u8])> {
    let index = i32_at(payload, 4)?;
    let flags = u32_at(payload, 8)?;
    Some((
        IfInfo {
            index: u32::try_from(index).ok()?,
            flags,
        },
        payload.get(16..)?,
    ))
}

/// A request under construction.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    buf: Vec<u8>,
}

impl Request {
    /// A request of type `ty` whose fixed header is `header`. `dump` asks for every object.
    pub(crate) fn new(ty: u16, dump: bool, header: &[u8]) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(header);
        buf.resize(align4(buf.len()), 0);
        Request { buf }
    }

    /// Appends an attribute.
    pub(crate) fn attr(mut self, ty: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        // Attributes this crate sends are a few bytes; a name is at most 16.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr_u32(self, ty: u16, v: u32) -> Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A string attribute, NUL-terminated as the kernel expects for names.
    pub(crate) fn attr_str(self, ty: u16, s: &str) -> Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    /// Create the object, or replace one that exists (`NLM_F_CREATE | NLM_F_REPLACE`).
    pub(crate) fn create_or_replace(mut self) -> Self {
        self.add_flags(NLM_F_CREATE | NLM_F_REPLACE);
        self
    }

    fn add_flags(&mut self, flags: u16) {
        let cur = u16_at(&self.buf, 6).unwrap_or(0) | flags;
        self.buf[6..8].copy_from_slice(&cur.to_ne_bytes());
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// Decodes the payload of an `NLMSG_ERROR` message: `(errno (positive, 0 = ack), ext-ack message)`.
pub(crate) fn parse_error(flags: u16, payload: &[u8]) -> Option<(i32, Option<String>)> {
    let err = i32_at(payload, 0)?;
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let orig_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(payload, 4).map_or(NLMSG_HDRLEN, |l| l as usize)
        };
        if let Some(tlvs) = payload.get(4 + align4(orig_len)..) {
            if let Ok(attrs) = parse_attrs(tlvs) {
                message = attrs
                    .iter()
                    .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
                    .map(|(_, p)| attr_string(p));
            }
        }
    }
    Some((-err, message))
}

fn netlink_error(op: &'static str, errno: i32, message: Option<String>) -> NetdevError {
    NetdevError::Netlink {
        op,
        source: io::Error::from_raw_os_error(errno),
        message,
    }
}

/// Turns an `ENODEV` netlink error into [`NetdevError::NoSuchLink`].
pub(crate) fn enodev_to_no_such_link(err: NetdevError, name: &str) -> NetdevError {
    match err {
        NetdevError::Netlink { op, ref source, .. }
            if source.raw_os_error() == Some(libc::ENODEV) =>
        {
            NetdevError::NoSuchLink {
                op,
                name: name.to_owned(),
            }
        }
        other => other,
    }
}

/// One received message, copied with its header fields.
struct Reply {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: Vec<u8>,
}

/// A `NETLINK_ROUTE` socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub(crate) struct NlSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
    call: &'static str,
) -> Result<(), NetdevError> {
    // SAFETY: fd is a valid open socket; the option value is a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(NetdevError::syscall(call));
    }
    Ok(())
}

impl NlSocket {
    /// Opens a socket subscribed to the multicast `groups` bitmask (0 for a request socket).
    pub(crate) fn open(groups: u32) -> Result<Self, NetdevError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(NetdevError::syscall("socket(AF_NETLINK, NETLINK_ROUTE)"));
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Extended acks give the kernel's reason in errors; capped acks keep them short.
        // Both are optional: older kernels lack them and we just lose the message.
        let _ = setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, NETLINK_EXT_ACK, 1, "");
        let _ = setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, NETLINK_CAP_ACK, 1, "");
        if groups != 0 {
            // Notifications arrive in bursts; a larger buffer makes ENOBUFS (lost events) rarer.
            let _ = setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1 << 20, "");
        } else {
            let tv = libc::timeval {
                tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
                tv_usec: 0,
            };
            // SAFETY: fd is valid; tv outlives the call and has the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(NetdevError::syscall("setsockopt(SO_RCVTIMEO)"));
            }
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: addr is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(NetdevError::syscall("bind(AF_NETLINK)"));
        }
        Ok(NlSocket {
            fd,
            seq: 1,
            buf: vec![0u8; RECV_BUF],
        })
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn send(&mut self, req: &mut Request) -> Result<u32, NetdevError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = req.finish(seq);
        // SAFETY: sockaddr_nl is plain data; all-zero (pid 0) addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: bytes and kernel are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(NetdevError::syscall("sendto(AF_NETLINK)"));
        }
        Ok(seq)
    }

    /// Receives one datagram. `dontwait` makes it non-blocking (`EAGAIN` when empty).
    pub(crate) fn recv(&mut self, dontwait: bool) -> io::Result<&[u8]> {
        let flags = libc::MSG_TRUNC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: self.buf is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    flags,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "netlink datagram of {n} bytes truncated to {}",
                        self.buf.len()
                    ),
                ));
            }
            return Ok(&self.buf[..n]);
        }
    }

    fn recv_for(&mut self, op: &'static str) -> Result<Vec<Reply>, NetdevError> {
        let data = self.recv(false).map_err(|source| NetdevError::Syscall {
            call: "recv(AF_NETLINK)",
            source,
        })?;
        let msgs = parse_messages(data).map_err(|detail| NetdevError::Malformed { op, detail })?;
        Ok(msgs
            .into_iter()
            .map(|m| Reply {
                ty: m.ty,
                flags: m.flags,
                seq: m.seq,
                payload: m.payload.to_vec(),
            })
            .collect())
    }

    /// Sends a dump request and collects every reply message (without `NLMSG_DONE`).
    pub(crate) fn dump(
        &mut self,
        op: &'static str,
        req: &Request,
    ) -> Result<Vec<OwnedMessage>, NetdevError> {
        for attempt in 0..=DUMP_RETRIES {
            let (msgs, interrupted) = self.dump_once(op, req.clone())?;
            if !interrupted {
                return Ok(msgs);
            }
            if attempt == DUMP_RETRIES {
                tracing::warn!(
                    op,
                    "netlink dump kept being interrupted; using the last one"
                );
                return Ok(msgs);
            }
            tracing::debug!(
                op,
                "netlink dump interrupted by a concurrent change; retrying"
            );
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn dump_once(
        &mut self,
        op: &'static str,
        mut req: Request,
    ) -> Result<(Vec<OwnedMessage>, bool), NetdevError> {
        let seq = self.send(&mut req)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for Reply {
                ty,
                flags,
                seq: mseq,
                payload,
            } in self.recv_for(op)?
            {
                if mseq != seq {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match ty {
                    NLMSG_DONE => {
                        // Since Linux 4.x the DONE message carries the dump's status.
                        if let Some(err) = i32_at(&payload, 0) {
                            if err < 0 {
                                return Err(netlink_error(op, -err, None));
                            }
                        }
                        return Ok((out, interrupted));
                    }
                    NLMSG_ERROR => {
                        let (errno, message) =
                            parse_error(flags, &payload).ok_or(NetdevError::Malformed {
                                op,
                                detail: "short NLMSG_ERROR".into(),
                            })?;
                        return Err(netlink_error(op, errno, message));
                    }
                    NLMSG_OVERRUN => {
                        return Err(NetdevError::Malformed {
                            op,
                            detail: "NLMSG_OVERRUN".into(),
                        })
                    }
                    _ => out.push(OwnedMessage { ty, payload }),
                }
            }
        }
    }

    /// Sends a request that changes something and waits for the kernel's ack.
    pub(crate) fn request_ack(
        &mut self,
        op: &'static str,
        mut req: Request,
    ) -> Result<(), NetdevError> {
        req.add_flags(NLM_F_ACK);
        let seq = self.send(&mut req)?;
        loop {
            for Reply {
                ty,
                flags,
                seq: mseq,
                payload,
            } in self.recv_for(op)?
            {
                if mseq != seq || ty != NLMSG_ERROR {
                    continue;
                }
                let (errno, message) =
                    parse_error(flags, &payload).ok_or(NetdevError::Malformed {
                        op,
                        detail: "short NLMSG_ERROR".into(),
                    })?;
                if errno == 0 {
                    return Ok(());
                }
                return Err(netlink_error(op, errno, message));
            }
        }
    }

    /// Sends a `GET` request for one object and returns the kernel's answer.
    pub(crate) fn request_one(
        &mut self,
        op: &'static str,
        mut req: Request,
    ) -> Result<OwnedMessage, NetdevError> {
        let seq = self.send(&mut req)?;
        loop {
            for Reply {
                ty,
                flags,
                seq: mseq,
                payload,
            } in self.recv_for(op)?
            {
                if mseq != seq {
                    continue;
                }
                if ty == NLMSG_ERROR {
                    let (errno, message) =
                        parse_error(flags, &payload).ok_or(NetdevError::Malformed {
                            op,
                            detail: "short NLMSG_ERROR".into(),
                        })?;
                    return Err(netlink_error(op, errno, message));
                }
                return Ok(OwnedMessage { ty, payload });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(align4(v.len()), 0);
        v
    }

    #[test]
    fn messages_split_with_padding() {
        let mut buf = msg(16, 2, 7, &[1, 2, 3]);
        buf.extend(msg(3, 2, 7, &[0, 0, 0, 0]));
        let m = parse_messages(&buf).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].ty, 16);
        assert_eq!(m[0].seq, 7);
        assert_eq!(m[0].payload, &[1, 2, 3]);
        assert_eq!(m[1].ty, NLMSG_DONE);
    }

    #[test]
    fn message_length_out_of_range_is_an_error() {
        let mut buf = msg(16, 0, 1, &[1, 2, 3, 4]);
        buf[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse_messages(&buf).is_err());
        buf[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse_messages(&buf).is_err());
    }

    #[test]
    fn request_roundtrips_through_parsers() {
        let mut req = Request::new(RTM_SETLINK, false, &ifinfomsg(0, 1, 1))
            .attr_str(IFLA_IFNAME, "veth0")
            .attr_u32(IFLA_MTU, 9000);
        let bytes = req.finish(42).to_vec();
        let m = parse_messages(&bytes).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ty, RTM_SETLINK);
        assert_eq!(m[0].flags, NLM_F_REQUEST);
        assert_eq!(m[0].seq, 42);
        let (info, rest) = parse_ifinfomsg(m[0].payload).unwrap();
        assert_eq!(info, IfInfo { index: 0, flags: 1 });
        let attrs = parse_attrs(rest).unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].0, IFLA_IFNAME);
        assert_eq!(attr_string(attrs[0].1), "veth0");
        assert_eq!(attrs[1], (IFLA_MTU, &9000u32.to_ne_bytes()[..]));
    }

    #[test]
    fn nested_flag_is_stripped_and_bad_lengths_rejected() {
        let mut b = Vec::new();
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&(0x8000u16 | 9).to_ne_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        let a = parse_attrs(&b).unwrap();
        assert_eq!(a, vec![(9, &[1u8, 2, 3, 4][..])]);
        b[0..2].copy_from_slice(&3u16.to_ne_bytes());
        assert!(parse_attrs(&b).is_err());
        b[0..2].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_attrs(&b).is_err());
    }

    #[test]
    fn error_with_extended_ack_message() {
        let mut p = Vec::new();
        p.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        // capped copy of the original header
        p.extend_from_slice(&[0u8; 16]);
        let text = b"Device not found\0";
        p.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(text);
        let (errno, msg) = parse_error(NLM_F_CAPPED | NLM_F_ACK_TLVS, &p).unwrap();
        assert_eq!(errno, libc::ENODEV);
        assert_eq!(msg.as_deref(), Some("Device not found"));
        let (errno, msg) = parse_error(0, &0i32.to_ne_bytes()).unwrap();
        assert_eq!((errno, msg), (0, None));
        assert!(parse_error(0, &[1, 2]).is_none());
    }

    #[test]
    fn enodev_maps_to_no_such_link() {
        let e = enodev_to_no_such_link(netlink_error("RTM_SETLINK", libc::ENODEV, None), "x");
        assert!(e.is_no_such_link());
        let e = enodev_to_no_such_link(netlink_error("RTM_SETLINK", libc::EPERM, None), "x");
        assert!(!e.is_no_such_link());
        assert_eq!(e.errno(), Some(libc::EPERM));
    }
}
