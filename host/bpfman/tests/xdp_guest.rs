//! The bpfman backend's XDP hook, end to end. Runs **inside the qemu guest**
//! that `tests/qemu/bpfman-xdp.sh` boots (Debian's kernel, which accepts the
//! freplace programs bpfman attaches every XDP program with; this host's
//! kernel refuses them), so every test here is `#[ignore]`d on the host and
//! run by the guest with `--ignored`.
//!
//! The guest script starts `bpfman-rpc` (socket in `AFXDP_BPFMAN_SOCKET`)
//! and Debian's `docker-registry` over HTTPS on 127.0.0.1 (a CA the host
//! script made, given to bpfman as `SSL_CERT_FILE`), serving the built-in
//! program published as a bytecode image (`AFXDP_BPFMAN_IMAGE`, pinned by
//! digest), the pod app in `AFXDP_BIN_DIR`. The tests:
//!
//! - make a veth pair, the device in the guest's root netns (where a node's
//!   devices are at Allocate) and its peer in a "wire" netns;
//! - have bpfman pull the image, load `xsk_redirect` and attach it to the
//!   device in native mode through its dispatcher;
//! - move the device into a pod netns (as afxdp-cni does) and run the
//!   example pod app there unprivileged (uid 65534, `CAP_NET_RAW` only)
//!   on bpfman's pinned XSKMAP, bind-mounted into its container;
//! - send an exact number of UDP frames from the wire and read exactly that
//!   many from the app's final count;
//! - release: the device back, detach and unload; bpfman lists nothing of
//!   ours and the device has no XDP program.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, TcpStream},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use afxdp_bpfman::{
    BpfmanConfig, BpfmanManager, Bytecode, Image, ListFilter, PullPolicy, META_NODE, META_POOL,
};
use afxdp_program::{AttachRequest, ProgramManager, XdpMode};
use afxdp_testnet::{
    pod::{confine, effective_caps, uids, ContainerMounts, PodUser, CAP_NET_RAW},
    send_udp, unique_name, wait_until, Netns, VethOptions, VethPair,
};

const NODE: &str = "qemu-guest";
const POOL: &str = "guest";
/// UDP frames the wire sends; the app must count exactly these.
const FRAMES: usize = 1000;
const WAIT: Duration = Duration::from_secs(30);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Where bpfman's map directory appears in the app's container (a
/// hostPath volume of the pinned mode), and the XSKMAP in it.
const CONTAINER_MAP_DIR: &str = "/tmp/afxdp";
const CONTAINER_MAP: &str = "/tmp/afxdp/xsks_map";

/// A setting the guest script passes in the environment.
fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test runs in the qemu guest (tests/qemu/bpfman-xdp.sh)")
    })
}

/// The registry the guest script started, up (bpfman pulls from it).
fn wait_registry(image: &str) {
    let addr = image
        .split('/')
        .next()
        .expect("registry in the image reference");
    let up = wait_until(WAIT, Duration::from_millis(100), || {
        TcpStream::connect(addr).is_ok()
    });
    assert!(up, "registry {addr} not listening within {WAIT:?}");
}

/// The device (root netns) and its peer in a "wire" netns that sends.
struct Wire {
    pair: VethPair,
    ns: Netns,
}

impl Wire {
    fn new() -> Wire {
        let ns = Netns::new("wire").expect("wire netns");
        // Only the test's UDP reaches the device: no IPv6 ND/MLD frames.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .expect("wire sysctl");
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            .expect("wire sysctl");
        let pair = VethPair::create(
            VethOptions::new(unique_name("gdev"), unique_name("gwire")).b_netns(&ns),
        )
        .expect("veth");
        ns.ip(&["addr", "add", "10.78.0.1/24", "dev", pair.b()])
            .expect("wire address");
        ns.ip(&["link", "set", pair.b(), "up"]).expect("wire up");
        Wire { pair, ns }
    }

    fn dev(&self) -> &str {
        self.pair.a()
    }

    /// What ARP would give the wire side (the app answers none).
    fn neighbour(&self, mac: &str) {
        let ip = POD_IP.to_string();
        self.ns
            .ip(&[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                mac,
                "dev",
                self.pair.b(),
                "nud",
                "permanent",
            ])
            .expect("static neighbour");
    }

    fn send(&self, n: usize) -> usize {
        send_udp(&self.ns, self.pair.b(), IpAddr::V4(POD_IP), 9000..=9000, n).expect("send")
    }
}

fn ifindex(dev: &str) -> u32 {
    let path = format!("/sys/class/net/{dev}/ifindex");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .expect("ifindex")
}

fn link_show(ns: Option<&Netns>, dev: &str) -> String {
    match ns {
        Some(ns) => ns.ip(&["link", "show", "dev", dev]),
        None => afxdp_testnet::ip(&["link", "show", "dev", dev]),
    }
    .expect("ip link show")
}

/// The example app in a pod: the pod netns, its own mount namespace with the
/// directory of the XSKMAP pin bound at [`CONTAINER_MAP_DIR`], nobody with
/// `CAP_NET_RAW` only.
struct PodApp {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl PodApp {
    fn start(netns: &Netns, dev: &str, map_dir: &Path) -> PodApp {
        let mut cmd = Command::new(Path::new(&env("AFXDP_BIN_DIR")).join("afxdp-pod-app"));
        cmd.env_clear()
            .args([
                "--device",
                dev,
                "--queues",
                "0",
                "--pinned-map",
                CONTAINER_MAP,
            ])
            .args(["--stats-interval-ms", "100", "--duration", "60"]);
        let ns: OwnedFd = std::fs::File::open(netns.path())
            .expect("open pod netns")
            .into();
        let mounts = ContainerMounts {
            root: PathBuf::from("/tmp"),
            binds: vec![(map_dir.to_path_buf(), PathBuf::from(CONTAINER_MAP_DIR))],
        };
        confine(&mut cmd, ns, PodUser::nobody_net_raw(), &mounts).expect("confine");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start afxdp-pod-app");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for (out, prefix) in [
            (
                child
                    .stdout
                    .take()
                    .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
                "",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
                "stderr: ",
            ),
        ] {
            let (Some(out), lines) = (out, lines.clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(format!("{prefix}{line}"));
                }
            });
        }
        PodApp { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// The last JSON line of `kind` the app printed.
    fn last(&self, kind: &str) -> Option<serde_json::Value> {
        self.lines()
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == kind)
    }

    fn wait_ready(&mut self) {
        let ready = wait_until(WAIT, Duration::from_millis(20), || {
            self.last("ready").is_some() || matches!(self.child.try_wait(), Ok(Some(_)))
        });
        assert!(
            ready && self.last("ready").is_some(),
            "the pod app is not ready: {:?}",
            self.lines()
        );
    }

    fn packets(&self) -> u64 {
        self.last("stats")
            .and_then(|v| v["packets"].as_u64())
            .unwrap_or(0)
    }

    /// SIGTERM, and the app's final `total` line.
    fn stop(mut self) -> serde_json::Value {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait pod app");
        let reap = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            self.last("total").is_some()
        });
        assert!(
            status.success() && reap,
            "pod app exit {status}: {:?}",
            self.lines()
        );
        self.last("total").expect("total line")
    }
}

impl Drop for PodApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "runs in the qemu guest: bash tests/qemu/bpfman-xdp.sh"]
fn bpfman_xdp_from_image_to_unprivileged_pod() {
    afxdp_testnet::require_root();
    let image = env("AFXDP_BPFMAN_IMAGE");
    wait_registry(&image);
    let mut config = BpfmanConfig::new(
        NODE,
        POOL,
        Bytecode::Image(Image {
            url: image.clone(),
            pull_policy: PullPolicy::IfNotPresent,
            credentials: None,
        }),
    );
    config.socket = env("AFXDP_BPFMAN_SOCKET").into();
    let manager = BpfmanManager::new(config).expect("bpfman manager");
    let wire = Wire::new();
    let dev = wire.dev().to_string();

    // Allocate: bpfman pulls the image, loads xsk_redirect, attaches it
    // through its dispatcher in native mode; the pod user gets the map.
    let attachment = manager
        .attach(&AttachRequest {
            device: &dev,
            ifindex: ifindex(&dev),
            mode: XdpMode::Native,
            program: None,
            function: None,
        })
        .expect("bpfman attach");
    let uid = PodUser::nobody_net_raw().uid;
    manager.share_map_with(&dev, uid).expect("share the map");
    let shown = link_show(None, &dev);
    // `ip` says `xdp` for a native program, `xdpgeneric` for a generic one.
    assert!(
        shown.split_whitespace().any(|w| w == "xdp"),
        "no native XDP on {dev}: {shown}"
    );
    // bpfman's dispatcher holds the program as an freplace extension.
    assert!(shown.contains("xdp_dispatcher"), "{shown}");
    eprintln!(
        "xdp-guest: bpfman attached program {} (native) to {dev}, XSKMAP {}; ip link: {}",
        attachment.program_id,
        attachment.map_pin.display(),
        shown
            .lines()
            .filter(|l| l.contains("prog/xdp"))
            .collect::<String>()
            .trim()
    );
    let listed = manager.owned_programs().expect("List");
    assert_eq!(listed.len(), 1, "{listed:?}");

    // CNI ADD: the device into the pod's netns; the app there, unprivileged.
    let pod = Netns::new("pod").expect("pod netns");
    afxdp_testnet::ip(&["link", "set", "dev", &dev, "netns", pod.name()]).expect("move");
    pod.ip(&["addr", "add", &format!("{POD_IP}/24"), "dev", &dev])
        .expect("pod address");
    pod.ip(&["link", "set", &dev, "up"]).expect("pod up");
    let mac = pod_mac(&pod, &dev);
    wire.neighbour(&mac);
    let mut app = PodApp::start(&pod, &dev, &attachment.map_dir);
    app.wait_ready();
    let (app_uid, app_euid) = uids(app.child.id()).expect("app uids");
    assert_eq!((app_uid, app_euid), (uid, uid), "the app runs as nobody");
    let caps = effective_caps(app.child.id()).expect("app capabilities");
    assert_eq!(caps, 1 << CAP_NET_RAW, "the app holds CAP_NET_RAW only");

    // Exactly FRAMES frames out of the wire, exactly FRAMES in the app.
    assert_eq!(wire.send(FRAMES), FRAMES);
    let got = wait_until(WAIT, Duration::from_millis(50), || {
        app.packets() >= FRAMES as u64
    });
    assert!(
        got,
        "app counted {} of {FRAMES}: {:?}",
        app.packets(),
        app.lines()
    );
    std::thread::sleep(Duration::from_millis(500));
    let total = app.stop();
    assert_eq!(total["packets"].as_u64(), Some(FRAMES as u64), "{total}");
    eprintln!("xdp-guest: the unprivileged pod app received exactly {FRAMES} frames");

    // CNI DEL then release: the device back, bpfman detaches and unloads.
    pod.ip(&["link", "set", "dev", &dev, "netns", "1"])
        .expect("move back");
    assert!(manager.detach(&dev).expect("detach"), "nothing detached");
    let left = manager
        .client()
        .list(&ListFilter {
            metadata: BTreeMap::from([
                (META_NODE.to_string(), NODE.to_string()),
                (META_POOL.to_string(), POOL.to_string()),
            ]),
            bpfman_only: true,
        })
        .expect("List after release");
    assert!(left.is_empty(), "bpfman still holds {left:?}");
    let shown = link_show(None, &dev);
    assert!(!shown.contains("xdp"), "XDP left on {dev}: {shown}");
    eprintln!("xdp-guest: released: bpfman lists nothing of ours, no XDP on {dev}");
}

fn pod_mac(pod: &Netns, dev: &str) -> String {
    let out = pod.ip(&["-br", "link", "show", "dev", dev]).expect("mac");
    out.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC in {out:?}"))
        .to_string()
}
