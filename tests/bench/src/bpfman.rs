//! Section "bpfman": what a pod's admission costs when bpfman loads the
//! program, beside native Allocate on the same veth in the same run.
//!
//! One lab node (one veth, pinned sharing), a real `bpfman-rpc`
//! (`afxdp_testnet::bpfman::Bpfmand`) and Debian's docker-registry served
//! over HTTPS (`afxdp_testnet::registry`), holding a bytecode image of the
//! TCX test object (`host/bpfman/tests/bpf/xsk_tcx.bpf.c`, the built-in
//! program's `xsks_map`). Timed, each Allocate followed by an untimed
//! operator release:
//!
//! - **native** Allocate (afxdp-dp's own load + XDP attach);
//! - Allocate through bpfman with the image **cached** (`IfNotPresent`,
//!   pulled once before) and **pulled** (`Always`: bpfman fetches the
//!   manifest and blobs over HTTPS at every load);
//! - the **floor** of the bpfman rows: bpfman's own `Load` (image cached) +
//!   `Attach` of the same object on the same veth, direct client calls.
//!
//! This kernel refuses freplace, and bpfman attaches every XDP program
//! through an freplace dispatcher: bpfman attaches with TCX here
//! (afxdp-dp's `--bpfman-hook tcx`); the rows say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afxdp_bpfman::{
    BpfmanClient, Bytecode, Direction, Hook, Image, LoadSpec, ProgramType, PullPolicy,
};
use afxdp_dp::agent::ReleaseBy;
use afxdp_dp::programs::{BpfmanHook, BpfmanOptions};
use afxdp_lab::{Lab, LabConfig, Sharing, POOL, RESOURCE};
use afxdp_testnet::bpfman::{compile_bpf, Bpfmand};
use afxdp_testnet::registry::Registry;
use anyhow::{anyhow, Context, Result};

use crate::{table::percentile, table::Row, Settings};

const SECTION: &str = "bpfman";
const TCX_FUNCTION: &str = "xsk_tcx_count";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const TCX_NOTE: &str = "bpfman attaches with TCX here (XDP through bpfman needs freplace, \
                        refused by this kernel)";

/// Runs the section.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let n = settings.allocations;
    let reg = Registry::start_or_skip(None)
        .ok_or_else(|| anyhow!("docker-registry is not installed (tests/install.sh)"))?;
    let mirror = reg.https_mirror();
    let ca = mirror.ca().display().to_string();
    let d = Bpfmand::start_or_skip_with_env(&[("SSL_CERT_FILE", &ca)])
        .ok_or_else(|| anyhow!("bpfman-rpc is not installed (tests/install.sh)"))?;
    let objects = tempfile::Builder::new()
        .prefix("afxdp-bench-bpfman-")
        .tempdir_in("/tmp")?;
    let object = tcx_object(objects.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cache = tempfile::tempdir()?;
    let digest = rt.block_on(push_image(&object, reg.addr(), cache.path()))?;
    let image = format!("{}/afxdp/xsk-tcx{digest}", mirror.addr());
    let timed = rt.block_on(allocations(&d, &image, n))?;
    Ok(rows(timed))
}

/// Allocate latencies of the three configurations and bpfman's floor, on
/// one device.
struct Allocations {
    native: Vec<Duration>,
    cached: Vec<Duration>,
    pulled: Vec<Duration>,
    floor: Vec<Duration>,
}

/// The lab's node: native first, then a bpfman pool on the same veth with
/// the image cached (`IfNotPresent`), then pulled at every load (`Always`).
async fn allocations(d: &Bpfmand, image: &str, n: usize) -> Result<Allocations> {
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 1,
        sharing: Sharing::Pinned,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("lab: {e}"))?;
    let result = allocation_runs(&mut lab, d, image, n).await;
    lab.teardown().await.map_err(|e| anyhow!("teardown: {e}"))?;
    result
}

async fn allocation_runs(lab: &mut Lab, d: &Bpfmand, image: &str, n: usize) -> Result<Allocations> {
    let device = lab.nics[0].name.clone();
    let native = timed_allocates(lab, n).await.context("native Allocate")?;
    restart_with_bpfman(lab, d, &bpfman_config(lab, image, "IfNotPresent")).await?;
    let cached = timed_allocates(lab, n)
        .await
        .with_context(|| format!("Allocate through bpfman, image cached\n{}", d.log()))?;
    let out = lab
        .reload_config(&bpfman_config(lab, image, "Always"))
        .await
        .map_err(|e| anyhow!("reload: {e}"))?;
    anyhow::ensure!(
        matches!(out, afxdp_dp::daemon::ReloadOutcome::Applied(_)),
        "pull policy Always not applied: {out:?}"
    );
    let pulled = timed_allocates(lab, n)
        .await
        .with_context(|| format!("Allocate through bpfman, image pulled\n{}", d.log()))?;
    let (socket, log, image) = (d.socket(), d.log(), image.to_string());
    let floor = tokio::task::spawn_blocking(move || load_attach(&socket, &image, &device, n))
        .await?
        .with_context(|| format!("bpfman Load + Attach\n{log}"))?;
    Ok(Allocations {
        native,
        cached,
        pulled,
        floor,
    })
}

/// The lab's pool as a bpfman pool loading `image` with `pull_policy`.
fn bpfman_config(lab: &Lab, image: &str, pull_policy: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "includeVirtualDevices": true,
        "pools": [{
            "name": POOL,
            "selectors": { "devices": [{ "name": lab.nics[0].name }] },
            "sharing": "pinned",
            "uid": afxdp_testnet::pod::PodUser::nobody_net_raw().uid,
            "programManager": "bpfman",
            "bpfman": { "image": image, "pullPolicy": pull_policy, "function": TCX_FUNCTION },
        }],
    })
}

/// Restarts the lab's afxdp-dp on `config` with bpfman's TCX hook, and waits
/// until the kubelet stand-in follows its new registration.
async fn restart_with_bpfman(lab: &mut Lab, d: &Bpfmand, config: &serde_json::Value) -> Result<()> {
    lab.daemon
        .take()
        .context("afxdp-dp is not in process")?
        .stop()
        .await;
    std::fs::write(&lab.paths.config, config.to_string())?;
    let opts = afxdp_dp::daemon::Options {
        bpfman: BpfmanOptions {
            socket: d.socket(),
            path_root: d.root(),
            hook: BpfmanHook::Tcx,
            call_timeout: CALL_TIMEOUT,
        },
        ..lab.paths.daemon_options()
    };
    lab.daemon = Some(afxdp_dp::daemon::Daemon::start(opts).await?);
    Ok(())
}

/// `n` timed Allocates of the lab's device, each released (untimed); one
/// untimed round first (and, after a restart, until kubelet follows the new
/// socket).
async fn timed_allocates(lab: &Lab, n: usize) -> Result<Vec<Duration>> {
    let device = lab.nics[0].name.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match allocate(lab, &device).await {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    release(lab, &device).await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        allocate(lab, &device).await?;
        samples.push(t.elapsed());
        release(lab, &device).await?;
    }
    Ok(samples)
}

async fn allocate(lab: &Lab, device: &str) -> Result<()> {
    lab.kubelet()
        .allocate(RESOURCE, &[device.to_string()])
        .await
        .map(drop)
        .map_err(|e| anyhow!("Allocate: {e}"))
}

/// An operator release of `device` (on the blocking pool), settled.
async fn release(lab: &Lab, device: &str) -> Result<()> {
    let agent = lab
        .daemon
        .as_ref()
        .context("afxdp-dp is not in process")?
        .agent
        .clone();
    let d = device.to_string();
    tokio::task::spawn_blocking(move || agent.release(&d, ReleaseBy::Operator).map(drop))
        .await?
        .map_err(|e| anyhow!("release: {e}"))?;
    lab.settle(device).await;
    Ok(())
}

/// bpfman's own `Load` (image cached) + `Attach` (TCX ingress on `device`)
/// of the same object, timed `n` times after one untimed round; each program
/// unloaded untimed. Direct client calls: blocks (run it on a blocking
/// thread).
fn load_attach(socket: &Path, image: &str, device: &str, n: usize) -> Result<Vec<Duration>> {
    let client = BpfmanClient::new(socket, CALL_TIMEOUT)?;
    let spec = LoadSpec {
        bytecode: Bytecode::Image(Image {
            url: image.to_string(),
            pull_policy: PullPolicy::IfNotPresent,
            credentials: None,
        }),
        function: TCX_FUNCTION.into(),
        program_type: ProgramType::Tcx,
        metadata: BTreeMap::from([("afxdp.io/bench".to_string(), "floor".to_string())]),
    };
    let hook = Hook::Tcx {
        iface: device.to_string(),
        priority: 50,
        direction: Direction::Ingress,
        netns: None,
    };
    let mut samples = Vec::with_capacity(n);
    for _ in 0..=n {
        let t = Instant::now();
        let program = client.load(&spec)?;
        let attached = client.attach(program.id, &hook);
        let took = t.elapsed();
        client.unload(program.id)?;
        attached?;
        samples.push(took);
    }
    // The first round warmed up (it may pull).
    samples.remove(0);
    Ok(samples)
}

/// The TCX test object, compiled into `dir` (under /tmp: bpfman's mount
/// namespace sees it).
fn tcx_object(dir: &Path) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/bpfman/tests/bpf/xsk_tcx.bpf.c");
    let out = dir.join("xsk_tcx.bpf.o");
    compile_bpf(&src, &out);
    out
}

/// Pushes `object` to `registry` (plain HTTP) as a bytecode image; returns
/// its `@sha256:...` part.
async fn push_image(object: &Path, registry: &str, cache: &Path) -> Result<String> {
    let fetcher = afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig::anonymous(cache))?;
    let bytes = std::fs::read(object)?;
    let programs = BTreeMap::from([(TCX_FUNCTION.to_string(), "tc".to_string())]);
    let maps = BTreeMap::from([("xsks_map".to_string(), "xskmap".to_string())]);
    let pinned = fetcher
        .push_bytecode(
            &format!("{registry}/afxdp/xsk-tcx:bench"),
            &bytes,
            &programs,
            &maps,
        )
        .await?;
    let at = pinned.find('@').context("pinned reference")?;
    Ok(pinned[at..].to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A row of `samples`: p50 in ms, p99 and the count in the note.
fn row(name: &str, mut samples: Vec<Duration>, note: &str) -> Row {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    let sep = if note.is_empty() { "" } else { "; " };
    Row::new(SECTION, name, ms(p50), "ms").note(format!(
        "p99 {:.2} ms, n = {}{sep}{note}",
        ms(p99),
        samples.len()
    ))
}

fn rows(a: Allocations) -> Vec<Row> {
    let native = row(
        "Allocate p50, native (afxdp-dp loads, XDP attach)",
        a.native,
        "same veth, pinned sharing",
    );
    let floor = row(
        "bpfman Load (image cached) + Attach p50, direct client",
        a.floor,
        TCX_NOTE,
    );
    // Each bpfman Allocate against the floor; its p50 against native's in
    // the note.
    let through_bpfman = |name: &str, samples: Vec<Duration>, how: &str| {
        let r = row(name, samples, "");
        let x = r.value / native.value;
        let note = r.note.clone().unwrap_or_default();
        r.versus(&floor)
            .note(format!("{note}; {x:.2}× native p50; {how}; {TCX_NOTE}"))
    };
    let cached = through_bpfman(
        "Allocate p50 through bpfman, image cached",
        a.cached,
        "pull policy IfNotPresent",
    );
    let pulled = through_bpfman(
        "Allocate p50 through bpfman, image pulled",
        a.pulled,
        "pull policy Always (bpfman fetches over HTTPS from 127.0.0.1)",
    );
    vec![native, floor, cached, pulled]
}
