//! End-to-end tests: a real `DeviceSocket` with a test backend, driven by the
//! real `Client` (and by a byte-exact DPDK emulation).
//!
//! Every test holds `LOCK` (they count this process's open FDs) and checks
//! that the FD count after stopping the server and dropping the clients
//! equals the count before.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use afxdp_handshake::{
    Backend, Client, DeviceSocket, HandshakeError, PeerCred, PodRef, Refusal, Response,
    ServerConfig, Step,
};

const DEV: &str = "veth0";
const NS: &str = "ns1";
const POD: &str = "pod-a";
const TIMEOUT: Duration = Duration::from_secs(5);

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Test backend: `pod` (namespace checked when sent) holds `DEV`; the
/// "XSKMAP" is a plain file (a real XSKMAP needs CAP_BPF), opened afresh on
/// every request so identity can be checked by inode.
struct TestBackend {
    map_file: PathBuf,
    holder: PodRef,
}

impl Backend for TestBackend {
    fn authorize(&self, device: &str, pod: &PodRef, _peer: &PeerCred) -> Result<(), Refusal> {
        let ns_ok = match (&pod.namespace, &self.holder.namespace) {
            (Some(got), Some(want)) => got == want,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if device == DEV && pod.name == self.holder.name && ns_ok {
            Ok(())
        } else {
            Err(Refusal::NotHolder(pod.to_string()))
        }
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, Refusal> {
        if device != DEV {
            return Err(Refusal::UnknownDevice);
        }
        File::open(&self.map_file)
            .map(OwnedFd::from)
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    map_file: PathBuf,
    server: Option<DeviceSocket>,
}

impl Fixture {
    fn new(holder: PodRef, cfg: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let map_file = dir.path().join("xsk_map");
        File::create(&map_file)
            .and_then(|mut f| f.write_all(b"map"))
            .expect("map file");
        let sock = dir.path().join(DEV).join("afxdp.sock");
        let backend = Arc::new(TestBackend {
            map_file: map_file.clone(),
            holder,
        });
        let server = DeviceSocket::serve(&sock, DEV.to_owned(), 4242, cfg, backend).expect("serve");
        Self {
            _dir: dir,
            sock,
            map_file,
            server: Some(server),
        }
    }

    fn default() -> Self {
        Self::new(PodRef::namespaced(NS, POD), ServerConfig::default())
    }

    fn client(&self) -> Client {
        Client::connect(&self.sock, TIMEOUT).expect("connect")
    }

    fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

fn same_file(fd: &OwnedFd, path: &Path) -> bool {
    let a = nix::sys::stat::fstat(fd).expect("fstat");
    let b = std::fs::metadata(path).expect("stat");
    a.st_dev == b.dev() && a.st_ino == b.ino()
}

fn get_int(fd: impl AsFd, opt: libc::c_int) -> libc::c_int {
    let mut val: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid pointers and length for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt({opt}): {}",
        std::io::Error::last_os_error()
    );
    val
}

fn assert_refused(r: Result<impl std::fmt::Debug, HandshakeError>, step: Step, want: Response) {
    match r {
        Err(HandshakeError::Refused { step: s, response }) => {
            assert_eq!((s, response), (step, want));
        }
        other => panic!("expected {want} refusal of {step}, got {other:?}"),
    }
}

#[test]
fn happy_path_and_no_fd_leak() {
    let _g = lock();
    let before = open_fds();
    {
        let mut fx = Fixture::default();
        let meta = std::fs::metadata(&fx.sock).expect("socket file");
        assert_eq!(meta.uid(), 4242, "socket chowned to the pod user");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);

        let mut c = fx.client();
        c.hello(&PodRef::namespaced(NS, POD)).expect("hello");
        assert_eq!(c.version().expect("version"), "0.1");
        let map = c.xsk_map_fd(DEV).expect("map fd");
        assert!(
            same_file(&map, &fx.map_file),
            "FD refers to the backend's map"
        );
        // Twice: every request gets a fresh FD.
        let map2 = c.xsk_map_fd(DEV).expect("map fd again");
        assert!(same_file(&map2, &fx.map_file));
        assert_ne!(map.as_raw_fd(), map2.as_raw_fd());

        // Busy poll on a real socket (root may raise these values).
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        c.config_busy_poll(udp.as_fd(), 50, 256).expect("busy poll");
        assert_eq!(get_int(&udp, 46), 50, "SO_BUSY_POLL");
        assert_eq!(get_int(&udp, 69), 1, "SO_PREFER_BUSY_POLL");
        // SO_BUSY_POLL_BUDGET cannot be read back (getsockopt gives
        // ENOPROTOOPT); its setsockopt succeeded or there would be no ack.
        // The kernel rejects a budget above u16::MAX: nak, and the server
        // rolls the other two back to their defaults (as upstream does).
        assert_refused(
            c.config_busy_poll(udp.as_fd(), 10, 1 << 20),
            Step::ConfigBusyPoll,
            Response::ConfigBusyPollNak,
        );
        assert_eq!(get_int(&udp, 46), 0, "SO_BUSY_POLL rolled back");
        assert_eq!(get_int(&udp, 69), 0, "SO_PREFER_BUSY_POLL rolled back");
        // Busy poll on something that is not a socket.
        let file = File::open(&fx.map_file).unwrap();
        assert_refused(
            c.config_busy_poll(file.as_fd(), 10, 10),
            Step::ConfigBusyPoll,
            Response::ConfigBusyPollNak,
        );
        c.fin().expect("fin");

        // A finished session lets the next one start (pod restart).
        let mut c2 = fx.client();
        c2.hello(&PodRef::name(POD)).expect("hello, hostname form");
        c2.fin().expect("fin");
        drop((map, map2, udp, file));
        fx.stop();
        assert!(!fx.sock.exists(), "stop removes the socket file");
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn refusals_and_no_fd_leak() {
    let _g = lock();
    let before = open_fds();
    {
        let mut fx = Fixture::default();
        let mut c = fx.client();

        // Before /connect.
        assert_refused(c.xsk_map_fd(DEV), Step::XskMapFd, Response::FdNak);
        assert_refused(c.version(), Step::Version, Response::Nak);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_refused(
            c.config_busy_poll(udp.as_fd(), 20, 64),
            Step::ConfigBusyPoll,
            Response::ConfigBusyPollNak,
        );
        assert_eq!(get_int(&udp, 46), 0, "not applied before /connect");

        // Wrong pod name, wrong namespace; the session stays open and
        // unauthenticated.
        assert_refused(
            c.hello(&PodRef::name("pod-b")),
            Step::Connect,
            Response::HostNak,
        );
        assert_refused(
            c.hello(&PodRef::namespaced("ns2", POD)),
            Step::Connect,
            Response::HostNak,
        );
        assert_refused(c.xsk_map_fd(DEV), Step::XskMapFd, Response::FdNak);

        // Garbage: unknown words, malformed connect, non-UTF-8, NULs,
        // oversized; each answered /nak, the session survives.
        let huge = vec![b'A'; 4096];
        let garbage: [&[u8]; 8] = [
            b"hello",
            b"/connect",
            b"/connect,",
            b"/connect, a, b",
            b"/connect,\xff\xfe\xfd",
            b"\0\0\0",
            b"/xsk_map_fd",
            &huge,
        ];
        for g in garbage {
            let (resp, fd) = c.raw_request(g, None).expect("answer to garbage");
            assert_eq!(
                resp,
                Response::Nak,
                "{:?}",
                String::from_utf8_lossy(&g[..g.len().min(20)])
            );
            assert!(fd.is_none());
        }
        // A stray FD on a message that takes none is closed by the server.
        let (resp, _) = c.raw_request(b"/version", Some(udp.as_fd())).unwrap();
        assert_eq!(resp, Response::Nak, "still unauthenticated");

        // Now a valid connect works on the same session.
        c.hello(&PodRef::namespaced(NS, POD))
            .expect("hello after refusals");
        // Unknown / other device.
        assert_refused(c.xsk_map_fd("veth1"), Step::XskMapFd, Response::FdNak);
        assert_refused(c.xsk_map_fd("eth0"), Step::XskMapFd, Response::FdNak);
        let (resp, _) = c.raw_request(b"/xsk_map_fd,../../x", None).unwrap();
        assert_eq!(resp, Response::Nak);
        // Busy poll without an FD.
        let (resp, fd) = c.raw_request(b"/config_busy_poll,20,64", None).unwrap();
        assert_eq!((resp, fd.is_none()), (Response::ConfigBusyPollNak, true));
        // Stray FD on /version after connect: answered, FD closed.
        let (resp, _) = c.raw_request(b"/version", Some(udp.as_fd())).unwrap();
        assert_eq!(resp, Response::Version("0.1".into()));
        // Re-connect as another pod de-authenticates.
        assert_refused(
            c.hello(&PodRef::name("intruder")),
            Step::Connect,
            Response::HostNak,
        );
        assert_refused(c.xsk_map_fd(DEV), Step::XskMapFd, Response::FdNak);
        c.fin().expect("fin");
        drop(udp);
        fx.stop();
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn second_connection_gets_host_nak_first_unaffected() {
    let _g = lock();
    let before = open_fds();
    {
        let mut fx = Fixture::default();
        let mut a = fx.client();
        a.hello(&PodRef::namespaced(NS, POD)).expect("first hello");

        let mut b = fx.client();
        assert_refused(
            b.hello(&PodRef::namespaced(NS, POD)),
            Step::Connect,
            Response::HostNak,
        );
        // The server closed the second connection.
        assert!(matches!(b.version(), Err(HandshakeError::Closed { .. })));

        // A third one that sends garbage also gets /host_nak.
        let mut c = fx.client();
        let (resp, _) = c.raw_request(b"\xff garbage", None).unwrap();
        assert_eq!(resp, Response::HostNak);

        // The first session is unaffected.
        let map = a.xsk_map_fd(DEV).expect("map after intruders");
        assert!(same_file(&map, &fx.map_file));
        a.fin().expect("fin");

        // Once it is over, a new connection is served.
        let mut d = fx.client();
        d.hello(&PodRef::namespaced(NS, POD))
            .expect("hello after fin");
        drop((b, c, d, map));
        fx.stop();
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn idle_timeout_closes_session_and_frees_the_socket() {
    let _g = lock();
    let before = open_fds();
    {
        let cfg = ServerConfig {
            idle_timeout: Duration::from_millis(300),
            allowed_uid: None,
        };
        let mut fx = Fixture::new(PodRef::namespaced(NS, POD), cfg);
        let mut a = fx.client();
        a.hello(&PodRef::name(POD)).expect("hello");
        std::thread::sleep(Duration::from_millis(700));
        match a.version() {
            Err(HandshakeError::Closed {
                step: Step::Version,
            }) => {}
            other => panic!("expected closed session, got {other:?}"),
        }
        // A silent connection is closed too, and the socket is free again.
        let silent = fx.client();
        std::thread::sleep(Duration::from_millis(700));
        let mut b = fx.client();
        b.hello(&PodRef::name(POD))
            .expect("new session after timeouts");
        b.fin().expect("fin");
        drop((a, silent));
        fx.stop();
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn peer_closing_mid_session_frees_the_socket() {
    let _g = lock();
    let before = open_fds();
    {
        let mut fx = Fixture::default();
        let mut a = fx.client();
        a.hello(&PodRef::name(POD)).expect("hello");
        drop(a); // pod died without /fin
                 // The server notices the close; the next connection becomes the session.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut b = fx.client();
            match b.hello(&PodRef::name(POD)) {
                Ok(()) => {
                    b.fin().expect("fin");
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("socket never freed: {e}"),
            }
        }
        fx.stop();
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn stop_is_bounded_with_an_open_session() {
    let _g = lock();
    let before = open_fds();
    {
        let fx = Fixture::default();
        let mut a = fx.client();
        a.hello(&PodRef::name(POD)).expect("hello");
        let t = Instant::now();
        let Fixture { server, sock, .. } = fx;
        drop(server); // Drop == stop
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(!sock.exists());
        assert!(matches!(a.version(), Err(HandshakeError::Closed { .. })));
    }
    assert_eq!(open_fds(), before, "FD leak");
}

#[test]
fn stale_socket_is_replaced_and_non_socket_is_refused() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(TestBackend {
        map_file: dir.path().join("none"),
        holder: PodRef::name(POD),
    });
    let path = dir.path().join("a.sock");
    // A stale socket file left by a previous run.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let s = DeviceSocket::serve(
        &path,
        DEV.into(),
        0,
        ServerConfig::default(),
        backend.clone(),
    )
    .expect("replaces stale socket");
    assert_eq!(s.path(), path);
    s.stop();

    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"keep me").unwrap();
    match DeviceSocket::serve(&plain, DEV.into(), 0, ServerConfig::default(), backend) {
        Err(HandshakeError::NotASocket(p)) => assert_eq!(p, plain),
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
}

/// Byte-exact emulation of DPDK's `uds_get_xskmap_fd()` (af_xdp PMD,
/// `use_cni=1`): write() requests without MSG_NOSIGNAL, recvmsg() into a
/// 128-byte buffer with room for one FD, prefix comparisons.
#[test]
fn dpdk_exchange_is_answered_as_dpdk_expects() {
    use nix::sys::socket::{
        connect, recvmsg, socket, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
        UnixAddr,
    };
    use std::io::IoSliceMut;
    use std::os::fd::FromRawFd;

    let _g = lock();
    let before = open_fds();
    {
        // DPDK sends gethostname(), at most 63 bytes.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let host = host.trim_end();
        let host = &host[..host.len().min(63)];
        let mut fx = Fixture::new(PodRef::name(host), ServerConfig::default());

        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        connect(sock.as_raw_fd(), &UnixAddr::new(&fx.sock).unwrap()).expect("connect");

        let exchange = |req: &[u8]| -> (Vec<u8>, Option<OwnedFd>) {
            assert!(req.len() < 64, "DPDK's request buffer is 64 bytes");
            let n = nix::unistd::write(&sock, req).expect("write");
            assert_eq!(n, req.len());
            let mut resp = [0u8; 128];
            let mut cmsg = nix::cmsg_space!(libc::c_int);
            let mut iov = [IoSliceMut::new(&mut resp)];
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .expect("recvmsg");
            assert!(
                msg.bytes > 0 && msg.bytes < 128,
                "DPDK NUL-terminates at response[len]"
            );
            let mut fd = None;
            for c in msg.cmsgs().expect("no CTRUNC") {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: just received, owned by us.
                    fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
            let len = msg.bytes;
            (resp[..len].to_vec(), fd)
        };

        let (r, fd) = exchange(format!("/connect,{host}").as_bytes());
        assert!(
            r.starts_with(b"/host_ok"),
            "{:?}",
            String::from_utf8_lossy(&r)
        );
        assert!(fd.is_none());
        let (r, _) = exchange(b"/version");
        assert_eq!(r, b"0.1");
        let (r, fd) = exchange(format!("/xsk_map_fd,{DEV}").as_bytes());
        assert!(r.starts_with(b"/fd_ack"));
        let fd = fd.expect("XSKMAP FD in the first SCM_RIGHTS cmsg");
        assert!(same_file(&fd, &fx.map_file));
        let (r, _) = exchange(b"/fin");
        assert!(r.starts_with(b"/fin_ack"));
        drop((fd, sock));
        fx.stop();
    }
    assert_eq!(open_fds(), before, "FD leak");
}
