//! The stand-in against a fake device plugin speaking real gRPC over unix
//! sockets in a tempdir, and a real PodResources client.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use afxdp_kubelet_standin::{DeviceState, Health, KubeletStandin, StandinError};
use afxdp_proto::deviceplugin::device_plugin_server::{DevicePlugin, DevicePluginServer};
use afxdp_proto::deviceplugin::registration_client::RegistrationClient;
use afxdp_proto::deviceplugin::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, Empty, ListAndWatchResponse,
    NumaNode, PreStartContainerRequest, PreStartContainerResponse, PreferredAllocationRequest,
    PreferredAllocationResponse, RegisterRequest, TopologyInfo, HEALTHY, UNHEALTHY, VERSION,
};
use afxdp_proto::podresources::pod_resources_lister_client::PodResourcesListerClient;
use afxdp_proto::podresources::{
    AllocatableResourcesRequest, GetPodResourcesRequest, ListPodResourcesRequest,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

const WAIT: Duration = Duration::from_secs(10);
const RESOURCE: &str = "afxdp/pool1";

/// What the fake plugin was asked.
#[derive(Default)]
struct Calls {
    allocate: Vec<Vec<String>>,
    preferred: Vec<(Vec<String>, Vec<String>, i32)>,
    pre_start: Vec<Vec<String>>,
}

/// A device plugin: advertises a device list it can change, answers
/// Allocate with an env naming the devices, prefers the highest ids.
struct FakePluginService {
    options: DevicePluginOptions,
    devices: watch::Receiver<Vec<Device>>,
    stop: watch::Receiver<bool>,
    calls: Arc<Mutex<Calls>>,
}

#[tonic::async_trait]
impl DevicePlugin for FakePluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(self.options))
    }

    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut devices = self.devices.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let list = devices.borrow_and_update().clone();
                if tx
                    .send(Ok(ListAndWatchResponse { devices: list }))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    changed = devices.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let req = request.into_inner();
        let mut container_responses = Vec::new();
        for c in req.container_requests {
            self.calls.lock().unwrap().preferred.push((
                c.available_device_i_ds.clone(),
                c.must_include_device_i_ds.clone(),
                c.allocation_size,
            ));
            let mut ids = c.available_device_i_ds;
            ids.sort();
            ids.reverse();
            ids.truncate(usize::try_from(c.allocation_size).unwrap_or(0));
            container_responses.push(ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let req = request.into_inner();
        let mut container_responses = Vec::new();
        for c in req.container_requests {
            if c.devices_i_ds.iter().any(|id| id == "refuse-me") {
                return Err(Status::failed_precondition("device refused"));
            }
            self.calls
                .lock()
                .unwrap()
                .allocate
                .push(c.devices_i_ds.clone());
            let mut resp = ContainerAllocateResponse::default();
            resp.envs
                .insert("AFXDP_DEVICES_POOL1".into(), c.devices_i_ds.join(" "));
            container_responses.push(resp);
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        self.calls
            .lock()
            .unwrap()
            .pre_start
            .push(request.into_inner().devices_i_ds);
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

struct FakePlugin {
    socket: PathBuf,
    endpoint: String,
    devices: watch::Sender<Vec<Device>>,
    stop: watch::Sender<bool>,
    server_stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    calls: Arc<Mutex<Calls>>,
}

fn device(id: &str, healthy: bool, numa: Option<i64>) -> Device {
    Device {
        id: id.into(),
        health: if healthy { HEALTHY } else { UNHEALTHY }.into(),
        topology: numa.map(|id| TopologyInfo {
            nodes: vec![NumaNode { id }],
        }),
    }
}

impl FakePlugin {
    /// Serve a plugin at `<dir>/<endpoint>`.
    fn serve(
        dir: &Path,
        endpoint: &str,
        options: DevicePluginOptions,
        devices: Vec<Device>,
    ) -> Self {
        let socket = dir.join(endpoint);
        let (devices_tx, devices_rx) = watch::channel(devices);
        let (stop_tx, stop_rx) = watch::channel(false);
        let calls = Arc::new(Mutex::new(Calls::default()));
        let service = FakePluginService {
            options,
            devices: devices_rx,
            stop: stop_rx,
            calls: calls.clone(),
        };
        let incoming = afxdp_proto::unix::bind(&socket).expect("bind plugin socket");
        let (server_stop, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        FakePlugin {
            socket,
            endpoint: endpoint.into(),
            devices: devices_tx,
            stop: stop_tx,
            server_stop: Some(server_stop),
            server,
            calls,
        }
    }

    fn request(&self, resource: &str) -> RegisterRequest {
        RegisterRequest {
            version: VERSION.into(),
            endpoint: self.endpoint.clone(),
            resource_name: resource.into(),
            options: Some(DevicePluginOptions::default()),
        }
    }

    /// Register with the kubelet at `kubelet_sock`.
    async fn register(&self, kubelet_sock: &Path, resource: &str) -> Result<(), Status> {
        send_register(kubelet_sock, self.request(resource)).await
    }

    /// End ListAndWatch streams and stop serving.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(tx) = self.server_stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.server).await;
        self.server.abort();
    }
}

async fn send_register(kubelet_sock: &Path, req: RegisterRequest) -> Result<(), Status> {
    let channel = afxdp_proto::unix::connect(kubelet_sock, WAIT)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    RegistrationClient::new(channel)
        .register(req)
        .await
        .map(|_| ())
}

struct Node {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    standin: KubeletStandin,
}

async fn node() -> Node {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("device-plugins");
    let pr = tmp.path().join("pod-resources").join("kubelet.sock");
    let standin = KubeletStandin::start(&dir, &pr)
        .await
        .expect("start stand-in");
    Node {
        _tmp: tmp,
        dir,
        standin,
    }
}

fn four_devices() -> Vec<Device> {
    vec![
        device("veth0", true, Some(0)),
        device("veth1", true, Some(0)),
        device("veth2", true, Some(1)),
        device("veth3", true, None),
    ]
}

#[tokio::test]
async fn registration_is_validated_like_kubelet() {
    let n = node().await;
    let sock = n.standin.kubelet_socket();
    let plugin = FakePlugin::serve(
        &n.dir,
        "afxdp-pool1.sock",
        DevicePluginOptions::default(),
        four_devices(),
    );

    let cases: Vec<(&str, RegisterRequest)> = vec![
        (
            "bad version",
            RegisterRequest {
                version: "v1alpha".into(),
                ..plugin.request(RESOURCE)
            },
        ),
        (
            "empty version",
            RegisterRequest {
                version: String::new(),
                ..plugin.request(RESOURCE)
            },
        ),
        ("no domain", plugin.request("pool1")),
        (
            "kubernetes.io domain",
            plugin.request("kubernetes.io/pool1"),
        ),
        ("requests. prefix", plugin.request("requests.afxdp/pool1")),
        ("upper-case domain", plugin.request("AFXDP/pool1")),
        ("two slashes", plugin.request("afxdp/pool/1")),
        ("bad name", plugin.request("afxdp/-pool")),
        (
            "endpoint escapes the dir",
            RegisterRequest {
                endpoint: "../afxdp-pool1.sock".into(),
                ..plugin.request(RESOURCE)
            },
        ),
        (
            "endpoint in a subdir",
            RegisterRequest {
                endpoint: "sub/afxdp-pool1.sock".into(),
                ..plugin.request(RESOURCE)
            },
        ),
        (
            "absolute endpoint",
            RegisterRequest {
                endpoint: plugin.socket.display().to_string(),
                ..plugin.request(RESOURCE)
            },
        ),
        (
            "empty endpoint",
            RegisterRequest {
                endpoint: String::new(),
                ..plugin.request(RESOURCE)
            },
        ),
    ];
    for (what, req) in cases {
        let err = send_register(&sock, req).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert!(!n.standin.is_registered(RESOURCE));

    // A valid request naming a socket nobody serves: kubelet cannot dial it.
    let err = send_register(
        &sock,
        RegisterRequest {
            endpoint: "nobody.sock".into(),
            ..plugin.request(RESOURCE)
        },
    )
    .await
    .expect_err("unreachable endpoint");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!n.standin.is_registered(RESOURCE));

    plugin
        .register(&sock, RESOURCE)
        .await
        .expect("good request accepted");
    let req = n
        .standin
        .wait_registered(RESOURCE, WAIT)
        .await
        .expect("registered");
    assert_eq!(req.endpoint, "afxdp-pool1.sock");
    assert_eq!(req.version, VERSION);
    let devices = n
        .standin
        .wait_devices(RESOURCE, WAIT, |d| d.len() == 4)
        .await
        .expect("first snapshot");
    assert_eq!(
        devices[0],
        DeviceState {
            id: "veth0".into(),
            health: Health::Healthy,
            numa_nodes: vec![0]
        }
    );
    assert_eq!(devices[3].numa_nodes, Vec::<i64>::new());

    // Waiting for a resource nobody registers ends with an error naming it.
    let err = n
        .standin
        .wait_registered("afxdp/other", Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, StandinError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("afxdp/other"), "{err}");

    plugin.stop().await;
    n.standin.shutdown().await;
}

#[tokio::test]
async fn list_and_watch_updates_and_plugin_loss() {
    let n = node().await;
    let plugin = FakePlugin::serve(
        &n.dir,
        "afxdp-pool1.sock",
        DevicePluginOptions::default(),
        four_devices(),
    );
    plugin
        .register(&n.standin.kubelet_socket(), RESOURCE)
        .await
        .expect("register");
    n.standin
        .wait_devices(RESOURCE, WAIT, |d| {
            d.len() == 4 && d.iter().all(DeviceState::is_healthy)
        })
        .await
        .expect("healthy");

    // veth1 goes unhealthy.
    plugin
        .devices
        .send_modify(|d| d[1].health = UNHEALTHY.into());
    let devices = n
        .standin
        .wait_devices(RESOURCE, WAIT, |d| {
            d.iter().any(|x| x.id == "veth1" && !x.is_healthy())
        })
        .await
        .expect("health change seen");
    assert_eq!(devices.iter().filter(|d| d.is_healthy()).count(), 3);

    // A device disappears, another appears on NUMA node 1.
    plugin.devices.send_modify(|d| {
        d.retain(|x| x.id != "veth3");
        d.push(device("veth9", true, Some(1)));
    });
    let devices = n
        .standin
        .wait_devices(RESOURCE, WAIT, |d| d.iter().any(|x| x.id == "veth9"))
        .await
        .expect("list change seen");
    assert!(!devices.iter().any(|d| d.id == "veth3"));
    assert_eq!(
        devices
            .iter()
            .find(|d| d.id == "veth9")
            .map(|d| d.numa_nodes.clone()),
        Some(vec![1])
    );

    // A bounded wait that never holds names the resource and the snapshot.
    let err = n
        .standin
        .wait_devices(RESOURCE, Duration::from_millis(200), |d| d.len() == 99)
        .await
        .expect_err("timeout");
    assert!(
        err.to_string().contains(RESOURCE) && err.to_string().contains("veth9"),
        "{err}"
    );

    // The plugin disappears: it is no longer registered, its devices are unhealthy.
    plugin.stop().await;
    let devices = n
        .standin
        .wait_devices(RESOURCE, WAIT, |d| {
            !d.is_empty() && d.iter().all(|x| x.health == Health::Unhealthy)
        })
        .await
        .expect("devices marked unavailable");
    assert_eq!(devices.len(), 4);
    assert!(!n.standin.is_registered(RESOURCE));
    let err = n
        .standin
        .admit_pod("ns", "p", "c", RESOURCE, 1)
        .await
        .expect_err("nothing healthy");
    assert!(
        matches!(err, StandinError::Insufficient { available: 0, .. }),
        "{err:?}"
    );
    n.standin.shutdown().await;
}

#[tokio::test]
async fn admit_pod_allocates_and_pod_resources_reports() {
    let n = node().await;
    let options = DevicePluginOptions {
        pre_start_required: true,
        get_preferred_allocation_available: true,
    };
    let mut devices = four_devices();
    devices.push(device("veth4", false, Some(1)));
    let plugin = FakePlugin::serve(&n.dir, "afxdp-pool1.sock", options, devices);
    plugin
        .register(&n.standin.kubelet_socket(), RESOURCE)
        .await
        .expect("register");
    n.standin
        .wait_devices(RESOURCE, WAIT, |d| d.len() == 5)
        .await
        .expect("snapshot");
    assert_eq!(n.standin.plugin_options(RESOURCE), Some(options));

    // The fake prefers the highest ids; veth4 is unhealthy, so it is not offered.
    let a = n
        .standin
        .admit_pod("default", "web", "app", RESOURCE, 2)
        .await
        .expect("admit");
    assert_eq!(a.device_ids, vec!["veth2".to_string(), "veth3".to_string()]);
    assert_eq!(
        a.response
            .envs
            .get("AFXDP_DEVICES_POOL1")
            .map(String::as_str),
        Some("veth2 veth3")
    );
    {
        let calls = plugin.calls.lock().unwrap();
        assert_eq!(calls.preferred.len(), 1);
        let (available, must_include, size) = &calls.preferred[0];
        assert_eq!(available, &["veth0", "veth1", "veth2", "veth3"]);
        assert!(must_include.is_empty());
        assert_eq!(*size, 2);
        assert_eq!(
            calls.allocate,
            vec![vec!["veth2".to_string(), "veth3".to_string()]]
        );
        assert_eq!(
            calls.pre_start,
            vec![vec!["veth2".to_string(), "veth3".to_string()]]
        );
    }

    // A second pod gets what is left; a third finds nothing.
    let b = n
        .standin
        .admit_pod("other", "db", "main", RESOURCE, 2)
        .await
        .expect("admit second");
    assert_eq!(b.device_ids, vec!["veth0".to_string(), "veth1".to_string()]);
    let err = n
        .standin
        .admit_pod("other", "cache", "main", RESOURCE, 1)
        .await
        .expect_err("exhausted");
    assert!(
        matches!(
            err,
            StandinError::Insufficient {
                requested: 1,
                available: 0,
                ..
            }
        ),
        "{err:?}"
    );
    let err = n
        .standin
        .admit_pod("default", "web", "app", RESOURCE, 1)
        .await
        .expect_err("already admitted");
    assert!(
        matches!(err, StandinError::AlreadyAdmitted { .. }),
        "{err:?}"
    );

    // PodResources over a real gRPC client on the socket.
    let channel = afxdp_proto::unix::connect(n.standin.pod_resources_socket(), WAIT)
        .await
        .expect("connect pod-resources");
    let mut client = PodResourcesListerClient::new(channel);
    let list = client
        .list(ListPodResourcesRequest {})
        .await
        .expect("List")
        .into_inner();
    let mut seen: Vec<(String, String, String, String, Vec<String>)> = Vec::new();
    for pod in &list.pod_resources {
        for c in &pod.containers {
            for d in &c.devices {
                seen.push((
                    pod.namespace.clone(),
                    pod.name.clone(),
                    c.name.clone(),
                    d.resource_name.clone(),
                    d.device_ids.clone(),
                ));
            }
        }
    }
    let entry = |ns: &str, pod: &str, c: &str, id: &str| {
        (
            ns.to_string(),
            pod.to_string(),
            c.to_string(),
            RESOURCE.to_string(),
            vec![id.to_string()],
        )
    };
    assert_eq!(
        seen,
        vec![
            entry("default", "web", "app", "veth2"),
            entry("default", "web", "app", "veth3"),
            entry("other", "db", "main", "veth0"),
            entry("other", "db", "main", "veth1"),
        ]
    );

    let got = client
        .get(GetPodResourcesRequest {
            pod_name: "web".into(),
            pod_namespace: "default".into(),
        })
        .await
        .expect("Get")
        .into_inner()
        .pod_resources
        .expect("pod resources");
    assert_eq!(
        (got.namespace.as_str(), got.name.as_str()),
        ("default", "web")
    );
    let devs = &got.containers[0].devices;
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0].device_ids, vec!["veth2".to_string()]);
    assert_eq!(devs[0].topology.as_ref().map(|t| t.nodes[0].id), Some(1));
    assert!(devs[1].topology.is_none(), "veth3 has no NUMA node");

    let err = client
        .get(GetPodResourcesRequest {
            pod_name: "nope".into(),
            pod_namespace: "default".into(),
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound);

    let alloc = client
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
        .expect("allocatable")
        .into_inner();
    let mut ids: Vec<String> = alloc
        .devices
        .iter()
        .flat_map(|d| d.device_ids.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["veth0", "veth1", "veth2", "veth3", "veth4"]);

    // Pod deleted: PodResources forgets it and its devices are free again.
    n.standin.remove_pod("default", "web");
    let list = client
        .list(ListPodResourcesRequest {})
        .await
        .expect("List")
        .into_inner();
    assert_eq!(list.pod_resources.len(), 1);
    assert_eq!(list.pod_resources[0].name, "db");
    let c = n
        .standin
        .admit_pod("default", "web2", "app", RESOURCE, 2)
        .await
        .expect("freed devices reused");
    assert_eq!(c.device_ids, vec!["veth2".to_string(), "veth3".to_string()]);

    // Direct calls and a recorded-only assignment.
    let resp = n
        .standin
        .allocate(RESOURCE, &["veth0".to_string()])
        .await
        .expect("direct allocate");
    assert_eq!(resp.container_responses.len(), 1);
    let err = n
        .standin
        .allocate(RESOURCE, &["refuse-me".to_string()])
        .await
        .expect_err("plugin refuses");
    match err {
        StandinError::Rpc {
            call, ref status, ..
        } => {
            assert_eq!(call, "Allocate");
            assert_eq!(status.code(), Code::FailedPrecondition);
        }
        other => panic!("unexpected {other:?}"),
    }
    let preferred = n
        .standin
        .preferred_allocation(RESOURCE, &["a".into(), "b".into(), "c".into()], &[], 1)
        .await
        .expect("preferred");
    assert_eq!(preferred, ["c"]);
    n.standin
        .record_assignment("ns", "ghost", "c", RESOURCE, &["veth9".to_string()]);
    let got = client
        .get(GetPodResourcesRequest {
            pod_name: "ghost".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .expect("Get recorded")
        .into_inner();
    assert_eq!(
        got.pod_resources.expect("pod").containers[0].devices[0].device_ids,
        ["veth9"]
    );
    assert_eq!(
        plugin.calls.lock().unwrap().allocate.len(),
        4,
        "record_assignment must not call Allocate"
    );

    let err = n
        .standin
        .admit_pod("ns", "p", "c", "afxdp/unknown", 1)
        .await
        .expect_err("unknown resource");
    assert!(matches!(err, StandinError::NotRegistered { .. }), "{err:?}");

    plugin.stop().await;
    n.standin.shutdown().await;
}

#[tokio::test]
async fn restart_wipes_dir_and_forgets_registrations() {
    let mut n = node().await;
    let sock = n.standin.kubelet_socket();
    let plugin = FakePlugin::serve(
        &n.dir,
        "afxdp-pool1.sock",
        DevicePluginOptions::default(),
        four_devices(),
    );
    plugin.register(&sock, RESOURCE).await.expect("register");
    n.standin
        .wait_devices(RESOURCE, WAIT, |d| d.len() == 4)
        .await
        .expect("snapshot");
    n.standin
        .record_assignment("default", "web", "app", RESOURCE, &["veth0".to_string()]);
    std::fs::write(n.dir.join("stale-file"), b"x").expect("stale file");
    std::fs::create_dir(n.dir.join("subdir")).expect("subdir");
    let old_inode = std::fs::metadata(&sock).expect("kubelet.sock").ino();

    n.standin.restart().await.expect("restart");

    assert!(!plugin.socket.exists(), "plugin socket must be deleted");
    assert!(!n.dir.join("stale-file").exists(), "every file is deleted");
    assert!(
        n.dir.join("subdir").is_dir(),
        "directories are left alone, as kubelet does"
    );
    let new_inode = std::fs::metadata(&sock)
        .expect("kubelet.sock is back")
        .ino();
    assert_ne!(old_inode, new_inode, "kubelet.sock must be a new inode");
    assert!(!n.standin.is_registered(RESOURCE));
    assert!(n.standin.devices(RESOURCE).is_empty());
    let err = n
        .standin
        .wait_registered(RESOURCE, Duration::from_millis(300))
        .await
        .expect_err("forgotten");
    assert!(matches!(err, StandinError::Timeout { .. }), "{err:?}");

    // The plugin notices, serves a new socket and registers again.
    plugin.stop().await;
    let plugin = FakePlugin::serve(
        &n.dir,
        "afxdp-pool1.sock",
        DevicePluginOptions::default(),
        four_devices(),
    );
    plugin
        .register(&sock, RESOURCE)
        .await
        .expect("register after restart");
    n.standin
        .wait_registered(RESOURCE, WAIT)
        .await
        .expect("registered again");
    n.standin
        .wait_devices(RESOURCE, WAIT, |d| d.len() == 4)
        .await
        .expect("snapshot again");

    // Assignments survive (kubelet's checkpoint): veth0 is still held.
    let a = n
        .standin
        .admit_pod("default", "other", "app", RESOURCE, 3)
        .await
        .expect("admit");
    assert!(
        !a.device_ids.contains(&"veth0".to_string()),
        "{:?}",
        a.device_ids
    );

    plugin.stop().await;
    n.standin.shutdown().await;
}
