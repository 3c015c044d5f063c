//! Hostile local clients against afxdp-dp's gRPC sockets — the node API
//! afxdp-cni calls, a pool's device-plugin socket kubelet calls, the CSI
//! node plugin's socket and its plugin-registration socket: silent,
//! garbage, truncated-preface and half-open connections, and oversized
//! messages (a node-API request, a NodePublishVolume, a registration
//! status). Meanwhile a pod is admitted, plumbed and receives, and the CSI
//! plugin answers Probe, NodeGetInfo and the registration's GetInfo; the
//! stalled connections are closed by the server once their preface is
//! overdue; the servers keep serving; the open descriptor count comes back
//! to where it was (afxdp-dp runs in this process).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use afxdp_dp::csi::{registration, CsiOptions, DRIVER};
use afxdp_e2e::open_fds;
use afxdp_lab::RESOURCE;
use afxdp_proto::csi::{self, identity_client::IdentityClient, node_client::NodeClient};
use afxdp_proto::pluginregistration::{self as reg, registration_client::RegistrationClient};
use tonic::transport::Channel;

/// Per socket; under the connection limit, so legitimate calls go on.
const STORM: usize = 300;

/// Client `i` of the storm; the connection it keeps open (stalled), if any.
fn hostile(sock: &Path, i: usize) -> Option<UnixStream> {
    let mut s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("client {i}: {e}"));
    match i % 4 {
        // Garbage, then silence.
        0 => {
            let _ = s.write_all(b"\x00\xff\xfe garbage, not HTTP/2 at all\r\n\r\n");
            Some(s)
        }
        // A truncated preface, then silence.
        1 => {
            let _ = s.write_all(b"PRI * HTTP/2.0\r\n");
            Some(s)
        }
        // Half-open: connect, say nothing, close.
        2 => None,
        // Silent.
        _ => Some(s),
    }
}

/// Wait until the server has closed every stalled connection (EOF or reset).
fn wait_closed_by_server(stalled: &mut [UnixStream], within: Duration) {
    let deadline = Instant::now() + within;
    for (i, c) in stalled.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // the server's SETTINGS or GOAWAY
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("stalled connection {i} still open: {e}"),
            }
        }
    }
}

async fn oversized_settings_call(node_api: &Path) -> tonic::Status {
    let ch = afxdp_proto::unix::connect(node_api, Duration::from_secs(5))
        .await
        .expect("node API");
    afxdp_proto::nodeapi::node_api_client::NodeApiClient::new(ch)
        .get_device_settings(afxdp_proto::nodeapi::DeviceRef {
            device: "x".repeat(256 * 1024),
            ..Default::default()
        })
        .await
        .expect_err("an oversized request is refused")
}

async fn channel(sock: &Path) -> Channel {
    afxdp_proto::unix::connect(sock, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", sock.display()))
}

/// A NodePublishVolume far over the CSI server's message bound.
async fn oversized_publish(csi_sock: &Path) -> tonic::Status {
    NodeClient::new(channel(csi_sock).await)
        .node_publish_volume(csi::NodePublishVolumeRequest {
            volume_id: "v".repeat(256 * 1024),
            target_path: "/nonexistent/afxdp-hostile".into(),
            ..Default::default()
        })
        .await
        .expect_err("an oversized NodePublishVolume is refused")
}

/// A registration status far over the registration server's message bound.
async fn oversized_registration_status(reg_sock: &Path) -> tonic::Status {
    RegistrationClient::new(channel(reg_sock).await)
        .notify_registration_status(reg::RegistrationStatus {
            plugin_registered: false,
            error: "e".repeat(256 * 1024),
        })
        .await
        .expect_err("an oversized registration status is refused")
}

/// The calls kubelet makes of a CSI plugin (registration's GetInfo, then
/// Probe and NodeGetInfo on the plugin's socket) answer as they should.
async fn csi_answers(csi_sock: &Path, reg_sock: &Path) {
    let info = RegistrationClient::new(channel(reg_sock).await)
        .get_info(reg::InfoRequest {})
        .await
        .expect("registration GetInfo")
        .into_inner();
    assert_eq!(info.name, DRIVER);
    let ch = channel(csi_sock).await;
    IdentityClient::new(ch.clone())
        .probe(csi::ProbeRequest {})
        .await
        .expect("Probe");
    let node = NodeClient::new(ch)
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .expect("NodeGetInfo")
        .into_inner();
    assert!(!node.node_id.is_empty(), "{node:?}");
}

async fn wait_fds(baseline: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = open_fds();
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_grpc_clients_stall_nothing_and_leak_nothing() {
    let mut lab = afxdp_e2e::default_lab(1).await;
    let plugin: PathBuf = {
        let reg = lab
            .kubelet()
            .wait_registered(RESOURCE, Duration::from_secs(5))
            .await
            .expect("registered");
        lab.kubelet().device_plugin_dir().join(reg.endpoint)
    };
    let node_api = lab.paths.node_api.clone();
    // The CSI node plugin and its registration, as afxdp-dp serves them
    // with --csi-socket and --plugins-registry-dir.
    let csi_dir = tempfile::tempdir().expect("CSI dir");
    let csi_sock = csi_dir.path().join("csi.afxdp.io/csi.sock");
    let registry = csi_dir.path().join("plugins_registry");
    lab.daemon
        .as_mut()
        .expect("afxdp-dp in process")
        .serve_csi(&CsiOptions {
            socket: csi_sock.clone(),
            registry_dir: Some(registry.clone()),
        })
        .expect("CSI sockets");
    let reg_sock = registration::socket_in(&registry);
    // Warm the servers' lazily made state (a first call each).
    let _ = oversized_settings_call(&node_api).await;
    let _ = oversized_publish(&csi_sock).await;
    let _ = oversized_registration_status(&reg_sock).await;
    csi_answers(&csi_sock, &reg_sock).await;
    let baseline = open_fds();

    let mut stalled: Vec<UnixStream> = Vec::new();
    for sock in [&node_api, &plugin, &csi_sock, &reg_sock] {
        stalled.extend((0..STORM).filter_map(|i| hostile(sock, i)));
    }
    // Mid-storm: the oversized messages are refused, the CSI plugin
    // answers kubelet's calls, a pod is admitted (Allocate on the plugin
    // socket), plumbed (node API) and receives.
    let status = oversized_settings_call(&node_api).await;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let status = oversized_publish(&csi_sock).await;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let status = oversized_registration_status(&reg_sock).await;
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    csi_answers(&csi_sock, &reg_sock).await;
    let started = Instant::now();
    lab.add_pod("calm")
        .await
        .expect("a pod admitted during the storm");
    let nic = lab.nics[0].name.clone();
    let sent = lab.send(&nic, 4, 10).expect("send");
    lab.pods[0]
        .wait_total(sent, Duration::from_secs(10))
        .expect("the pod receives");
    eprintln!(
        "pod admitted and receiving {:?} into a storm of {} stalled connections",
        started.elapsed(),
        stalled.len()
    );
    assert!(
        lab.kubelet().is_registered(RESOURCE),
        "kubelet lost the plugin"
    );

    // The server closes every stalled connection once its preface is overdue.
    let limits = afxdp_proto::limits::Limits::default();
    wait_closed_by_server(&mut stalled, limits.preface_within + Duration::from_secs(5));
    drop(stalled);
    lab.remove_pod("calm").await.expect("remove");
    let now = wait_fds(baseline, Duration::from_secs(5)).await;
    assert!(
        now <= baseline,
        "descriptors leaked: {baseline} before, {now} after"
    );
    // Every server still answers.
    assert_eq!(
        oversized_settings_call(&node_api).await.code(),
        tonic::Code::OutOfRange
    );
    csi_answers(&csi_sock, &reg_sock).await;
    lab.add_pod("after")
        .await
        .expect("a pod admitted after the storm");
    lab.teardown().await.expect("teardown");
}
