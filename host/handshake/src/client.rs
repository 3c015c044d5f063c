//! The pod-side client: what an unprivileged AF_XDP application links to get
//! its XSKMAP FD from the daemon.
//!
//! ```no_run
//! use std::time::Duration;
//! use afxdp_handshake::{Client, PodRef};
//!
//! # fn main() -> Result<(), afxdp_handshake::HandshakeError> {
//! let mut c = Client::connect("/tmp/afxdp.sock", Duration::from_secs(5))?;
//! c.hello(&PodRef::namespaced("default", "my-pod"))?;
//! let _version = c.version()?;
//! let map = c.xsk_map_fd("eth1")?;
//! // ... create the XSK, insert it in `map`, optionally c.config_busy_poll(xsk, 20, 64)?
//! c.fin()?;
//! # drop(map);
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;

use crate::error::{HandshakeError, Step};
use crate::fd;
use crate::protocol::{PodRef, Request, Response, MAX_MESSAGE_LEN};

/// A connection to a device's handshake socket.
///
/// Every request waits at most the `timeout` given to [`Client::connect`] for
/// its answer. Errors name the step that failed and, when the server said no,
/// what it answered ([`HandshakeError::Refused`]).
#[derive(Debug)]
pub struct Client {
    sock: OwnedFd,
}

impl Client {
    /// Connects to the SOCK_SEQPACKET socket at `path`. `timeout` bounds the
    /// connect itself and every later read and write.
    ///
    /// # Errors
    /// [`HandshakeError::PathTooLong`], or [`HandshakeError::Syscall`] naming
    /// `socket`, `setsockopt` or `connect` (`ENOENT`: no socket there yet;
    /// `EACCES`: the socket is not owned by this pod's user; `ECONNREFUSED`:
    /// no server behind it).
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, HandshakeError> {
        let path = path.as_ref();
        let addr =
            UnixAddr::new(path).map_err(|_| HandshakeError::PathTooLong(path.to_path_buf()))?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(HandshakeError::sys("socket"))?;
        // A zero timeval would mean "block forever"; keep at least 1 ms.
        let tv = TimeVal::new(
            timeout.as_secs().try_into().unwrap_or(i64::MAX),
            timeout.subsec_micros().into(),
        );
        let tv = if timeout.is_zero() {
            TimeVal::new(0, 1000)
        } else {
            tv
        };
        setsockopt(&sock, sockopt::ReceiveTimeout, &tv)
            .map_err(HandshakeError::sys("setsockopt"))?;
        // SO_SNDTIMEO also bounds connect() on AF_UNIX (full backlog).
        setsockopt(&sock, sockopt::SendTimeout, &tv).map_err(HandshakeError::sys("setsockopt"))?;
        loop {
            match connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(HandshakeError::sys("connect")(e)),
                Ok(()) => break,
            }
        }
        Ok(Self { sock })
    }

    /// `/connect,<pod>`: identifies this pod. Use [`PodRef::namespaced`] when
    /// the namespace is known (downward API), else the hostname form.
    ///
    /// # Errors
    /// [`HandshakeError::Refused`] with [`Response::HostNak`] when the daemon
    /// does not recognise the pod as the device's holder, or the socket is
    /// serving another session.
    pub fn hello(&mut self, pod: &PodRef) -> Result<(), HandshakeError> {
        let step = Step::Connect;
        match self.request(step, &Request::Connect { pod: pod.clone() }, None)? {
            (Response::HostOk, _) => Ok(()),
            (r, _) => Err(refusal(step, r)),
        }
    }

    /// `/version`: the server's handshake version (`0.1`).
    ///
    /// # Errors
    /// [`HandshakeError::Refused`] (e.g. `/nak` before [`Client::hello`]).
    pub fn version(&mut self) -> Result<String, HandshakeError> {
        let step = Step::Version;
        match self.request(step, &Request::Version, None)? {
            (Response::Version(v), _) => Ok(v),
            (r, _) => Err(refusal(step, r)),
        }
    }

    /// `/xsk_map_fd,<device>`: the XSKMAP of `device`, as a fresh FD owned
    /// by the caller.
    ///
    /// # Errors
    /// [`HandshakeError::Refused`] with [`Response::FdNak`] when the device is
    /// not this socket's device or the session is not connected;
    /// [`HandshakeError::MissingFd`] when the ack came without an FD.
    pub fn xsk_map_fd(&mut self, device: &str) -> Result<OwnedFd, HandshakeError> {
        let step = Step::XskMapFd;
        let req = Request::XskMapFd {
            device: device.to_owned(),
        };
        match self.request(step, &req, None)? {
            (Response::FdAck, Some(fd)) => Ok(fd),
            (Response::FdAck, None) => Err(HandshakeError::MissingFd { step }),
            (r, _) => Err(refusal(step, r)),
        }
    }

    /// `/config_busy_poll,<timeout_us>,<budget>` with `xsk` attached: asks
    /// the (privileged) daemon to set `SO_PREFER_BUSY_POLL` = 1,
    /// `SO_BUSY_POLL` = `timeout_us` and `SO_BUSY_POLL_BUDGET` = `budget` on
    /// the socket. Needs Linux 5.11.
    ///
    /// # Errors
    /// [`HandshakeError::Refused`] with [`Response::ConfigBusyPollNak`].
    pub fn config_busy_poll(
        &mut self,
        xsk: BorrowedFd<'_>,
        timeout_us: u32,
        budget: u32,
    ) -> Result<(), HandshakeError> {
        let step = Step::ConfigBusyPoll;
        let req = Request::ConfigBusyPoll { timeout_us, budget };
        match self.request(step, &req, Some(xsk))? {
            (Response::ConfigBusyPollAck, _) => Ok(()),
            (r, _) => Err(refusal(step, r)),
        }
    }

    /// `/fin`: ends the session; the server answers `/fin_ack` and closes.
    ///
    /// # Errors
    /// [`HandshakeError::UnexpectedResponse`] when the answer is not `/fin_ack`.
    pub fn fin(mut self) -> Result<(), HandshakeError> {
        let step = Step::Fin;
        match self.request(step, &Request::Fin, None)? {
            (Response::FinAck, _) => Ok(()),
            (r, _) => Err(refusal(step, r)),
        }
    }

    /// Sends raw bytes (for tests and diagnostics; no length check) and
    /// returns the raw answer. Errors are reported as [`Step::Connect`].
    ///
    /// # Errors
    /// As the other requests.
    pub fn raw_request(
        &mut self,
        bytes: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(Response, Option<OwnedFd>), HandshakeError> {
        self.exchange(Step::Connect, bytes, fd)
    }

    fn request(
        &mut self,
        step: Step,
        req: &Request,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(Response, Option<OwnedFd>), HandshakeError> {
        let bytes = req.encode();
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(HandshakeError::MessageTooLong(bytes.len()));
        }
        self.exchange(step, &bytes, fd)
    }

    fn exchange(
        &mut self,
        step: Step,
        bytes: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(Response, Option<OwnedFd>), HandshakeError> {
        match fd::send(self.sock.as_fd(), bytes, fd, MsgFlags::empty()) {
            Ok(()) => {}
            Err(HandshakeError::Syscall {
                errno: Errno::EPIPE | Errno::ECONNRESET,
                ..
            }) => return Err(HandshakeError::Closed { step }),
            Err(HandshakeError::Syscall {
                errno: Errno::EAGAIN,
                ..
            }) => return Err(HandshakeError::Timeout { step }),
            Err(e) => return Err(e),
        }
        match fd::recv(self.sock.as_fd(), MsgFlags::empty()) {
            Ok(Some(d)) => {
                let resp = Response::parse(&d.data);
                tracing::debug!(%step, response = %resp, fd = d.fd.is_some(), "handshake answer");
                Ok((resp, d.fd))
            }
            Ok(None) => Err(HandshakeError::Closed { step }),
            Err(HandshakeError::Syscall {
                errno: Errno::EAGAIN,
                ..
            }) => Err(HandshakeError::Timeout { step }),
            Err(HandshakeError::Syscall {
                errno: Errno::ECONNRESET,
                ..
            }) => Err(HandshakeError::Closed { step }),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn refusal(step: Step, response: Response) -> HandshakeError {
    match response {
        Response::HostNak
        | Response::FdNak
        | Response::ConfigBusyPollNak
        | Response::Nak
        | Response::Error => HandshakeError::Refused { step, response },
        other => HandshakeError::UnexpectedResponse {
            step,
            response: other,
        },
    }
}
