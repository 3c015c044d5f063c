//! The UDS handshake against the real daemon: the peer is checked against
//! kubelet's PodResources by namespace and name; refusals get the right nak and
//! leak no file descriptor (afxdp-dp runs in this process, so /proc/self/fd
//! counts the server's FDs too).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use afxdp_e2e::open_fds;
use afxdp_handshake::{Client, HandshakeError, PodRef, Response, Step};
use afxdp_lab::{Lab, LabConfig, Sharing, RESOURCE};

fn refused(r: Result<impl std::fmt::Debug, HandshakeError>, step: Step, nak: Response) {
    match r {
        Err(HandshakeError::Refused { step: s, response }) => {
            assert_eq!((s, response), (step, nak));
        }
        other => panic!("expected {nak:?} for {step}, got {other:?}"),
    }
}

fn run_refusals(sock: PathBuf, device: String) {
    let t = Duration::from_secs(5);
    let mut c = Client::connect(&sock, t).expect("connect");
    // Garbage, including non-UTF-8 → /nak.
    let (r, fd) = c.raw_request(b"\xff\xfe garbage", None).expect("answer");
    assert_eq!(r, Response::Nak);
    assert!(fd.is_none());
    let (r, _) = c.raw_request(b"/frobnicate, x", None).expect("answer");
    assert_eq!(r, Response::Nak);
    // The map before a successful /connect → /fd_nak.
    refused(c.xsk_map_fd(&device), Step::XskMapFd, Response::FdNak);
    // Wrong pod, wrong namespace → /host_nak.
    refused(
        c.hello(&PodRef::name("intruder")),
        Step::Connect,
        Response::HostNak,
    );
    refused(
        c.hello(&PodRef::namespaced("team-b", "p1")),
        Step::Connect,
        Response::HostNak,
    );
    // The holder, by name (as DPDK sends it) and namespaced → /host_ok.
    c.hello(&PodRef::name("p1")).expect("holder by name");
    c.hello(&PodRef::namespaced("team-a", "p1"))
        .expect("holder namespaced");
    assert_eq!(c.version().expect("version"), "0.1");
    // A second connection while the first session is open → /host_nak.
    let mut second = Client::connect(&sock, t).expect("second connect");
    refused(
        second.hello(&PodRef::namespaced("team-a", "p1")),
        Step::Connect,
        Response::HostNak,
    );
    drop(second);
    // Another device through this device's socket, or an unknown one → /fd_nak.
    refused(c.xsk_map_fd("afxnodev0"), Step::XskMapFd, Response::FdNak);
    // The real map: an FD of a BPF map.
    let map = c.xsk_map_fd(&device).expect("map fd");
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&map)
    ))
    .expect("readlink");
    assert_eq!(link.to_string_lossy(), "anon_inode:bpf-map");
    drop(map);
    c.fin().expect("fin");
    // A new session may start after the first ended (container restart).
    let mut again = Client::connect(&sock, t).expect("reconnect");
    again.hello(&PodRef::name("p1")).expect("holder again");
    again.fin().expect("fin");
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

    let before = open_fds();
    let (s, d) = (sock.clone(), device.clone());
    tokio::task::spawn_blocking(move || run_refusals(s, d))
        .await
        .expect("refusal cases");
    // The server closes its side asynchronously: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open_fds(), before, "file descriptors leaked");

    // Once kubelet no longer lists the pod, even the former holder is refused.
    lab.kubelet().remove_pod("team-a", "p1");
    let s = sock.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&s, Duration::from_secs(5)).expect("connect");
        refused(
            c.hello(&PodRef::name("p1")),
            Step::Connect,
            Response::HostNak,
        );
    })
    .await
    .expect("after removal");
    lab.teardown().await.expect("teardown");
}
