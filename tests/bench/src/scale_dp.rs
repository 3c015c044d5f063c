//! Section "scale", the afxdp-dp rows: the real `afxdp-dp` process on a node
//! of 64, 256 and 1,024 veth netdevs (a netns the bench made; the daemon,
//! its metrics endpoint and the API server fake run in it, the kubelet
//! stand-in outside on the same sockets), with 8 pools each holding a
//! distinct policy component (the four examples, each also with a custom
//! section that changes its digest, so 8 are compiled and loaded).
//!
//! - **ListAndWatch update latency**: one pool device set down, then up
//!   (rtnetlink in the netns), timed until the kubelet stand-in's
//!   ListAndWatch stream shows it Unhealthy, then Healthy.
//! - **Allocations**: Allocate cycles over up to 256 devices of the largest
//!   pool through the real gRPC; from the second lap on, each Allocate of a
//!   device kubelet had given before re-allocates it (afxdp-dp detaches the
//!   previous pod's program first), the release kubelet makes after a pod
//!   went.
//! - **RSS**: `VmRSS` and `VmHWM` of the process (`/proc/<pid>/status`),
//!   idle (no netdevs, one pool, no policy) and at each size after the
//!   allocations.

use crate::{scale::make_veths, table::percentile, table::Row, Settings};
use afxdp_kubelet_standin::KubeletStandin;
use afxdp_lab::{DaemonProcess, NodePaths};
use afxdp_policy::examples::{examples, wasm_dir};
use afxdp_testnet::{apiserver::FakeApiServer, Netns};
use anyhow::{anyhow, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECTION: &str = "scale";
/// Pools (each with its own policy component).
const POOLS: usize = 8;
/// The largest pool's size at 1,024 netdevs (the pool of 256).
const BIG_POOL: usize = 256;
/// Targets at 1,024 netdevs.
const LIST_AND_WATCH_MS: f64 = 100.0;
const RSS_MIB: f64 = 64.0;
/// How long afxdp-dp may take to be ready (8 policies compiled on a shared machine).
const READY: Duration = Duration::from_secs(300);

/// The rows: idle RSS, then per size the ListAndWatch latency, the
/// allocations and the RSS, each size against the one before.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let root = tempfile::Builder::new()
        .prefix("afxdp-bench-dp-")
        .tempdir_in("/run")?;
    let components = components(root.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let idle = rt.block_on(node(root.path(), 0, &[], 0, 0))?;
    let idle_row = Row::new(SECTION, "afxdp-dp VmRSS idle", idle.rss_mib, "MiB").note(format!(
        "VmHWM {:.1} MiB; no netdevs, one pool, no policy",
        idle.hwm_mib
    ));
    let mut rows = vec![idle_row.clone()];
    let mut prev: Option<[Row; 3]> = None;
    for &netdevs in settings.scale_sizes {
        let m = rt.block_on(node(
            root.path(),
            netdevs,
            &components,
            settings.link_changes,
            settings.scale_allocations,
        ))?;
        let at_target = netdevs == 1024;
        let (lw50, lw99) = p50_p99(m.list_and_watch);
        let mut lw = Row::new(
            SECTION,
            format!("ListAndWatch update, one link change, {netdevs} netdevs"),
            ms(lw50),
            "ms",
        )
        .note(format!(
            "p99 {:.1} ms, n = {}",
            ms(lw99),
            settings.link_changes * 2
        ));
        let total: Duration = m.allocations.iter().sum();
        let (al50, al99) = p50_p99(m.allocations);
        let mut alloc = Row::new(
            SECTION,
            format!(
                "{} allocations in a pool of {}, {netdevs} netdevs",
                settings.scale_allocations, m.big_pool
            ),
            ms(al50),
            "ms",
        )
        .note(format!(
            "p50; p99 {:.2} ms, total {:.2} s",
            ms(al99),
            total.as_secs_f64()
        ));
        let mut rss = Row::new(
            SECTION,
            format!("afxdp-dp VmRSS, {netdevs} netdevs, {POOLS} policies"),
            m.rss_mib,
            "MiB",
        )
        .note(format!("VmHWM {:.1} MiB", m.hwm_mib));
        match &prev {
            Some([l, a, r]) => {
                lw = lw.versus(l);
                alloc = alloc.versus(a);
                rss = rss.versus(r);
            }
            None => rss = rss.versus(&idle_row),
        }
        if at_target {
            let met = lw.value <= LIST_AND_WATCH_MS;
            lw = lw.target(format!("≤ {LIST_AND_WATCH_MS} ms"), met);
            let met = m.hwm_mib <= RSS_MIB;
            rss = rss.target(format!("VmHWM ≤ {RSS_MIB} MiB"), met);
        }
        rows.extend([lw.clone(), alloc.clone(), rss.clone()]);
        prev = Some([lw, alloc, rss]);
    }
    Ok(rows)
}

/// What one node measured.
struct Measured {
    list_and_watch: Vec<Duration>,
    allocations: Vec<Duration>,
    big_pool: usize,
    rss_mib: f64,
    hwm_mib: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// A policy component and the config its pool gives it.
struct Component {
    path: PathBuf,
    config: serde_json::Value,
}

/// The four example components, each twice: as built, and with a custom
/// section appended (another digest: afxdp-dp compiles and keeps it apart).
fn components(dir: &Path) -> Result<Vec<Component>> {
    let examples = examples();
    let wasm = wasm_dir(&examples).map_err(|e| anyhow!(e))?;
    let mut out = Vec::new();
    for copy in 0..2u8 {
        for ex in &examples {
            let mut bytes = std::fs::read(wasm.join(format!("{}.wasm", ex.file)))?;
            if copy == 1 {
                // Custom section 0: size, name "afxdp-bench", one payload byte.
                let name = b"afxdp-bench";
                bytes.extend([0, (1 + name.len() + 1) as u8, name.len() as u8]);
                bytes.extend(name);
                bytes.push(copy);
            }
            let path = dir.join(format!("{}-{copy}.wasm", ex.file));
            std::fs::write(&path, bytes)?;
            out.push(Component {
                path,
                config: serde_json::from_str(&ex.config)?,
            });
        }
    }
    Ok(out)
}

/// The pools: the first takes up to half the netdevs (at most
/// [`BIG_POOL`]), the other seven share the rest; pool `i` gets component
/// `i`. Without components: one pool of every veth, no policy.
fn config(netdevs: usize, components: &[Component]) -> (serde_json::Value, usize) {
    let uid = afxdp_lab::unprivileged::PodUser::nobody_net_raw().uid;
    let big = (netdevs / 2).min(BIG_POOL);
    let rest = (netdevs - big) / (POOLS - 1);
    let pool = |i: usize| {
        let max = if i == 0 { big } else { rest }.max(1);
        let mut p = serde_json::json!({
            "name": format!("p{i}"),
            "selectors": { "drivers": [{ "name": "veth", "maxDevices": max }] },
            "uid": uid,
        });
        if let Some(c) = components.get(i) {
            p["policy"] = serde_json::json!({
                "file": c.path, "config": c.config, "failurePolicy": "Ignore",
            });
        }
        p
    };
    let pools: Vec<_> = (0..components.len().max(1)).map(pool).collect();
    let config = serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "includeVirtualDevices": true,
        "pools": pools,
    });
    (config, big)
}

/// One node of `netdevs` veths: start afxdp-dp, time `link_changes` down/up
/// pairs and `allocations` Allocates, read its memory.
async fn node(
    root: &Path,
    netdevs: usize,
    components: &[Component],
    link_changes: usize,
    allocations: usize,
) -> Result<Measured> {
    let ns = Netns::new("afxb-dp")?;
    make_veths(&ns, netdevs, true)?;
    let dir = root.join(format!("node-{netdevs}"));
    let paths = NodePaths {
        root: root.to_path_buf(),
        config: dir.join("config.json"),
        device_plugin_dir: dir.join("device-plugins"),
        pod_resources: dir.join("pod-resources/kubelet.sock"),
        state_dir: dir.join("state"),
        node_api: dir.join("state/node.sock"),
    };
    std::fs::create_dir_all(&paths.device_plugin_dir)?;
    let (config, big) = config(netdevs, components);
    std::fs::write(&paths.config, config.to_string())?;
    // The API server fake listens in the node's netns, where afxdp-dp is.
    let api = ns.run(FakeApiServer::start)??;
    api.write_kubeconfig(root)?;
    let kubelet = KubeletStandin::start(&paths.device_plugin_dir, &paths.pod_resources)
        .await
        .map_err(|e| anyhow!("kubelet stand-in: {e}"))?;
    let bin = afxdp_lab::bins::find("afxdp-dp")?;
    let log = dir.join("afxdp-dp.log");
    let daemon = ns.run(|| -> Result<DaemonProcess> {
        let mut p = DaemonProcess::spawn(&bin, &paths, &log)?;
        p.wait_ready(READY)?;
        Ok(p)
    })??;
    let result = measure(&ns, &kubelet, netdevs, big, link_changes, allocations).await;
    let (rss_mib, hwm_mib) = memory(daemon.pid())?;
    daemon.stop();
    // Its Drop wakes its accept loop through its address, reachable only
    // from the netns it listens in.
    ns.run(move || drop(api))?;
    kubelet.shutdown().await;
    afxdp_lab::unmount_pins(&paths.state_dir.join("pins"));
    let (list_and_watch, allocations) = result?;
    Ok(Measured {
        list_and_watch,
        allocations,
        big_pool: big,
        rss_mib,
        hwm_mib,
    })
}

async fn measure(
    ns: &Netns,
    kubelet: &KubeletStandin,
    netdevs: usize,
    big: usize,
    link_changes: usize,
    allocations: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    if netdevs == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let resource = "afxdp/p0";
    let wait = Duration::from_secs(30);
    let devices = kubelet
        .wait_devices(resource, wait, |d| {
            d.len() == big && d.iter().all(|x| x.is_healthy())
        })
        .await
        .map_err(|e| anyhow!("pool p0 listed: {e}"))?;
    let mut ids: Vec<String> = devices.into_iter().map(|d| d.id).collect();
    ids.sort();
    let handle = ns.run(afxdp_netdev::NetnsHandle::current)??;
    let device = ids[0].clone();
    let mut lw = Vec::new();
    for _ in 0..link_changes {
        for up in [false, true] {
            let t = Instant::now();
            if up {
                afxdp_netdev::set_link_up(&handle, &device)?;
            } else {
                afxdp_netdev::set_link_down(&handle, &device)?;
            }
            kubelet
                .wait_devices(resource, wait, |d| {
                    d.iter().any(|x| x.id == device && x.is_healthy() == up)
                })
                .await
                .map_err(|e| anyhow!("link change seen: {e}"))?;
            lw.push(t.elapsed());
        }
    }
    let mut alloc = Vec::with_capacity(allocations);
    for i in 0..allocations {
        let d = &ids[i % ids.len()];
        let t = Instant::now();
        kubelet
            .allocate(resource, std::slice::from_ref(d))
            .await
            .map_err(|e| anyhow!("allocate {d}: {e}"))?;
        alloc.push(t.elapsed());
    }
    ensure!(!lw.is_empty() || link_changes == 0, "no link change timed");
    Ok((lw, alloc))
}

/// `VmRSS` and `VmHWM` of `pid`, MiB.
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} in /proc/{pid}/status"))?;
        let n: f64 = line.split_whitespace().nth(1).context("value")?.parse()?;
        Ok(n / 1024.0)
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}
