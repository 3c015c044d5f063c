//! A `cdq` (subfunction) pool on a device without devlink: the pool
//! advertises its subfunction slots (`<parent>sf<n>`), and an Allocate of one
//! fails with an error naming the device and why (no devlink instance: a
//! veth is no PCI device), leaving nothing behind: no allocation, no XDP
//! program, no UDS directory; the slots stay listed and healthy. No device
//! on this machine supports subfunctions, so the success path is covered by
//! unit tests with a fake devlink (`afxdp-dp`'s `subfunction` module) and the
//! kernel's own refusal by `afxdp-netdev`'s devlink tests (also run in
//! Debian's kernel by `tests/qemu/devlink.sh`). Real kernel, afxdp-dp,
//! kubelet stand-in.

use std::time::Duration;

use afxdp_kubelet_standin::Health;
use afxdp_lab::{Lab, LabConfig, POOL, RESOURCE};

const WAIT: Duration = Duration::from_secs(10);

/// The lab pool in `cdq` mode: `secondary` slots on the first NIC, the
/// default (one) on the others.
fn cdq_config(nics: &[String], secondary: u32) -> serde_json::Value {
    let uid = afxdp_lab::unprivileged::PodUser::nobody_net_raw().uid;
    let devices: Vec<_> = nics
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            0 => serde_json::json!({ "name": n, "secondary": secondary }),
            _ => serde_json::json!({ "name": n }),
        })
        .collect();
    serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "includeVirtualDevices": true,
        "pools": [{
            "name": POOL,
            "mode": "cdq",
            "selectors": { "devices": devices },
            "sharing": "uds",
            "uid": uid,
            "xdpMode": "native",
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdq_allocate_on_a_device_without_devlink_fails_clearly_and_leaves_nothing() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nics: Vec<String> = lab.nics.iter().map(|n| n.name.clone()).collect();
    let outcome = lab
        .reload_config(&cdq_config(&nics, 2))
        .await
        .expect("reload");
    eprintln!("reload: {outcome:?}");

    let mut slots = vec![
        format!("{}sf1", nics[0]),
        format!("{}sf2", nics[0]),
        format!("{}sf1", nics[1]),
    ];
    slots.sort();
    let listed = lab
        .kubelet()
        .wait_devices(RESOURCE, WAIT, |d| {
            let mut ids: Vec<String> = d.iter().map(|d| d.id.clone()).collect();
            ids.sort();
            ids == slots && d.iter().all(|d| d.health == Health::Healthy)
        })
        .await;
    assert!(
        listed.is_ok(),
        "slots not listed: {listed:?}, want {slots:?}"
    );

    let failure = match lab.try_add_pod("sf").await {
        Ok(pod) => panic!("a cdq pod was admitted on a veth: {:?}", pod.device),
        Err(f) => f,
    };
    let msg = failure.error.to_string();
    eprintln!("Allocate refused: {msg}");
    assert!(msg.contains("has no devlink instance"), "{msg}");
    assert!(msg.contains("not a PCI device"), "{msg}");
    assert!(
        nics.iter().any(|n| msg.contains(&format!("device {n} "))),
        "the parent device is not named: {msg}"
    );
    assert!(msg.contains("sf"), "the slot is not named: {msg}");

    // Nothing left: no allocation, no program, no UDS directory.
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert!(agent.allocations().is_empty(), "{:?}", agent.allocations());
    for nic in &nics {
        assert!(!afxdp_e2e::xdp_attached(nic), "{nic} carries a program");
    }
    let uds = afxdp_e2e::entries_under(&lab.paths.state_dir.join("uds"));
    assert!(uds.is_empty(), "UDS directories left: {uds:?}");
    // The slots are still there for the next try, healthy.
    let still = lab
        .kubelet()
        .wait_devices(RESOURCE, WAIT, |d| {
            d.len() == slots.len() && d.iter().all(|d| d.health == Health::Healthy)
        })
        .await;
    assert!(still.is_ok(), "{still:?}");

    lab.teardown().await.expect("teardown");
}
