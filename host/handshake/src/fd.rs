//! One datagram, with at most one FD via SCM_RIGHTS, over a SOCK_SEQPACKET
//! unix socket.
//!
//! Received FDs are installed close-on-exec (`MSG_CMSG_CLOEXEC`) and wrapped
//! in [`OwnedFd`] before anything else happens, so every error path closes
//! them. The control buffer has room for `SCM_MAX_FD` (253) descriptors —
//! the most one message can carry — so the kernel never has to truncate the
//! ancillary data (`MSG_CTRUNC`) and every FD a peer sends is accounted for
//! and closed when unwanted.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::HandshakeError;
use crate::protocol::MAX_MESSAGE_LEN;

/// The kernel's per-message FD limit (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    /// The message bytes.
    pub data: Vec<u8>,
    /// The FD that came with it, if any.
    pub fd: Option<OwnedFd>,
}

/// Sends `data` as one datagram, with `fd` as SCM_RIGHTS when given.
///
/// `MSG_NOSIGNAL` is always added: a peer that went away yields `EPIPE`, not
/// a SIGPIPE. Pass `MsgFlags::MSG_DONTWAIT` to never block.
///
/// The length is not checked here (peers reject datagrams longer than
/// [`MAX_MESSAGE_LEN`]); [`Client`](crate::Client) checks what it encodes.
///
/// # Errors
/// [`HandshakeError::Syscall`] (`sendmsg`), e.g. `EAGAIN` with
/// `MSG_DONTWAIT` or on a send timeout, `EPIPE` when the peer closed.
pub fn send(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
    flags: MsgFlags,
) -> Result<(), HandshakeError> {
    let iov = [IoSlice::new(data)];
    let raw: [RawFd; 1];
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(fd) => {
            raw = [fd.as_raw_fd()];
            &[ControlMessage::ScmRights(&raw)]
        }
        None => &[],
    };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            cmsgs,
            flags | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(HandshakeError::sys("sendmsg")(e)),
            Ok(n) if n != data.len() => {
                // Cannot happen on SOCK_SEQPACKET (all or nothing); be explicit.
                return Err(HandshakeError::Syscall {
                    call: "sendmsg",
                    errno: Errno::EMSGSIZE,
                });
            }
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one datagram of at most [`MAX_MESSAGE_LEN`] bytes.
///
/// Returns `Ok(None)` at end of stream (the peer closed; an empty datagram
/// reads the same on SOCK_SEQPACKET and is treated as a close).
///
/// # Errors
/// [`HandshakeError::Truncated`] when the datagram was longer than
/// [`MAX_MESSAGE_LEN`] or the ancillary data did not fit;
/// [`HandshakeError::TooManyFds`] when more than one FD came. In both cases
/// every received FD has already been closed. [`HandshakeError::Syscall`]
/// (`recvmsg`) otherwise — `EAGAIN` means no datagram (non-blocking socket,
/// `MSG_DONTWAIT`, or `SO_RCVTIMEO` elapsed).
pub fn recv(sock: BorrowedFd<'_>, flags: MsgFlags) -> Result<Option<Datagram>, HandshakeError> {
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let (bytes, msg_flags, mut fds, ctrunc) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(HandshakeError::sys("recvmsg")(e)),
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                let ctrunc = match msg.cmsgs() {
                    Ok(iter) => {
                        for cmsg in iter {
                            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                                // SAFETY: the kernel just installed these
                                // descriptors in our table for this message;
                                // nothing else owns them.
                                fds.extend(
                                    raw.into_iter()
                                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                                );
                            }
                        }
                        false
                    }
                    Err(_) => true,
                };
                break (msg.bytes, msg.flags, fds, ctrunc);
            }
        }
    };
    if ctrunc || msg_flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(HandshakeError::Truncated { what: "control" });
    }
    if msg_flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(HandshakeError::Truncated { what: "data" });
    }
    if fds.len() > 1 {
        return Err(HandshakeError::TooManyFds(fds.len()));
    }
    if bytes == 0 {
        // End of stream; an FD on an empty datagram is dropped (closed) here.
        return Ok(None);
    }
    buf.truncate(bytes);
    Ok(Some(Datagram {
        data: buf,
        fd: fds.pop(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair")
    }

    #[test]
    fn round_trip_with_and_without_fd() {
        let (a, b) = pair();
        send(a.as_fd(), b"/version", None, MsgFlags::empty()).unwrap();
        let d = recv(b.as_fd(), MsgFlags::empty()).unwrap().unwrap();
        assert_eq!(d.data, b"/version");
        assert!(d.fd.is_none());

        let file = std::fs::File::open("/proc/self/exe").unwrap();
        send(a.as_fd(), b"/fd_ack", Some(file.as_fd()), MsgFlags::empty()).unwrap();
        let d = recv(b.as_fd(), MsgFlags::empty()).unwrap().unwrap();
        assert_eq!(d.data, b"/fd_ack");
        let fd = d.fd.expect("fd");
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "received FD must be CLOEXEC");
    }

    #[test]
    fn oversized_and_multi_fd_messages_are_rejected() {
        let (a, b) = pair();
        let big = vec![b'x'; MAX_MESSAGE_LEN + 10];
        send(a.as_fd(), &big, None, MsgFlags::empty()).unwrap();
        assert!(matches!(
            recv(b.as_fd(), MsgFlags::empty()),
            Err(HandshakeError::Truncated { what: "data" })
        ));

        let f1 = std::fs::File::open("/proc/self/exe").unwrap();
        let f2 = std::fs::File::open("/proc/self/exe").unwrap();
        let raw = [f1.as_raw_fd(), f2.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"/x")],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(matches!(
            recv(b.as_fd(), MsgFlags::empty()),
            Err(HandshakeError::TooManyFds(2))
        ));
    }

    #[test]
    fn eof_is_none() {
        let (a, b) = pair();
        drop(a);
        assert!(recv(b.as_fd(), MsgFlags::empty()).unwrap().is_none());
    }
}
