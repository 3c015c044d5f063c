//! afxdp-dp restarts (upgrade, crash): allocations are adopted from the state
//! file and the pinned links, pods keep receiving while it is down, the UDS
//! server comes back at the same path, and a later CNI DEL still releases.

use std::path::PathBuf;
use std::time::Duration;

use afxdp_dp::daemon::Daemon;
use afxdp_handshake::{Client, PodRef};
use afxdp_lab::{Lab, LabConfig, Sharing, RESOURCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_daemon_adopts_allocations_and_pods_keep_receiving() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        sharing: Sharing::Uds,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    lab.add_pod("survivor").await.expect("pod");
    let first = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(first, Duration::from_secs(10))
        .expect("before restart");

    // Down: the program stays attached (pinned link), traffic still flows.
    lab.daemon.take().expect("daemon").stop().await;
    assert!(
        afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &nic),
        "program detached when afxdp-dp stopped"
    );
    let second = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(first + second, Duration::from_secs(10))
        .expect("while afxdp-dp is down");

    // Up again: the allocation is adopted, kubelet sees the device allocated
    // (healthy, in use), the UDS server is back at the same path.
    lab.daemon = Some(
        Daemon::start(lab.paths.daemon_options())
            .await
            .expect("restart afxdp-dp"),
    );
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let alloc = agent.allocation(&nic).expect("allocation adopted");
    assert_eq!(alloc.pool, "lab");
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
            d.len() == 1 && d[0].is_healthy()
        })
        .await
        .expect("re-registered with the device");
    let sock = PathBuf::from(&lab.pods[0].mounts[0].1).join("afxdp.sock");
    let handshake = tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&sock, Duration::from_secs(5))?;
        c.hello(&PodRef::namespaced("lab", "survivor"))?;
        c.fin()
    })
    .await
    .expect("join");
    handshake.expect("UDS handshake after restart");
    let third = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(first + second + third, Duration::from_secs(10))
        .expect("after restart");

    // A DEL after the restart releases as usual.
    lab.remove_pod("survivor").await.expect("remove");
    assert!(
        !afxdp_e2e::xdp_attached(&nic),
        "program still attached after DEL"
    );
    assert!(agent.allocation(&nic).is_none());
    lab.teardown().await.expect("teardown");
}
