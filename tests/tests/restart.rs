//! afxdp-dp restarts (upgrade, crash): allocations are adopted from the state
//! file and the pinned links, pods keep receiving while it is down, the UDS
//! server comes back at the same path, and a later CNI DEL still releases.

use std::path::PathBuf;
use std::time::Duration;

use afxdp_dp::daemon::Daemon;
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
    // The claim CNI ADD recorded survived too: the pod's own process passes
    // the peer check.
    let sock = PathBuf::from(&lab.pods[0].mounts[0].1).join("afxdp.sock");
    afxdp_e2e::handshake_probe(
        std::path::Path::new(env!("CARGO_BIN_EXE_afxdp-handshake-probe")),
        &lab.pods[0].netns,
        &sock,
        &nic,
        ("lab", "survivor"),
        "hello",
    )
    .expect("UDS handshake after restart");
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

/// A restart over an unreadable or other-version state file keeps every live
/// pod's program: the file is kept aside, the allocations are rebuilt from
/// the pinned attachments, the pod keeps receiving, and its CNI DEL still
/// releases the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_state_is_kept_aside_and_live_pods_keep_their_programs() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        sharing: Sharing::Uds,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    lab.add_pod("keeper").await.expect("pod");
    let mut total = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(total, Duration::from_secs(10))
        .expect("before restart");
    let state_file = lab.paths.state_dir.join("allocations.json");
    for bad in [&b"{not json"[..], br#"{"version":99,"allocations":{}}"#] {
        lab.daemon.take().expect("daemon").stop().await;
        std::fs::write(&state_file, bad).expect("spoil the state file");
        lab.daemon = Some(
            Daemon::start(lab.paths.daemon_options())
                .await
                .expect("restart over a bad state file"),
        );
        let kept: Vec<_> = std::fs::read_dir(&lab.paths.state_dir)
            .expect("state dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
            .map(|e| std::fs::read(e.path()).expect("read the kept file"))
            .collect();
        assert!(
            kept.iter().any(|k| k == bad),
            "the bad file was not kept aside"
        );
        let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
        let alloc = agent.allocation(&nic).expect("allocation recovered");
        assert!(alloc.recovered && alloc.pool == "lab", "{alloc:?}");
        assert!(
            afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &nic),
            "the pod's program was detached"
        );
        total += lab.send(&nic, 8, 10).expect("send");
        lab.pods[0]
            .wait_total(total, Duration::from_secs(10))
            .expect("after the restart");
    }
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    lab.remove_pod("keeper").await.expect("remove");
    assert!(agent.allocation(&nic).is_none(), "DEL did not release");
    assert!(!afxdp_e2e::xdp_attached(&nic), "program still attached");
    lab.teardown().await.expect("teardown");
}

/// A pod whose program was detached while afxdp-dp was down cannot be
/// recovered: afxdp-dp drops the allocation, lists the device Unhealthy
/// with the reason (status), and the pod's CNI DEL brings it back healthy
/// and free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_program_vanished_is_unhealthy_with_the_reason() {
    let mut lab = afxdp_e2e::default_lab(1).await;
    let nic = lab.nics[0].name.clone();
    lab.add_pod("orphaned").await.expect("pod");
    lab.daemon.take().expect("daemon").stop().await;
    // The pinned link held the program on: unpinned, the kernel detaches it.
    let link = lab.paths.state_dir.join("pins/links").join(&nic);
    std::fs::remove_file(&link).expect("unpin the link");
    assert!(
        !afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &nic),
        "still attached"
    );

    let agent = start_again(&mut lab).await;
    assert!(
        agent.allocation(&nic).is_none(),
        "a lost allocation was kept"
    );
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
            d.len() == 1 && !d[0].is_healthy()
        })
        .await
        .expect("listed Unhealthy");
    let reason = agent.unhealthy_reason(&nic).expect("a reason");
    assert!(
        reason.contains("XDP program was gone"),
        "reason names the cause: {reason}"
    );
    assert!(
        agent.status().to_string().contains("XDP program was gone"),
        "status shows the reason"
    );

    lab.remove_pod("orphaned")
        .await
        .expect("CNI DEL of the lost pod");
    wait_one_healthy(&lab).await;
    assert_eq!(agent.unhealthy_reason(&nic), None);
    lab.add_pod("next")
        .await
        .expect("the device serves the next pod");
    lab.teardown().await.expect("teardown");
}

/// A node reboot: the state dir (tmpfs) and bpffs come back empty, pod
/// netns are gone, the device is back in the host netns, kubelet restarts.
/// afxdp-dp starts clean with the device free, the runtime's CNI DEL for
/// the old sandbox (its netns gone) is a success that releases nothing,
/// and the device serves a new pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reboot_afxdp_dp_starts_clean_and_stale_dels_succeed() {
    let mut lab = afxdp_e2e::default_lab(1).await;
    let nic = lab.nics[0].name.clone();
    lab.add_pod("before").await.expect("pod");
    lab.daemon.take().expect("daemon").stop().await;

    // The reboot, as the node sees it.
    let host = std::process::id().to_string();
    lab.pods[0]
        .netns
        .exec(&["ip", "link", "set", "dev", &nic, "netns", &host])
        .expect("the device back in the host netns");
    let old = lab.pods.remove(0);
    let (namespace, name, container) = (
        old.namespace.clone(),
        old.name.clone(),
        old.container_id.clone(),
    );
    drop(old); // its app stops, its netns goes
    afxdp_lab::unmount_pins(&lab.paths.state_dir.join("pins"));
    for entry in std::fs::read_dir(&lab.paths.state_dir).expect("state dir") {
        let path = entry.expect("entry").path();
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    lab.apiserver.remove_pod(&namespace, &name);
    lab.kubelet().remove_pod(&namespace, &name);
    lab.kubelet_mut().restart().await.expect("kubelet restarts");

    lab.daemon = Some(
        Daemon::start(lab.paths.daemon_options())
            .await
            .expect("afxdp-dp starts on an empty state dir"),
    );
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert!(agent.allocations().is_empty());
    assert!(
        !afxdp_e2e::xdp_attached(&nic),
        "a program survived the reboot"
    );
    wait_one_healthy(&lab).await;

    // The runtime cleans up the old sandbox: DEL with its netns gone.
    let conf = afxdp_lab::cni::net_conf(&nic, &lab.paths.node_api, "1.1.0");
    let del = afxdp_lab::cni::exec(
        &lab.cni, "DEL", &container, None, "net1", &namespace, &name, &conf,
    )
    .expect("exec DEL");
    assert!(
        del.success && del.stdout.trim().is_empty(),
        "stale DEL: {} {}",
        del.stdout,
        del.stderr
    );
    lab.add_pod("after")
        .await
        .expect("the device serves a new pod");
    let sent = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("the new pod receives");
    lab.teardown().await.expect("teardown");
}

/// A clean shutdown leaves no mount of afxdp-dp's own behind except the
/// pins' bpffs, which the next start needs (it holds the pods' programs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_only_the_pins_mount() {
    let mut lab = afxdp_e2e::default_lab(1).await;
    lab.add_pod("p").await.expect("pod");
    lab.daemon.take().expect("daemon").stop().await;
    let root = lab.paths.state_dir.display().to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect();
    assert_eq!(
        mounts,
        vec![format!("{root}/pins")],
        "mounts left: {mounts:?}"
    );
    lab.daemon = Some(
        Daemon::start(lab.paths.daemon_options())
            .await
            .expect("restart"),
    );
    lab.teardown().await.expect("teardown");
}

/// A CNI DEL is answered once its release is persisted; a crash before the
/// detach ran leaves the allocation marked releasing, and the next start
/// carries the release out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_persisted_before_a_crash_is_finished_at_start() {
    let mut lab = afxdp_e2e::default_lab(1).await;
    let nic = lab.nics[0].name.clone();
    lab.add_pod("going").await.expect("pod");
    lab.daemon.take().expect("daemon").stop().await;
    // What the crash left: the DEL's durable half only.
    let state_file = lab.paths.state_dir.join("allocations.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    state["allocations"][&nic]["releasing"] = true.into();
    std::fs::write(&state_file, state.to_string()).expect("write state");

    let agent = start_again(&mut lab).await;
    assert!(
        agent.allocation(&nic).is_none(),
        "the begun release was not finished"
    );
    assert!(
        !afxdp_e2e::xdp_attached_in(&lab.pods[0].netns, &nic),
        "the program is still attached"
    );
    // The runtime's DEL (a retry, or the one that was answered) is a success.
    lab.remove_pod("going")
        .await
        .expect("DEL after the finished release");
    wait_one_healthy(&lab).await;
    lab.teardown().await.expect("teardown");
}

/// Wait until kubelet sees the lab's one device healthy (free, or in use).
async fn wait_one_healthy(lab: &Lab) {
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
            d.len() == 1 && d[0].is_healthy()
        })
        .await
        .expect("the device healthy");
}

/// Start afxdp-dp again in the lab (in process); its agent.
async fn start_again(lab: &mut Lab) -> std::sync::Arc<afxdp_dp::agent::Agent> {
    let daemon = Daemon::start(lab.paths.daemon_options())
        .await
        .expect("restart afxdp-dp");
    let agent = daemon.agent.clone();
    lab.daemon = Some(daemon);
    agent
}
