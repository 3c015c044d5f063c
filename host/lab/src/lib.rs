//! A whole afxdp-rs node on one machine (DESIGN.md, "lab"): multi-queue veth
//! pairs as the NICs (their peers in a "wire" netns that sends the traffic),
//! afxdp-dp in-process, a kubelet stand-in speaking the real gRPC, and pods as
//! netns running the example AF_XDP app as a non-root user with CAP_NET_RAW only.
//!
//! `afxdpctl lab` drives it with a live table; the end-to-end tests drive it with
//! assertions. Everything it creates is removed on [`Lab::teardown`] and, as a
//! last resort, by the guards' `Drop`.

pub mod bins;
pub mod cni;
pub mod flood;
pub mod measure;
pub mod pod;
pub mod process;
pub use afxdp_testnet::pod as unprivileged;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_dp::daemon::{Daemon, Options};
use afxdp_kubelet_standin::KubeletStandin;
use afxdp_testnet::{Netns, VethPair};

pub use pod::{AdmitFailure, Pod, QueueCounts};
pub use process::DaemonProcess;

/// The pool the lab creates.
pub const POOL: &str = "lab";
/// Its resource name.
pub const RESOURCE: &str = "afxdp/lab";
/// The node the lab is (afxdp-dp's `--node-name`; pods are bound to it).
pub const NODE_NAME: &str = "lab-node";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("binary {name} not found (searched {searched:?}); build the workspace first")]
    MissingBinary {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
}

pub(crate) fn step(what: impl Into<String>) -> impl FnOnce(String) -> LabError {
    let what = what.into();
    move |detail| LabError::Step { what, detail }
}

/// How pods get their XSKMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Uds,
    Pinned,
    /// Through the CSI node plugin (afxdp.io/v1alpha1 only). The lab has no
    /// CSI driver: its own pods take `Uds` or `Pinned`; tests that call the
    /// plugin themselves write such a pool with [`PoolSpec`].
    Csi,
}

impl Sharing {
    /// The pool's `sharing` value in afxdp.io/v1alpha1.
    pub fn as_config(self) -> &'static str {
        match self {
            Sharing::Uds => "uds",
            Sharing::Pinned => "pinned",
            Sharing::Csi => "csi",
        }
    }
}

/// What lab to build.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub nics: usize,
    pub queues: u32,
    pub sharing: Sharing,
    /// "native" or "generic".
    pub xdp_mode: &'static str,
    /// The pool's `policy` block (afxdp.io/v1alpha1); `None`: built-in decisions.
    pub policy: Option<serde_json::Value>,
    /// How afxdp-dp runs.
    pub daemon: DaemonRun,
    /// The CNI config's `ipam` block (a Debian IPAM plugin); `None`: no addresses.
    pub ipam: Option<serde_json::Value>,
    /// The upstream-format pool's `ethtoolCmds` (without a policy only).
    pub ethtool_cmds: Vec<String>,
    /// The pool's `bpfman` block (e.g. `{"image": ..., "pullPolicy": ...}`):
    /// `Some` makes it `programManager: bpfman`; `None`: the native manager.
    pub bpfman: Option<serde_json::Value>,
}

/// How the lab runs afxdp-dp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DaemonRun {
    /// In the lab's own process ([`Lab::daemon`]): tests reach its agent.
    #[default]
    InProcess,
    /// As the `afxdp-dp` binary ([`Lab::process`]): it can be SIGKILLed.
    Process,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            nics: 2,
            queues: 4,
            sharing: Sharing::Uds,
            xdp_mode: "native",
            policy: None,
            daemon: DaemonRun::InProcess,
            ipam: None,
            ethtool_cmds: Vec::new(),
            bpfman: None,
        }
    }
}

impl LabConfig {
    /// One NIC of four queues, native XDP, built-in decisions: the node of
    /// the foundation's data-path test and of its Allocate timings.
    pub fn one_nic(sharing: Sharing) -> Self {
        Self {
            nics: 1,
            queues: 4,
            xdp_mode: "native",
            sharing,
            ..Self::default()
        }
    }

    /// Whether the upstream Go plugin's format expresses this pool (no
    /// policy, no bpfman, no CSI): the lab writes that format then.
    fn upstream_format(&self) -> bool {
        self.policy.is_none() && self.bpfman.is_none() && self.sharing != Sharing::Csi
    }

    /// The lab pool on `nics` in afxdp.io/v1alpha1, with `policy`.
    fn pool_spec(&self, nics: &[String], policy: Option<serde_json::Value>) -> PoolSpec {
        PoolSpec {
            sharing: self.sharing,
            uid: Some(unprivileged::PodUser::nobody_net_raw().uid),
            xdp_mode: self.xdp_mode,
            policy,
            bpfman: self.bpfman.clone(),
            ..PoolSpec::new(POOL, nics)
        }
    }
}

/// One "NIC": the host end is the pool device, the peer sits in the wire netns.
pub struct Nic {
    pub name: String,
    pub peer: String,
    pub index: usize,
    pub pair: VethPair,
}

impl Nic {
    /// The address the wire side sends to for this NIC's pod.
    pub fn pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.index as u8, 2)
    }
    fn peer_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.index as u8, 1)
    }
}

/// Paths of the node's sockets and state.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub root: PathBuf,
    pub config: PathBuf,
    pub device_plugin_dir: PathBuf,
    pub pod_resources: PathBuf,
    pub state_dir: PathBuf,
    pub node_api: PathBuf,
}

impl NodePaths {
    fn under(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            config: root.join("config.json"),
            device_plugin_dir: root.join("device-plugins"),
            pod_resources: root.join("pod-resources/kubelet.sock"),
            state_dir: root.join("state"),
            node_api: root.join("state/node.sock"),
        }
    }

    pub fn daemon_options(&self) -> Options {
        Options {
            config: self.config.clone(),
            device_plugin_dir: self.device_plugin_dir.clone(),
            pod_resources_socket: self.pod_resources.clone(),
            state_dir: self.state_dir.clone(),
            node_api_socket: self.node_api.clone(),
            node_name: NODE_NAME.to_string(),
            kubelet_poll: Duration::from_millis(100),
            policy_cache_dir: self.root.join("policy-cache"),
            config_poll: Duration::from_millis(200),
            kubeconfig: Some(self.root.join("kubeconfig")),
            prepare_attachments: false,
            metrics_address: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            bpfman: Default::default(),
        }
    }
}

/// The upstream-format config of the lab pool (devices selected by name).
pub fn pool_config(nics: &[String], sharing: Sharing, uid: u32) -> serde_json::Value {
    let devices: Vec<_> = nics
        .iter()
        .map(|n| serde_json::json!({ "name": n }))
        .collect();
    serde_json::json!({
        "logLevel": "debug",
        "pools": [{
            "name": POOL,
            "mode": "primary",
            "devices": devices,
            "uid": uid,
            "udsTimeout": 30,
            "BpfMapPinningEnable": sharing == Sharing::Pinned,
            "UdsServerDisable": sharing == Sharing::Pinned,
        }]
    })
}

/// One pool of an afxdp.io/v1alpha1 config, its devices selected by name:
/// what the lab writes, and what tests building their own node write.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub devices: Vec<String>,
    pub sharing: Sharing,
    /// The owner of the pool's UDS and pins; `None`: afxdp-dp's default.
    pub uid: Option<u32>,
    /// "native" or "generic".
    pub xdp_mode: &'static str,
    /// The pool's `policy` block; `None`: built-in decisions.
    pub policy: Option<serde_json::Value>,
    /// The pool's `bpfman` block: `Some` makes it `programManager: bpfman`.
    pub bpfman: Option<serde_json::Value>,
}

impl PoolSpec {
    /// A UDS pool on `devices`, native XDP, built-in decisions.
    pub fn new(name: &str, devices: &[String]) -> Self {
        Self {
            name: name.to_string(),
            devices: devices.to_vec(),
            sharing: Sharing::Uds,
            uid: None,
            xdp_mode: "native",
            policy: None,
            bpfman: None,
        }
    }

    /// The whole config file holding this one pool.
    pub fn config(&self) -> serde_json::Value {
        let devices: Vec<_> = self
            .devices
            .iter()
            .map(|n| serde_json::json!({ "name": n }))
            .collect();
        let mut pool = serde_json::json!({
            "name": self.name,
            "selectors": { "devices": devices },
            "sharing": self.sharing.as_config(),
            "xdpMode": self.xdp_mode,
        });
        if let Some(uid) = self.uid {
            pool["uid"] = uid.into();
        }
        if let Some(policy) = &self.policy {
            pool["policy"] = policy.clone();
        }
        if let Some(bpfman) = &self.bpfman {
            pool["programManager"] = "bpfman".into();
            pool["bpfman"] = bpfman.clone();
        }
        serde_json::json!({
            "apiVersion": "afxdp.io/v1alpha1",
            "logLevel": "debug",
            "includeVirtualDevices": true,
            "pools": [pool],
        })
    }
}

/// A running lab node.
pub struct Lab {
    pub cfg: LabConfig,
    pub paths: NodePaths,
    pub wire: Netns,
    pub nics: Vec<Nic>,
    kubelet: Option<KubeletStandin>,
    pub daemon: Option<Daemon>,
    /// afxdp-dp as a process ([`DaemonRun::Process`]).
    pub process: Option<DaemonProcess>,
    pub pods: Vec<Pod>,
    /// The API server fake afxdp-dp reads pod metadata from.
    pub apiserver: afxdp_testnet::apiserver::FakeApiServer,
    pub cni: PathBuf,
    pub pod_app: PathBuf,
    _root: tempfile::TempDir,
}

impl Lab {
    /// Build the node and wait until kubelet sees the pool's devices healthy.
    pub async fn start(cfg: LabConfig) -> Result<Self, LabError> {
        let cni = bins::find("afxdp-cni")?;
        let root = tempfile::Builder::new()
            .prefix("afxdp-lab-")
            .tempdir_in("/run")
            .map_err(|e| step("temp dir")(e.to_string()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Pods (uid 65534) exec the app from under here.
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(|e| step("temp dir mode")(e.to_string()))?;
        }
        let pod_app =
            unprivileged::stage_binary(&bins::find("afxdp-pod-app")?, &root.path().join("bin"))
                .map_err(|e| step("stage afxdp-pod-app")(e.to_string()))?;
        let paths = NodePaths::under(root.path());
        std::fs::create_dir_all(&paths.device_plugin_dir)
            .map_err(|e| step("device-plugin dir")(e.to_string()))?;

        let wire = Netns::new("afxw").map_err(|e| step("wire netns")(e.to_string()))?;
        // Only the lab's own UDP reaches the pods (no IPv6 ND/MLD chatter).
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            wire.exec(&["sysctl", "-qw", key])
                .map_err(|e| step("wire sysctl")(e.to_string()))?;
        }
        let mut nics = Vec::new();
        for index in 0..cfg.nics {
            let name = afxdp_testnet::unique_name("afn");
            let peer = afxdp_testnet::unique_name("afp");
            let pair = VethPair::create(
                afxdp_testnet::VethOptions::new(&name, &peer)
                    .queues(cfg.queues)
                    .b_netns(&wire),
            )
            .map_err(|e| step(format!("veth {name}"))(e.to_string()))?;
            let nic = Nic {
                name,
                peer,
                index,
                pair,
            };
            let addr = format!("{}/24", nic.peer_ip());
            wire.exec(&["ip", "addr", "add", &addr, "dev", &nic.peer])
                .map_err(|e| step("peer address")(e.to_string()))?;
            wire.exec(&["ip", "link", "set", &nic.peer, "up"])
                .map_err(|e| step("peer up")(e.to_string()))?;
            nics.push(nic);
        }
        let names: Vec<String> = nics.iter().map(|n| n.name.clone()).collect();
        let mut config = if cfg.upstream_format() {
            pool_config(
                &names,
                cfg.sharing,
                unprivileged::PodUser::nobody_net_raw().uid,
            )
        } else {
            cfg.pool_spec(&names, cfg.policy.clone()).config()
        };
        if !cfg.ethtool_cmds.is_empty() {
            config["pools"][0]["ethtoolCmds"] = serde_json::json!(cfg.ethtool_cmds);
        }
        std::fs::write(&paths.config, config.to_string())
            .map_err(|e| step("config")(e.to_string()))?;

        let apiserver = afxdp_testnet::apiserver::FakeApiServer::start()
            .map_err(|e| step("API server fake")(e.to_string()))?;
        apiserver
            .write_kubeconfig(&paths.root)
            .map_err(|e| step("kubeconfig")(e.to_string()))?;
        let kubelet = KubeletStandin::start(&paths.device_plugin_dir, &paths.pod_resources)
            .await
            .map_err(|e| step("kubelet stand-in")(e.to_string()))?;
        let (daemon, process) = match cfg.daemon {
            DaemonRun::InProcess => {
                let d = Daemon::start(paths.daemon_options())
                    .await
                    .map_err(|e| step("afxdp-dp")(e.to_string()))?;
                (Some(d), None)
            }
            DaemonRun::Process => (None, Some(start_process(&paths).await?)),
        };
        let lab = Self {
            cfg,
            paths,
            wire,
            nics,
            kubelet: Some(kubelet),
            daemon,
            process,
            pods: Vec::new(),
            apiserver,
            cni,
            pod_app,
            _root: root,
        };
        lab.kubelet()
            .wait_registered(RESOURCE, Duration::from_secs(10))
            .await
            .map_err(|e| step("registration")(e.to_string()))?;
        let want = lab.nics.len();
        lab.kubelet()
            .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
                d.len() == want && d.iter().all(|x| x.is_healthy())
            })
            .await
            .map_err(|e| step("devices healthy")(e.to_string()))?;
        Ok(lab)
    }

    /// SIGKILL the afxdp-dp process ([`DaemonRun::Process`]).
    pub fn kill_daemon(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill();
        }
    }

    /// Start the afxdp-dp process again and wait until it is ready (config
    /// loaded, registered with the kubelet).
    pub async fn restart_daemon(&mut self) -> Result<&DaemonProcess, LabError> {
        if let Some(p) = self.process.take() {
            p.stop();
        }
        Ok(self.process.insert(start_process(&self.paths).await?))
    }

    /// Rewrite the pool's policy block in the config and have afxdp-dp reload
    /// it now (as its file watcher would).
    pub async fn set_policy(
        &mut self,
        policy: &serde_json::Value,
    ) -> Result<afxdp_dp::daemon::ReloadOutcome, LabError> {
        let names: Vec<String> = self.nics.iter().map(|n| n.name.clone()).collect();
        let config = self.cfg.pool_spec(&names, Some(policy.clone())).config();
        self.cfg.policy = Some(policy.clone());
        self.reload_config(&config).await
    }

    /// Write `config` as afxdp-dp's config file and have it reload it now
    /// (as its file watcher would).
    pub async fn reload_config(
        &self,
        config: &serde_json::Value,
    ) -> Result<afxdp_dp::daemon::ReloadOutcome, LabError> {
        std::fs::write(&self.paths.config, config.to_string())
            .map_err(|e| step("config")(e.to_string()))?;
        let daemon = self
            .daemon
            .as_ref()
            .ok_or_else(|| step("reload")("afxdp-dp is stopped".into()))?;
        Ok(daemon.reloader.reload().await)
    }

    /// The kubelet stand-in.
    pub fn kubelet(&self) -> &KubeletStandin {
        self.kubelet
            .as_ref()
            .expect("kubelet stand-in runs until teardown")
    }

    /// The kubelet stand-in, mutably (restart).
    pub fn kubelet_mut(&mut self) -> &mut KubeletStandin {
        self.kubelet
            .as_mut()
            .expect("kubelet stand-in runs until teardown")
    }

    /// The CNI network config the lab's runtime passes for `device`.
    pub fn net_conf(&self, device: &str) -> serde_json::Value {
        let mut conf = cni::net_conf(device, &self.paths.node_api, "1.1.0");
        if let Some(ipam) = &self.cfg.ipam {
            conf["ipam"] = ipam.clone();
        }
        conf
    }

    pub fn nic(&self, device: &str) -> Option<&Nic> {
        self.nics.iter().find(|n| n.name == device)
    }

    /// Admit a pod the way kubelet + runtime do: Allocate one device, create the
    /// pod netns, CNI ADD, then start the app unprivileged.
    pub async fn add_pod(&mut self, name: &str) -> Result<&Pod, LabError> {
        self.add_pod_with(name, Default::default(), Default::default())
            .await
    }

    /// [`Lab::add_pod`] for a pod with annotations and labels (the API server
    /// fake serves them to afxdp-dp's policies).
    pub async fn add_pod_with(
        &mut self,
        name: &str,
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<&Pod, LabError> {
        self.try_add_pod_with(name, annotations, labels)
            .await
            .map_err(|f| f.error)
    }

    /// Admit a pod and keep it ([`pod::try_admit`]: a failure is undone as
    /// a runtime does, or handed back to undo later).
    pub async fn try_add_pod(&mut self, name: &str) -> Result<&Pod, AdmitFailure> {
        self.try_add_pod_with(name, Default::default(), Default::default())
            .await
    }

    /// Admit a pod with a device of `resource` (a pool a reloaded config added).
    pub async fn add_pod_from(&mut self, resource: &str, name: &str) -> Result<&Pod, LabError> {
        self.try_add_pod_from(resource, name, Default::default(), Default::default())
            .await
            .map_err(|f| f.error)
    }

    async fn try_add_pod_with(
        &mut self,
        name: &str,
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<&Pod, AdmitFailure> {
        self.try_add_pod_from(RESOURCE, name, annotations, labels)
            .await
    }

    async fn try_add_pod_from(
        &mut self,
        resource: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<&Pod, AdmitFailure> {
        // As the scheduler would: the pod exists, bound to this node, Pending.
        self.apiserver.set_pod("lab", name, annotations, labels);
        self.apiserver
            .schedule_pod("lab", name, NODE_NAME, resource, 1);
        // A pod that fails admission stays in the API server (kubelet retries).
        let pod = pod::try_admit_from(self, resource, "lab", name).await?;
        self.apiserver.set_phase("lab", name, "Running");
        self.pods.push(pod);
        Ok(self.pods.last().expect("just pushed"))
    }

    /// Send `per_flow` UDP packets on each of `flows` flows from the wire side to `device`'s pod.
    pub fn send(&self, device: &str, flows: u16, per_flow: u32) -> Result<u64, LabError> {
        let nic = self
            .nic(device)
            .ok_or_else(|| step("send")(format!("no NIC {device}")))?;
        let last = 9000 + flows.max(1) - 1;
        afxdp_testnet::send_udp(
            &self.wire,
            &nic.peer,
            nic.pod_ip().into(),
            9000..=last,
            per_flow as usize,
        )
        .map(|n| n as u64)
        .map_err(|e| step("send traffic")(e.to_string()))
    }

    /// Current per-queue counts of every pod.
    pub fn counts(&self) -> BTreeMap<String, QueueCounts> {
        self.pods
            .iter()
            .map(|p| (p.name.clone(), p.counts()))
            .collect()
    }

    /// Remove one pod: stop the app, CNI DEL, forget it in kubelet, delete its netns.
    pub async fn remove_pod(&mut self, name: &str) -> Result<(), LabError> {
        let Some(i) = self.pods.iter().position(|p| p.name == name) else {
            return Ok(());
        };
        let pod = self.pods.remove(i);
        self.apiserver.remove_pod("lab", name);
        let (device, resource) = (pod.device.clone(), pod.resource.clone());
        pod.remove(self).await?;
        self.settle(&device).await;
        self.wait_listed_free(&resource, &device).await;
        Ok(())
    }

    /// Wait (bounded) until the kubelet stand-in's ListAndWatch view lists
    /// `device` healthy again, as a scheduler waits for capacity: the release
    /// is done before afxdp-dp's update reaches kubelet. A timeout is left to
    /// the next admission to report.
    async fn wait_listed_free(&self, resource: &str, device: &str) {
        let listed = self
            .kubelet()
            .wait_devices(resource, Duration::from_secs(5), |devices| {
                devices.iter().any(|d| d.id == device && d.is_healthy())
            })
            .await;
        if let Err(e) = listed {
            tracing::warn!(device, error = %e, "released device not listed healthy");
        }
    }

    /// Wait until afxdp-dp (in process) has carried out the release of
    /// `device` a CNI DEL began (DEL is answered before the detach ends).
    pub async fn settle(&self, device: &str) {
        if let Some(d) = &self.daemon {
            let (agent, device) = (d.agent.clone(), device.to_string());
            let _ = tokio::task::spawn_blocking(move || agent.settle(&device)).await;
        }
    }

    /// Tear everything down, in the order a node would.
    pub async fn teardown(mut self) -> Result<(), LabError> {
        let mut first_err = None;
        while let Some(pod) = self.pods.pop() {
            if let Err(e) = pod.remove(&self).await {
                first_err.get_or_insert(e);
            }
        }
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
        if let Some(p) = self.process.take() {
            p.stop();
        }
        unmount_pins(&self.paths.state_dir.join("pins"));
        if let Some(k) = self.kubelet.take() {
            k.shutdown().await;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Lab {
    /// Last resort when a test panics before `teardown`: pods' guards remove
    /// their netns, the veth guards their links; the pins' bpffs goes here
    /// (dropping the pins detaches the programs).
    fn drop(&mut self) {
        for p in self.pods.drain(..) {
            drop(p);
        }
        unmount_pins(&self.paths.state_dir.join("pins"));
    }
}

/// Start the `afxdp-dp` binary on `paths` and wait until it is ready.
async fn start_process(paths: &NodePaths) -> Result<DaemonProcess, LabError> {
    let bin = bins::find("afxdp-dp")?;
    let log = paths.root.join("afxdp-dp.log");
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || {
        let mut p = DaemonProcess::spawn(&bin, &paths, &log)?;
        p.wait_ready(Duration::from_secs(20))?;
        Ok(p)
    })
    .await
    .map_err(|e| step("afxdp-dp process")(e.to_string()))?
}

/// Unmount the bpffs the program manager mounted under the state dir (lazy, so a
/// still-open FD cannot block teardown).
pub fn unmount_pins(pins: &Path) {
    if pins.exists() {
        let _ = nix::mount::umount2(pins, nix::mount::MntFlags::MNT_DETACH);
    }
}
