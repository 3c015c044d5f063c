//! A pod flooded as fast as the wire side can send (`afxdp_lab::flood`, as
//! `afxdpctl lab --flood`) keeps receiving until the flood stops and then
//! takes an exact count. The pod app under test is the debug build: before
//! the fix, the moment the kernel publishes rx entries ahead of the fill
//! entries it took for them (`xsk_flush`) tripped its fill-ring check and
//! the app died within a second or two of flooding.

use std::time::Duration;

use afxdp_lab::{flood::Flood, Lab, LabConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_pod_keeps_receiving() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    lab.add_pod("flooded").await.expect("pod");
    let flood = Flood::start(&lab, 8).expect("flood");
    let mut seen = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.push(lab.pods[0].total());
    }
    let sent = flood.sent();
    flood.stop();
    let log = lab.pods[0].app_log();
    assert!(sent > 0, "the flood sent nothing");
    // Still counting in the last half second of the flood.
    assert!(
        seen[5] > seen[4],
        "the pod stopped receiving mid-flood: totals {seen:?}, sent {sent}\n{}",
        log.join("\n")
    );
    // And alive afterwards: an exact count of datagrams still arrives.
    let before = lab.pods[0].total();
    let device = lab.pods[0].device.clone();
    let more = lab.send(&device, 4, 25).expect("send");
    lab.pods[0]
        .wait_total(before + more, Duration::from_secs(10))
        .expect("the pod receives after the flood");
    lab.teardown().await.expect("teardown");
}
