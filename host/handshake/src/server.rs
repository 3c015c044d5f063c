//! The per-device handshake server core (synchronous, one thread per device
//! socket).
//!
//! # Session rules
//! - One session at a time per device socket. While a session is open, any
//!   further connection is accepted but parked: its first message — whatever
//!   it is — is answered `/host_nak` and the connection is closed, without
//!   touching the running session. (Answering only once the peer has spoken
//!   keeps clients like DPDK, which `write()` their `/connect` without
//!   `MSG_NOSIGNAL`, from dying of SIGPIPE on an already-closed socket.) A
//!   parked connection that stays silent is closed after the idle timeout.
//! - A session starts unauthenticated. `/connect,<pod>` authenticates it when
//!   the peer's uid is allowed ([`ServerConfig::allowed_uid`]) and the
//!   [`Backend`] confirms the pod holds this device; otherwise `/host_nak` and
//!   the session stays unauthenticated (the client may retry). A later
//!   `/connect` re-runs the check; a failed one de-authenticates.
//! - Before a successful `/connect`: `/xsk_map_fd` → `/fd_nak`,
//!   `/config_busy_poll` → `/config_busy_poll_nak`, `/version` and anything
//!   else → `/nak`.
//! - `/xsk_map_fd,<dev>` for a device other than the socket's own, or that the
//!   backend does not know → `/fd_nak`.
//! - `/config_busy_poll` without an FD, with values the kernel rejects, or on
//!   something that is not a socket → `/config_busy_poll_nak`.
//! - Unparseable, oversized (> [`MAX_MESSAGE_LEN`](crate::protocol::MAX_MESSAGE_LEN))
//!   or non-UTF-8 messages, and messages carrying more than one FD → `/nak`.
//! - `/fin` → `/fin_ack`, then the server closes the connection (also before
//!   `/connect`).
//! - No message for [`ServerConfig::idle_timeout`] closes the session. A
//!   closed session (fin, timeout, peer gone) lets the next connection start
//!   a new one — a restarted pod reconnects.
//! - Every FD received (busy poll, or stray FDs on other messages) and every
//!   map FD obtained from the backend is closed once the answer is sent.
//! - Sends never block (`MSG_DONTWAIT`): a peer that does not read its answers
//!   loses its session.
//!
//! Differences from the upstream Go server: it serves one connection and
//! exits, answers a malformed `/connect` (no pod, two pods) with `/host_nak`
//! where we answer `/nak`, checks the pod by name only, and hands out the
//! same long-lived map FD; here the socket serves until stopped, the backend
//! checks namespace and name, and a fresh FD is sent and closed each time.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind, getsockopt, listen, socket, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockType, UnixAddr,
};

use crate::error::{HandshakeError, Refusal};
use crate::fd;
use crate::protocol::{PodRef, Request, Response, PROTOCOL_VERSION};

// asm-generic socket option numbers (x86_64, aarch64, riscv, ...; alpha,
// mips, parisc and sparc differ and are not targets of this project).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Connections parked (to be answered `/host_nak`) at most at once; more are
/// closed at accept.
const MAX_PARKED: usize = 16;
/// Connections accepted per wake-up, so a flood cannot starve the session.
const MAX_ACCEPTS_PER_WAKE: usize = 16;
/// Longest single poll wait; the loop re-computes deadlines after it.
const MAX_POLL_MS: u64 = 60_000;

/// Credentials of the connected peer (`SO_PEERCRED`, taken at connect time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id, in the server's pid namespace (0 if not visible).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What the daemon provides to the handshake server.
///
/// Calls are made from the server thread and block it: keep them bounded
/// (e.g. a deadline on the PodResources call), since [`DeviceSocket::stop`]
/// waits for a running call to return.
pub trait Backend: Send + Sync {
    /// Is `pod` (as sent in `/connect`) the pod that holds `device` right now?
    /// The daemon asks kubelet's PodResources and checks namespace and name.
    /// `pod.namespace` is `None` for upstream/DPDK clients, which send their
    /// hostname: the pod name, truncated to 63 characters, or `spec.hostname`.
    ///
    /// # Errors
    /// A [`Refusal`]; the peer gets `/host_nak`.
    fn authorize(&self, device: &str, pod: &PodRef, peer: &PeerCred) -> Result<(), Refusal>;

    /// A fresh FD of the XSKMAP for `device` (always the socket's own device;
    /// the server checks that first). The server closes it after sending.
    ///
    /// # Errors
    /// A [`Refusal`]; the peer gets `/fd_nak`.
    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, Refusal>;
}

/// Settings of a device socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Longest wait for the next message of a session (config `udsTimeout`);
    /// the session is closed when it passes.
    pub idle_timeout: Duration,
    /// When set, the peer's uid must equal it (or be 0) for `/connect` to
    /// succeed.
    pub allowed_uid: Option<u32>,
}

impl Default for ServerConfig {
    /// 30 s idle timeout (the upstream default and minimum), any uid.
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            allowed_uid: None,
        }
    }
}

impl ServerConfig {
    /// Whether a peer with `uid` may connect under this config.
    pub fn uid_allowed(&self, uid: u32) -> bool {
        match self.allowed_uid {
            None => true,
            Some(allowed) => uid == allowed || uid == 0,
        }
    }
}

/// A listening handshake socket for one allocated device, served on its own
/// thread until [`DeviceSocket::stop`] or drop.
#[derive(Debug)]
pub struct DeviceSocket {
    path: PathBuf,
    /// (st_dev, st_ino) of the socket file we bound, so drop only removes ours.
    file_id: Option<(u64, u64)>,
    stop_tx: Option<UnixDatagram>,
    thread: Option<JoinHandle<()>>,
}

impl DeviceSocket {
    /// Binds the SOCK_SEQPACKET listener at `path` and serves it on a thread
    /// until [`stop`](Self::stop) or drop (which also removes the socket file).
    ///
    /// Creates the parent directory if needed, replaces a stale socket file
    /// (but never a non-socket), then chowns the socket to `owner_uid` and
    /// sets mode 0660 so that the pod's user can connect.
    ///
    /// # Errors
    /// [`HandshakeError::Fs`] (mkdir, stale-file removal, chown, chmod),
    /// [`HandshakeError::NotASocket`], [`HandshakeError::PathTooLong`],
    /// [`HandshakeError::Syscall`] (`socket`, `bind`, `listen`),
    /// [`HandshakeError::Spawn`].
    pub fn serve(
        path: &Path,
        device: String,
        owner_uid: u32,
        cfg: ServerConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Self, HandshakeError> {
        let fs_err = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| HandshakeError::Fs { op, path, source }
        };
        let addr =
            UnixAddr::new(path).map_err(|_| HandshakeError::PathTooLong(path.to_path_buf()))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(fs_err("create directory"))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                tracing::debug!(path = %path.display(), "removing stale socket");
                std::fs::remove_file(path).map_err(fs_err("remove stale socket"))?;
            }
            Ok(_) => return Err(HandshakeError::NotASocket(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_err("stat")(e)),
        }

        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(HandshakeError::sys("socket"))?;
        bind(listener.as_raw_fd(), &addr).map_err(HandshakeError::sys("bind"))?;
        // From here on the file exists: remove it on any failure.
        let cleanup = |e: HandshakeError| {
            let _ = std::fs::remove_file(path);
            e
        };
        let backlog = Backlog::new(16).map_err(|e| cleanup(HandshakeError::sys("listen")(e)))?;
        listen(&listener, backlog).map_err(|e| cleanup(HandshakeError::sys("listen")(e)))?;
        std::os::unix::fs::chown(path, Some(owner_uid), None)
            .map_err(|e| cleanup(fs_err("chown")(e)))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| cleanup(fs_err("chmod")(e)))?;
        let file_id = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));

        let (stop_tx, stop_rx) =
            UnixDatagram::pair().map_err(|e| cleanup(fs_err("socketpair")(e)))?;
        let server = Server {
            listener,
            stop_rx,
            device: device.clone(),
            cfg,
            backend,
            session: None,
            parked: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("afxdp-hs-{device}"))
            .spawn(move || server.run())
            .map_err(|e| cleanup(HandshakeError::Spawn(e)))?;
        tracing::info!(path = %path.display(), %device, owner_uid, "handshake socket listening");
        Ok(Self {
            path: path.to_path_buf(),
            file_id,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving: closes any session, joins the thread (bounded, unless a
    /// [`Backend`] call is in progress) and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(&[1]);
            drop(tx);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "handshake server thread panicked");
            }
        }
        // Only remove the file if it is still the one we bound (a new socket
        // may have been bound at the same path since).
        if let Some(id) = self.file_id.take() {
            match std::fs::symlink_metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) == id => {
                    if let Err(e) = std::fs::remove_file(&self.path) {
                        tracing::warn!(path = %self.path.display(), error = %e, "removing socket file");
                    }
                }
                _ => {}
            }
        }
    }
}

impl Drop for DeviceSocket {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Session {
    sock: OwnedFd,
    peer: PeerCred,
    pod: Option<PodRef>,
    deadline: Instant,
}

struct Parked {
    sock: OwnedFd,
    deadline: Instant,
}

struct Server {
    listener: OwnedFd,
    stop_rx: UnixDatagram,
    device: String,
    cfg: ServerConfig,
    backend: Arc<dyn Backend>,
    session: Option<Session>,
    parked: Vec<Parked>,
}

/// What one poll round found ready.
struct Ready {
    stop: bool,
    listener: bool,
    session: bool,
    parked: Vec<bool>,
}

impl Server {
    fn run(mut self) {
        let span = tracing::info_span!("handshake", device = %self.device);
        let _enter = span.enter();
        loop {
            self.expire(Instant::now());
            let ready = match self.wait() {
                Ok(r) => r,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "poll failed; handshake server stops");
                    break;
                }
            };
            if ready.stop {
                break;
            }
            if ready.session {
                self.on_session_readable();
            }
            // Walk parked connections back to front so removal keeps indices.
            for i in (0..ready.parked.len()).rev() {
                if ready.parked[i] && i < self.parked.len() {
                    let p = self.parked.swap_remove(i);
                    answer_parked(p.sock);
                }
            }
            if ready.listener {
                self.accept_all();
            }
        }
        tracing::debug!("handshake server stopped");
        // Session, parked connections and the listener close on drop.
    }

    fn expire(&mut self, now: Instant) {
        if self.session.as_ref().is_some_and(|s| s.deadline <= now) {
            if let Some(s) = self.session.take() {
                tracing::info!(pod = ?s.pod, peer_pid = s.peer.pid, "session idle timeout; closing");
            }
        }
        self.parked.retain(|p| p.deadline > now);
    }

    fn wait(&self) -> Result<Ready, Errno> {
        let now = Instant::now();
        let next = self
            .session
            .iter()
            .map(|s| s.deadline)
            .chain(self.parked.iter().map(|p| p.deadline))
            .min();
        let timeout = match next {
            None => PollTimeout::try_from(MAX_POLL_MS).unwrap_or(PollTimeout::NONE),
            Some(d) => {
                let ms = d.saturating_duration_since(now).as_millis() + 1;
                let ms = u64::try_from(ms).unwrap_or(MAX_POLL_MS).min(MAX_POLL_MS);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE)
            }
        };
        let mut fds = Vec::with_capacity(3 + self.parked.len());
        fds.push(PollFd::new(self.stop_rx.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        if let Some(s) = &self.session {
            fds.push(PollFd::new(s.sock.as_fd(), PollFlags::POLLIN));
        }
        for p in &self.parked {
            fds.push(PollFd::new(p.sock.as_fd(), PollFlags::POLLIN));
        }
        poll(&mut fds, timeout)?;
        let hit = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let mut it = fds.iter();
        let stop = it.next().is_some_and(hit);
        let listener = it.next().is_some_and(hit);
        let session = self.session.is_some() && it.next().is_some_and(hit);
        let parked = it.map(hit).collect();
        Ok(Ready {
            stop,
            listener,
            session,
            parked,
        })
    }

    fn accept_all(&mut self) {
        for _ in 0..MAX_ACCEPTS_PER_WAKE {
            let raw = match accept4(
                self.listener.as_raw_fd(),
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            ) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // e.g. EMFILE: back off instead of spinning on a readable listener.
                    std::thread::sleep(Duration::from_millis(50));
                    return;
                }
            };
            // SAFETY: accept4 just returned this new descriptor; we own it.
            let sock = unsafe { OwnedFd::from_raw_fd(raw) };
            let peer = match getsockopt(&sock, sockopt::PeerCredentials) {
                Ok(c) => PeerCred {
                    pid: c.pid(),
                    uid: c.uid(),
                    gid: c.gid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "SO_PEERCRED failed; closing connection");
                    continue;
                }
            };
            let deadline = Instant::now() + self.cfg.idle_timeout;
            if self.session.is_none() {
                tracing::info!(peer_pid = peer.pid, peer_uid = peer.uid, "session started");
                self.session = Some(Session {
                    sock,
                    peer,
                    pod: None,
                    deadline,
                });
            } else if self.parked.len() < MAX_PARKED {
                tracing::warn!(
                    peer_pid = peer.pid,
                    peer_uid = peer.uid,
                    "second connection while a session is open; it will get /host_nak"
                );
                self.parked.push(Parked { sock, deadline });
            } else {
                tracing::warn!(peer_pid = peer.pid, "too many pending connections; closing");
            }
        }
    }

    fn on_session_readable(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let (response, out_fd, end) = match fd::recv(session.sock.as_fd(), MsgFlags::MSG_DONTWAIT) {
            Ok(None) => {
                tracing::info!(pod = ?session.pod, "peer closed the session");
                self.session = None;
                return;
            }
            Err(HandshakeError::Syscall {
                errno: Errno::EAGAIN,
                ..
            }) => return,
            Err(e @ (HandshakeError::Truncated { .. } | HandshakeError::TooManyFds(_))) => {
                tracing::warn!(error = %e, "bad message");
                session.deadline = Instant::now() + self.cfg.idle_timeout;
                (Response::Nak, None, false)
            }
            Err(e) => {
                tracing::info!(error = %e, "session read failed; closing");
                self.session = None;
                return;
            }
            Ok(Some(d)) => {
                session.deadline = Instant::now() + self.cfg.idle_timeout;
                let req = Request::parse(&d.data);
                tracing::debug!(request = ?req, fd = d.fd.is_some(), "request");
                handle(
                    &self.device,
                    &self.cfg,
                    self.backend.as_ref(),
                    session,
                    req,
                    d.fd,
                )
            }
        };
        let sent = fd::send(
            session.sock.as_fd(),
            &response.encode(),
            out_fd.as_ref().map(|f| f.as_fd()),
            MsgFlags::MSG_DONTWAIT,
        );
        drop(out_fd);
        tracing::debug!(%response, "response");
        if let Err(e) = sent {
            tracing::info!(error = %e, "answer could not be sent; closing session");
            self.session = None;
        } else if end {
            tracing::info!(pod = ?session.pod, "session finished");
            self.session = None;
        }
    }
}

/// Answers one request of the session: (response, FD to send, end session).
fn handle(
    device: &str,
    cfg: &ServerConfig,
    backend: &dyn Backend,
    session: &mut Session,
    req: Request,
    fd_in: Option<OwnedFd>,
) -> (Response, Option<OwnedFd>, bool) {
    // Only /config_busy_poll takes an FD; anything else that came is closed now.
    let fd_in = match (&req, fd_in) {
        (Request::ConfigBusyPoll { .. }, fd) => fd,
        (_, Some(stray)) => {
            tracing::warn!("unexpected FD with request; closed");
            drop(stray);
            None
        }
        (_, None) => None,
    };
    let authed = session.pod.is_some();
    match req {
        Request::Connect { pod } => {
            session.pod = None;
            if !cfg.uid_allowed(session.peer.uid) {
                tracing::warn!(%pod, peer_uid = session.peer.uid, "peer uid not allowed");
                return (Response::HostNak, None, false);
            }
            match backend.authorize(device, &pod, &session.peer) {
                Ok(()) => {
                    tracing::info!(%pod, "pod authenticated");
                    session.pod = Some(pod);
                    (Response::HostOk, None, false)
                }
                Err(r) => {
                    tracing::warn!(%pod, refusal = %r, "pod refused");
                    (Response::HostNak, None, false)
                }
            }
        }
        Request::Version if authed => (Response::Version(PROTOCOL_VERSION.to_owned()), None, false),
        Request::XskMapFd { device: wanted } => {
            if !authed {
                tracing::warn!(device = %wanted, "/xsk_map_fd before /connect");
                return (Response::FdNak, None, false);
            }
            if wanted != device {
                tracing::warn!(device = %wanted, "/xsk_map_fd for another device");
                return (Response::FdNak, None, false);
            }
            match backend.xsk_map_fd(device) {
                Ok(fd) => (Response::FdAck, Some(fd), false),
                Err(r) => {
                    tracing::warn!(refusal = %r, "no XSKMAP FD");
                    (Response::FdNak, None, false)
                }
            }
        }
        Request::ConfigBusyPoll { timeout_us, budget } => {
            let Some(xsk) = fd_in.filter(|_| authed) else {
                tracing::warn!(authed, "/config_busy_poll refused (not connected or no FD)");
                return (Response::ConfigBusyPollNak, None, false);
            };
            match configure_busy_poll(xsk.as_fd(), timeout_us, budget) {
                Ok(()) => {
                    tracing::info!(timeout_us, budget, "busy poll configured");
                    (Response::ConfigBusyPollAck, None, false)
                }
                Err(e) => {
                    tracing::warn!(timeout_us, budget, error = %e, "busy poll not configured");
                    (Response::ConfigBusyPollNak, None, false)
                }
            }
        }
        Request::Fin => (Response::FinAck, None, true),
        Request::Version | Request::Unknown(_) => {
            tracing::warn!(request = ?req, authed, "bad request");
            (Response::Nak, None, false)
        }
    }
}

/// Parked (second) connection: whatever it sent, answer `/host_nak`; close.
fn answer_parked(sock: OwnedFd) {
    // Reading first drains the request (and closes any FD that came with it).
    let _ = fd::recv(sock.as_fd(), MsgFlags::MSG_DONTWAIT);
    let _ = fd::send(
        sock.as_fd(),
        &Response::HostNak.encode(),
        None,
        MsgFlags::MSG_DONTWAIT,
    );
}

fn set_int(fd: BorrowedFd<'_>, opt: libc::c_int, val: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `val` outlives the call and the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

/// Sets SO_PREFER_BUSY_POLL = 1, SO_BUSY_POLL = `timeout_us` and
/// SO_BUSY_POLL_BUDGET = `budget` on `xsk` (upstream's order), rolling the
/// first two back if a later one fails. Needs Linux 5.11; raising
/// SO_BUSY_POLL or the budget needs CAP_NET_ADMIN — which is why the daemon
/// does it for the pod.
fn configure_busy_poll(
    xsk: BorrowedFd<'_>,
    timeout_us: u32,
    budget: u32,
) -> Result<(), HandshakeError> {
    let timeout = libc::c_int::try_from(timeout_us).map_err(|_| HandshakeError::Syscall {
        call: "setsockopt(SO_BUSY_POLL)",
        errno: Errno::EINVAL,
    })?;
    let budget = libc::c_int::try_from(budget).map_err(|_| HandshakeError::Syscall {
        call: "setsockopt(SO_BUSY_POLL_BUDGET)",
        errno: Errno::EINVAL,
    })?;
    set_int(xsk, SO_PREFER_BUSY_POLL, 1)
        .map_err(HandshakeError::sys("setsockopt(SO_PREFER_BUSY_POLL)"))?;
    let rest = set_int(xsk, SO_BUSY_POLL, timeout)
        .map_err(HandshakeError::sys("setsockopt(SO_BUSY_POLL)"))
        .and_then(|()| {
            set_int(xsk, SO_BUSY_POLL_BUDGET, budget).map_err(|e| {
                let _ = set_int(xsk, SO_BUSY_POLL, 0);
                HandshakeError::sys("setsockopt(SO_BUSY_POLL_BUDGET)")(e)
            })
        });
    if rest.is_err() {
        let _ = set_int(xsk, SO_PREFER_BUSY_POLL, 0);
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rule() {
        let any = ServerConfig::default();
        assert!(any.uid_allowed(1234));
        let only = ServerConfig {
            allowed_uid: Some(1000),
            ..ServerConfig::default()
        };
        assert!(only.uid_allowed(1000));
        assert!(only.uid_allowed(0));
        assert!(!only.uid_allowed(1001));
    }

    #[test]
    fn busy_poll_rejects_non_socket_and_out_of_range() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(configure_busy_poll(f.as_fd(), 20, 64).is_err());
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(configure_busy_poll(s.as_fd(), u32::MAX, 64).is_err());
        assert!(
            configure_busy_poll(s.as_fd(), 20, 1 << 20).is_err(),
            "budget > u16::MAX"
        );
    }
}
