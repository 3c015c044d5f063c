//! afxdp-cni's contract, exec'd as a runtime does: spec JSON out, error codes,
//! and a DEL that always succeeds (twice, after the netns is gone, with afxdp-dp down).

use std::path::Path;
use std::time::Duration;

use afxdp_lab::{bins, cni, Lab, LabConfig};

fn exec(command: &str, netns: Option<&Path>, conf: &serde_json::Value) -> cni::CniOutcome {
    let bin = bins::find("afxdp-cni").expect("afxdp-cni built");
    cni::exec(&bin, command, "cid-1", netns, "net1", "ns", "pod", conf).expect("exec afxdp-cni")
}

fn error_code(out: &cni::CniOutcome) -> u64 {
    assert!(!out.success, "expected failure, got {out:?}");
    let j = out
        .json()
        .unwrap_or_else(|| panic!("stdout is not JSON: {out:?}"));
    assert!(j["msg"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    assert!(j["cniVersion"].as_str().is_some(), "{j}");
    j["code"].as_u64().unwrap_or_else(|| panic!("no code: {j}"))
}

#[test]
fn version_lists_supported_versions() {
    let out = exec("VERSION", None, &serde_json::json!({"cniVersion": "1.1.0"}));
    assert!(out.success, "{out:?}");
    let j = out.json().expect("json");
    assert_eq!(j["cniVersion"], "1.1.0");
    let versions: Vec<&str> = j["supportedVersions"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        versions.contains(&"1.1.0") && versions.contains(&"0.4.0"),
        "{versions:?}"
    );
}

#[test]
fn errors_are_spec_json_with_the_right_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = dir.path().join("no-daemon.sock");
    let bin = bins::find("afxdp-cni").expect("afxdp-cni built");
    // Undecodable config → 6.
    let garbage = std::process::Command::new(&bin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "net1")
        .stdin(std::fs::File::open("/dev/null").expect("null"))
        .output()
        .expect("exec");
    let out = cni::CniOutcome {
        success: garbage.status.success(),
        stdout: String::from_utf8_lossy(&garbage.stdout).into_owned(),
        stderr: String::new(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(error_code(&out), 6);
    // Unsupported version → 1.
    let mut conf = cni::net_conf("eth9", &down, "9.0.0");
    assert_eq!(
        error_code(&exec("ADD", Some(Path::new("/proc/self/ns/net")), &conf)),
        1
    );
    // Missing CNI_NETNS on ADD → 4.
    conf = cni::net_conf("eth9", &down, "1.1.0");
    assert_eq!(error_code(&exec("ADD", None, &conf)), 4);
    // No device → 7.
    let no_dev = serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "afxdp-cni", "nodeApiSocket": down});
    assert_eq!(
        error_code(&exec("ADD", Some(Path::new("/proc/self/ns/net")), &no_dev)),
        7
    );
    // afxdp-dp down on ADD → 11 (try again later).
    assert_eq!(
        error_code(&exec("ADD", Some(Path::new("/proc/self/ns/net")), &conf)),
        11
    );
    // STATUS with afxdp-dp down → 50.
    assert_eq!(error_code(&exec("STATUS", None, &conf)), 50);
    // Unknown command → 4.
    assert_eq!(error_code(&exec("FROB", None, &conf)), 4);
}

#[test]
fn del_succeeds_with_daemon_down_and_no_netns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = cni::net_conf("eth-gone", &dir.path().join("none.sock"), "1.1.0");
    for _ in 0..2 {
        let out = exec("DEL", None, &conf);
        assert!(out.success && out.stdout.trim().is_empty(), "{out:?}");
    }
    let out = exec(
        "DEL",
        Some(Path::new("/var/run/netns/afxdp-does-not-exist")),
        &conf,
    );
    assert!(out.success, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_idempotent_on_a_real_node() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 1,
        ..Default::default()
    })
    .await
    .expect("lab");
    let nic = lab.nics[0].name.clone();
    lab.add_pod("p").await.expect("pod");
    let pod = &lab.pods[0];
    let conf = cni::net_conf(&nic, &lab.paths.node_api, "1.1.0");
    let del = |netns: Option<&Path>| {
        cni::exec(
            &lab.cni,
            "DEL",
            &pod.container_id,
            netns,
            "net1",
            "lab",
            "p",
            &conf,
        )
        .expect("exec")
    };
    // STATUS: afxdp-dp is up and registered.
    let status = cni::exec(&lab.cni, "STATUS", "", None, "", "", "", &conf).expect("exec");
    assert!(
        status.success && status.stdout.trim().is_empty(),
        "{status:?}"
    );
    // CHECK passes while the pod is plumbed.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = pod.add.json().expect("ADD result");
    let check = cni::exec(
        &lab.cni,
        "CHECK",
        &pod.container_id,
        Some(pod.netns.path()),
        "net1",
        "lab",
        "p",
        &check_conf,
    )
    .expect("exec");
    assert!(check.success, "{check:?}");
    let first = del(Some(pod.netns.path()));
    assert!(first.success, "{first:?}");
    lab.settle(&nic).await; // DEL is answered before the detach ends
    assert!(
        afxdp_netdev::get(&nic).expect("lookup").is_some(),
        "device back"
    );
    assert!(!afxdp_e2e::xdp_attached(&nic));
    let second = del(Some(pod.netns.path()));
    assert!(second.success, "second DEL: {second:?}");
    // CHECK now fails: the device is no longer in the pod.
    let check = cni::exec(
        &lab.cni,
        "CHECK",
        &pod.container_id,
        Some(pod.netns.path()),
        "net1",
        "lab",
        "p",
        &check_conf,
    )
    .expect("exec");
    assert!(!check.success, "{check:?}");
    // DEL after the netns is gone, and with afxdp-dp stopped.
    let gone = Path::new("/var/run/netns/afxdp-gone-netns");
    assert!(del(Some(gone)).success);
    if let Some(d) = lab.daemon.take() {
        d.stop().await;
    }
    let down = del(Some(gone));
    assert!(down.success, "DEL with afxdp-dp down: {down:?}");
    let status = cni::exec(&lab.cni, "STATUS", "", None, "", "", "", &conf).expect("exec");
    assert_eq!(error_code(&status), 50, "{status:?}");
    lab.teardown().await.expect("teardown");
}
