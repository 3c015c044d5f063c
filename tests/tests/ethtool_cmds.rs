//! Upstream `ethtoolCmds` take effect, translated (never run through a
//! shell): `-L -device- combined N` sets the channels afxdp-cni applies in
//! the pod netns, and `-N` flow rules reach afxdp-cni as required filter
//! rules with `-ip-` the pod's leased address, so a device that refuses
//! them (veth has no ntuple filters) fails the ADD with the rule named and
//! everything undone: the device back in the host netns, the lease
//! released.

use std::path::Path;

use afxdp_lab::{Lab, LabConfig};

fn host_local(data_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "host-local",
        "ranges": [[{ "subnet": "10.79.0.0/24" }]],
        "dataDir": data_dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_channels_command_sets_the_pods_channels() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 4,
        ethtool_cmds: vec!["-L -device- combined 2".into()],
        ..Default::default()
    })
    .await
    .expect("lab");
    // veth refuses fewer rx queues than its peer's tx queues while XDP runs
    // on it (veth_set_channels: EINVAL): the wire side sends on two.
    let peer = lab.nics[0].peer.clone();
    lab.wire
        .run(move || afxdp_netdev::ethtool::set_channels(&peer, 2))
        .expect("netns")
        .expect("peer channels");
    lab.add_pod("p").await.expect("pod");
    let pod = &lab.pods[0];
    let device = pod.device.clone();
    let channels = pod
        .netns
        .run(move || afxdp_netdev::ethtool::channels(&device))
        .expect("netns")
        .expect("channels");
    assert_eq!(channels.rx_queues(), 2, "{channels:?}");
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntuple_command_is_required_and_a_refusal_undoes_the_add() {
    afxdp_testnet::require_root();
    let data = tempfile::tempdir().expect("data dir");
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        ipam: Some(host_local(data.path())),
        ethtool_cmds: vec!["-N -device- flow-type udp4 dst-ip -ip- dst-port 4242 action".into()],
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    let err = lab
        .add_pod("p")
        .await
        .map(|_| ())
        .expect_err("veth refuses ntuple rules; the pool's rules are required");
    let msg = err.to_string();
    // The rule afxdp-cni was asked for: the pod's leased address, the port,
    // the first planned queue.
    assert!(
        msg.contains("refused filter rule 0")
            && msg.contains("udp4 dst 10.79.0.")
            && msg.contains("dst port 4242 -> queue 0"),
        "{msg}"
    );
    assert!(
        msg.contains("\\\"code\\\":104") || msg.contains("\"code\":104"),
        "{msg}"
    );
    assert!(
        afxdp_netdev::get(&nic).expect("lookup").is_some(),
        "device left in the pod netns"
    );
    assert!(
        afxdp_e2e::host_local_leases(data.path(), "afxdp-lab").is_empty(),
        "lease kept after a failed ADD"
    );
    lab.teardown().await.expect("teardown");
}
