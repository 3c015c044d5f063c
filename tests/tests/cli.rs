//! The command-line contract deploy manifests and operators depend on.

use std::process::{Command, Stdio};
use std::time::Duration;

use afxdp_lab::bins;
use afxdp_testnet::policy_component as policy_wasm;

#[test]
fn afxdpctl_config_check_exit_codes() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"logLevel":"info","pools":[{"name":"fast","mode":"primary","drivers":[{"name":"ice"}]}]}"#)
        .expect("write");
    let out = Command::new(&ctl)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"pools":[{"name":"","mode":"nonsense","devices":[{"pci":"xyz"},{"mac":"zz:zz"}]},{"name":"dup"},{"name":"dup"}]}"#,
    )
    .expect("write");
    let out = Command::new(&ctl)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "pools[0].name",
        "pools[0].mode",
        "pools[0].devices[0].pci",
        "pools[0].devices[1].mac",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    assert!(err.lines().count() >= 5, "every error listed:\n{err}");
}

#[test]
fn afxdp_dp_accepts_upstream_flag_spelling_and_env() {
    let dp = bins::find("afxdp-dp").expect("afxdp-dp built");
    let help = Command::new(&dp).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--device-plugin-dir",
        "--pod-resources-socket",
        "--state-dir",
        "--node-api-socket",
        "--node-name",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    // `-config` (upstream) is taken as --config: the error names our path.
    let out = Command::new(&dp)
        .args(["-config", "/nonexistent/afxdp-a.json"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/afxdp-a.json"),
        "{out:?}"
    );
    let out = Command::new(&dp)
        .env("AFXDP_CONFIG", "/nonexistent/afxdp-b.json")
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/afxdp-b.json"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afxdp_dp_binary_registers_with_kubelet_and_stops_cleanly() {
    afxdp_testnet::require_root();
    let dp = bins::find("afxdp-dp").expect("afxdp-dp built");
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
    let kubelet =
        afxdp_kubelet_standin::KubeletStandin::start(&plugins, &root.join("pr/kubelet.sock"))
            .await
            .expect("stand-in");
    let state = root.join("state");
    let mut child = Command::new(&dp)
        .arg("--config")
        .arg(&config)
        .args(["--metrics-address", "127.0.0.1:0"])
        .env("AFXDP_DEVICE_PLUGIN_DIR", &plugins)
        .arg("--pod-resources-socket")
        .arg(root.join("pr/kubelet.sock"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--node-api-socket")
        .arg(state.join("node.sock"))
        .arg("--node-name")
        .arg("node-a")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn afxdp-dp");
    let reg = kubelet
        .wait_registered("afxdp/empty", Duration::from_secs(10))
        .await;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    let pins = state.join("pins");
    if pins.exists() {
        let _ = nix::mount::umount2(&pins, nix::mount::MntFlags::MNT_DETACH);
    }
    let reg = reg.expect("registered");
    assert_eq!(reg.version, "v1beta1");
    assert!(status.success(), "exit {status:?}");
    assert!(
        !state.join("node.sock").exists(),
        "node API socket removed on exit"
    );
    kubelet.shutdown().await;
}

#[test]
fn afxdpctl_policy_test_runs_each_example_policys_cases() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for name in ["default", "numa-spread", "flow-steering", "image-by-label"] {
        let out = Command::new(&ctl)
            .args(["policy", "test"])
            .arg(policies.join(name).join("cases"))
            .arg(policy_wasm(name))
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    }
    // A wrong expectation fails the run and names the case.
    let dir = tempfile::tempdir().expect("tempdir");
    let case = serde_json::json!({
        "decision": "assign-queues", "config": { "queuesPerPod": 2 },
        "device": { "name": "eth1", "rxQueues": 4 }, "expect": { "channels": 3, "queues": [0, 1, 2] }
    });
    std::fs::write(dir.path().join("wrong.json"), case.to_string()).expect("write");
    let out = Command::new(&ctl)
        .args(["policy", "test"])
        .arg(dir.path())
        .arg(policy_wasm("numa-spread"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL"),
        "{out:?}"
    );
}

#[test]
fn afxdpctl_policy_run_and_inspect() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let wasm = policy_wasm("flow-steering");
    let out = Command::new(&ctl)
        .args(["policy", "inspect"])
        .arg(&wasm)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(meta["name"], "flow-steering");
    let bytes = std::fs::read(&wasm).expect("read");
    assert_eq!(meta["digest"], afxdp_oci::sha256_digest(&bytes));
    let dir = tempfile::tempdir().expect("tempdir");
    let req = dir.path().join("req.json");
    std::fs::write(
        &req,
        r#"{"decision":"filter-rules","config":{"queues":1},"device":{"name":"eth1","rxQueues":2},
            "pod":{"annotations":{"afxdp.io/tcp-ports":"80"}}}"#,
    )
    .expect("write");
    let out = Command::new(&ctl)
        .args(["policy", "run", "--request"])
        .arg(&req)
        .arg(&wasm)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rules[0]["flowType"], "tcp4");
    assert_eq!(rules[0]["dstPort"], 80);
    assert_eq!(rules[0]["action"]["queue"], 0);
}

#[test]
fn afxdpctl_inventory_dump_and_policy_simulate() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let out = Command::new(&ctl)
        .args(["inventory", "dump"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let inv: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        inv.as_array()
            .expect("array")
            .iter()
            .any(|d| d["name"] == "lo"),
        "{inv}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let recorded = dir.path().join("inventory.json");
    std::fs::write(
        &recorded,
        r#"[{"name":"eth0","rxQueues":8,"numaNode":0},{"name":"eth1","rxQueues":8,"numaNode":0},
            {"name":"eth2","rxQueues":8,"numaNode":1},{"name":"eth3","rxQueues":8,"numaNode":1}]"#,
    )
    .expect("write");
    let out = Command::new(&ctl)
        .args(["policy", "simulate", "--inventory"])
        .arg(&recorded)
        .args([
            "--pods",
            "2",
            "--per-pod",
            "2",
            "--config",
            r#"{"queuesPerPod":4}"#,
        ])
        .arg(policy_wasm("numa-spread"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    // (pod, numa, channels, queues) per row: each pod spans both NUMA nodes
    // with its 4 queues split 2 + 2.
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for pod in ["pod-0", "pod-1"] {
        let mut numa: Vec<&str> = rows.iter().filter(|r| r[0] == pod).map(|r| r[2]).collect();
        numa.sort_unstable();
        assert_eq!(numa, vec!["0", "1"], "{table}");
    }
    assert!(rows.iter().all(|r| r[3] == "2" && r[4] == "0,1"), "{table}");
}

#[test]
fn afxdpctl_policy_build_produces_the_component() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    let out = Command::new(&ctl)
        .args(["policy", "build"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bytes = std::fs::read(&path).expect("component written");
    assert_eq!(&bytes[..4], b"\0asm");
}

/// A panicking guest (it writes to stderr, then traps) is a decision error
/// carrying the guest's panic message in every afxdpctl command that calls
/// a policy; no command aborts (wasmtime-wasi's stderr once panicked on the
/// CLI's async runtime: "Cannot start a runtime from within a runtime").
#[test]
fn afxdpctl_reports_a_panicking_policy_as_a_decision_error() {
    let ctl = bins::find("afxdpctl").expect("afxdpctl built");
    let guest = afxdp_testnet::test_guest("panic");
    let dir = tempfile::tempdir().expect("tempdir");
    let request = r#"{"decision":"select-program","device":{"name":"eth1","rxQueues":2}}"#;
    let req = dir.path().join("req.json");
    std::fs::write(&req, request).expect("write");
    let no_abort = |out: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "exit code: {out:?}");
        // A Rust panic of afxdpctl itself exits 101; this was its message.
        assert!(
            !stderr.contains("Cannot start a runtime"),
            "afxdpctl panicked: {stderr}"
        );
    };

    // run: the error as JSON, with the guest's message.
    let out = Command::new(&ctl)
        .args(["policy", "run", "--request"])
        .arg(&req)
        .arg(&guest)
        .output()
        .expect("run");
    no_abort(&out);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["error"], "trap", "{answer}");
    let message = answer["message"].as_str().expect("message");
    assert!(message.contains("deliberate panic"), "{message}");

    // test: a case expecting the trap passes; one expecting an answer fails.
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).expect("mkdir");
    let case = |key: &str, value: &str| {
        let mut c: serde_json::Value = serde_json::from_str(request).expect("request");
        c[key] = value.into();
        c.to_string()
    };
    std::fs::write(cases.join("a-trap.json"), case("expectError", "trap")).expect("write");
    std::fs::write(cases.join("b-answer.json"), case("expect", "builtin")).expect("write");
    let out = Command::new(&ctl)
        .args(["policy", "test"])
        .arg(&cases)
        .arg(&guest)
        .output()
        .expect("run");
    no_abort(&out);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("ok   ") && report.contains("a-trap.json"),
        "{report}"
    );
    assert!(
        report.contains("FAIL") && report.contains("deliberate panic"),
        "{report}"
    );
    assert!(report.contains("1 passed, 1 failed"), "{report}");

    // simulate: the error names the pod and carries the message.
    let inventory = dir.path().join("inventory.json");
    std::fs::write(&inventory, r#"[{"name":"eth0","rxQueues":2}]"#).expect("write");
    let out = Command::new(&ctl)
        .args(["policy", "simulate", "--inventory"])
        .arg(&inventory)
        .args(["--pods", "1", "--per-pod", "1"])
        .arg(&guest)
        .output()
        .expect("run");
    no_abort(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pod-0") && stderr.contains("deliberate panic"),
        "{stderr}"
    );
}
