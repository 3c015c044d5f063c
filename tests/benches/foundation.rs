//! Foundation benchmarks on the real kernel (root): Allocate latency (native XDP
//! attach + UDS server setup, through the real device-plugin gRPC) and afxdp-cni
//! ADD/DEL exec latency. Prints a table; targets: Allocate p50 ≤ 5 ms, CNI ADD p50 ≤ 10 ms.
//!
//! Run: `cargo build --release -p afxdp-cni -p afxdp-pod-app && cargo bench -p
//! afxdp-e2e --bench foundation` (add `-- --iterations N`); the CNI is timed as
//! the release binary a node would run.

use std::path::Path;
use std::time::Duration;

use afxdp_lab::{cni, Lab, LabConfig, Sharing, RESOURCE};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn row(name: &str, mut samples: Vec<Duration>, target: Option<Duration>) {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    let verdict = match target {
        Some(t) if p50 <= t => format!("p50 ≤ {t:?}: met"),
        Some(t) => format!("p50 ≤ {t:?}: MISSED"),
        None => String::new(),
    };
    println!(
        "{name:<34} {:>6} {:>10.3} {:>10.3} {:>10.3}  {verdict}",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn iterations() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

async fn allocate_latency(sharing: Sharing, prepared: bool, n: usize) -> Vec<Duration> {
    afxdp_lab::measure::allocate_latency(sharing, prepared, n, |_| None)
        .await
        .expect("allocate latency")
        .0
}

/// Exec latencies of one CNI plugin's commands.
#[derive(Default)]
struct CniTimes {
    version: Vec<Duration>,
    add: Vec<Duration>,
    check: Vec<Duration>,
    del: Vec<Duration>,
}

impl CniTimes {
    /// VERSION, then ADD → CHECK (with ADD's result) → DEL of `plugin` for
    /// container `cid`, its device named `ifname` in `netns`, as a runtime
    /// execs them.
    fn round(
        &mut self,
        plugin: &Path,
        conf: &serde_json::Value,
        cid: &str,
        netns: &Path,
        ifname: &str,
    ) {
        let run = |command: &str, conf: &serde_json::Value| {
            let out = cni::exec(
                plugin,
                command,
                cid,
                Some(netns),
                ifname,
                "bench",
                "p",
                conf,
            )
            .expect("exec");
            assert!(out.success, "{} {command}: {out:?}", plugin.display());
            out
        };
        self.version.push(run("VERSION", conf).elapsed);
        let add = run("ADD", conf);
        self.add.push(add.elapsed);
        let mut check = conf.clone();
        check["prevResult"] = add.json().expect("ADD result");
        self.check.push(run("CHECK", &check).elapsed);
        self.del.push(run("DEL", conf).elapsed);
    }
}

/// afxdp-cni on the lab node (kubelet allocates before each ADD); its
/// binary's size.
async fn cni_latency(n: usize) -> (CniTimes, u64) {
    let lab = Lab::start(LabConfig {
        nics: 1,
        queues: 4,
        sharing: Sharing::Uds,
        xdp_mode: "native",
        policy: None,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    let netns = afxdp_testnet::Netns::new("afxbench").expect("netns");
    let conf = cni::net_conf(&nic, &lab.paths.node_api, "1.1.0");
    let mut times = CniTimes::default();
    for i in 0..n {
        lab.kubelet()
            .allocate(RESOURCE, std::slice::from_ref(&nic))
            .await
            .expect("allocate");
        times.round(&lab.cni, &conf, &format!("bench-{i}"), netns.path(), "net1");
        lab.settle(&nic).await;
    }
    let size = std::fs::metadata(&lab.cni).map(|m| m.len()).unwrap_or(0);
    drop(netns);
    lab.teardown().await.expect("teardown");
    (times, size)
}

const HOST_DEVICE: &str = "/usr/lib/cni/host-device";

/// The reference plugin doing the same move: Debian's `host-device` on a
/// 4-queue veth (exec'd as a runtime does), the peer afxdp-cni is measured
/// against.
fn host_device_latency(n: usize) -> CniTimes {
    let plugin = Path::new(HOST_DEVICE);
    assert!(
        plugin.is_file(),
        "containernetworking-plugins not installed"
    );
    let pod = afxdp_testnet::Netns::new("afxhd").expect("netns");
    let a = afxdp_testnet::unique_name("hd");
    let b = afxdp_testnet::unique_name("hd");
    let _veth = afxdp_testnet::VethPair::new(&a, &b, 4).expect("veth");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "hd-bench", "type": "host-device", "device": a,
    });
    let mut times = CniTimes::default();
    for i in 0..n {
        times.round(plugin, &conf, &format!("hd-{i}"), pod.path(), &a);
    }
    times
}

/// The kernel's own cost of what CNI ADD must do, in process and without
/// exec: move a 4-queue veth into a netns and bring it up, then move it back;
/// with `xdp`, the veth carries the built-in program in native mode, as an
/// allocated device does. On this kernel `__dev_change_net_namespace` waits
/// in `rcu_barrier()` (seen with `perf record -e sched:sched_switch -g`), the
/// floor under ADD.
fn netns_move_floor(n: usize, xdp: bool) -> (Vec<Duration>, Vec<Duration>) {
    use afxdp_program::{AttachRequest, NativeManager, ProgramManager, XdpMode};
    let pod = afxdp_testnet::Netns::new("afxfloor").expect("netns");
    let a = afxdp_testnet::unique_name("fl");
    let b = afxdp_testnet::unique_name("fl");
    let veth = afxdp_testnet::VethPair::new(&a, &b, 4).expect("veth");
    let pins = afxdp_testnet::PinRoot::new().expect("pin root");
    let programs = NativeManager::new(pins.path()).expect("program manager");
    if xdp {
        let ifindex = afxdp_netdev::get(&a)
            .expect("netlink")
            .expect("the veth")
            .ifindex;
        programs
            .attach(&AttachRequest {
                device: &a,
                ifindex,
                mode: XdpMode::Native,
                program: None,
                function: None,
            })
            .expect("attach");
    }
    let host = afxdp_netdev::NetnsHandle::current().expect("host netns");
    let target = afxdp_netdev::NetnsHandle::open(pod.path()).expect("pod netns");
    let (mut into, mut back) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = std::time::Instant::now();
        afxdp_netdev::move_link(&a, &host, &target).expect("move in");
        afxdp_netdev::set_link_up(&target, &a).expect("up");
        into.push(t.elapsed());
        let t = std::time::Instant::now();
        afxdp_netdev::move_link(&a, &target, &host).expect("move back");
        back.push(t.elapsed());
    }
    if xdp {
        programs.detach(&a).expect("detach");
    }
    drop(veth);
    (into, back)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    afxdp_testnet::require_root();
    let n = iterations();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let alloc_uds = allocate_latency(Sharing::Uds, false, n).await;
        let alloc_pinned = allocate_latency(Sharing::Pinned, false, n).await;
        let alloc_prepared = allocate_latency(Sharing::Uds, true, n).await;
        let (ours, cni_size) = cni_latency(n.min(100)).await;
        let theirs = host_device_latency(n.min(100));
        let (floor_in, floor_back) = netns_move_floor(n.min(100), false);
        let (xdp_in, xdp_back) = netns_move_floor(n.min(100), true);
        let p50 = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort();
            percentile(&v, 0.50).as_secs_f64()
        };
        let ratio = |a: &[Duration], b: &[Duration]| p50(a) / p50(b);
        let ratios = [
            ("VERSION", ratio(&ours.version, &theirs.version)),
            ("ADD", ratio(&ours.add, &theirs.add)),
            ("CHECK", ratio(&ours.check, &theirs.check)),
            ("DEL", ratio(&ours.del, &theirs.del)),
        ];
        let hd_size = std::fs::metadata(HOST_DEVICE).map(|m| m.len()).unwrap_or(0);
        println!("\nafxdp-rs foundation bench (ms)");
        println!(
            "{:<34} {:>6} {:>10} {:>10} {:>10}",
            "operation", "n", "p50", "p99", "max"
        );
        row(
            "Allocate (native attach + UDS)",
            alloc_uds,
            Some(Duration::from_millis(5)),
        );
        row(
            "Allocate (native attach + pin)",
            alloc_pinned,
            Some(Duration::from_millis(5)),
        );
        row(
            "Allocate (prepared attach + UDS)",
            alloc_prepared,
            Some(Duration::from_millis(5)),
        );
        row(
            "afxdp-cni VERSION (exec)",
            ours.version,
            Some(Duration::from_millis(2)),
        );
        row(
            "afxdp-cni ADD (exec)",
            ours.add,
            Some(Duration::from_millis(10)),
        );
        row("afxdp-cni CHECK (exec)", ours.check, None);
        row("afxdp-cni DEL (exec)", ours.del, None);
        row("host-device VERSION (reference)", theirs.version, None);
        row("host-device ADD (reference)", theirs.add, None);
        row("host-device CHECK (reference)", theirs.check, None);
        row("host-device DEL (reference)", theirs.del, None);
        row("kernel: veth into netns + up", floor_in, None);
        row("kernel: veth back to host netns", floor_back, None);
        row("kernel: XDP veth into netns + up", xdp_in, None);
        row("kernel: XDP veth back to host", xdp_back, None);
        println!("\nafxdp-cni / host-device p50 (targets: ADD <= 1.1x, DEL <= 1.2x)");
        for (command, r) in ratios {
            println!("  {command:<8} {r:.2}x");
        }
        println!(
            "binary size: afxdp-cni {:.1} MiB, host-device {:.1} MiB",
            cni_size as f64 / 1048576.0,
            hd_size as f64 / 1048576.0
        );
    });
}
