//! A synchronous netlink client on the rust-netlink crates: `netlink-sys` owns the socket,
//! `netlink-packet-core` frames requests and acks, `netlink-packet-route` encodes and decodes
//! link, address and route messages, `netlink-packet-generic` generic-netlink ones (the
//! family lookup here, ethtool's messages in [`crate::ethtool`]).
//!
//! What stays here is what those crates leave to their (async) callers: the blocking
//! request → ack / reply / dump loop with this crate's error type, retrying a dump the kernel
//! interrupted (`NLM_F_DUMP_INTR`), a receive timeout, and reading the kernel's extended-ack
//! message (`netlink-packet-core` keeps the tail of an error message as raw bytes).

use std::fmt::Debug;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, NlaBuffer, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_sys::protocols::{NETLINK_GENERIC, NETLINK_ROUTE};
use netlink_sys::{Socket, SocketAddr};

use crate::NetdevError;

pub(crate) use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};

/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute carrying the kernel's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

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

/// Splits a datagram into its netlink messages (each with its header), checking lengths.
pub(crate) fn split_datagram(mut buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = NetlinkBuffer::new_checked(buf)
            .map_err(|e| e.to_string())?
            .length() as usize;
        out.push(&buf[..len]);
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// Decodes one netlink message of `split_datagram`.
pub(crate) fn decode<I: NetlinkDeserializable>(
    op: &'static str,
    bytes: &[u8],
) -> Result<NetlinkMessage<I>, NetdevError> {
    NetlinkMessage::deserialize(bytes).map_err(|e| NetdevError::Malformed {
        op,
        detail: e.to_string(),
    })
}

/// The kernel's extended-ack text in the tail of an `NLMSG_ERROR` (after the errno).
fn ext_ack_message(flags: u16, tail: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let orig_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        NetlinkBuffer::new(tail).length() as usize
    };
    NlasIterator::new(tail.get(align4(orig_len)..)?)
        .filter_map(Result::ok)
        .find(|nla: &NlaBuffer<&[u8]>| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let v = nla.value();
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
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

/// What one reply message means to a waiting request.
enum Answer<I> {
    /// Not for this request (another sequence number) or nothing to act on.
    Skip,
    /// The kernel's ack (errno 0) or end of dump.
    Done,
    /// A message of the requested kind.
    Inner(I, u16),
}

/// Interprets one decoded reply to the request numbered `seq`.
fn answer<I>(op: &'static str, seq: u32, msg: NetlinkMessage<I>) -> Result<Answer<I>, NetdevError> {
    let (header, payload) = msg.into_parts();
    if header.sequence_number != seq {
        return Ok(Answer::Skip);
    }
    match payload {
        NetlinkPayload::InnerMessage(m) => Ok(Answer::Inner(m, header.flags)),
        NetlinkPayload::Done(d) if d.code < 0 => Err(netlink_error(op, -d.code, None)),
        NetlinkPayload::Done(_) => Ok(Answer::Done),
        NetlinkPayload::Error(e) if e.code.is_none() => Ok(Answer::Done),
        NetlinkPayload::Error(e) => Err(netlink_error(
            op,
            -e.raw_code(),
            ext_ack_message(header.flags, &e.header),
        )),
        NetlinkPayload::Overrun(_) => Err(NetdevError::Malformed {
            op,
            detail: "NLMSG_OVERRUN".into(),
        }),
        _ => Ok(Answer::Skip),
    }
}

/// A `NETLINK_ROUTE` socket in the network namespace of the thread that opened it.
/// Every call on it blocks the calling thread (at most [`REPLY_TIMEOUT`] per reply).
pub(crate) struct NlSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for NlSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NlSocket").field("seq", &self.seq).finish()
    }
}

fn syscall_err(call: &'static str) -> impl FnOnce(io::Error) -> NetdevError {
    move |source| NetdevError::Syscall { call, source }
}

impl NlSocket {
    /// Opens a `NETLINK_ROUTE` socket subscribed to the multicast `groups` bitmask (0 for a
    /// request socket).
    pub(crate) fn open(groups: u32) -> Result<Self, NetdevError> {
        let sock =
            Socket::new(NETLINK_ROUTE).map_err(syscall_err("socket(AF_NETLINK, NETLINK_ROUTE)"))?;
        Self::setup(sock, groups)
    }

    /// Opens a `NETLINK_GENERIC` request socket.
    pub(crate) fn generic() -> Result<Self, NetdevError> {
        let sock = Socket::new(NETLINK_GENERIC)
            .map_err(syscall_err("socket(AF_NETLINK, NETLINK_GENERIC)"))?;
        Self::setup(sock, 0)
    }

    fn setup(mut sock: Socket, groups: u32) -> Result<Self, NetdevError> {
        // Extended acks give the kernel's reason in errors; capped acks keep them short.
        // Both are optional: older kernels lack them and we just lose the message.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        if groups != 0 {
            // Notifications arrive in bursts; a larger buffer makes ENOBUFS (lost events) rarer.
            let _ = sock.set_rx_buf_sz(1usize << 20);
        } else {
            let tv = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as libc::time_t, 0);
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
                .map_err(|e| NetdevError::Syscall {
                    call: "setsockopt(SO_RCVTIMEO)",
                    source: io::Error::from(e),
                })?;
        }
        sock.bind(&SocketAddr::new(0, groups))
            .map_err(syscall_err("bind(AF_NETLINK)"))?;
        Ok(NlSocket {
            sock,
            seq: 1,
            buf: vec![0u8; RECV_BUF],
        })
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags`; returns its sequence number.
    fn send<I: NetlinkSerializable>(&mut self, msg: I, flags: u16) -> Result<u32, NetdevError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut bytes = vec![0u8; m.buffer_len()];
        m.serialize(&mut bytes);
        self.sock
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(syscall_err("sendto(AF_NETLINK)"))?;
        Ok(self.seq)
    }

    /// Receives one datagram; blocks up to the receive timeout unless `dontwait`
    /// (then `EAGAIN` when nothing is queued).
    pub(crate) fn recv(&mut self, dontwait: bool) -> io::Result<&[u8]> {
        let flags = libc::MSG_TRUNC | if dontwait { libc::MSG_DONTWAIT } else { 0 };
        loop {
            match self.sock.recv(&mut &mut self.buf[..], flags) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "netlink datagram of {n} bytes truncated to {}",
                            self.buf.len()
                        ),
                    ))
                }
                Ok(n) => return Ok(&self.buf[..n]),
            }
        }
    }

    /// Receives the next datagram and decodes the answers to request `seq` in it.
    fn recv_answers<I: NetlinkDeserializable>(
        &mut self,
        op: &'static str,
        seq: u32,
    ) -> Result<Vec<Answer<I>>, NetdevError> {
        let data = self.recv(false).map_err(syscall_err("recv(AF_NETLINK)"))?;
        let parts = split_datagram(data).map_err(|detail| NetdevError::Malformed { op, detail })?;
        parts
            .into_iter()
            .map(|bytes| answer(op, seq, decode(op, bytes)?))
            .collect()
    }

    /// Sends a request that changes something and blocks until the kernel's ack.
    pub(crate) fn request_ack<I>(
        &mut self,
        op: &'static str,
        msg: I,
        flags: u16,
    ) -> Result<(), NetdevError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let seq = self.send(msg, flags | NLM_F_ACK)?;
        loop {
            for a in self.recv_answers::<I>(op, seq)? {
                if let Answer::Done = a {
                    return Ok(());
                }
            }
        }
    }

    /// Sends a `GET` request for one object and blocks until the kernel's answer.
    pub(crate) fn request_one<I>(&mut self, op: &'static str, msg: I) -> Result<I, NetdevError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let seq = self.send(msg, 0)?;
        loop {
            for a in self.recv_answers::<I>(op, seq)? {
                match a {
                    Answer::Inner(m, _) => return Ok(m),
                    Answer::Done => {
                        return Err(NetdevError::Malformed {
                            op,
                            detail: "ack without an answer".into(),
                        })
                    }
                    Answer::Skip => {}
                }
            }
        }
    }

    /// Sends a dump request and blocks until every reply message is in, retrying a dump a
    /// concurrent change interrupted.
    pub(crate) fn dump<I>(&mut self, op: &'static str, msg: &I) -> Result<Vec<I>, NetdevError>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        for attempt in 0..DUMP_RETRIES {
            let (msgs, interrupted) = self.dump_once(op, msg.clone())?;
            if !interrupted {
                return Ok(msgs);
            }
            tracing::debug!(
                op,
                attempt,
                "netlink dump interrupted by a concurrent change; retrying"
            );
        }
        let (msgs, interrupted) = self.dump_once(op, msg.clone())?;
        if interrupted {
            tracing::warn!(
                op,
                "netlink dump kept being interrupted; using the last one"
            );
        }
        Ok(msgs)
    }

    fn dump_once<I>(&mut self, op: &'static str, msg: I) -> Result<(Vec<I>, bool), NetdevError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for a in self.recv_answers::<I>(op, seq)? {
                match a {
                    Answer::Inner(m, flags) => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        out.push(m);
                    }
                    Answer::Done => return Ok((out, interrupted)),
                    Answer::Skip => {}
                }
            }
        }
    }
}

/// A generic-netlink family whose id is looked up once, on first use: families are registered
/// kernel-wide, so the id is the same in every network namespace. Used by ethtool and devlink.
pub(crate) struct GenlFamilyId {
    name: &'static str,
    id: OnceLock<u16>,
}

impl GenlFamilyId {
    pub(crate) const fn new(name: &'static str) -> Self {
        GenlFamilyId {
            name,
            id: OnceLock::new(),
        }
    }

    /// A generic-netlink socket in the calling thread's namespace and the family's id.
    ///
    /// # Errors
    /// The lookup's `ENOENT` ([`NetdevError::Netlink`]) when the kernel has no such family.
    pub(crate) fn socket(&self) -> Result<(NlSocket, u16), NetdevError> {
        let mut sock = NlSocket::generic()?;
        let id = match self.id.get() {
            Some(id) => *id,
            None => {
                let id = genl_family_id(&mut sock, self.name)?;
                *self.id.get_or_init(|| id)
            }
        };
        Ok((sock, id))
    }
}

/// `msg` as a generic-netlink request to the family whose id [`GenlFamilyId`] resolved.
pub(crate) fn genl_request<F: GenlFamily + Debug>(msg: F, family: u16) -> GenlMessage<F> {
    let mut m = GenlMessage::from_payload(msg);
    m.set_resolved_family_id(family);
    m
}

/// The id of the generic-netlink family `name` (`CTRL_CMD_GETFAMILY`); blocks on the socket.
///
/// # Errors
/// `ENOENT` when the kernel has no such family (ethtool's needs Linux 5.6).
pub(crate) fn genl_family_id(sock: &mut NlSocket, name: &str) -> Result<u16, NetdevError> {
    const OP: &str = "CTRL_CMD_GETFAMILY";
    let req = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    });
    let reply = sock.request_one(OP, req)?;
    let (_, ctrl) = reply.into_parts();
    ctrl.nlas
        .iter()
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| NetdevError::Malformed {
            op: OP,
            detail: format!("no CTRL_ATTR_FAMILY_ID for {name:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;

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
    fn datagrams_split_with_padding_and_bad_lengths_rejected() {
        let mut buf = msg(16, 2, 7, &[1, 2, 3]);
        buf.extend(msg(3, 2, 7, &[0, 0, 0, 0]));
        let m = split_datagram(&buf).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].len(), 19);
        buf[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(split_datagram(&buf).is_err());
        buf[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(split_datagram(&buf).is_err());
    }

    #[test]
    fn answers_by_sequence_and_kind() {
        let mut link = LinkMessage::default();
        link.header.index = 3;
        link.attributes.push(LinkAttribute::IfName("veth0".into()));
        let mut header = NetlinkHeader::default();
        header.sequence_number = 9;
        let mut m = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link.clone())),
        );
        m.finalize();
        let mut bytes = vec![0u8; m.buffer_len()];
        m.serialize(&mut bytes);
        let back = decode::<RouteNetlinkMessage>("t", &bytes).unwrap();
        assert!(matches!(answer("t", 8, back.clone()), Ok(Answer::Skip)));
        match answer("t", 9, back) {
            Ok(Answer::Inner(RouteNetlinkMessage::NewLink(l), _)) => assert_eq!(l, link),
            _ => panic!("expected the link"),
        }
        let done = msg(3, 2, 9, &0i32.to_ne_bytes());
        let done = decode::<RouteNetlinkMessage>("t", &done).unwrap();
        assert!(matches!(answer("t", 9, done), Ok(Answer::Done)));
        let failed = msg(3, 2, 9, &(-libc::EINTR).to_ne_bytes());
        let failed = decode::<RouteNetlinkMessage>("t", &failed).unwrap();
        let e = answer("t", 9, failed).err().unwrap();
        assert_eq!(e.errno(), Some(libc::EINTR));
    }

    #[test]
    fn error_with_extended_ack_message() {
        let mut p = Vec::new();
        p.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        // capped copy of the original header
        p.extend_from_slice(&msg(18, 1, 4, &[]));
        let text = b"Device not found\0";
        p.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(text);
        let bytes = msg(2, NLM_F_CAPPED | NLM_F_ACK_TLVS, 4, &p);
        let m = decode::<RouteNetlinkMessage>("RTM_GETLINK", &bytes).unwrap();
        let e = answer("RTM_GETLINK", 4, m).err().unwrap();
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert!(e.to_string().contains("(Device not found)"), "{e}");
        let ack = msg(2, 0, 4, &[0u8; 20]);
        let ack = decode::<RouteNetlinkMessage>("t", &ack).unwrap();
        assert!(matches!(answer("t", 4, ack), Ok(Answer::Done)));
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
