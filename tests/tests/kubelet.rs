//! Kubelet-facing behaviour: re-registration after a kubelet restart, health in
//! ListAndWatch.

use std::time::{Duration, Instant};

use afxdp_lab::{Lab, LabConfig, RESOURCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_re_registers_after_kubelet_restart_and_keeps_serving() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        ..Default::default()
    })
    .await
    .expect("lab");
    let first = lab
        .kubelet()
        .wait_registered(RESOURCE, Duration::from_secs(5))
        .await
        .expect("registered");
    lab.kubelet_mut().restart().await.expect("kubelet restart");
    let again = lab
        .kubelet()
        .wait_registered(RESOURCE, Duration::from_secs(10))
        .await
        .expect("re-registered");
    assert_eq!(again.resource_name, RESOURCE);
    assert!(
        lab.paths.device_plugin_dir.join(&again.endpoint).exists(),
        "the plugin serves a fresh socket {} (was {})",
        again.endpoint,
        first.endpoint
    );
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(5), |d| {
            d.len() == 1 && d[0].is_healthy()
        })
        .await
        .expect("devices after restart");
    // Still serving: a pod can be admitted and receives traffic.
    let nic = lab.nics[0].name.clone();
    lab.add_pod("after-restart")
        .await
        .expect("admit after restart");
    let sent = lab.send(&nic, 4, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("traffic after restart");
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_link_changes_reaches_listandwatch() {
    // Many links changed at once reach afxdp-dp as one batch (applied from
    // one dump of the links, afxdp_dp::link_events): every change is seen.
    afxdp_testnet::require_root();
    let lab = Lab::start(LabConfig {
        nics: 12,
        ..Default::default()
    })
    .await
    .expect("lab");
    let names: Vec<String> = lab.nics.iter().map(|n| n.name.clone()).collect();
    let wait = Duration::from_secs(2);
    burst_state(&lab, &names, "down", wait, false).await;
    burst_state(&lab, &names, "up", wait, true).await;
    // Removed links too: the first four go, the others stay healthy.
    for n in &names[..4] {
        drop(afxdp_testnet::ip(&["link", "del", n]));
    }
    lab.kubelet()
        .wait_devices(RESOURCE, wait, |d| {
            d.iter()
                .all(|x| x.is_healthy() != names[..4].contains(&x.id))
        })
        .await
        .expect("removed links Unhealthy, the rest healthy");
    lab.teardown().await.expect("teardown");
}

/// Sets every link in `names` `verb` (down|up) in one `ip -batch` and waits
/// until ListAndWatch shows them all `healthy`.
async fn burst_state(lab: &Lab, names: &[String], verb: &str, wait: Duration, healthy: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("batch");
    let lines: String = names
        .iter()
        .map(|n| format!("link set dev {n} {verb}\n"))
        .collect();
    std::fs::write(&file, lines).expect("batch file");
    afxdp_testnet::ip(&["-batch", &file.to_string_lossy()]).expect("ip -batch");
    lab.kubelet()
        .wait_devices(RESOURCE, wait, |d| {
            d.len() == names.len() && d.iter().all(|x| x.is_healthy() == healthy)
        })
        .await
        .unwrap_or_else(|e| panic!("all links {verb} seen: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_is_unhealthy_within_one_second() {
    afxdp_testnet::require_root();
    let lab = Lab::start(LabConfig {
        nics: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    let other = lab.nics[1].name.clone();
    afxdp_testnet::ip(&["link", "set", &nic, "down"]).expect("link down");
    let t0 = Instant::now();
    let seen = lab
        .kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(1), |d| {
            d.iter().any(|x| x.id == nic && !x.is_healthy())
        })
        .await
        .expect("Unhealthy within 1 s");
    let took = t0.elapsed();
    assert!(
        seen.iter().any(|x| x.id == other && x.is_healthy()),
        "the other NIC stays healthy: {seen:?}"
    );
    eprintln!("link down reported after {took:?}");
    afxdp_testnet::ip(&["link", "set", &nic, "up"]).expect("link up");
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(2), |d| {
            d.iter().all(|x| x.is_healthy())
        })
        .await
        .expect("healthy again");
    // Removing the link is reported too.
    drop(afxdp_testnet::ip(&["link", "del", &nic]));
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(1), |d| {
            d.iter().any(|x| x.id == nic && !x.is_healthy())
        })
        .await
        .expect("removed link Unhealthy within 1 s");
    lab.teardown().await.expect("teardown");
}
