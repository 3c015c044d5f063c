//! afxdp-dp with `programManager: bpfman` against a real `bpfman-rpc`
//! (`afxdp_testnet::bpfman::Bpfmand`) and the real Allocate (the kubelet
//! stand-in's device-plugin gRPC): root, and bpfman-rpc installed (these
//! tests fail in CI without them, skip elsewhere).
//!
//! This kernel refuses bpfman's XDP programs (freplace): with the XDP hook
//! every Allocate fails at bpfman's Load, a real refusal whose cause must
//! reach kubelet with nothing left behind. The success path runs with
//! afxdp-dp's `--bpfman-hook tcx` and a tc function of an object that holds
//! the built-in program's `xsks_map` (`host/bpfman/tests/bpf/xsk_tcx.bpf.c`):
//! load, metadata, the XSKMAP pinned into the pod's directory, restarts,
//! reconcile and unload. XDP itself runs in the qemu guest
//! (`tests/qemu/bpfman-xdp.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_bpfman::{
    BpfmanClient, Bytecode, ListFilter, LoadSpec, Program, ProgramType, META_ALLOCATION,
    META_DEVICE, META_NODE, META_POOL, META_PROGRAM_NAME, META_XDP_MODE,
};
use afxdp_dp::daemon::Daemon;
use afxdp_dp::programs::{BpfmanHook, BpfmanOptions};
use afxdp_lab::{Lab, LabConfig, Sharing, NODE_NAME, POOL, RESOURCE};
use afxdp_testnet::bpfman::{compile_bpf, Bpfmand};

const TIMEOUT: Duration = Duration::from_secs(30);
const TCX_FUNCTION: &str = "xsk_tcx_count";

/// A tc program the verifier refuses: packet data read without a bounds check.
const REJECTED_SRC: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

SEC("tc")
int unchecked_read(struct __sk_buff *skb)
{
	unsigned char *data = (unsigned char *)(long)skb->data;
	return data[100];
}

char _license[] SEC("license") = "GPL";
"#;

/// Objects bpfman reads: under /tmp, which bpfman's mount namespace shares.
struct Objects {
    _dir: tempfile::TempDir,
    builtin: PathBuf,
    tcx: PathBuf,
    rejected: PathBuf,
}

impl Objects {
    fn build() -> Objects {
        let dir = tempfile::Builder::new()
            .prefix("afxdp-bpfman-objs-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let builtin = dir.path().join("xsk_redirect.bpf.o");
        std::fs::write(&builtin, afxdp_program::builtin_object()).expect("builtin object");
        let tcx = dir.path().join("xsk_tcx.bpf.o");
        let src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/bpfman/tests/bpf/xsk_tcx.bpf.c");
        compile_bpf(&src, &tcx);
        let rejected_src = dir.path().join("rejected.bpf.c");
        std::fs::write(&rejected_src, REJECTED_SRC).expect("write source");
        let rejected = dir.path().join("rejected.bpf.o");
        compile_bpf(&rejected_src, &rejected);
        Objects {
            _dir: dir,
            builtin,
            tcx,
            rejected,
        }
    }
}

/// The lab's pool as a bpfman pool: `extra` keys merged into it.
fn bpfman_config(lab: &Lab, sharing: Sharing, extra: serde_json::Value) -> serde_json::Value {
    let devices: Vec<_> = lab
        .nics
        .iter()
        .map(|n| serde_json::json!({ "name": n.name }))
        .collect();
    let mut pool = serde_json::json!({
        "name": POOL,
        "selectors": { "devices": devices },
        "sharing": sharing.as_config(),
        "uid": afxdp_testnet::pod::PodUser::nobody_net_raw().uid,
        "programManager": "bpfman",
    });
    if let (Some(p), serde_json::Value::Object(e)) = (pool.as_object_mut(), extra) {
        p.extend(e);
    }
    serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "logLevel": "debug",
        "includeVirtualDevices": true,
        "pools": [pool],
    })
}

/// A lab whose afxdp-dp loads through `d` with `hook`, its pool configured
/// by `extra`.
async fn bpfman_lab(d: &Bpfmand, hook: BpfmanHook, nics: usize, extra: serde_json::Value) -> Lab {
    bpfman_lab_sharing(d, hook, nics, Sharing::Pinned, extra).await
}

async fn bpfman_lab_sharing(
    d: &Bpfmand,
    hook: BpfmanHook,
    nics: usize,
    sharing: Sharing,
    extra: serde_json::Value,
) -> Lab {
    let mut lab = Lab::start(LabConfig {
        nics,
        queues: 1,
        sharing,
        ..Default::default()
    })
    .await
    .expect("lab");
    stop_daemon(&mut lab).await;
    let config = bpfman_config(&lab, sharing, extra);
    std::fs::write(&lab.paths.config, config.to_string()).expect("config");
    start_daemon(&mut lab, d, hook).await;
    lab
}

/// Stops afxdp-dp.
async fn stop_daemon(lab: &mut Lab) {
    lab.daemon.take().expect("daemon").stop().await;
}

/// Starts afxdp-dp with bpfman reached through `d`, and waits until the
/// kubelet stand-in holds its new registration (a socket that exists).
async fn start_daemon(lab: &mut Lab, d: &Bpfmand, hook: BpfmanHook) {
    let old = lab
        .kubelet()
        .wait_registered(RESOURCE, TIMEOUT)
        .await
        .ok()
        .map(|r| r.endpoint);
    let opts = afxdp_dp::daemon::Options {
        bpfman: bpfman_options(d, hook),
        ..lab.paths.daemon_options()
    };
    lab.daemon = Some(Daemon::start(opts).await.expect("afxdp-dp"));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let now = lab
            .kubelet()
            .wait_registered(RESOURCE, TIMEOUT)
            .await
            .expect("registered");
        let socket = lab.paths.device_plugin_dir.join(&now.endpoint);
        if Some(&now.endpoint) != old.as_ref() || socket.exists() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "afxdp-dp did not register again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bpfman_options(d: &Bpfmand, hook: BpfmanHook) -> BpfmanOptions {
    BpfmanOptions {
        socket: d.socket(),
        path_root: d.root(),
        hook,
        call_timeout: TIMEOUT,
    }
}

/// bpfman's programs of the lab's node.
fn ours(client: &BpfmanClient) -> Vec<Program> {
    client
        .list(&ListFilter::matching(META_NODE, NODE_NAME))
        .expect("List")
}

fn client(d: &Bpfmand) -> BpfmanClient {
    BpfmanClient::new(d.socket(), TIMEOUT).expect("client")
}

/// Runs a blocking bpfman call off the test's runtime threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn list(d: &Bpfmand) -> Vec<Program> {
    let c = client(d);
    blocking(move || ours(&c)).await
}

fn meta(p: &Program) -> &BTreeMap<String, String> {
    &p.managed.as_ref().expect("bpfman's record").metadata
}

/// Allocate must fail with `cause` in kubelet's error, leaving nothing
/// loaded in bpfman and nothing pinned in afxdp-dp's map directory.
async fn assert_refused_clean(lab: &Lab, d: &Bpfmand, cause: &[&str]) {
    let nic = lab.nics[0].name.clone();
    let err = lab
        .kubelet()
        .allocate(RESOURCE, std::slice::from_ref(&nic))
        .await
        .expect_err("Allocate succeeded");
    let msg = err.to_string();
    for c in cause {
        assert!(
            msg.contains(c),
            "{c:?} not in the Allocate error: {msg}\n{}",
            d.log()
        );
    }
    eprintln!("Allocate refused as expected: {msg}");
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert!(agent.allocation(&nic).is_none(), "allocation recorded");
    if !cause.iter().any(|c| c.contains("not reachable")) {
        assert!(list(d).await.is_empty(), "left loaded in bpfman");
    }
    let pins = lab.paths.state_dir.join("pins/bpfman-maps");
    assert_eq!(
        afxdp_e2e::entries_under(&pins),
        Vec::<String>::new(),
        "pins left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_allocates_name_the_cause_and_leave_nothing() {
    let Some(mut d) = Bpfmand::start_or_skip() else {
        return;
    };
    let objs = Objects::build();
    // XDP through bpfman: this kernel refuses the freplace program bpfman
    // loads for it (EPERM) — a real refusal.
    let mut lab = bpfman_lab(
        &d,
        BpfmanHook::Xdp,
        1,
        serde_json::json!({ "program": objs.builtin.display().to_string() }),
    )
    .await;
    assert_refused_clean(&lab, &d, &["bpfman Load of xsk_redirect of file", "failed"]).await;

    // An image bpfman cannot get: the registry is not there.
    let missing = format!("127.0.0.1:1/afxdp/missing@sha256:{}", "0".repeat(64));
    let out = lab
        .reload_config(&bpfman_config(
            &lab,
            Sharing::Pinned,
            serde_json::json!({ "bpfman": { "image": missing, "pullPolicy": "Always" } }),
        ))
        .await
        .expect("reload");
    assert!(
        matches!(out, afxdp_dp::daemon::ReloadOutcome::Applied(_)),
        "{out:?}"
    );
    assert_refused_clean(
        &lab,
        &d,
        &[&format!("image {missing}"), "error sending request"],
    )
    .await;

    // The verifier's rejection, through the TCX hook (XDP fails before it).
    stop_daemon(&mut lab).await;
    let config = bpfman_config(
        &lab,
        Sharing::Pinned,
        serde_json::json!({ "program": objs.rejected.display().to_string(),
                             "bpfman": { "function": "unchecked_read" } }),
    );
    std::fs::write(&lab.paths.config, config.to_string()).expect("config");
    start_daemon(&mut lab, &d, BpfmanHook::Tcx).await;
    assert_refused_clean(&lab, &d, &["bpfman Load of unchecked_read", "failed"]).await;

    // bpfman down.
    d.kill();
    assert_refused_clean(
        &lab,
        &d,
        &["bpfman is not reachable", &d.socket().display().to_string()],
    )
    .await;
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcx_allocation_pins_the_map_survives_restarts_and_unloads() {
    let Some(mut d) = Bpfmand::start_or_skip() else {
        return;
    };
    let objs = Objects::build();
    let extra = serde_json::json!({
        "program": objs.tcx.display().to_string(),
        "bpfman": { "function": TCX_FUNCTION, "priority": 7 },
    });
    // A program of this node left in a pool that is no longer bpfman's, and
    // one loaded for the lab's pool without a link: both unloaded at start.
    let stray_other_pool = load_stray(&d, &objs.tcx, "gone", "eth9").await;
    let mut lab = bpfman_lab(&d, BpfmanHook::Tcx, 2, extra).await;
    let (nic0, nic1) = (lab.nics[0].name.clone(), lab.nics[1].name.clone());
    assert!(
        list(&d).await.iter().all(|p| p.id != stray_other_pool),
        "the other pool's program is still loaded"
    );

    // Allocate: one program, our metadata with the allocation's id, the
    // XSKMAP pinned in the pod's directory for the pod's user.
    let resp = lab
        .kubelet()
        .allocate(RESOURCE, std::slice::from_ref(&nic0))
        .await
        .unwrap_or_else(|e| panic!("Allocate: {e}\n{}", d.log()));
    // The pod kubelet admitted holds it (PodResources; a start releases
    // what kubelet does not hold).
    lab.kubelet().record_assignment(
        "default",
        "p0",
        "app",
        RESOURCE,
        std::slice::from_ref(&nic0),
    );
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let alloc = agent.allocation(&nic0).expect("allocation");
    let programs = list(&d).await;
    assert_eq!(programs.len(), 1, "{programs:?}");
    let m = meta(&programs[0]);
    assert_eq!(m.get(META_ALLOCATION), Some(&alloc.allocation_id));
    assert!(!alloc.allocation_id.is_empty());
    assert_eq!(m.get(META_DEVICE), Some(&nic0));
    assert_eq!(m.get(META_POOL).map(String::as_str), Some(POOL));
    assert_eq!(
        m.get(META_PROGRAM_NAME),
        Some(&format!("afxdp-{POOL}-{nic0}"))
    );
    assert_eq!(alloc.program_id, programs[0].id);
    let mount = resp.container_responses[0]
        .mounts
        .iter()
        .find(|mnt| mnt.container_path.ends_with(&nic0))
        .expect("the device's mount");
    let pin = Path::new(&mount.host_path).join("xsks_map");
    let uid = afxdp_testnet::pod::PodUser::nobody_net_raw().uid;
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
        assert_eq!((md.uid(), md.mode() & 0o777), (uid, 0o600));
    }
    let entries = afxdp_e2e::entries_under(Path::new(&mount.host_path));
    assert_eq!(
        entries,
        vec![pin.display().to_string()],
        "only the XSKMAP reaches the pod"
    );

    // afxdp-dp restarts: the allocation adopts its program, nothing is
    // loaded twice, the pin stays; a program loaded for the pool's other
    // device without a link (a crash between Load and Attach) is unloaded.
    stop_daemon(&mut lab).await;
    let stray = load_stray(&d, &objs.tcx, POOL, &nic1).await;
    start_daemon(&mut lab, &d, BpfmanHook::Tcx).await;
    assert!(
        list(&d).await.iter().all(|p| p.id != stray),
        "the stray is loaded"
    );
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert_eq!(
        agent.allocation(&nic0).map(|a| a.program_id),
        Some(alloc.program_id)
    );
    assert_eq!(list(&d).await.len(), 1);
    assert!(pin.exists());

    // bpfman is down when afxdp-dp starts: the allocation is kept as
    // persisted (what bpfman holds cannot be asked); once bpfman is back,
    // the pool's manager adopts the program at its first call.
    d.kill();
    stop_daemon(&mut lab).await;
    start_daemon(&mut lab, &d, BpfmanHook::Tcx).await;
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert_eq!(
        agent.allocation(&nic0).map(|a| a.program_id),
        Some(alloc.program_id),
        "allocation dropped while bpfman was down"
    );
    assert!(
        pin.exists(),
        "the pod's map pin removed while bpfman was down"
    );

    // bpfman restarts under afxdp-dp: the next Allocate reconnects, loads
    // one program for its device; the release of the first unloads it.
    d.restart();
    lab.kubelet()
        .allocate(RESOURCE, std::slice::from_ref(&nic1))
        .await
        .unwrap_or_else(|e| panic!("Allocate after bpfman restarted: {e}\n{}", d.log()));
    let programs = list(&d).await;
    assert_eq!(programs.len(), 2, "{programs:?}");
    let released = {
        let agent = agent.clone();
        let nic0 = nic0.clone();
        blocking(move || agent.release(&nic0, afxdp_dp::agent::ReleaseBy::Operator)).await
    };
    released.expect("release");
    lab.settle(&nic0).await;
    let left: Vec<String> = list(&d)
        .await
        .iter()
        .filter_map(|p| meta(p).get(META_DEVICE).cloned())
        .collect();
    assert_eq!(left, vec![nic1.clone()]);
    assert!(!pin.exists(), "{} left after release", pin.display());

    // A start adopts only the program loaded for the persisted allocation:
    // a program whose metadata names another allocation id is unloaded and
    // the allocation reported lost.
    lab.kubelet().record_assignment(
        "default",
        "p1",
        "app",
        RESOURCE,
        std::slice::from_ref(&nic1),
    );
    stop_daemon(&mut lab).await;
    let state_file = lab.paths.state_dir.join("allocations.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    state["allocations"][&nic1]["allocation_id"] = serde_json::json!("another-allocation");
    std::fs::write(&state_file, state.to_string()).expect("write state");
    start_daemon(&mut lab, &d, BpfmanHook::Tcx).await;
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert!(
        agent.allocation(&nic1).is_none(),
        "adopted another allocation's program"
    );
    assert!(
        list(&d).await.is_empty(),
        "the other allocation's program is loaded"
    );
    let pin1 = lab.paths.state_dir.join("pins/bpfman-maps").join(&nic1);
    assert!(!pin1.exists(), "{} left", pin1.display());
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uds_pod_gets_bpfmans_xskmap_over_the_handshake() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let objs = Objects::build();
    let extra = serde_json::json!({
        "program": objs.tcx.display().to_string(),
        "bpfman": { "function": TCX_FUNCTION },
    });
    let mut lab = bpfman_lab_sharing(&d, BpfmanHook::Tcx, 1, Sharing::Uds, extra).await;
    // The unprivileged pod app is ready once the handshake handed it an FD
    // (afxdp-dp's BPF_OBJ_GET of bpfman's pin) and its socket went into
    // that XSKMAP (an FD of any other map type refuses the update).
    lab.add_pod("uds-pod")
        .await
        .unwrap_or_else(|e| panic!("pod: {e}\n{}", d.log()));
    let nic = lab.nics[0].name.clone();
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let alloc = agent.allocation(&nic).expect("allocation");
    let programs = list(&d).await;
    assert_eq!(programs.len(), 1, "{programs:?}");
    assert_eq!(
        meta(&programs[0]).get(META_ALLOCATION),
        Some(&alloc.allocation_id)
    );
    lab.remove_pod("uds-pod").await.expect("CNI DEL");
    lab.settle(&nic).await;
    assert!(list(&d).await.is_empty(), "left loaded after the pod's DEL");
    lab.teardown().await.expect("teardown");
}

/// Pushes the TCX test object as a bytecode image (plain HTTP, as afxdpctl
/// would) and returns its `@sha256:...` part.
async fn push_tcx_image(object: &Path, registry: &str, cache: &Path) -> String {
    push_tcx_image_as(object, registry, cache, afxdp_oci::Auth::Anonymous).await
}

/// [`push_tcx_image`] to a registry that wants `auth`.
async fn push_tcx_image_as(
    object: &Path,
    registry: &str,
    cache: &Path,
    auth: afxdp_oci::Auth,
) -> String {
    let config = afxdp_oci::FetcherConfig {
        auth,
        ..afxdp_oci::FetcherConfig::anonymous(cache)
    };
    let fetcher = afxdp_oci::Fetcher::new(config).expect("fetcher");
    let bytes = std::fs::read(object).expect("read object");
    let programs = BTreeMap::from([
        (TCX_FUNCTION.to_string(), "tc".to_string()),
        ("xsk_redirect".to_string(), "xdp".to_string()),
    ]);
    let maps = BTreeMap::from([("xsks_map".to_string(), "xskmap".to_string())]);
    let pinned = fetcher
        .push_bytecode(
            &format!("{registry}/afxdp/xsk-tcx:v1"),
            &bytes,
            &programs,
            &maps,
        )
        .await
        .expect("push bytecode image");
    pinned[pinned.find('@').expect("pinned reference")..].to_string()
}

async fn release(lab: &Lab, device: &str) {
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let device = device.to_string();
    blocking(move || agent.release(&device, afxdp_dp::agent::ReleaseBy::Operator))
        .await
        .expect("release");
    lab.settle(&lab.nics[0].name).await;
}

/// A registry (Basic auth with `htpasswd`, if any), its HTTPS mirror, and
/// bpfman trusting the mirror's certificate; `None` to skip (see
/// [`Bpfmand::start_or_skip`]).
fn https_registry_and_bpfman(
    htpasswd: Option<&Path>,
) -> Option<(
    afxdp_testnet::registry::Registry,
    afxdp_testnet::registry::HttpsMirror,
    Bpfmand,
)> {
    let reg = afxdp_testnet::registry::Registry::start_or_skip(htpasswd)?;
    let mirror = reg.https_mirror();
    let ca = mirror.ca().display().to_string();
    let d = Bpfmand::start_or_skip_with_env(&[("SSL_CERT_FILE", &ca)])?;
    Some((reg, mirror, d))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_bpfman_pulls_for_afxdp_dp_missing_and_tampered() {
    let Some((reg, mirror, d)) = https_registry_and_bpfman(None) else {
        return;
    };
    let objs = Objects::build();
    let cache = tempfile::tempdir().expect("cache");
    let digest = push_tcx_image(&objs.tcx, reg.addr(), cache.path()).await;
    let image = format!("{}/afxdp/xsk-tcx{digest}", mirror.addr());
    let pool = |image: &str| {
        serde_json::json!({ "bpfman": {
            "image": image, "pullPolicy": "Always", "function": TCX_FUNCTION } })
    };
    let lab = bpfman_lab(&d, BpfmanHook::Tcx, 1, pool(&image)).await;
    let nic = lab.nics[0].name.clone();

    // Pulled by bpfman over HTTPS, loaded and attached for the allocation.
    allocate_from_image(&lab, &d, &image).await;
    release(&lab, &nic).await;
    assert!(list(&d).await.is_empty());

    // A policy's select-program answer reaches bpfman as it decided:
    // image, function, priority, and the mode in the metadata.
    let policy = serde_json::json!({
        "file": afxdp_testnet::policy_component("image-by-label").display().to_string(),
        "config": { "default": "tcx", "images": { "tcx": {
            "image": image, "function": TCX_FUNCTION, "mode": "generic", "priority": 40 } } },
    });
    let config = bpfman_config(
        &lab,
        Sharing::Pinned,
        serde_json::json!({ "policy": policy, "bpfman": { "pullPolicy": "Always" } }),
    );
    let out = lab.reload_config(&config).await.expect("reload");
    assert_eq!(
        out,
        afxdp_dp::daemon::ReloadOutcome::Applied(vec![(POOL.to_string(), Ok(()))])
    );
    lab.kubelet()
        .allocate(RESOURCE, std::slice::from_ref(&nic))
        .await
        .unwrap_or_else(|e| panic!("Allocate by the policy: {e}\n{}", d.log()));
    let programs = list(&d).await;
    assert_eq!(programs.len(), 1, "{programs:?}");
    let managed = programs[0].managed.as_ref().expect("record");
    assert!(
        matches!(&managed.bytecode, Some(Bytecode::Image(i)) if i.url == image),
        "{managed:?}"
    );
    assert_eq!(managed.name, TCX_FUNCTION);
    assert_eq!(
        managed.metadata.get(META_XDP_MODE).map(String::as_str),
        Some("generic")
    );
    let key = managed
        .metadata
        .get("afxdp.io/program")
        .cloned()
        .unwrap_or_default();
    assert!(key.contains("priority 40"), "{key}");
    release(&lab, &nic).await;
    assert!(list(&d).await.is_empty());

    // An image the registry does not have.
    let missing = format!("{}/afxdp/xsk-tcx@sha256:{}", mirror.addr(), "e".repeat(64));
    let config = bpfman_config(&lab, Sharing::Pinned, pool(&missing));
    lab.reload_config(&config).await.expect("reload");
    assert_refused_clean(&lab, &d, &[&format!("image {missing}"), "manifest unknown"]).await;

    // The registry serves other bytes under the pinned digest: the pull
    // must not load them.
    let manifest = reg.blob_file(digest.trim_start_matches('@'));
    let mut tampered = std::fs::read(&manifest).expect("manifest blob");
    tampered.extend_from_slice(b"\n");
    std::fs::write(&manifest, tampered).expect("tamper");
    lab.reload_config(&bpfman_config(&lab, Sharing::Pinned, pool(&image)))
        .await
        .expect("reload");
    assert_refused_clean(&lab, &d, &[&format!("image {image}"), "Invalid digest"]).await;
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_behind_basic_auth_pulled_with_the_pools_credentials_file() {
    use afxdp_testnet::registry::{installed_or_skip, write_htpasswd, HTPASSWD_BIN};
    if !installed_or_skip(HTPASSWD_BIN) {
        return;
    }
    let secrets = tempfile::tempdir().expect("tempdir");
    let htpasswd = secrets.path().join("htpasswd");
    write_htpasswd(&htpasswd, "afxdp", "s3cret");
    let Some((reg, mirror, d)) = https_registry_and_bpfman(Some(&htpasswd)) else {
        return;
    };
    let objs = Objects::build();
    let cache = tempfile::tempdir().expect("cache");
    let basic = afxdp_oci::Auth::Basic {
        user: "afxdp".into(),
        password: "s3cret".into(),
    };
    let digest = push_tcx_image_as(&objs.tcx, reg.addr(), cache.path(), basic).await;
    let image = format!("{}/afxdp/xsk-tcx{digest}", mirror.addr());
    // dockerconfigjson files for the HTTPS registry bpfman pulls from.
    let creds = |name: &str, password: &str| {
        let file = secrets.path().join(name);
        let doc = serde_json::json!({ "auths": { mirror.addr(): {
            "username": "afxdp", "password": password } } });
        std::fs::write(&file, doc.to_string()).expect("write credentials");
        file
    };
    let (good, wrong) = (creds("good.json", "s3cret"), creds("wrong.json", "nope"));
    let pool = |credentials: Option<&Path>| {
        let mut bpfman = serde_json::json!({
            "image": image, "pullPolicy": "Always", "function": TCX_FUNCTION });
        if let Some(f) = credentials {
            bpfman["credentialsFile"] = serde_json::json!(f.display().to_string());
        }
        serde_json::json!({ "bpfman": bpfman })
    };

    // Without credentials, then with a wrong password: bpfman's pull is
    // refused, the cause reaches kubelet, nothing is left behind.
    let lab = bpfman_lab(&d, BpfmanHook::Tcx, 1, pool(None)).await;
    let nic = lab.nics[0].name.clone();
    assert_refused_clean(&lab, &d, &[&format!("image {image}"), "Not authorized"]).await;
    reload_applied(&lab, pool(Some(&wrong))).await;
    assert_refused_clean(&lab, &d, &[&format!("image {image}"), "Not authorized"]).await;

    // With the pool's credentials file: pulled, loaded, attached.
    reload_applied(&lab, pool(Some(&good))).await;
    let program = allocate_from_image(&lab, &d, &image).await;
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert_eq!(
        agent.allocation(&nic).map(|a| a.program_id),
        Some(program.id)
    );
    release(&lab, &nic).await;
    assert!(list(&d).await.is_empty());
    lab.teardown().await.expect("teardown");
}

/// Allocates the lab's first device and returns the one program bpfman
/// then holds, loaded from `image`.
async fn allocate_from_image(lab: &Lab, d: &Bpfmand, image: &str) -> Program {
    lab.kubelet()
        .allocate(RESOURCE, std::slice::from_ref(&lab.nics[0].name))
        .await
        .unwrap_or_else(|e| panic!("Allocate from {image}: {e}\n{}", d.log()));
    let mut programs = list(d).await;
    assert_eq!(programs.len(), 1, "{programs:?}");
    let program = programs.remove(0);
    let recorded = program.managed.as_ref().and_then(|m| m.bytecode.as_ref());
    assert!(
        matches!(recorded, Some(Bytecode::Image(i)) if i.url == image),
        "{recorded:?}"
    );
    program
}

/// Reloads the lab's pool configured by `extra`; the config is applied.
async fn reload_applied(lab: &Lab, extra: serde_json::Value) {
    let config = bpfman_config(lab, Sharing::Pinned, extra);
    let out = lab.reload_config(&config).await.expect("reload");
    assert!(
        matches!(out, afxdp_dp::daemon::ReloadOutcome::Applied(_)),
        "{out:?}"
    );
}

/// Loads the test object for `device` of `pool` on the lab's node, without
/// attaching it (what a crash between Load and Attach leaves).
async fn load_stray(d: &Bpfmand, object: &Path, pool: &str, device: &str) -> u32 {
    let c = client(d);
    let spec = LoadSpec {
        bytecode: Bytecode::File(object.to_path_buf()),
        function: TCX_FUNCTION.into(),
        program_type: ProgramType::Tcx,
        metadata: BTreeMap::from([
            (META_NODE.to_string(), NODE_NAME.to_string()),
            (META_POOL.to_string(), pool.to_string()),
            (META_DEVICE.to_string(), device.to_string()),
        ]),
    };
    blocking(move || c.load(&spec).expect("Load").id).await
}
