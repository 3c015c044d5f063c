//! The end-to-end test of the pod side, on a real kernel, as root:
//!
//! 1. a 4-queue veth pair is created in the host netns and the built-in
//!    program is attached to the "NIC" end with `NativeManager`, its map
//!    shared with uid 65534 (pinned-map mode);
//! 2. the NIC end moves into a "pod" netns, the peer into a "peer" netns
//!    (the CNI's real flow: attach at Allocate, move at ADD);
//! 3. `afxdp-pod-app` runs in the pod netns as uid 65534 with only
//!    CAP_NET_RAW and an 8 MiB RLIMIT_MEMLOCK, opening the pinned map;
//! 4. the peer sends a known number of UDP packets over 16 flows; veth
//!    delivers each on the rx queue numbered like the sender's tx queue,
//!    which the flow hash picks, so several queues receive;
//! 5. the app must report exactly that count, on at least 2 queues.
//!
//! It fails (never skips) when not run as root.

use std::{
    ffi::CString,
    fs::File,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use afxdp_program::{AttachRequest, NativeManager, ProgramManager, XdpMode};
use caps::{CapSet, Capability, CapsHashSet};
use nix::sched::{setns, CloneFlags};

const NOBODY: u32 = 65534;
const FLOWS: u16 = 16;
const PER_FLOW: u64 = 25;
const QUEUES: u32 = 4;

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctl_in(ns: &str, kv: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", kv])
        .output()
        .expect("run sysctl");
    assert!(out.status.success(), "sysctl {kv} in {ns}: {out:?}");
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("afx{tag}{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        // No IPv6 autoconf/ND chatter: the app must count only our packets.
        sysctl_in(&ns.0, "net.ipv6.conf.all.disable_ipv6=1");
        sysctl_in(&ns.0, "net.ipv6.conf.default.disable_ipv6=1");
        ns
    }

    fn file(&self) -> File {
        File::open(Path::new("/run/netns").join(&self.0)).expect("open netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Deletes the veth wherever its ends went (deleting one end deletes both;
/// deleting their netns does too).
struct Veth {
    nic: String,
    peer: String,
    places: Vec<String>,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.nic]).output();
        for ns in &self.places {
            let _ = Command::new("ip")
                .args(["-n", ns, "link", "del", &self.peer])
                .output();
        }
    }
}

/// Unmounts the test bpffs; detaching is done by the test body, and the
/// pins go with the mount anyway.
struct PinRoot(tempfile::TempDir);

impl PinRoot {
    fn path(&self) -> PathBuf {
        self.0.path().join("pins")
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Kills the app if the test ends early.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no interface {name}");
    i
}

/// The app binary copied where uid 65534 can execute it.
fn app_binary(dir: &Path) -> PathBuf {
    let dst = dir.join("afxdp-pod-app");
    std::fs::copy(env!("CARGO_BIN_EXE_afxdp-pod-app"), &dst).expect("copy app");
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// Spawns, retrying on ETXTBSY: a child forked by a concurrent test (`ip`,
/// the other app) may briefly hold the copy of the binary open for writing
/// until it execs.
fn spawn_retrying(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn app: {e}"),
        }
    }
}

/// Sends `per_flow` datagrams on each of `FLOWS` flows from inside `netns`.
fn send_udp(
    netns: File,
    src: Ipv4Addr,
    dst: SocketAddrV4,
    per_flow: u64,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        // Only this thread enters the peer netns.
        setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns peer");
        let socks: Vec<UdpSocket> = (0..FLOWS)
            .map(|i| UdpSocket::bind(SocketAddrV4::new(src, 40000 + i)).expect("bind sender"))
            .collect();
        let mut sent = 0;
        for n in 0..per_flow {
            for s in &socks {
                let payload = format!("afxdp-e2e {n}");
                s.send_to(payload.as_bytes(), dst).expect("send_to");
                sent += 1;
            }
            // Stay far below the veth ring (256) per queue.
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    })
}

/// In the forked child: enter the pod netns, 8 MiB memlock, uid/gid 65534
/// with no groups, and CAP_NET_RAW alone (ambient, so it survives exec).
fn become_pod_user(pod_ns: &File, net_raw: &CapsHashSet) -> std::io::Result<()> {
    let io = |e: caps::errors::CapsError| std::io::Error::other(e.to_string());
    setns(pod_ns, CloneFlags::CLONE_NEWNET)?;
    let memlock = libc::rlimit {
        rlim_cur: 8 << 20,
        rlim_max: 8 << 20,
    };
    // SAFETY: plain setrlimit(2) with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &memlock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    caps::securebits::set_keepcaps(true).map_err(io)?;
    nix::unistd::setgroups(&[])?;
    let gid = nix::unistd::Gid::from_raw(NOBODY);
    let uid = nix::unistd::Uid::from_raw(NOBODY);
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    caps::set(None, CapSet::Inheritable, net_raw).map_err(io)?;
    caps::set(None, CapSet::Effective, net_raw).map_err(io)?;
    caps::set(None, CapSet::Permitted, net_raw).map_err(io)?;
    caps::raise(None, CapSet::Ambient, Capability::CAP_NET_RAW).map_err(io)?;
    Ok(())
}

/// The node: a 4-queue veth pair whose NIC end carries the built-in program
/// (attached in the host netns, map shared with 65534) and sits in the pod
/// netns, the peer end in the peer netns at 10.231.<n>.1 with a static
/// neighbour entry for the NIC end at .2. Fields drop in order: links, netns,
/// manager, bpffs.
struct Lab {
    veth: Veth,
    pod: Netns,
    peer: Netns,
    mgr: NativeManager,
    att: afxdp_program::Attachment,
    subnet: u8,
    root: PinRoot,
}

impl Lab {
    fn new(tag: &str, subnet: u8) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (veth, netns, XDP attach, uid switch)"
        );
        let pid = std::process::id();
        let pod = Netns::new(&format!("pod{tag}"));
        let peer = Netns::new(&format!("peer{tag}"));
        let mut veth = Veth {
            nic: format!("afn{pid}{tag}"),
            peer: format!("afp{pid}{tag}"),
            places: vec![],
        };
        let q = QUEUES.to_string();
        ip(&[
            "link",
            "add",
            &veth.nic,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &veth.peer,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ]);
        let nic_mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", veth.nic))
            .unwrap()
            .trim()
            .to_string();

        // The daemon side: attach in the host netns, share the map pin.
        let tmp = tempfile::Builder::new()
            .prefix("afxdp-e2e-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = PinRoot(tmp);
        let mgr = NativeManager::new(root.path()).expect("program manager");
        let att = mgr
            .attach(&AttachRequest {
                device: &veth.nic,
                ifindex: ifindex(&veth.nic),
                mode: XdpMode::Auto,
                program: None,
                function: None,
            })
            .expect("attach");
        mgr.share_map_with(&veth.nic, NOBODY).expect("share map");

        // The CNI side: move the ends, no rename.
        ip(&["link", "set", &veth.nic, "netns", &pod.0]);
        ip(&["link", "set", &veth.peer, "netns", &peer.0]);
        veth.places = vec![pod.0.clone(), peer.0.clone()];
        ip(&["-n", &pod.0, "link", "set", &veth.nic, "up"]);
        let peer_addr = format!("10.231.{subnet}.1/24");
        ip(&["-n", &peer.0, "addr", "add", &peer_addr, "dev", &veth.peer]);
        ip(&["-n", &peer.0, "link", "set", &veth.peer, "up"]);
        // ARP requests would be redirected to the app (and never answered).
        let nic_addr = format!("10.231.{subnet}.2");
        ip(&[
            "-n",
            &peer.0,
            "neigh",
            "add",
            &nic_addr,
            "lladdr",
            &nic_mac,
            "dev",
            &veth.peer,
            "nud",
            "permanent",
        ]);
        let shown = ip(&["-n", &pod.0, "-d", "link", "show", "dev", &veth.nic]);
        assert!(
            shown.contains(&format!("prog/xdp id {}", att.program_id)),
            "program not attached after the move: {shown}"
        );
        Lab {
            veth,
            pod,
            peer,
            mgr,
            att,
            subnet,
            root,
        }
    }

    /// Starts the app in the pod netns as 65534 with CAP_NET_RAW only and
    /// waits for its `ready` line.
    fn spawn_app(&self, extra: &[&str]) -> App {
        let bin = app_binary(self.root.0.path());
        let pod_ns = self.pod.file();
        let mut net_raw = CapsHashSet::new();
        net_raw.insert(Capability::CAP_NET_RAW);
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--device",
            &self.veth.nic,
            "--queues",
            "0,1,2,3",
            "--pinned-map",
            self.att.map_pin.to_str().unwrap(),
        ])
        .args(extra)
        .env_clear()
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: the closure only makes syscalls (glibc's malloc stays
        // usable after fork; the cap set was built before it).
        unsafe {
            cmd.pre_exec(move || become_pod_user(&pod_ns, &net_raw));
        }
        let mut child = ChildGuard(spawn_retrying(&mut cmd));
        let (tx, lines) = mpsc::channel::<String>();
        let stdout = child.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.0.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        let mut app = App {
            child,
            lines,
            stderr: Some(stderr),
        };
        let ready = app
            .next_line(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no ready line; stderr:\n{}", app.logs()));
        assert_eq!(ready["type"], "ready", "{ready}");
        app
    }

    fn send_udp(&self, per_flow: u64) -> u64 {
        send_udp(
            self.peer.file(),
            Ipv4Addr::new(10, 231, self.subnet, 1),
            SocketAddrV4::new(Ipv4Addr::new(10, 231, self.subnet, 2), 9000),
            per_flow,
        )
        .join()
        .expect("sender")
    }
}

struct App {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl App {
    fn next_line(&self, timeout: Duration) -> Option<serde_json::Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).expect("JSON line"))
    }

    /// Waits for a line of `kind`, skipping others.
    fn wait_for(&self, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_line(left.min(Duration::from_millis(500))) {
                Some(v) if v["type"] == kind => return Some(v),
                _ => {}
            }
        }
        None
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.0.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < until, "app did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// stderr of the app (kills it first if still running).
    fn logs(&mut self) -> String {
        let _ = self.child.0.kill();
        self.stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// Fields of a `/proc/<pid>/status` line.
fn proc_status(pid: u32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn unprivileged_app_receives_on_several_queues() {
    let lab = Lab::new("a", 1);
    let total = u64::from(FLOWS) * PER_FLOW;
    let mut app = lab.spawn_app(&[
        "--expect",
        &total.to_string(),
        "--duration",
        "30",
        "--stats-interval-ms",
        "200",
    ]);

    // The app really is unprivileged: uid/gid 65534, CAP_NET_RAW (bit 13) only.
    let pid = app.pid();
    assert_eq!(proc_status(pid, "CapEff:"), ["0000000000002000"], "CapEff");
    assert_eq!(proc_status(pid, "CapPrm:"), ["0000000000002000"], "CapPrm");
    assert_eq!(proc_status(pid, "Uid:"), ["65534"; 4]);
    assert_eq!(proc_status(pid, "Gid:"), ["65534"; 4]);

    assert_eq!(lab.send_udp(PER_FLOW), total);

    // The app exits by itself once it has them all.
    let total_line = app.wait_for("total", Duration::from_secs(30));
    let exit = app.wait_exit(Duration::from_secs(10));
    let logs = app.logs();
    let total_line = total_line.unwrap_or_else(|| panic!("no total line; stderr:\n{logs}"));
    eprintln!("app total: {total_line}\napp stderr:\n{logs}");
    assert!(exit.success(), "app exit {exit:?}; stderr:\n{logs}");
    assert_eq!(total_line["reason"], "expect");
    assert_eq!(total_line["packets"].as_u64(), Some(total), "{total_line}");
    let per_queue = total_line["per_queue"].as_object().unwrap();
    let busy = per_queue
        .values()
        .filter(|q| q["packets"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(busy >= 2, "only {busy} queue(s) received: {total_line}");
    let sum: u64 = per_queue
        .values()
        .map(|q| q["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, total);

    // Release: detach while the device is still in the pod netns.
    assert!(lab.mgr.detach(&lab.veth.nic).expect("detach"));
    let shown = ip(&["-n", &lab.pod.0, "-d", "link", "show", "dev", &lab.veth.nic]);
    assert!(!shown.contains("prog/xdp"), "still attached: {shown}");
}

#[test]
fn app_streams_stats_and_stops_on_sigterm() {
    let lab = Lab::new("b", 2);
    let mut app = lab.spawn_app(&["--duration", "60", "--stats-interval-ms", "100"]);
    let sent = lab.send_udp(2);

    // Stats lines arrive periodically and eventually show every packet.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: std::collections::BTreeMap<u64, u64> = Default::default();
    while seen.values().sum::<u64>() < sent {
        assert!(
            Instant::now() < deadline,
            "stats never reached {sent}: {seen:?}"
        );
        if let Some(v) = app.wait_for("stats", Duration::from_secs(2)) {
            assert_eq!(v["device"], lab.veth.nic.as_str());
            seen.insert(v["queue"].as_u64().unwrap(), v["packets"].as_u64().unwrap());
        }
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(app.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let total_line = app.wait_for("total", Duration::from_secs(10));
    let exit = app.wait_exit(Duration::from_secs(10));
    let logs = app.logs();
    let total_line = total_line.unwrap_or_else(|| panic!("no total line; stderr:\n{logs}"));
    assert!(
        exit.success(),
        "exit {exit:?} after SIGTERM; stderr:\n{logs}"
    );
    assert_eq!(total_line["reason"], "signal");
    assert_eq!(total_line["packets"].as_u64(), Some(sent));
}
