//! afxdp-cni delegates IPAM to a real plugin (Debian's host-local and
//! static, found on CNI_PATH): the pod's device gets the leased address and
//! routes inside its netns, the result carries them, DEL releases the
//! lease, and an ADD that fails after leasing (the device not allocated,
//! the MTU refused after the move) releases it too and leaves the device
//! in the host netns. A delegated plugin's error keeps its code.

use std::path::Path;
use std::time::Duration;

use afxdp_lab::{cni, Lab, LabConfig, RESOURCE};

const NET: &str = "afxdp-lab";

fn host_local(data_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "host-local",
        "ranges": [[{ "subnet": "10.77.0.0/24", "gateway": "10.77.0.1" }]],
        "routes": [{ "dst": "10.78.0.0/16" }],
        "dataDir": data_dir,
    })
}

/// The addresses host-local has leased.
fn leases(data_dir: &Path) -> Vec<String> {
    afxdp_e2e::host_local_leases(data_dir, NET)
}

use afxdp_e2e::{cni_add as exec_add, cni_code as code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_leased_addresses_and_every_failed_add_gives_the_lease_back() {
    afxdp_testnet::require_root();
    let data = tempfile::tempdir().expect("data dir");
    let mut lab = Lab::start(LabConfig {
        nics: 2,
        ipam: Some(host_local(data.path())),
        ..Default::default()
    })
    .await
    .expect("lab");

    // ADD: the address and the route are in the pod netns and the result.
    lab.add_pod("p").await.expect("pod with an address");
    let pod = &lab.pods[0];
    let result = pod.add.json().expect("result");
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("an address")
        .to_string();
    assert!(address.starts_with("10.77.0."), "{result}");
    assert_eq!(result["ips"][0]["interface"], 0, "{result}");
    assert_eq!(result["routes"][0]["dst"], "10.78.0.0/16", "{result}");
    let in_pod = pod
        .netns
        .exec(&["ip", "-o", "addr", "show", "dev", &pod.device])
        .expect("ip addr");
    assert!(in_pod.contains(&address), "{in_pod}");
    let routes = pod.netns.exec(&["ip", "route", "show"]).expect("ip route");
    assert!(
        routes.contains(&format!("10.78.0.0/16 via 10.77.0.1 dev {}", pod.device)),
        "{routes}"
    );
    let ip = address.split('/').next().expect("ip").to_string();
    assert_eq!(leases(data.path()), vec![ip.clone()]);
    let sent = lab.send(&pod.device, 4, 10).expect("send");
    pod.wait_total(sent, Duration::from_secs(10))
        .expect("the pod receives");

    // CHECK holds the pod to its ADD result, naming what differs.
    let mut check_conf = lab.net_conf(&pod.device);
    check_conf["prevResult"] = result.clone();
    let check = |lab: &Lab| {
        lab.pods[0]
            .cni(lab, "CHECK", &check_conf)
            .expect("exec CHECK")
    };
    let ok = check(&lab);
    assert!(ok.success, "{ok:?}");
    pod.netns
        .exec(&["ip", "route", "del", "10.78.0.0/16"])
        .expect("drop the route");
    let out = check(&lab);
    assert!(!out.success && code(&out) == 103, "{out:?}");
    assert!(
        out.stdout.contains("route 10.78.0.0/16 via 10.77.0.1"),
        "{out:?}"
    );
    pod.netns
        .exec(&["ip", "addr", "del", &address, "dev", &pod.device])
        .expect("drop the address");
    let out = check(&lab);
    assert!(!out.success && code(&out) == 103, "{out:?}");
    assert!(
        out.stdout.contains(&format!("address {address}")),
        "{out:?}"
    );

    // DEL releases the lease (and the device).
    lab.remove_pod("p").await.expect("remove");
    assert!(
        leases(data.path()).is_empty(),
        "lease kept: {:?}",
        leases(data.path())
    );

    // A failure after the lease: the device is not allocated.
    let netns = afxdp_testnet::Netns::new("afxipam").expect("netns");
    let free = lab.nics[0].name.clone();
    let out = exec_add(&lab, &lab.net_conf(&free), "not-allocated", netns.path());
    assert!(!out.success && code(&out) == 101, "{out:?}");
    assert!(
        leases(data.path()).is_empty(),
        "lease kept after a refused ADD"
    );

    // A failure after the move: the MTU is refused; the device comes back.
    let admission = lab
        .kubelet()
        .admit_pod("lab", "mtu", "app", RESOURCE, 1)
        .await
        .expect("allocate");
    let device = admission.device_ids[0].clone();
    let mut conf = lab.net_conf(&device);
    conf["mtu"] = 70000.into();
    let out = exec_add(&lab, &conf, "mtu", netns.path());
    assert!(!out.success && code(&out) == 102, "{out:?}");
    assert!(
        afxdp_netdev::get(&device).expect("lookup").is_some(),
        "device left in the pod netns"
    );
    assert!(
        leases(data.path()).is_empty(),
        "lease kept after a failed ADD"
    );
    let del = cni::exec(
        &lab.cni,
        "DEL",
        "mtu",
        Some(netns.path()),
        "net1",
        "lab",
        "mtu",
        &conf,
    )
    .expect("exec DEL");
    assert!(del.success, "{del:?}");
    lab.kubelet().remove_pod("lab", "mtu");

    // The delegated plugin's own error, code kept: host-local without ranges.
    let mut conf = lab.net_conf(&device);
    conf["ipam"] = serde_json::json!({ "type": "host-local", "dataDir": data.path() });
    let out = exec_add(&lab, &conf, "no-range", netns.path());
    assert!(!out.success, "{out:?}");
    assert!(out.stdout.contains("IPAM plugin host-local"), "{out:?}");
    assert_ne!(code(&out), 0);
    drop(netns);
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_plugin_gives_the_configured_address() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        ipam: Some(serde_json::json!({
            "type": "static",
            "addresses": [{ "address": "10.79.0.9/24", "gateway": "10.79.0.1" }],
            "routes": [{ "dst": "0.0.0.0/0" }],
        })),
        ..Default::default()
    })
    .await
    .expect("lab");
    lab.add_pod("s").await.expect("pod");
    let pod = &lab.pods[0];
    // Each config version is answered in its own result format.
    for (version, ip_version) in [("0.4.0", Some("4")), ("1.0.0", None)] {
        let mut conf = lab.net_conf(&pod.device);
        conf["cniVersion"] = version.into();
        let out = pod.cni(&lab, "ADD", &conf).expect("exec ADD again");
        let r = out.json().unwrap_or_else(|| panic!("{version}: {out:?}"));
        assert_eq!(r["cniVersion"], version, "{r}");
        assert_eq!(
            r["ips"][0]["version"].as_str(),
            ip_version,
            "{version}: {r}"
        );
        assert_eq!(r["ips"][0]["address"], "10.79.0.9/24", "{r}");
    }
    let in_pod = pod
        .netns
        .exec(&["ip", "-o", "addr", "show", "dev", &pod.device])
        .expect("ip addr");
    assert!(in_pod.contains("10.79.0.9/24"), "{in_pod}");
    let routes = pod.netns.exec(&["ip", "route", "show"]).expect("ip route");
    assert!(routes.contains("default via 10.79.0.1"), "{routes}");
    lab.teardown().await.expect("teardown");
}
