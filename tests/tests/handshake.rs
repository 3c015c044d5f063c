//! The UDS handshake against the real daemon: the peer must be the pod CNI
//! ADD plumbed the device for (namespace and name), held by it in kubelet's
//! PodResources, and a process inside that pod's netns, whatever the client
//! sends; refusals get the right nak and leak no file descriptor (afxdp-dp
//! runs in this process, so /proc/self/fd counts the server's FDs too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afxdp_e2e::open_fds;
use afxdp_handshake::{Client, HandshakeError, PodRef, Response, Step};
use afxdp_lab::{cni, Lab, LabConfig, Sharing, RESOURCE};

fn refused(r: Result<impl std::fmt::Debug, HandshakeError>, step: Step, nak: Response) {
    match r {
        Err(HandshakeError::Refused { step: s, response }) => {
            assert_eq!((s, response), (step, nak));
        }
        other => panic!("expected {nak:?} for {step}, got {other:?}"),
    }
}

fn probe(netns: &afxdp_testnet::Netns, sock: &Path, device: &str, mode: &str) {
    let bin = Path::new(env!("CARGO_BIN_EXE_afxdp-handshake-probe"));
    if let Err(e) = afxdp_e2e::handshake_probe(bin, netns, sock, device, ("team-a", "p1"), mode) {
        panic!("probe {mode}: {e}");
    }
}

/// The same pod name from this process, in the host netns: refused
/// (before the fix, a name-only `/connect` was enough).
fn outside_the_pod(sock: PathBuf) {
    let mut c = Client::connect(&sock, Duration::from_secs(5)).expect("connect");
    refused(
        c.hello(&PodRef::name("p1")),
        Step::Connect,
        Response::HostNak,
    );
    refused(
        c.hello(&PodRef::namespaced("team-a", "p1")),
        Step::Connect,
        Response::HostNak,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_get_the_right_nak_and_leak_no_fd() {
    afxdp_testnet::require_root();
    let lab = Lab::start(LabConfig {
        nics: 1,
        sharing: Sharing::Uds,
        ..Default::default()
    })
    .await
    .expect("lab");
    let device = lab.nics[0].name.clone();
    let admission = lab
        .kubelet()
        .admit_pod("team-a", "p1", "app", RESOURCE, 1)
        .await
        .expect("admit");
    assert_eq!(admission.device_ids, vec![device.clone()]);
    let host_dir = PathBuf::from(&admission.response.mounts[0].host_path);
    let sock = host_dir.join("afxdp.sock");
    assert!(sock.exists());

    // Before CNI ADD nobody is the device's pod.
    let netns = afxdp_testnet::Netns::new("afxhs").expect("netns");
    probe(&netns, &sock, &device, "refused");
    let conf = cni::net_conf(&device, &lab.paths.node_api, "1.1.0");
    let add = cni::exec(
        &lab.cni,
        "ADD",
        "c-p1",
        Some(netns.path()),
        "net1",
        "team-a",
        "p1",
        &conf,
    )
    .expect("exec ADD");
    assert!(add.success, "ADD: {} {}", add.stdout, add.stderr);

    let s = sock.clone();
    tokio::task::spawn_blocking(move || outside_the_pod(s))
        .await
        .expect("outside the pod");
    let before = open_fds();
    probe(&netns, &sock, &device, "holder");
    // The server closes its side asynchronously: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    // A leak is more descriptors; fewer is an unrelated one closing late.
    while open_fds() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = open_fds();
    assert!(
        after <= before,
        "file descriptors leaked: {before} before, {after} after"
    );

    // Once kubelet no longer lists the pod, even the former holder is refused.
    lab.kubelet().remove_pod("team-a", "p1");
    probe(&netns, &sock, &device, "refused");
    let del = cni::exec(
        &lab.cni,
        "DEL",
        "c-p1",
        Some(netns.path()),
        "net1",
        "team-a",
        "p1",
        &conf,
    )
    .expect("exec DEL");
    assert!(del.success, "DEL: {} {}", del.stdout, del.stderr);
    lab.teardown().await.expect("teardown");
}
