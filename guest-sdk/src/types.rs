//! Plain-Rust mirrors of the WIT records a decision receives and returns.
//!
//! They hold the same data as the generated bindings but are ordinary Rust
//! types, so policy logic and its tests need no Wasm runtime. The glue
//! converts at the component boundary.

use std::net::IpAddr;

/// A host network device as the node agent discovered it (WIT `netdev`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Netdev {
    /// Interface name, also the device ID kubelet knows.
    pub name: String,
    /// Kernel driver, e.g. `ice`, `veth`.
    pub driver: Option<String>,
    /// PCI address `dddd:bb:dd.f`.
    pub pci: Option<String>,
    /// Lower-case, colon-separated.
    pub mac: Option<String>,
    /// NUMA node, when the platform reports one.
    pub numa_node: Option<i64>,
    /// Receive queues (channels) the device has now.
    pub rx_queues: u32,
    /// Transmit queues the device has now.
    pub tx_queues: u32,
    /// Link speed.
    pub speed_mbps: Option<u32>,
    /// IP addresses in text form.
    pub addresses: Vec<String>,
}

impl Netdev {
    /// A device named `name` with `queues` rx and tx queues and nothing else
    /// known; chain the `with_*` methods to fill more (handy in tests).
    pub fn new(name: impl Into<String>, queues: u32) -> Self {
        Netdev {
            name: name.into(),
            rx_queues: queues,
            tx_queues: queues,
            ..Netdev::default()
        }
    }

    /// The same device on NUMA node `node`.
    pub fn with_numa(mut self, node: i64) -> Self {
        self.numa_node = Some(node);
        self
    }

    /// The same device with `driver`.
    pub fn with_driver(mut self, driver: impl Into<String>) -> Self {
        self.driver = Some(driver.into());
        self
    }

    /// The device's addresses that parse as IP addresses (a `/prefix` suffix
    /// is accepted and dropped); others are skipped.
    pub fn ip_addresses(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .filter_map(|a| {
                let ip = a.split_once('/').map_or(a.as_str(), |(ip, _)| ip);
                ip.trim().parse().ok()
            })
            .collect()
    }
}

/// The pod a device is being allocated to (WIT `pod`). Kubelet's Allocate does
/// not name the pod; the host fills what it knows (empty strings otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pod {
    /// Namespace, or empty.
    pub namespace: String,
    /// Name, or empty.
    pub name: String,
    /// `metadata.annotations`, in the order the host gave them.
    pub annotations: Vec<(String, String)>,
    /// `metadata.labels`, in the order the host gave them.
    pub labels: Vec<(String, String)>,
    /// How many devices of the pool the container requested.
    pub requested: u32,
}

impl Pod {
    /// A pod `namespace/name` requesting one device, without labels or annotations.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            requested: 1,
            ..Pod::default()
        }
    }

    /// The same pod with one more annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// The same pod with one more label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The same pod requesting `n` devices.
    pub fn with_requested(mut self, n: u32) -> Self {
        self.requested = n;
        self
    }

    /// The value of annotation `key` (the first, should the host pass duplicates).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }

    /// The value of label `key` (the first, should the host pass duplicates).
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    /// `namespace/name`, or `<unknown pod>` when the host could not name it.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            "<unknown pod>".to_string()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The pool a decision is for (WIT `pool`): its name and the policy's own
/// config as JSON text. Policies usually see it parsed, as [`crate::Ctx`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    /// Pool name (resource `afxdp/<name>`).
    pub name: String,
    /// The policy config, JSON text (may be empty: no config).
    pub config_json: String,
}

impl Pool {
    /// A pool `name` with `config_json`.
    pub fn new(name: impl Into<String>, config_json: impl Into<String>) -> Self {
        Pool {
            name: name.into(),
            config_json: config_json.into(),
        }
    }
}

/// XDP attach mode (WIT `xdp-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver mode.
    #[default]
    Native,
    /// SKB (generic) mode.
    Generic,
    /// Let the kernel pick.
    Auto,
}

/// Where the XDP program comes from (WIT `program-source`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProgramSource {
    /// The agent's built-in XSKMAP redirect program.
    #[default]
    Builtin,
    /// An object file on the node (absolute path).
    File(String),
    /// A bytecode image (bpfman image spec), ideally pinned by digest.
    Image(String),
}

/// The program to attach (WIT `program-choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramChoice {
    /// Where the program comes from.
    pub source: ProgramSource,
    /// Program (function) name in the object; `None` = the only XDP program.
    pub function: Option<String>,
    /// Attach mode.
    pub mode: XdpMode,
    /// bpfman priority (1..=1000; lower runs first).
    pub priority: i32,
}

impl ProgramChoice {
    /// The priority the host uses when no policy decides: 50.
    pub const DEFAULT_PRIORITY: i32 = 50;
    /// Valid priorities.
    pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = 1..=1000;

    /// What the host does without a policy: the built-in program, native mode, priority 50.
    pub fn builtin() -> Self {
        ProgramChoice {
            source: ProgramSource::Builtin,
            function: None,
            mode: XdpMode::Native,
            priority: Self::DEFAULT_PRIORITY,
        }
    }

    /// A bytecode image `reference`, native mode, priority 50.
    pub fn image(reference: impl Into<String>) -> Self {
        ProgramChoice {
            source: ProgramSource::Image(reference.into()),
            ..Self::builtin()
        }
    }

    /// The same choice with program (function) `name`.
    pub fn with_function(mut self, name: impl Into<String>) -> Self {
        self.function = Some(name.into());
        self
    }

    /// The same choice in `mode`.
    pub fn with_mode(mut self, mode: XdpMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same choice with `priority`.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

impl Default for ProgramChoice {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Channels to configure and the queue ids the pod's sockets bind (WIT `queue-plan`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePlan {
    /// Requested combined channel count; `None` leaves the NIC as it is.
    pub channels: Option<u32>,
    /// Queue ids, each < the channel count (or the device's queues).
    pub queues: Vec<u32>,
}

impl QueuePlan {
    /// Bind `queues`, leave the NIC's channels alone.
    pub fn queues(queues: Vec<u32>) -> Self {
        QueuePlan {
            channels: None,
            queues,
        }
    }

    /// The same plan, also setting the combined channel count to `channels`.
    pub fn with_channels(mut self, channels: u32) -> Self {
        self.channels = Some(channels);
        self
    }
}

/// Describes a policy (WIT `metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Policy version (semver).
    pub version: String,
    /// One line for `afxdpctl`.
    pub description: String,
    /// The decisions this policy makes, by export name; see [`crate::decision`].
    pub decisions: Vec<String>,
}

impl Metadata {
    /// Metadata for a policy making `decisions` (names from [`crate::decision`]).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        decisions: &[&str],
    ) -> Self {
        Metadata {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            decisions: decisions.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// The export names of the decisions, for [`Metadata::decisions`].
pub mod decision {
    /// `select-program`
    pub const SELECT_PROGRAM: &str = "select-program";
    /// `assign-queues`
    pub const ASSIGN_QUEUES: &str = "assign-queues";
    /// `filter-rules`
    pub const FILTER_RULES: &str = "filter-rules";
    /// `preferred-allocation`
    pub const PREFERRED_ALLOCATION: &str = "preferred-allocation";
    /// All four.
    pub const ALL: [&str; 4] = [
        SELECT_PROGRAM,
        ASSIGN_QUEUES,
        FILTER_RULES,
        PREFERRED_ALLOCATION,
    ];
}

/// Log severity (WIT `log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very verbose.
    Trace,
    /// Verbose.
    Debug,
    /// Normal.
    Info,
    /// Something is off but the decision goes on.
    Warn,
    /// Something failed.
    Error,
}
