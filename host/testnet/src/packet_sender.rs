//! A fast frame sender without pktgen: an `AF_PACKET` socket on a device
//! writing one frame with `sendmmsg` batches, past the qdisc
//! (`PACKET_QDISC_BYPASS`). The bench's receive-rate section sends with it
//! where the kernel refuses live-frames test runs
//! (`BPF_F_TEST_XDP_LIVE_FRAMES` answers `EPERM` on some), and
//! `afxdpctl lab --flood` floods the lab's pods with it. Each frame is an
//! skb through the driver's xmit (`veth_xmit`), so it offers less than a
//! live-frames sender. The kernel picks the tx queue (and so the veth
//! peer's rx queue) from the sending CPU (`packet_pick_tx_queue` records
//! `cpu % queues`), not from the frame: senders on N CPUs reach N queues.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// `SOL_PACKET`'s `PACKET_QDISC_BYPASS`.
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// An `AF_PACKET` socket bound to one device of the caller's netns.
pub struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    /// Opens the socket on `ifindex` (protocol 0: it receives nothing).
    ///
    /// # Errors
    /// `socket`, `bind` or `setsockopt`'s errno.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain syscall; the FD is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh FD we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sender = PacketSender { fd };
        sender.bind(ifindex)?;
        sender.bypass_qdisc()?;
        Ok(sender)
    }

    fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll of the given length.
        let r = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn bypass_qdisc(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: the option takes an int; the socket is open.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `frame` `count` times in `sendmmsg` batches; blocks until all
    /// were handed to the device (a full device queue is waited out).
    ///
    /// # Errors
    /// `sendmmsg`'s errno other than `ENOBUFS`/`EAGAIN`/`EINTR`.
    pub fn send(&self, frame: &[u8], count: u32) -> io::Result<()> {
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain data; zero is a valid empty header.
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|_| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(BATCH);
            // SAFETY: msgs point at iov, which points at frame; all alive
            // for the call, which only reads them.
            let sent = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0)
            };
            if sent > 0 {
                left -= sent as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => std::thread::yield_now(),
                _ => return Err(e),
            }
        }
        Ok(())
    }
}
