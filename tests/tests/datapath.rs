//! The foundation's end-to-end path on the real kernel: kubelet stand-in →
//! afxdp-dp Allocate (native XDP attach) → afxdp-cni ADD (netns move) →
//! unprivileged pod app (CAP_NET_RAW only) gets the XSKMAP → receives exactly
//! the packets the wire side sent, on several queues → CNI DEL → nothing left.

use std::time::Duration;

use afxdp_e2e::{entries_under, netns_exists, xdp_attached};
use afxdp_lab::{unprivileged, Lab, LabConfig, Sharing, RESOURCE};

async fn full_path(sharing: Sharing) {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig::one_nic(sharing)).await.expect("lab");
    let nic = lab.nics[0].name.clone();

    // ListAndWatch shows the device, healthy.
    let devices = lab.kubelet().devices(RESOURCE);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].id, nic);

    let pod = lab.add_pod("p1").await.expect("pod");
    assert_eq!(pod.device, nic);
    // Allocate's answer: the env var and the per-device mount.
    assert_eq!(
        pod.envs.get("AFXDP_DEVICES_LAB").map(String::as_str),
        Some(nic.as_str()),
        "{:?}",
        pod.envs
    );
    assert_eq!(pod.mounts.len(), 1);
    let (container_dir, host_dir) = pod.mounts[0].clone();
    assert_eq!(
        container_dir,
        std::path::PathBuf::from(format!("/tmp/afxdp_dp/{nic}"))
    );
    let expected_file = match sharing {
        Sharing::Uds => "afxdp.sock",
        Sharing::Pinned => "xsks_map",
        Sharing::Csi => unreachable!("the lab's pods take uds or pinned"),
    };
    assert!(
        host_dir.join(expected_file).exists(),
        "{} has no {expected_file}",
        host_dir.display()
    );
    // CNI ADD: the device kept its name, lives in the pod netns, and is up.
    let result = pod.add.json().expect("ADD result JSON");
    assert_eq!(result["interfaces"][0]["name"], nic.as_str(), "{result}");
    assert_eq!(
        result["interfaces"][0]["sandbox"],
        pod.netns.path().display().to_string()
    );
    assert!(
        afxdp_netdev::get(&nic).expect("lookup").is_none(),
        "device still in the host netns"
    );
    // The app runs as nobody with exactly CAP_NET_RAW.
    let pid = pod.app_pid().expect("app running");
    assert_eq!(unprivileged::uids(pid).expect("uids"), (65534, 65534));
    assert_eq!(
        unprivileged::effective_caps(pid).expect("caps"),
        1u64 << unprivileged::CAP_NET_RAW
    );

    // Traffic from the wire side: 16 flows x 25 packets.
    let sent = lab.send(&nic, 16, 25).expect("send");
    assert_eq!(sent, 400);
    let pod = &lab.pods[0];
    pod.wait_total(sent, Duration::from_secs(10))
        .expect("all packets");
    std::thread::sleep(Duration::from_millis(300));
    let counts = pod.counts();
    assert_eq!(pod.total(), sent, "exactly what was sent: {counts:?}");
    let busy = counts.values().filter(|&&n| n > 0).count();
    assert!(busy >= 2, "several queues used: {counts:?}");

    // DEL: device back, program detached, no pin/socket/netns left.
    let netns_name = pod.netns.name().to_string();
    lab.remove_pod("p1").await.expect("remove pod");
    assert!(!netns_exists(&netns_name), "pod netns left behind");
    let back = afxdp_netdev::get(&nic)
        .expect("lookup")
        .expect("device back in the host netns");
    assert_eq!(back.name, nic);
    assert!(!xdp_attached(&nic), "XDP program still attached to {nic}");
    let state = lab.paths.state_dir.clone();
    let leftovers: Vec<String> = entries_under(&state.join("pins"))
        .into_iter()
        .chain(entries_under(&state.join("uds")))
        .filter(|p| p.contains(&nic))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(!host_dir.exists(), "{} left behind", host_dir.display());
    // The device is free again: kubelet sees it healthy.
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(3), |d| {
            d.iter().all(|x| x.is_healthy())
        })
        .await
        .expect("healthy again");

    let wire = lab.wire.name().to_string();
    lab.teardown().await.expect("teardown");
    assert!(
        afxdp_netdev::get(&nic).expect("lookup").is_none(),
        "NIC left behind"
    );
    assert!(!netns_exists(&wire), "wire netns left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uds_mode_pod_receives_exact_count_and_del_cleans_up() {
    full_path(Sharing::Uds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_map_mode_pod_receives_exact_count_and_del_cleans_up() {
    full_path(Sharing::Pinned).await;
}
