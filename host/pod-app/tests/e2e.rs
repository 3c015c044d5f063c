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
    fs::File,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use afxdp_program::{AttachRequest, NativeManager, ProgramManager, XdpMode};
use afxdp_testnet::pod::{self, ContainerMounts, PodUser, CAP_NET_RAW};
use afxdp_testnet::{
    ip, require_root, send_udp, unique_name, wait_until, Netns, PinRoot, VethOptions, VethPair,
};

/// uid/gid 65534 with CAP_NET_RAW only.
const POD_USER: PodUser = PodUser::nobody_net_raw();
const FLOWS: u16 = 16;
const PER_FLOW: u64 = 25;
const QUEUES: u32 = 4;

/// A netns without IPv6 autoconf/ND chatter: the app must count only our packets.
fn quiet_netns(prefix: &str) -> Netns {
    let ns = Netns::new(prefix).expect("netns");
    for kv in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        ns.exec(&["sysctl", "-qw", kv]).expect("sysctl");
    }
    ns
}

/// Unmounts the test bpffs; detaching is done by the test body, and the
/// pins go with the mount anyway.
/// Kills the app if the test ends early.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node: a 4-queue veth pair whose NIC end carries the built-in program
/// (attached in the host netns, map shared with 65534) and sits in the pod
/// netns, the peer end in the peer netns at 10.231.<n>.1 with a static
/// neighbour entry for the NIC end at .2. Fields drop in order: links, netns,
/// manager, bpffs.
struct Lab {
    veth: VethPair,
    pod: Netns,
    peer: Netns,
    mgr: NativeManager,
    att: afxdp_program::Attachment,
    subnet: u8,
    root: PinRoot,
}

impl Lab {
    fn new(subnet: u8) -> Self {
        require_root();
        let pod = quiet_netns("afxpod");
        let peer = quiet_netns("afxpeer");
        let mut veth = VethPair::create(
            VethOptions::new(unique_name("afn"), unique_name("afp")).queues(QUEUES),
        )
        .expect("veth");
        let (nic, wire) = (veth.a().to_string(), veth.b().to_string());
        let nic_mac = std::fs::read_to_string(format!("/sys/class/net/{nic}/address"))
            .unwrap()
            .trim()
            .to_string();

        // The daemon side: attach in the host netns, share the map pin.
        let root = PinRoot::new().expect("pin root");
        let mgr = NativeManager::new(root.path()).expect("program manager");
        let att = mgr
            .attach(&AttachRequest {
                device: &nic,
                ifindex: nix::net::if_::if_nametoindex(nic.as_str()).expect("ifindex"),
                mode: XdpMode::Auto,
                program: None,
                function: None,
            })
            .expect("attach");
        mgr.share_map_with(&nic, POD_USER.uid).expect("share map");

        // The CNI side: move the ends, no rename.
        ip(&["link", "set", &nic, "netns", pod.name()]).expect("move NIC end");
        veth.also_look_in(&pod);
        ip(&["link", "set", &wire, "netns", peer.name()]).expect("move peer end");
        veth.also_look_in(&peer);
        pod.ip(&["link", "set", &nic, "up"]).expect("NIC up");
        let peer_addr = format!("10.231.{subnet}.1/24");
        peer.ip(&["addr", "add", &peer_addr, "dev", &wire])
            .expect("peer address");
        peer.ip(&["link", "set", &wire, "up"]).expect("peer up");
        // ARP requests would be redirected to the app (and never answered).
        let nic_addr = format!("10.231.{subnet}.2");
        peer.ip(&[
            "neigh",
            "add",
            &nic_addr,
            "lladdr",
            &nic_mac,
            "dev",
            &wire,
            "nud",
            "permanent",
        ])
        .expect("static neighbour");
        let shown = pod
            .ip(&["-d", "link", "show", "dev", &nic])
            .expect("show NIC");
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

    /// Starts the app in the pod netns as 65534 with CAP_NET_RAW only and an
    /// 8 MiB RLIMIT_MEMLOCK, and waits for its `ready` line.
    /// The app told to exit once it has received `total` frames (at most
    /// 30 s), with `extra` arguments.
    fn spawn_app_expecting(&self, total: u64, extra: &[&str]) -> App {
        let total = total.to_string();
        let mut args = vec!["--expect", &total, "--duration", "30"];
        args.extend_from_slice(extra);
        self.spawn_app(&args)
    }

    fn spawn_app(&self, extra: &[&str]) -> App {
        let bin = pod::stage_binary(
            Path::new(env!("CARGO_BIN_EXE_afxdp-pod-app")),
            self.root.dir(),
        )
        .expect("stage app");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--device",
            self.veth.a(),
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
        let pod_ns = File::open(self.pod.path()).expect("open pod netns");
        pod::confine(
            &mut cmd,
            pod_ns.into(),
            POD_USER,
            &ContainerMounts::default(),
        )
        .expect("confine");
        let mut child = ChildGuard(pod::spawn_retrying(&mut cmd).expect("spawn app"));
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
            ready: serde_json::Value::Null,
        };
        let ready = app
            .next_line(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no ready line; stderr:\n{}", app.logs()));
        assert_eq!(ready["type"], "ready", "{ready}");
        app.ready = ready;
        app
    }

    /// Sends `per_flow` datagrams on each of `FLOWS` flows from the peer
    /// netns, one per flow a round, 2 ms apart: far below the veth ring (256)
    /// per queue.
    fn send_udp(&self, per_flow: u64) -> u64 {
        let dst = Ipv4Addr::new(10, 231, self.subnet, 2);
        let ports = 9000..=9000 + FLOWS - 1;
        let mut sent = 0;
        for _ in 0..per_flow {
            sent += send_udp(&self.peer, self.veth.b(), dst.into(), ports.clone(), 1).expect("send")
                as u64;
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    }
}

struct App {
    child: ChildGuard,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Its `ready` line.
    ready: serde_json::Value,
}

impl App {
    fn next_line(&self, timeout: Duration) -> Option<serde_json::Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).expect("JSON line"))
    }

    /// Waits for a line of `kind`, skipping others.
    fn wait_for(&self, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
        let mut found = None;
        wait_until(timeout, Duration::ZERO, || {
            found = self
                .next_line(Duration::from_millis(100))
                .filter(|v| v["type"] == kind);
            found.is_some()
        });
        found
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        let child = &mut self.child.0;
        wait_until(timeout, Duration::from_millis(50), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status.expect("app did not exit")
    }

    /// stderr of the app (kills it first if still running).
    /// The app's `total` line once it exited by itself, successfully
    /// (panics naming `what` with its stderr otherwise); the stderr too.
    fn total_at_exit(&mut self, what: &str) -> (serde_json::Value, String) {
        let total_line = self.wait_for("total", Duration::from_secs(30));
        let exit = self.wait_exit(Duration::from_secs(10));
        let logs = self.logs();
        let total_line = total_line.unwrap_or_else(|| panic!("{what}: no total line:\n{logs}"));
        assert!(exit.success(), "{what}: exit {exit:?}:\n{logs}");
        (total_line, logs)
    }

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
    let lab = Lab::new(1);
    let total = u64::from(FLOWS) * PER_FLOW;
    let mut app = lab.spawn_app_expecting(total, &["--stats-interval-ms", "200"]);

    // The app really is unprivileged: uid/gid 65534, CAP_NET_RAW (bit 13) only.
    let pid = app.pid();
    assert_eq!(
        pod::effective_caps(pid).unwrap(),
        1 << CAP_NET_RAW,
        "CapEff"
    );
    assert_eq!(proc_status(pid, "CapPrm:"), ["0000000000002000"], "CapPrm");
    assert_eq!(proc_status(pid, "Uid:"), ["65534"; 4]);
    assert_eq!(proc_status(pid, "Gid:"), ["65534"; 4]);

    assert_eq!(lab.send_udp(PER_FLOW), total);

    // The app exits by itself once it has them all.
    let (total_line, logs) = app.total_at_exit("app");
    eprintln!("app total: {total_line}\napp stderr:\n{logs}");
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
    let nic = lab.veth.a();
    assert!(lab.mgr.detach(nic).expect("detach"));
    let shown = lab
        .pod
        .ip(&["-d", "link", "show", "dev", nic])
        .expect("show NIC");
    assert!(!shown.contains("prog/xdp"), "still attached: {shown}");
}

/// The modes that never sleep receive every frame too; busy polling's
/// socket options need CAP_NET_ADMIN, so the unprivileged app says the
/// kernel refused them and still receives (spinning).
#[test]
fn app_receives_spinning_and_busy_polling() {
    for (subnet, mode) in [(3, "spin"), (4, "busy-poll")] {
        let lab = Lab::new(subnet);
        let total = u64::from(FLOWS) * PER_FLOW;
        let mut app = lab.spawn_app_expecting(total, &["--rx-mode", mode]);
        assert_eq!(app.ready["rx_mode"], mode, "{}", app.ready);
        let refused = app.ready["busy_poll_refused"].as_array().cloned();
        if mode == "busy-poll" {
            let refused = refused.unwrap_or_else(|| panic!("{}", app.ready));
            assert!(
                refused.iter().any(|r| r
                    .as_str()
                    .is_some_and(|r| r.starts_with("SO_PREFER_BUSY_POLL"))),
                "unprivileged SO_PREFER_BUSY_POLL taken? {}",
                app.ready
            );
        } else {
            assert!(refused.is_none(), "{}", app.ready);
        }
        assert_eq!(lab.send_udp(PER_FLOW), total);
        let (total_line, _) = app.total_at_exit(mode);
        assert_eq!(
            total_line["packets"].as_u64(),
            Some(total),
            "{mode}: {total_line}"
        );
        assert_eq!(
            total_line["kernel"]["rx_fill_ring_empty"], 0,
            "{total_line}"
        );
    }
}

#[test]
fn app_streams_stats_and_stops_on_sigterm() {
    let lab = Lab::new(2);
    let mut app = lab.spawn_app(&["--duration", "60", "--stats-interval-ms", "100"]);
    let sent = lab.send_udp(2);

    // Stats lines arrive periodically and eventually show every packet.
    let mut seen: std::collections::BTreeMap<u64, u64> = Default::default();
    let all_seen = wait_until(Duration::from_secs(10), Duration::ZERO, || {
        if let Some(v) = app.wait_for("stats", Duration::from_secs(2)) {
            assert_eq!(v["device"], lab.veth.a());
            seen.insert(v["queue"].as_u64().unwrap(), v["packets"].as_u64().unwrap());
        }
        seen.values().sum::<u64>() >= sent
    });
    assert!(all_seen, "stats never reached {sent}: {seen:?}");

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
