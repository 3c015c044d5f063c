//! A reloaded config changes the pools without a restart: a new pool is
//! served at once with the free devices it selects; a device the config
//! moves while a pod holds it stays (Unhealthy, so kubelet gives it to no
//! one) until that pod's release, then joins its new pool; a pool the
//! config drops stays registered while it holds a device and stops once
//! released. Pods keep receiving throughout; an invalid config in between
//! changes nothing. Real kernel, afxdp-dp, afxdp-cni, kubelet stand-in.

use std::time::Duration;

use afxdp_kubelet_standin::{DeviceState, Health};
use afxdp_lab::{Lab, LabConfig, RESOURCE};

const MOVED: &str = "afxdp/moved";
const WAIT: Duration = Duration::from_secs(10);

/// A v1alpha1 config of `pools` (name → devices by name), UDS sharing.
fn config(pools: &[(&str, Vec<String>)]) -> serde_json::Value {
    let uid = afxdp_lab::unprivileged::PodUser::nobody_net_raw().uid;
    let pools: Vec<serde_json::Value> = pools
        .iter()
        .map(|(name, devices)| {
            let devices: Vec<_> = devices
                .iter()
                .map(|d| serde_json::json!({ "name": d }))
                .collect();
            serde_json::json!({
                "name": name,
                "selectors": { "devices": devices },
                "sharing": "uds",
                "uid": uid,
                "xdpMode": "native",
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "includeVirtualDevices": true,
        "pools": pools,
    })
}

/// The devices of a snapshot as (id, healthy), sorted.
fn listed(devices: &[DeviceState]) -> Vec<(String, bool)> {
    let mut l: Vec<(String, bool)> = devices
        .iter()
        .map(|d| (d.id.clone(), d.health == Health::Healthy))
        .collect();
    l.sort();
    l
}

async fn wait_listed(lab: &Lab, resource: &str, want: Vec<(String, bool)>) {
    let got = lab
        .kubelet()
        .wait_devices(resource, WAIT, |d| listed(d) == want)
        .await;
    assert!(got.is_ok(), "{resource}: {got:?}, want {want:?}");
}

async fn wait_unregistered(lab: &Lab, resource: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while lab.kubelet().is_registered(resource) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{resource} still registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receives(lab: &Lab, pod: &str) {
    let p = lab.pods.iter().find(|p| p.name == pod).expect("pod");
    let before = p.total();
    let sent = lab.send(&p.device, 4, 10).expect("send");
    p.wait_total(before + sent, WAIT)
        .unwrap_or_else(|e| panic!("{pod} stopped receiving: {e}"));
}

fn applied(out: &afxdp_dp::daemon::ReloadOutcome) -> bool {
    matches!(out, afxdp_dp::daemon::ReloadOutcome::Applied(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pools_follow_the_config_and_held_devices_move_only_once_released() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 3,
        queues: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nics: Vec<String> = lab.nics.iter().map(|n| n.name.clone()).collect();
    lab.add_pod("p0").await.expect("p0");
    let held = lab.pods[0].device.clone();
    let free: Vec<String> = nics.iter().filter(|n| **n != held).cloned().collect();
    let (stays, moves) = (free[0].clone(), free[1].clone());

    // "lab" keeps one free device; "moved" takes the other free one and the held one.
    let out = lab
        .reload_config(&config(&[
            ("lab", vec![stays.clone()]),
            ("moved", vec![held.clone(), moves.clone()]),
        ]))
        .await
        .expect("reload");
    assert!(applied(&out), "{out:?}");
    lab.kubelet()
        .wait_registered(MOVED, WAIT)
        .await
        .expect("the new pool registers");
    wait_listed(&lab, MOVED, vec![(moves.clone(), true)]).await;
    wait_listed(
        &lab,
        RESOURCE,
        vec![(held.clone(), false), (stays.clone(), true)],
    )
    .await;
    let status = lab.daemon.as_ref().expect("daemon").agent.status();
    assert!(
        status.to_string().contains("\"leaving\":true"),
        "status shows the leaving device: {status}"
    );
    receives(&lab, "p0").await;

    // An invalid config changes nothing.
    let bad = serde_json::json!({ "apiVersion": "afxdp.io/v1alpha1", "pools": [{ "name": "" }] });
    let out = lab.reload_config(&bad).await.expect("reload");
    assert!(
        matches!(out, afxdp_dp::daemon::ReloadOutcome::Invalid(_)),
        "{out:?}"
    );
    wait_listed(&lab, MOVED, vec![(moves.clone(), true)]).await;

    // The new pool allocates; the held device moves once p0 is released.
    lab.add_pod_from(MOVED, "p1").await.expect("p1 from moved");
    assert_eq!(lab.pods[1].device, moves);
    receives(&lab, "p1").await;
    lab.remove_pod("p0").await.expect("remove p0");
    wait_listed(&lab, RESOURCE, vec![(stays.clone(), true)]).await;
    wait_listed(
        &lab,
        MOVED,
        vec![(held.clone(), true), (moves.clone(), true)],
    )
    .await;

    // "lab" dropped while p2 holds its device: still served until released.
    lab.add_pod("p2").await.expect("p2 from lab");
    assert_eq!(lab.pods[1].device, stays);
    let out = lab
        .reload_config(&config(&[("moved", vec![held.clone(), moves.clone()])]))
        .await
        .expect("reload");
    assert!(applied(&out), "{out:?}");
    let changes = lab
        .daemon
        .as_ref()
        .expect("daemon")
        .reloader
        .last_pool_changes();
    assert_eq!(changes.retiring, vec!["lab".to_string()], "{changes:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        lab.kubelet().is_registered(RESOURCE),
        "a dropped pool stays registered while it holds a device"
    );
    wait_listed(&lab, RESOURCE, vec![(stays.clone(), false)]).await;
    receives(&lab, "p2").await;
    lab.remove_pod("p2").await.expect("remove p2");
    wait_unregistered(&lab, RESOURCE).await;
    receives(&lab, "p1").await;

    // Back to one pool of all three: "moved" drains as p1 leaves.
    let out = lab
        .reload_config(&config(&[("lab", nics.clone())]))
        .await
        .expect("reload");
    assert!(applied(&out), "{out:?}");
    lab.kubelet()
        .wait_registered(RESOURCE, WAIT)
        .await
        .expect("lab registers again");
    wait_listed(
        &lab,
        RESOURCE,
        vec![(held.clone(), true), (stays.clone(), true)],
    )
    .await;
    lab.remove_pod("p1").await.expect("remove p1");
    wait_unregistered(&lab, MOVED).await;
    let mut all: Vec<(String, bool)> = nics.iter().map(|n| (n.clone(), true)).collect();
    all.sort();
    wait_listed(&lab, RESOURCE, all).await;
    lab.teardown().await.expect("teardown");
}
