//! 1,000 hostile UDS clients against one pod's device socket — garbage,
//! truncated and oversized messages, FDs sent unasked, half-open and stalled
//! connections — while another pod's handshakes go on: those all succeed,
//! the hammered pod can still connect once the storm is over, and the open
//! descriptor count comes back to where it was (afxdp-dp runs in this
//! process, so /proc/self/fd counts its sockets too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afxdp_e2e::open_fds;
use afxdp_handshake::{Client, Response};
use afxdp_lab::{cni, Lab, LabConfig, RESOURCE};

const CLIENTS: usize = 1000;

/// Client `i` of the storm: `Err` when it could not even connect; the
/// connection it keeps open (stalled), if any.
fn hostile(sock: &Path, i: usize) -> Result<Option<Client>, String> {
    let t = Duration::from_secs(2);
    let mut c = Client::connect(sock, t).map_err(|e| format!("client {i}: {e}"))?;
    let answered = |r: Result<(Response, Option<std::os::fd::OwnedFd>), _>| {
        if let Ok((_, Some(fd))) = r {
            panic!("a hostile client got an FD: {fd:?}");
        }
    };
    match i % 6 {
        0 => answered(c.raw_request(b"\x00\xff\xfe\x01garbage", None)),
        1 => answered(c.raw_request(b"/conn", None)),
        2 => answered(c.raw_request(&vec![b'A'; 64 * 1024], None)),
        3 => {
            let f = std::fs::File::open("/dev/null").expect("an fd to send");
            answered(c.raw_request(b"/xsk_map_fd, x", Some(std::os::fd::AsFd::as_fd(&f))));
        }
        // Half-open: connect, say nothing, close.
        4 => {}
        // Stalled: keep it open, silent.
        _ => return Ok(Some(c)),
    }
    Ok(None)
}

/// Admit `pod` for the device kubelet gives it and plumb it with CNI ADD;
/// returns (device, socket, pod netns).
async fn plumbed(lab: &Lab, pod: &str) -> (String, PathBuf, afxdp_testnet::Netns) {
    let admission = lab
        .kubelet()
        .admit_pod("team-a", pod, "app", RESOURCE, 1)
        .await
        .expect("admit");
    let device = admission.device_ids[0].clone();
    let sock = PathBuf::from(&admission.response.mounts[0].host_path).join("afxdp.sock");
    let netns = afxdp_testnet::Netns::new("afxhc").expect("netns");
    let conf = cni::net_conf(&device, &lab.paths.node_api, "1.1.0");
    let container = format!("c-{pod}");
    let add = cni::exec(
        &lab.cni,
        "ADD",
        &container,
        Some(netns.path()),
        "net1",
        "team-a",
        pod,
        &conf,
    )
    .expect("exec ADD");
    assert!(add.success, "ADD: {} {}", add.stdout, add.stderr);
    (device, sock, netns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_leak_nothing_and_stall_no_other_pod() {
    afxdp_testnet::require_root();
    let lab = Lab::start(LabConfig {
        nics: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    let (dev_a, sock_a, ns_a) = plumbed(&lab, "victim").await;
    let (dev_b, sock_b, ns_b) = plumbed(&lab, "bystander").await;
    let probe = Path::new(env!("CARGO_BIN_EXE_afxdp-handshake-probe"));
    let before = open_fds();

    let storm = {
        let sock = sock_a.clone();
        tokio::task::spawn_blocking(move || {
            let (mut stalled, mut refused) = (Vec::new(), Vec::new());
            for i in 0..CLIENTS {
                match hostile(&sock, i) {
                    Ok(c) => stalled.extend(c),
                    Err(e) => refused.push(e),
                }
                // Stalled ones are held a while, then let go in batches.
                if stalled.len() >= 50 {
                    stalled.clear();
                }
            }
            refused
        })
    };
    let mut bystander_ok = 0;
    while !storm.is_finished() {
        afxdp_e2e::handshake_probe(
            probe,
            &ns_b,
            &sock_b,
            &dev_b,
            ("team-a", "bystander"),
            "hello",
        )
        .unwrap_or_else(|e| panic!("the other pod's handshake failed during the storm: {e}"));
        bystander_ok += 1;
    }
    let refused = storm.await.expect("storm");
    assert!(
        refused.is_empty(),
        "the socket refused connections: {refused:?}"
    );
    assert!(
        bystander_ok > 0,
        "the storm ended before any bystander handshake"
    );

    // The hammered pod itself connects again once its socket is quiet.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match afxdp_e2e::handshake_probe(
            probe,
            &ns_a,
            &sock_a,
            &dev_a,
            ("team-a", "victim"),
            "hello",
        ) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("the victim pod cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // A leak is more descriptors; fewer is an unrelated one closing late.
    while open_fds() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = open_fds();
    assert!(
        after <= before,
        "file descriptors leaked: {before} before, {after} after"
    );
    for (dev, ns, pod) in [(&dev_a, &ns_a, "victim"), (&dev_b, &ns_b, "bystander")] {
        let conf = cni::net_conf(dev, &lab.paths.node_api, "1.1.0");
        let del = cni::exec(
            &lab.cni,
            "DEL",
            &format!("c-{pod}"),
            Some(ns.path()),
            "net1",
            "team-a",
            pod,
            &conf,
        )
        .expect("exec DEL");
        assert!(del.success, "DEL: {} {}", del.stdout, del.stderr);
    }
    lab.teardown().await.expect("teardown");
}
