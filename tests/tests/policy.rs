//! Pool policies on the lab path: a policy pushed to a real registry decides
//! the queue plan that reaches the attach, the CNI and the pod; allocations
//! record the deciding digest; config changes roll policies out atomically;
//! a policy that cannot load leaves the previous one, and a pool without one
//! follows its failurePolicy.

use std::time::Duration;

use afxdp_lab::{Lab, LabConfig, RESOURCE};
use afxdp_testnet::policy_component;
use afxdp_testnet::registry::Registry;

/// This binary's tests run one lab at a time: their pods share one uid,
/// and the kernel charges every AF_XDP UMEM of a uid against the pod's
/// 8 MiB RLIMIT_MEMLOCK, so two labs' pods at once can fail XDP_UMEM_REG
/// with ENOBUFS.
async fn one_lab_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LABS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LABS.lock().await
}

/// The bytes of policy component `name`.
fn policy_wasm(name: &str) -> Vec<u8> {
    let file = policy_component(name);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The policy in force for the lab pool.
fn in_force(lab: &Lab) -> std::sync::Arc<afxdp_dp::policies::PoolPolicy> {
    lab.daemon
        .as_ref()
        .expect("daemon")
        .policies
        .get("lab")
        .expect("a policy in force")
}

/// A one-NIC lab whose pool has `policy`.
async fn lab_with(policy: serde_json::Value) -> Lab {
    Lab::start(LabConfig {
        nics: 1,
        policy: Some(policy),
        ..Default::default()
    })
    .await
    .expect("lab")
}

/// Push `name` to the registry; returns (pinned reference, layer digest).
async fn push(reg: &Registry, name: &str) -> (String, String) {
    let wasm = policy_wasm(name);
    let cache = tempfile::tempdir().expect("tempdir");
    let fetcher = afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig::anonymous(cache.path()))
        .expect("fetcher");
    let pinned = fetcher
        .push(&format!("{}/afxdp/{name}:v1", reg.addr()), &wasm)
        .await
        .expect("push");
    (pinned, afxdp_oci::sha256_digest(&wasm))
}

/// The value of the daemon's metric sample `series` (`name{labels}`).
fn metric(lab: &Lab, series: &str) -> Option<f64> {
    let text = lab.daemon.as_ref().expect("daemon").metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn queues_env(device: &str) -> String {
    afxdp_dp::agent::queues_env_name(device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_policy_decides_queues_and_rolls_out() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let reg = Registry::start(None);
    let (numa_ref, numa_digest) = push(&reg, "numa-spread").await;
    let (default_ref, default_digest) = push(&reg, "default").await;
    let policy = serde_json::json!({ "ref": numa_ref, "config": { "queuesPerPod": 2 } });
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        queues: 4,
        policy: Some(policy),
        ..Default::default()
    })
    .await
    .expect("lab");
    assert_eq!(
        metric(&lab, r#"afxdp_oci_pulls_total{kind="policy",outcome="ok"}"#),
        Some(1.0),
        "the policy's pull is counted"
    );
    let nic = lab.nics[0].name.clone();
    let peer = lab.nics[0].peer.clone();
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();

    // The wire side sends on 2 queues, so every packet meets the program
    // (veth also refuses fewer rx channels than its XDP peer sends on).
    let p = peer.clone();
    lab.wire
        .run(move || afxdp_netdev::ethtool::set_channels(&p, 2))
        .expect("netns")
        .expect("peer channels");
    // The policy's plan: 2 channels, queues 0 and 1.
    lab.add_pod("p1").await.expect("pod");
    assert_eq!(
        lab.pods[0].envs.get(&queues_env(&nic)).map(String::as_str),
        Some("0,1"),
        "{:?}",
        lab.pods[0].envs
    );
    let alloc = agent.allocation(&nic).expect("allocation");
    assert_eq!(alloc.decided_by, format!("policy {numa_digest}"));
    assert_eq!((alloc.queues.clone(), alloc.channels), (vec![0, 1], 2));
    // afxdp-cni applied the channel count inside the pod.
    let dev = nic.clone();
    let ch = lab.pods[0]
        .netns
        .run(move || afxdp_netdev::ethtool::channels(&dev))
        .expect("netns")
        .expect("channels");
    assert_eq!(ch.rx_queues(), 2, "{ch:?}");
    let sent = lab.send(&nic, 16, 25).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("received on the chosen queues");
    std::thread::sleep(Duration::from_millis(200));
    let counts = lab.pods[0].counts();
    assert_eq!(lab.pods[0].total(), sent);
    assert!(
        counts.keys().all(|q| *q < 2),
        "only the chosen queues are bound: {counts:?}"
    );

    // Rollout: the default policy replaces numa-spread for new allocations.
    let out = lab
        .set_policy(&serde_json::json!({ "ref": default_ref }))
        .await
        .expect("reload");
    assert_eq!(
        out,
        afxdp_dp::daemon::ReloadOutcome::Applied(vec![("lab".into(), Ok(()))])
    );
    assert_eq!(in_force(&lab).digest, default_digest);
    lab.remove_pod("p1").await.expect("remove");
    lab.add_pod("p2").await.expect("pod after rollout");
    assert_eq!(
        agent.allocation(&nic).expect("allocation").decided_by,
        format!("policy {default_digest}")
    );

    // A reference that cannot be fetched leaves the policy in force.
    let zeros = "0".repeat(64);
    let bad = serde_json::json!({ "ref": format!("127.0.0.1:1/afxdp/none@sha256:{zeros}") });
    match lab.set_policy(&bad).await.expect("reload") {
        afxdp_dp::daemon::ReloadOutcome::Applied(r) => {
            assert_eq!(r.len(), 1);
            assert!(r[0].1.is_err(), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(in_force(&lab).digest, default_digest);
    // An invalid config file is refused as a whole; the last good one stays.
    std::fs::write(&lab.paths.config, "{ not json").expect("write");
    let out = lab.daemon.as_ref().expect("daemon").reloader.reload().await;
    assert!(
        matches!(out, afxdp_dp::daemon::ReloadOutcome::Invalid(_)),
        "{out:?}"
    );
    assert_eq!(in_force(&lab).digest, default_digest);
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allocation_is_decided_by_exactly_one_digest_during_rollout() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let reg = Registry::start(None);
    let (a_ref, a_digest) = push(&reg, "numa-spread").await;
    let (b_ref, b_digest) = push(&reg, "default").await;
    let mut lab = lab_with(serde_json::json!({ "ref": a_ref })).await;
    let nic = lab.nics[0].name.clone();
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let worker = {
        let agent = agent.clone();
        // Spawned now: it runs while the policy rolls.
        tokio::spawn(afxdp_policy::Blocking::spawn(move |b| {
            let mut seen = Vec::new();
            for _ in 0..60 {
                agent
                    .allocate(b, "lab", std::slice::from_ref(&nic), Default::default())
                    .expect("allocate");
                seen.push(agent.allocation(&nic).expect("recorded").decided_by);
                agent
                    .release(&nic, afxdp_dp::agent::ReleaseBy::Operator)
                    .expect("release");
            }
            seen
        }))
    };
    for i in 0..6 {
        let r = if i % 2 == 0 { &b_ref } else { &a_ref };
        let out = lab
            .set_policy(&serde_json::json!({ "ref": r }))
            .await
            .expect("reload");
        assert_eq!(
            out,
            afxdp_dp::daemon::ReloadOutcome::Applied(vec![("lab".into(), Ok(()))])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = worker.await.expect("worker").expect("blocking task");
    let (a, b) = (format!("policy {a_digest}"), format!("policy {b_digest}"));
    assert!(seen.iter().all(|d| *d == a || *d == b), "{seen:?}");
    assert!(
        seen.contains(&a) && seen.contains(&b),
        "both digests decided some allocations: {seen:?}"
    );
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloadable_policy_follows_the_failure_policy() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let zeros = "0".repeat(64);
    let gone = format!("127.0.0.1:1/afxdp/none@sha256:{zeros}");
    // Fail: the Allocate fails with a message that says why.
    let lab = lab_with(serde_json::json!({ "ref": gone, "failurePolicy": "Fail" })).await;
    // Scheduled to this node, as the API server shows it while kubelet admits.
    lab.apiserver
        .schedule_pod("ns", "refused", afxdp_lab::NODE_NAME, RESOURCE, 1);
    let err = lab
        .kubelet()
        .admit_pod("ns", "refused", "app", RESOURCE, 1)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("policy is not loaded"), "{err}");
    // The failure is a Warning Event on the pod kubelet was admitting.
    let events = lab.apiserver.events();
    let event = events
        .iter()
        .find(|e| e["involvedObject"]["name"] == "refused")
        .unwrap_or_else(|| panic!("no Event for ns/refused: {events:?}"));
    assert_eq!(event["involvedObject"]["namespace"], "ns");
    assert_eq!(event["involvedObject"]["kind"], "Pod");
    assert_eq!(event["reason"], "AllocationFailed");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["source"]["component"], "afxdp-dp");
    let message = event["message"].as_str().expect("message");
    assert!(message.contains("policy is not loaded"), "{message}");
    lab.teardown().await.expect("teardown");
    // Ignore: the built-in decisions, recorded as such.
    let mut lab = lab_with(serde_json::json!({ "ref": gone, "failurePolicy": "Ignore" })).await;
    let nic = lab.nics[0].name.clone();
    lab.add_pod("fallback")
        .await
        .expect("pod with the default decisions");
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let by = agent.allocation(&nic).expect("allocation").decided_by;
    assert!(by.starts_with("default (policy not loaded"), "{by}");
    let sent = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("traffic");
    lab.teardown().await.expect("teardown");
}

/// A policy that cannot load at start (here: its file is not there yet; in
/// production a registry down with no cache) is retried with backoff: once it
/// can load, the `Fail` pool allocates again without anyone touching the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_failed_to_load_at_start_is_retried() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("default.wasm");
    let mut lab = lab_with(serde_json::json!({ "file": wasm, "failurePolicy": "Fail" })).await;
    let policies = lab.daemon.as_ref().expect("daemon").policies.clone();
    let failure = policies
        .failure("lab")
        .expect("the load failure is exposed");
    assert!(failure.reason.contains("default.wasm"), "{failure:?}");
    let err = lab
        .kubelet()
        .admit_pod("ns", "early", "app", RESOURCE, 1)
        .await
        .expect_err("refused while the policy is not loaded");
    assert!(err.to_string().contains("policy is not loaded"), "{err}");
    lab.kubelet().remove_pod("ns", "early");

    std::fs::write(&wasm, policy_wasm("default")).expect("the policy appears");
    assert!(
        afxdp_testnet::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            policies.get("lab").is_some()
        }),
        "not retried: {:?}",
        policies.failure("lab")
    );
    assert!(policies.failure("lab").is_none(), "failure not cleared");
    lab.add_pod("later").await.expect("allocated once loaded");
    let nic = lab.nics[0].name.clone();
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let by = agent.allocation(&nic).expect("allocation").decided_by;
    assert_eq!(
        by,
        format!(
            "policy {}",
            afxdp_oci::sha256_digest(&policy_wasm("default"))
        )
    );
    lab.teardown().await.expect("teardown");
}

/// A panicking policy (it writes to stderr, then traps) is a decision error
/// carrying its panic message at every daemon entry point: Allocate,
/// GetPreferredAllocation and the node API's settings; the daemon serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_policy_is_a_decision_error_at_every_daemon_entry_point() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let guest = afxdp_testnet::test_guest("panic");
    let fail = serde_json::json!({ "file": guest, "failurePolicy": "Fail" });
    let lab = lab_with(fail.clone()).await;
    let nic = lab.nics[0].name.clone();
    let err = lab
        .kubelet()
        .admit_pod("ns", "refused", "app", RESOURCE, 1)
        .await
        .expect_err("Allocate refused");
    assert!(err.to_string().contains("deliberate panic"), "{err}");
    // GetPreferredAllocation is advisory: an empty answer, not a crash.
    let preferred = lab
        .kubelet()
        .preferred_allocation(RESOURCE, std::slice::from_ref(&nic), &[], 1)
        .await
        .expect("GetPreferredAllocation answered");
    assert!(preferred.is_empty(), "{preferred:?}");
    let digest = afxdp_oci::sha256_digest(&std::fs::read(&guest).expect("guest"));
    let traps = metric(
        &lab,
        &format!(r#"afxdp_policy_calls_total{{pool="lab",digest="{digest}",outcome="trap"}}"#),
    );
    // Admission asked GetPreferredAllocation, then Allocate (select-program),
    // then the explicit GetPreferredAllocation above: three traps.
    assert_eq!(traps, Some(3.0));
    lab.teardown().await.expect("teardown");

    // Ignore: the defaults decide, and the record says why.
    let mut lab = lab_with(serde_json::json!({ "file": guest, "failurePolicy": "Ignore" })).await;
    let nic = lab.nics[0].name.clone();
    lab.add_pod("fallback")
        .await
        .expect("pod with the defaults");
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let by = agent.allocation(&nic).expect("allocation").decided_by;
    assert!(by.contains("deliberate panic"), "{by}");
    // The node API under Fail: the settings call fails with the message.
    lab.set_policy(&fail).await.expect("reload to Fail");
    let ch = afxdp_proto::unix::connect(&lab.paths.node_api, Duration::from_secs(5))
        .await
        .expect("node API");
    let status = afxdp_proto::nodeapi::node_api_client::NodeApiClient::new(ch)
        .get_device_settings(afxdp_proto::nodeapi::DeviceRef {
            device: nic.clone(),
            ..Default::default()
        })
        .await
        .expect_err("settings refused");
    assert!(status.message().contains("deliberate panic"), "{status:?}");
    let sent = lab.send(&nic, 8, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("the pod still receives");
    lab.teardown().await.expect("teardown");
}

/// A slow Allocate (here a policy spinning to its 2.5 s deadline in each of
/// two decisions) holds no lock the rest of the agent needs: while it runs,
/// another device is released, its link events are applied, and kubelet's
/// GetPreferredAllocation is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_allocate_blocks_no_other_device() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let guest = afxdp_testnet::test_guest("infinite-loop");
    let lab = Lab::start(LabConfig {
        nics: 2,
        policy: Some(
            serde_json::json!({ "file": guest, "failurePolicy": "Ignore", "timeoutMs": 2500 }),
        ),
        ..Default::default()
    })
    .await
    .expect("lab");
    let (first, second) = (lab.nics[0].name.clone(), lab.nics[1].name.clone());
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let allocate = |device: String| {
        let agent = agent.clone();
        tokio::spawn(afxdp_policy::Blocking::spawn(move |b| {
            agent.allocate(b, "lab", &[device], Default::default())
        }))
    };
    allocate(first.clone())
        .await
        .expect("join")
        .expect("blocking")
        .expect("first allocation (defaults after the deadlines)");

    let slow = allocate(second.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the policy did not spin");
    let released = {
        let (agent, d) = (agent.clone(), first.clone());
        tokio::task::spawn_blocking(move || {
            let nd = afxdp_netdev::get(&d).expect("lookup").expect("present");
            agent.link_seen(&nd);
            agent.release(&d, afxdp_dp::agent::ReleaseBy::Operator)
        })
        .await
        .expect("join")
        .expect("release")
    };
    assert_eq!(released, afxdp_dp::agent::Released::Freed);
    let preferred = lab
        .kubelet()
        .preferred_allocation(RESOURCE, std::slice::from_ref(&first), &[], 1)
        .await;
    assert!(
        !slow.is_finished(),
        "the release and GetPreferredAllocation waited for the slow Allocate"
    );
    assert!(preferred.is_ok(), "{preferred:?}");
    slow.await
        .expect("join")
        .expect("blocking")
        .expect("second allocation");
    assert!(agent.allocation(&first).is_none() && agent.allocation(&second).is_some());
    lab.teardown().await.expect("teardown");
}

/// Publish `config` as the next ConfigMap version under `cm`: a new
/// `..<version>/config.json`, then `..data` swapped to it atomically (as the
/// kubelet does); the daemon's config path points at `cm/..data/config.json`.
fn publish_configmap(cm: &std::path::Path, version: &str, config: &str) {
    let dir = cm.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).expect("version dir");
    std::fs::write(dir.join("config.json"), config).expect("config");
    let tmp = cm.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, cm.join("..data")).expect("swap ..data");
}

/// The reload after `seen`: its number and outcome.
async fn next_reload(
    rx: &mut tokio::sync::watch::Receiver<(u64, Option<afxdp_dp::daemon::ReloadOutcome>)>,
    seen: u64,
) -> (u64, afxdp_dp::daemon::ReloadOutcome) {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|(n, _)| *n > seen))
        .await
        .expect("the watcher reloaded")
        .expect("reloader alive")
        .clone();
    (got.0, got.1.expect("an outcome"))
}

/// Config reload through a ConfigMap-style symlink swap while allocations
/// run: good → bad (refused with its errors, the last good config and its
/// policy stay in force) → good (the new policy rolls out). Every
/// allocation meanwhile succeeds, decided by one of the two digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_good_bad_good_while_allocations_run() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let reg = Registry::start(None);
    let (a_ref, a_digest) = push(&reg, "numa-spread").await;
    let (b_ref, b_digest) = push(&reg, "default").await;
    let lab = lab_with(serde_json::json!({ "ref": a_ref })).await;
    let nic = lab.nics[0].name.clone();
    let reloader = lab.daemon.as_ref().expect("daemon").reloader.clone();
    let mut outcomes = reloader.outcomes();
    let good_a = std::fs::read_to_string(&lab.paths.config).expect("config");
    let cm = lab.paths.root.join("configmap");
    publish_configmap(&cm, "v1", &good_a);
    std::fs::remove_file(&lab.paths.config).expect("rm");
    std::os::unix::fs::symlink(cm.join("..data/config.json"), &lab.paths.config).expect("link");
    let (n, _) = next_reload(&mut outcomes, 0).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
        let (stop, nic) = (stop.clone(), nic.clone());
        tokio::spawn(afxdp_policy::Blocking::spawn(move |b| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                agent
                    .allocate(b, "lab", std::slice::from_ref(&nic), Default::default())
                    .expect("allocate during reloads");
                seen.push(agent.allocation(&nic).expect("recorded").decided_by);
                agent
                    .release(&nic, afxdp_dp::agent::ReleaseBy::Operator)
                    .expect("release");
            }
            seen
        }))
    };

    publish_configmap(
        &cm,
        "v2",
        r#"{"apiVersion":"afxdp.io/v1alpha1","pools":[{"name":""}]}"#,
    );
    let (n, out) = next_reload(&mut outcomes, n).await;
    match out {
        afxdp_dp::daemon::ReloadOutcome::Invalid(errors) => {
            assert!(errors.contains("pools[0]"), "{errors}")
        }
        other => panic!("a bad config was applied: {other:?}"),
    }
    assert_eq!(in_force(&lab).digest, a_digest, "the last good policy left");

    publish_configmap(&cm, "v3", &good_a.replace(&a_ref, &b_ref));
    let (_, out) = next_reload(&mut outcomes, n).await;
    assert!(
        matches!(&out, afxdp_dp::daemon::ReloadOutcome::Applied(r) if r.iter().all(|(_, r)| r.is_ok())),
        "{out:?}"
    );
    assert_eq!(in_force(&lab).digest, b_digest);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = worker.await.expect("join").expect("blocking");
    assert!(!seen.is_empty());
    for by in &seen {
        assert!(
            *by == format!("policy {a_digest}") || *by == format!("policy {b_digest}"),
            "{by}"
        );
    }
    assert_eq!(seen.last(), Some(&format!("policy {b_digest}")));
    lab.teardown().await.expect("teardown");
}

/// What afxdp-cni gets from the node API for `device` of pod `lab/<pod>`.
async fn settings(lab: &Lab, device: &str, pod: &str) -> afxdp_proto::nodeapi::DeviceSettings {
    let ch = afxdp_proto::unix::connect(&lab.paths.node_api, Duration::from_secs(5))
        .await
        .expect("node API");
    afxdp_proto::nodeapi::node_api_client::NodeApiClient::new(ch)
        .get_device_settings(afxdp_proto::nodeapi::DeviceRef {
            device: device.to_string(),
            pod_namespace: "lab".into(),
            pod_name: pod.into(),
            ..Default::default()
        })
        .await
        .expect("settings")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_rules_from_pod_annotations_reach_the_cni() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let reg = Registry::start(None);
    let (fs_ref, fs_digest) = push(&reg, "flow-steering").await;
    let annotations: std::collections::BTreeMap<String, String> =
        [("afxdp.io/udp-ports".to_string(), "4789,9000".to_string())].into();
    for failure in ["Fail", "Ignore"] {
        let policy = serde_json::json!({ "ref": fs_ref, "failurePolicy": failure, "config": { "queues": 2 } });
        let mut lab = lab_with(policy).await;
        let nic = lab.nics[0].name.clone();
        let added = lab
            .add_pod_with("steered", annotations.clone(), Default::default())
            .await
            .map(|p| p.add.clone());
        if failure == "Fail" {
            // The failed ADD was undone as a runtime does (CNI DEL releases
            // the device); the rules afxdp-cni received are in its error.
            let err = added.expect_err("ADD must fail when a required rule is refused");
            let msg = err.to_string();
            assert!(
                msg.contains("\\\"code\\\":104") || msg.contains("\"code\":104"),
                "{msg}"
            );
            assert!(
                msg.contains("refused filter rule 0")
                    && msg.contains("udp4 dst port 4789 -> queue 0"),
                "{msg}"
            );
            assert!(!settings(&lab, &nic, "steered").await.allocated, "released");
            // Nothing half-done: the device went back to the host netns.
            assert!(
                afxdp_netdev::get(&nic).expect("lookup").is_some(),
                "device left in the pod netns"
            );
            lab.teardown().await.expect("teardown");
            continue;
        }
        // What afxdp-cni received over the node API: one rule per annotated
        // port, round-robin over the pod's two queues, decided by the policy.
        let s = settings(&lab, &nic, "steered").await;
        assert!(s.allocated);
        assert_eq!(s.policy_digest, fs_digest);
        assert_eq!(s.queues, vec![0, 1]);
        let rules: Vec<(String, u32, u32)> = s
            .filter_rules
            .iter()
            .map(|r| (r.flow_type.clone(), r.dst_port, r.queue))
            .collect();
        assert_eq!(
            rules,
            vec![("udp4".into(), 4789, 0), ("udp4".into(), 9000, 1)]
        );
        assert_eq!(s.filters_required, failure == "Fail");
        assert!(
            lab.apiserver
                .requests()
                .iter()
                .any(|r| r.starts_with("GET /api/v1/namespaces/lab/pods/steered")),
            "{:?}",
            lab.apiserver.requests()
        );
        // veth has no ntuple filters: with Ignore the ADD goes on without them.
        let add = added.expect("ADD goes on without the rules");
        assert!(
            add.stderr.contains("NIC refused a filter rule"),
            "{}",
            add.stderr
        );
        // The pod binds the policy's two queues; send on those.
        let p = lab.nics[0].peer.clone();
        lab.wire
            .run(move || afxdp_netdev::ethtool::set_channels(&p, 2))
            .expect("netns")
            .expect("peer channels");
        let sent = lab.send(&nic, 8, 10).expect("send");
        lab.pods[0]
            .wait_total(sent, Duration::from_secs(10))
            .expect("traffic without hardware rules");
        lab.teardown().await.expect("teardown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_program_sees_the_pod_kubelet_is_admitting() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let reg = Registry::start(None);
    let (ibl_ref, _) = push(&reg, "image-by-label").await;
    let zeros = "0".repeat(64);
    let policy = serde_json::json!({
        "ref": ibl_ref,
        "failurePolicy": "Fail",
        "config": {
            "images": { "fast": format!("{}/xdp/fast@sha256:{zeros}", reg.addr()) },
            "allow": ["builtin"],
        },
    });
    let mut lab = Lab::start(LabConfig {
        nics: 2,
        policy: Some(policy),
        ..Default::default()
    })
    .await
    .expect("lab");
    let label = |v: &str| -> std::collections::BTreeMap<String, String> {
        [("afxdp.io/program".to_string(), v.to_string())].into()
    };
    // Kubelet's Allocate names no pod: afxdp-dp found the pending pod on its
    // node, and the policy read its label and refused it (Fail).
    let err = lab
        .add_pod_with("wants-fast", Default::default(), label("fast"))
        .await
        .map(|_| ())
        .expect_err("label not allowed");
    let msg = err.to_string();
    assert!(
        msg.contains("lab/wants-fast") && msg.contains("not allowed"),
        "{msg}"
    );
    assert!(
        lab.apiserver
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/pods?") && r.contains("spec.nodeName%3Dlab-node")),
        "{:?}",
        lab.apiserver.requests()
    );
    // Allowed and unlabelled pods get the built-in program and receive.
    lab.add_pod_with("wants-builtin", Default::default(), label("builtin"))
        .await
        .expect("allowed label");
    lab.add_pod("unlabelled").await.expect("default program");
    for pod in &lab.pods {
        let nic = pod.device.clone();
        let sent = lab.send(&nic, 4, 10).expect("send");
        pod.wait_total(sent, Duration::from_secs(10))
            .expect("traffic");
    }
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_calls_of_a_pool_are_bounded_by_max_concurrent_calls() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let file = policy_component("flow-steering");
    for limit in [1usize, 3] {
        let policy = serde_json::json!({
            "file": file,
            "failurePolicy": "Ignore",
            "maxConcurrentCalls": limit,
            "config": { "queues": 2 },
        });
        let mut lab = lab_with(policy).await;
        let nic = lab.nics[0].name.clone();
        let annotations: std::collections::BTreeMap<String, String> =
            [("afxdp.io/udp-ports".to_string(), "4789".to_string())].into();
        // Ignore: veth refuses the rule, the pod still comes up.
        lab.add_pod_with("burst", annotations, Default::default())
            .await
            .expect("pod");
        // A burst of CNI-style settings requests: every one decided by the
        // policy (none refused as busy: waiting is allowed up to the deadline).
        let ch = afxdp_proto::unix::connect(&lab.paths.node_api, Duration::from_secs(5))
            .await
            .expect("node API");
        let client = afxdp_proto::nodeapi::node_api_client::NodeApiClient::new(ch);
        let request = afxdp_proto::nodeapi::DeviceRef {
            device: nic.clone(),
            pod_namespace: "lab".into(),
            pod_name: "burst".into(),
            ..Default::default()
        };
        // One call first: the burst then starts after the server's HTTP/2
        // SETTINGS arrived, so the client queues streams beyond the server's
        // per-connection bound instead of opening them to be refused.
        client
            .clone()
            .get_device_settings(request.clone())
            .await
            .expect("first settings");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..24 {
            let mut c = client.clone();
            let request = request.clone();
            calls.spawn(async move { c.get_device_settings(request).await });
        }
        while let Some(r) = calls.join_next().await {
            let s = r.expect("task").expect("settings").into_inner();
            assert_eq!(s.filter_rules.len(), 1, "{s:?}");
        }
        let gate = in_force(&lab).gate.clone();
        assert_eq!(gate.limit(), limit);
        eprintln!(
            "limit {limit}: peak {} concurrent policy calls",
            gate.peak()
        );
        assert!(
            (1..=limit).contains(&gate.peak()),
            "peak {} over limit {limit}",
            gate.peak()
        );
        lab.teardown().await.expect("teardown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytecode_image_chosen_by_pod_label_is_pulled_and_attached() {
    afxdp_testnet::require_root();
    let _one_lab_at_a_time = one_lab_at_a_time().await;
    let mut reg = Registry::start(None);
    let (ibl_ref, _) = push(&reg, "image-by-label").await;
    // The agent's own redirect program, shipped as a bpfman bytecode image.
    let cache = tempfile::tempdir().expect("tempdir");
    let fetcher = afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig::anonymous(cache.path()))
        .expect("fetcher");
    let programs = [("xsk_redirect".to_string(), "xdp".to_string())].into();
    let maps = [("xsks_map".to_string(), "xskmap".to_string())].into();
    let image = fetcher
        .push_bytecode(
            &format!("{}/xdp/redirect:v1", reg.addr()),
            afxdp_program::builtin_object(),
            &programs,
            &maps,
        )
        .await
        .expect("push image");
    let policy = serde_json::json!({
        "ref": ibl_ref,
        "failurePolicy": "Fail",
        "config": {
            "images": { "fast": { "image": image, "mode": "generic" } },
            "allow": ["fast", "builtin"],
        },
    });
    let mut lab = Lab::start(LabConfig {
        nics: 2,
        policy: Some(policy),
        ..Default::default()
    })
    .await
    .expect("lab");
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    let fast: std::collections::BTreeMap<String, String> =
        [("afxdp.io/program".to_string(), "fast".to_string())].into();
    lab.add_pod_with("first", Default::default(), fast.clone())
        .await
        .expect("pod with the image");
    // The registry goes away: the pinned image is served from the node's cache.
    reg.stop();
    lab.add_pod_with("second", Default::default(), fast)
        .await
        .expect("pod with the cached image");
    for pod in &lab.pods {
        let alloc = agent.allocation(&pod.device).expect("allocation");
        assert_eq!(
            alloc.program,
            format!("image {image} (xsk_redirect)"),
            "{alloc:?}"
        );
        assert_eq!(alloc.pod, format!("lab/{}", pod.name), "{alloc:?}");
        let sent = lab.send(&pod.device, 4, 10).expect("send");
        pod.wait_total(sent, Duration::from_secs(10))
            .expect("traffic through the image's program");
    }
    lab.teardown().await.expect("teardown");
}
