//! CNI ADD is all or nothing: a failure injected after a step leaves
//! nothing behind, whatever the step. This file covers the steps the IPAM,
//! policy and ethtoolCmds tests do not: afxdp-dp unreachable after the
//! lease, the pod netns gone after the lease and the claim, and the channel
//! count refused after the move (veth keeps at least its peer's tx queues
//! while XDP runs on it). Each time: an error with the spec's code, no
//! lease held, the device in the host netns.

use std::path::Path;

use afxdp_lab::{Lab, LabConfig, RESOURCE};

const NET: &str = "afxdp-lab";

fn host_local(data_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "host-local",
        "ranges": [[{ "subnet": "10.81.0.0/24" }]],
        "dataDir": data_dir,
    })
}

use afxdp_e2e::{cni_add as add, cni_code as code};

/// Nothing of a failed ADD is left: no lease, the device in the host netns.
fn assert_nothing_left(data: &Path, device: &str) {
    assert!(
        afxdp_e2e::host_local_leases(data, NET).is_empty(),
        "lease kept after a failed ADD"
    );
    assert!(
        afxdp_netdev::get(device).expect("lookup").is_some(),
        "{device} left in the pod netns"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_lease_or_the_move_undoes_the_add() {
    afxdp_testnet::require_root();
    let data = tempfile::tempdir().expect("data dir");
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 4,
        ipam: Some(host_local(data.path())),
        // Two channels: refused by veth while its peer sends on four.
        ethtool_cmds: vec!["-L -device- combined 2".into()],
        ..Default::default()
    })
    .await
    .expect("lab");
    let admission = lab
        .kubelet()
        .admit_pod("lab", "rb", "app", RESOURCE, 1)
        .await
        .expect("allocate");
    let device = admission.device_ids[0].clone();
    let conf = lab.net_conf(&device);
    let netns = afxdp_testnet::Netns::new("afxrb").expect("netns");

    // After the move: the channel count is refused; the device comes back.
    let out = add(&lab, &conf, "rb", netns.path());
    assert!(!out.success && code(&out) == 102, "{out:?}");
    assert!(out.stdout.contains("setting 2 channels"), "{out:?}");
    assert_nothing_left(data.path(), &device);

    // After the lease and the claim: the pod netns is gone.
    let gone = Path::new("/var/run/netns/afxdp-rollback-gone");
    let out = add(&lab, &conf, "rb", gone);
    assert!(!out.success, "{out:?}");
    assert!(out.stdout.contains("afxdp-rollback-gone"), "{out:?}");
    assert_nothing_left(data.path(), &device);

    // After the lease: afxdp-dp is unreachable (code 11: try again later).
    if let Some(d) = lab.daemon.take() {
        d.stop().await;
    }
    let out = add(&lab, &conf, "rb", netns.path());
    assert!(!out.success && code(&out) == 11, "{out:?}");
    assert_nothing_left(data.path(), &device);
    assert!(
        netns
            .exec(&["ip", "-o", "link", "show"])
            .expect("links")
            .lines()
            .count()
            == 1,
        "more than lo in the pod netns"
    );
    drop(netns);
    lab.teardown().await.expect("teardown");
}
