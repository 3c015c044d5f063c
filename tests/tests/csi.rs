//! The CSI mode (`sharing: csi`) through its real gRPC, on the real kernel:
//! afxdp-dp (in this process) with a pool sharing through CSI, a kubelet
//! stand-in admitting a pod (Allocate), the API server fake recording the
//! annotations Allocate patches onto the pod, then a tonic CSI client calling
//! the node plugin's socket as kubelet does for an inline volume:
//! NodePublishVolume mounts a fresh bpffs at the target with the device's
//! XSKMAP pinned, owned by the pod's runAsUser/fsGroup and opened by that
//! user without privileges; publish again is a no-op; bad requests get their
//! gRPC code and leave nothing; NodeUnpublishVolume (twice) removes it.
//! The real kubelet and API server run the same path in tests/k8s (e2e.sh csi).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_dp::csi::{CsiOptions, DRIVER, THRU_ANNOTATIONS};
use afxdp_dp::daemon::{Daemon, Options};
use afxdp_kubelet_standin::KubeletStandin;
use afxdp_lab::{PoolSpec, Sharing};
use afxdp_proto::csi::{
    self, identity_client::IdentityClient, node_client::NodeClient, volume_capability,
};
use afxdp_testnet::apiserver::FakeApiServer;
use tonic::Code;

const NODE: &str = "csi-node";
const POOL: &str = "csi";
const RESOURCE: &str = "afxdp/csi";
const NS: &str = "apps";
const POD_USER: u32 = 2345;
const POD_GROUP: u32 = 3456;

/// Unmounts (lazily) whatever a failed test left mounted at these targets.
struct Targets(Vec<PathBuf>);

impl Drop for Targets {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(t);
        }
    }
}

/// The one pool, sharing through CSI.
fn config(nic: &str) -> serde_json::Value {
    PoolSpec {
        sharing: Sharing::Csi,
        ..PoolSpec::new(POOL, &[nic.to_string()])
    }
    .config()
}

/// A NodePublishVolume request as kubelet sends it for an inline volume.
fn publish_request(target: &Path, pod: &str, uid: &str) -> csi::NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        (THRU_ANNOTATIONS, "true"),
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("csi.storage.k8s.io/pod.name", pod),
        ("csi.storage.k8s.io/pod.namespace", NS),
        ("csi.storage.k8s.io/pod.uid", uid),
        ("csi.storage.k8s.io/serviceAccount.name", "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    csi::NodePublishVolumeRequest {
        volume_id: format!("csi-{uid}"),
        target_path: target.display().to_string(),
        volume_capability: Some(csi::VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume::default(),
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }),
        volume_context: context,
        ..Default::default()
    }
}

fn unpublish_request(target: &Path) -> csi::NodeUnpublishVolumeRequest {
    csi::NodeUnpublishVolumeRequest {
        volume_id: "csi-x".into(),
        target_path: target.display().to_string(),
    }
}

/// The kernel's id of the BPF map behind an open FD (`/proc/self/fdinfo`).
fn map_id(fd: &std::os::fd::OwnedFd) -> u32 {
    use std::os::fd::AsRawFd;
    let info =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
    info.lines()
        .find_map(|l| l.strip_prefix("map_id:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a map FD")
}

/// Open the pin as `uid`/`gid` with no capabilities (a child process that
/// drops to them before `BPF_OBJ_GET`); the errno when refused.
fn open_as(pin: &Path, uid: u32, gid: u32) -> Result<(), std::io::Error> {
    use std::os::unix::process::CommandExt;
    let pin = pin.to_path_buf();
    let mut cmd = std::process::Command::new("true");
    cmd.uid(uid).gid(gid);
    // SAFETY: the closure only makes a syscall (no allocation or locks
    // shared with the parent); std runs it after the uid/gid change.
    unsafe {
        cmd.pre_exec(move || afxdp_xsk::bpf::obj_get(&pin).map(drop));
    }
    cmd.status().map(drop)
}

async fn expect_code<T: std::fmt::Debug>(
    what: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    words: &str,
) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(
                s.message().contains(words),
                "{what}: {:?} lacks {words:?}",
                s.message()
            );
        }
        Ok(r) => panic!("{what}: accepted: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_volume_publish_and_unpublish_through_annotations() {
    afxdp_testnet::require_root();
    let root = afxdp_testnet::PinRoot::new().expect("pin root");
    let dir = root.path().parent().expect("dir").to_path_buf();
    let wire = afxdp_testnet::Netns::new("afcw").expect("wire netns");
    let nic = afxdp_testnet::unique_name("afc");
    let peer = afxdp_testnet::unique_name("afq");
    let _pair = afxdp_testnet::VethPair::create(
        afxdp_testnet::VethOptions::new(&nic, &peer).b_netns(&wire),
    )
    .expect("veth");
    wire.exec(&["ip", "link", "set", &peer, "up"])
        .expect("peer up");
    let apiserver = FakeApiServer::start().expect("API server fake");
    let kubeconfig = apiserver.write_kubeconfig(&dir).expect("kubeconfig");
    let (dp_dir, pod_resources) = (dir.join("device-plugins"), dir.join("pod-resources.sock"));
    std::fs::write(dir.join("config.json"), config(&nic).to_string()).expect("config");
    let kubelet = KubeletStandin::start(&dp_dir, &pod_resources)
        .await
        .expect("kubelet stand-in");
    let mut daemon = Daemon::start(Options {
        config: dir.join("config.json"),
        device_plugin_dir: dp_dir,
        pod_resources_socket: pod_resources,
        state_dir: dir.clone(),
        node_api_socket: dir.join("node.sock"),
        node_name: NODE.into(),
        kubelet_poll: Duration::from_millis(100),
        policy_cache_dir: dir.join("policy-cache"),
        config_poll: Duration::from_secs(60),
        kubeconfig: Some(kubeconfig),
        prepare_attachments: false,
        metrics_address: None,
        bpfman: Default::default(),
    })
    .await
    .expect("afxdp-dp");
    let socket = dir.join("csi").join("csi.sock");
    daemon
        .serve_csi(&CsiOptions {
            socket: socket.clone(),
            registry_dir: None,
        })
        .expect("CSI sockets");
    kubelet
        .wait_registered(RESOURCE, Duration::from_secs(10))
        .await
        .expect("registered");
    let healthy = kubelet
        .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
            d.iter().any(|d| d.id == nic && d.is_healthy())
        })
        .await;
    assert!(healthy.is_ok(), "{nic} never listed healthy: {healthy:?}");

    // Identity, as kubelet's registration asks.
    let channel = afxdp_proto::unix::connect(&socket, Duration::from_secs(5))
        .await
        .expect("CSI socket");
    let info = IdentityClient::new(channel.clone())
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner();
    assert_eq!(info.name, DRIVER);
    let mut node = NodeClient::new(channel);
    let node_info = node
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner();
    assert_eq!(node_info.node_id, NODE);

    // Two pods exist, none bound here yet: an Allocate cannot tell which
    // pod to annotate, so it fails clearly and leaves the device free.
    for pod in ["p1", "p2"] {
        apiserver.set_pod(NS, pod, BTreeMap::new(), BTreeMap::new());
        apiserver.set_security(NS, pod, Some(POD_USER), Some(POD_GROUP));
    }
    let refused = kubelet
        .allocate(RESOURCE, std::slice::from_ref(&nic))
        .await
        .expect_err("Allocate with no pod to annotate");
    let refused = refused.to_string();
    assert!(
        refused.contains("cannot tell which pod"),
        "Allocate's error: {refused}"
    );
    assert!(
        daemon.agent.allocation(&nic).is_none(),
        "the refused allocation stayed"
    );
    assert!(
        !afxdp_e2e::xdp_attached(&nic),
        "the refused allocation left the program on {nic}"
    );
    // The scheduler binds `p1` here; kubelet admits it (Allocate).
    apiserver.schedule_pod(NS, "p1", NODE, RESOURCE, 1);
    let admitted = kubelet
        .admit_pod(NS, "p1", "app", RESOURCE, 1)
        .await
        .expect("Allocate");
    assert_eq!(admitted.device_ids, vec![nic.clone()]);
    assert!(
        admitted.response.mounts.is_empty(),
        "CSI mode mounts nothing at Allocate: {:?}",
        admitted.response.mounts
    );
    // Allocate annotated the pod (a merge patch): the device's entry.
    let ann = apiserver.annotations(NS, "p1").expect("pod");
    let key = format!("csi.afxdp.io/device.{nic}");
    let entry: serde_json::Value =
        serde_json::from_str(ann.get(&key).expect("device annotation")).expect("JSON");
    assert_eq!(entry["pool"], POOL, "{entry}");
    assert_eq!(entry["maps"], serde_json::json!(["xsks_map"]), "{entry}");
    assert_eq!(
        entry["mountPath"],
        format!("/tmp/afxdp_dp/{nic}"),
        "{entry}"
    );
    assert!(apiserver
        .requests()
        .iter()
        .any(|r| r.starts_with(&format!("PATCH /api/v1/namespaces/{NS}/pods/p1"))));

    let uid1 = apiserver.pod_uid(NS, "p1").expect("uid");
    let pods_dir = dir.join("pods");
    let target = pods_dir
        .join(&uid1)
        .join("volumes/kubernetes.io~csi/maps/mount");
    let target2 = pods_dir
        .join("p2")
        .join("volumes/kubernetes.io~csi/maps/mount");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::create_dir_all(target2.parent().expect("parent")).expect("mkdir");
    let _targets = Targets(vec![target.clone(), target2.clone()]);

    // Publish: a fresh bpffs with <device>/xsks_map, the pod's.
    node.node_publish_volume(publish_request(&target, "p1", &uid1))
        .await
        .expect("NodePublishVolume");
    assert!(afxdp_program::is_bpffs(&target).expect("statfs"));
    let pin = target.join(&nic).join("xsks_map");
    let meta = std::fs::metadata(&pin).expect("pin");
    assert_eq!((meta.uid(), meta.gid()), (POD_USER, POD_GROUP));
    assert_eq!(meta.mode() & 0o777, 0o660);
    let dev_dir = std::fs::metadata(target.join(&nic)).expect("device dir");
    assert_eq!((dev_dir.uid(), dev_dir.gid()), (POD_USER, POD_GROUP));
    // The very map afxdp-dp attached for the device.
    let pinned = afxdp_xsk::bpf::obj_get(&pin).expect("open pin");
    let own = daemon.agent.xsk_map_fd(&nic).expect("device map");
    assert_eq!(map_id(&pinned), map_id(&own));
    // The pod's user opens it without privileges; another user cannot.
    open_as(&pin, POD_USER, POD_GROUP).expect("pod user opens the map");
    let other = open_as(&pin, POD_USER + 1, POD_GROUP + 1).expect_err("other user");
    assert_eq!(other.raw_os_error(), Some(libc::EACCES), "{other}");

    // Publishing again (kubelet retries) changes nothing.
    node.node_publish_volume(publish_request(&target, "p1", &uid1))
        .await
        .expect("NodePublishVolume again");
    assert_eq!(
        map_id(&afxdp_xsk::bpf::obj_get(&pin).expect("pin")),
        map_id(&own)
    );

    // Bad requests: their code, and nothing left at the target.
    let cases: Vec<(&str, csi::NodePublishVolumeRequest, Code, &str)> = vec![
        (
            "no volume id",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.volume_id.clear();
                r
            },
            Code::InvalidArgument,
            "volume_id",
        ),
        (
            "relative target",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.target_path = "pods/x/mount".into();
                r
            },
            Code::InvalidArgument,
            "absolute",
        ),
        (
            "block volume",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.volume_capability = Some(csi::VolumeCapability {
                    access_type: Some(volume_capability::AccessType::Block(Default::default())),
                    access_mode: None,
                });
                r
            },
            Code::InvalidArgument,
            "block",
        ),
        (
            "read-only",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.readonly = true;
                r
            },
            Code::InvalidArgument,
            "read-only",
        ),
        (
            "persistent volume",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.volume_context.remove("csi.storage.k8s.io/ephemeral");
                r
            },
            Code::InvalidArgument,
            "ephemeral inline volumes only",
        ),
        (
            "no thru-annotations",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.volume_context.remove(THRU_ANNOTATIONS);
                r
            },
            Code::InvalidArgument,
            THRU_ANNOTATIONS,
        ),
        (
            "no podInfoOnMount",
            {
                let mut r = publish_request(&target2, "p1", &uid1);
                r.volume_context.remove("csi.storage.k8s.io/pod.uid");
                r
            },
            Code::InvalidArgument,
            "podInfoOnMount",
        ),
        (
            "pod gone",
            publish_request(&target2, "ghost", "u-ghost"),
            Code::NotFound,
            "ghost",
        ),
        (
            "another pod's UID",
            publish_request(&target2, "p1", "not-p1"),
            Code::FailedPrecondition,
            "UID",
        ),
        (
            "pod with no devices",
            {
                let uid2 = apiserver.pod_uid(NS, "p2").expect("uid");
                publish_request(&target2, "p2", &uid2)
            },
            Code::FailedPrecondition,
            "no csi.afxdp.io/device",
        ),
    ];
    for (what, req, code, words) in cases {
        expect_code(what, node.node_publish_volume(req).await, code, words).await;
        assert!(
            !target2.exists(),
            "{what}: {} left behind",
            target2.display()
        );
    }
    // A pod that copies p1's annotations is not given p1's device.
    let mut copied = BTreeMap::new();
    copied.insert(key.clone(), ann[&key].clone());
    apiserver.set_pod(NS, "p2", copied, BTreeMap::new());
    let uid2 = apiserver.pod_uid(NS, "p2").expect("uid");
    expect_code(
        "annotations copied from another pod",
        node.node_publish_volume(publish_request(&target2, "p2", &uid2))
            .await,
        Code::PermissionDenied,
        &format!("allocated to {NS}/p1"),
    )
    .await;
    assert!(
        !target2.exists(),
        "a refused publish left {}",
        target2.display()
    );

    // Unpublish: unmounted and removed; again: still success.
    drop(pinned);
    for round in 0..2 {
        node.node_unpublish_volume(unpublish_request(&target))
            .await
            .unwrap_or_else(|e| panic!("NodeUnpublishVolume #{round}: {e}"));
        assert!(!target.exists(), "round {round}: target still there");
    }
    expect_code(
        "unpublish without a volume id",
        node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: String::new(),
            target_path: target.display().to_string(),
        })
        .await,
        Code::InvalidArgument,
        "volume_id",
    )
    .await;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&pods_dir.display().to_string()),
        "a bpffs is still mounted under {}",
        pods_dir.display()
    );
    drop(own);
    daemon.stop().await;
    kubelet.shutdown().await;
}
