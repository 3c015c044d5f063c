//! What operators see: `/readyz` is 503 until every pool is registered with
//! the kubelet, then 200; after a scripted run (a pod added, traffic, a
//! refused Allocate, the pod removed) `/metrics` counts exactly that.

use std::net::SocketAddr;
use std::time::Duration;

use afxdp_dp::daemon::{Daemon, Options};
use afxdp_lab::{Lab, LabConfig, RESOURCE};

/// `GET path` over HTTP/1.1: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    afxdp_testnet::http::get(addr, path, Duration::from_secs(5)).expect("GET")
}

/// `GET` from async code (the call blocks).
async fn fetch(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(addr, path))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_only_once_registered_with_the_kubelet() {
    afxdp_testnet::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let config = root.join("config.json");
    std::fs::write(
        &config,
        r#"{"pools":[{"name":"empty","mode":"primary","devices":[{"name":"afxdp-none0"}]}]}"#,
    )
    .expect("write");
    let plugins = root.join("device-plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    let state = root.join("state");
    let daemon = Daemon::start(Options {
        config,
        device_plugin_dir: plugins.clone(),
        pod_resources_socket: root.join("pr/kubelet.sock"),
        state_dir: state.clone(),
        node_api_socket: state.join("node.sock"),
        node_name: "node-a".into(),
        kubelet_poll: Duration::from_millis(100),
        policy_cache_dir: root.join("policies"),
        config_poll: Duration::from_millis(200),
        kubeconfig: Some(root.join("no-kubeconfig")),
        prepare_attachments: false,
        metrics_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        bpfman: Default::default(),
    })
    .await
    .expect("daemon");
    let addr = daemon.metrics_address.expect("served");
    assert_eq!(fetch(addr, "/healthz").await.0, 200);
    let (status, why) = fetch(addr, "/readyz").await;
    assert_eq!(status, 503, "ready without a kubelet: {why}");
    assert!(why.contains("empty"), "{why}");
    // CNI STATUS says the same: code 50, the reason given.
    let cni_status = || {
        let conf = afxdp_lab::cni::net_conf("", &state.join("node.sock"), "1.1.0");
        let cni = afxdp_lab::bins::find("afxdp-cni").expect("afxdp-cni built");
        afxdp_lab::cni::exec(&cni, "STATUS", "", None, "", "", "", &conf).expect("exec")
    };
    let out = cni_status();
    assert!(!out.success, "{out:?}");
    let err = out.json().expect("error JSON");
    assert_eq!(err["code"], 50, "{err}");
    assert!(
        err["details"]
            .as_str()
            .is_some_and(|d| d.contains("not ready") && d.contains("empty")),
        "{err}"
    );

    let kubelet =
        afxdp_kubelet_standin::KubeletStandin::start(&plugins, &root.join("pr/kubelet.sock"))
            .await
            .expect("stand-in");
    kubelet
        .wait_registered("afxdp/empty", Duration::from_secs(10))
        .await
        .expect("registered");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, why) = fetch(addr, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after registration: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cni_status();
    assert!(out.success, "STATUS once ready: {out:?}");
    daemon.stop().await;
    kubelet.shutdown().await;
    let _ = nix::mount::umount2(&state.join("pins"), nix::mount::MntFlags::MNT_DETACH);
}

/// The value of the sample `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_run() {
    afxdp_testnet::require_root();
    let mut lab = Lab::start(LabConfig {
        nics: 2,
        ..Default::default()
    })
    .await
    .expect("lab");
    let addr = lab
        .daemon
        .as_ref()
        .expect("daemon")
        .metrics_address
        .expect("served");
    lab.add_pod("counted").await.expect("pod");
    let sent = lab.send(&lab.pods[0].device.clone(), 8, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("traffic");
    // afxdpctl status reads the running daemon: the pod's device, plumbed.
    let device = lab.pods[0].device.clone();
    let ctl = afxdp_lab::bins::find("afxdpctl").expect("afxdpctl built");
    let out = std::process::Command::new(&ctl)
        .args(["status", "--address", &addr.to_string()])
        .output()
        .expect("afxdpctl status");
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(device.as_str()))
        .unwrap_or_else(|| panic!("no row for {device}:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["lab", device.as_str(), "Healthy", "lab/counted", "builtin"],
        "{table}"
    );
    assert!(
        table.contains("(free)"),
        "the other device is free: {table}"
    );
    let json = std::process::Command::new(&ctl)
        .args(["status", "--json", "--address", &addr.to_string()])
        .output()
        .expect("afxdpctl status --json");
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let claimed = &status["pools"][0]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["name"] == device.as_str())
        .expect("the device")["allocation"]["container"];
    assert_eq!(claimed.as_str(), Some(lab.pods[0].container_id.as_str()));
    let refused = lab
        .kubelet()
        .allocate(RESOURCE, &["afxdp-nosuch0".to_string()])
        .await;
    assert!(refused.is_err(), "an unknown device was allocated");
    lab.remove_pod("counted").await.expect("remove");

    let (status, text) = fetch(addr, "/metrics").await;
    assert_eq!(status, 200);
    let want = [
        (r#"afxdp_allocations_total{pool="lab"}"#, 1.0),
        (r#"afxdp_releases_total{pool="lab"}"#, 1.0),
        (
            r#"afxdp_allocation_failures_total{pool="lab",cause="not_in_pool"}"#,
            1.0,
        ),
        (r#"afxdp_devices{pool="lab",health="Healthy"}"#, 2.0),
        (r#"afxdp_devices{pool="lab",health="Unhealthy"}"#, 0.0),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // The pod app's handshake was authorized (it may reconnect: at least one).
    let authorized = sample(&text, r#"afxdp_handshakes_total{outcome="authorized"}"#);
    assert!(authorized.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(fetch(addr, "/readyz").await.0, 200);
    lab.teardown().await.expect("teardown");
}

#[test]
fn status_without_a_daemon_is_a_clear_error() {
    let ctl = afxdp_lab::bins::find("afxdpctl").expect("afxdpctl built");
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = std::process::Command::new(&ctl)
        .args(["status", "--address", &format!("127.0.0.1:{port}")])
        .output()
        .expect("afxdpctl status");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics-address") && err.contains(&port.to_string()),
        "{err}"
    );
}
