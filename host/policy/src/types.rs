//! The host's own view of policy inputs and decisions.
//!
//! These types are what the rest of afxdp-dp sees; the WIT-generated types
//! never leave this crate (see `convert`). Decision types are only handed out
//! after the host validated them (see [`crate::validate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// A host network device, as a policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Netdev {
    /// Interface name.
    pub name: String,
    /// Kernel driver name.
    pub driver: Option<String>,
    /// PCI address `dddd:bb:dd.f`.
    pub pci: Option<String>,
    /// MAC address, lower-case, colon-separated.
    pub mac: Option<String>,
    /// NUMA node, when the platform says.
    pub numa_node: Option<i64>,
    /// RX queues in use. Queue plans and `queue` rule actions are checked
    /// against this (or against the plan's channel count).
    pub rx_queues: u32,
    /// TX queues in use.
    pub tx_queues: u32,
    /// Link speed in Mb/s when known.
    pub speed_mbps: Option<u32>,
    /// Addresses configured on the device.
    pub addresses: Vec<IpAddr>,
    /// Maximum combined channels (`ethtool -l`), when known. Host-only: not
    /// passed to the policy, used to validate a queue plan's `channels`.
    pub max_channels: Option<u32>,
}

impl Netdev {
    /// A device with a name and a queue count, everything else unknown.
    pub fn new(name: impl Into<String>, rx_queues: u32) -> Self {
        Self {
            name: name.into(),
            rx_queues,
            tx_queues: rx_queues,
            ..Self::default()
        }
    }
}

/// The pod a device is allocated to. Kubelet's Allocate does not name the
/// pod: the host fills what it knows (empty strings otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// How many devices of the pool the container requested.
    pub requested: u32,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// Let the loader pick.
    Auto,
}

/// Where the XDP program comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProgramSource {
    /// The agent's built-in XSKMAP redirect program.
    Builtin,
    /// An object file on the node; always an absolute path without `..`.
    File(PathBuf),
    /// A bytecode image reference (bpfman image spec).
    Image(String),
}

/// Which program to attach to a device, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProgramChoice {
    /// Program source.
    pub source: ProgramSource,
    /// Function name in the object; `None` = the only XDP program.
    pub function: Option<String>,
    /// Attach mode.
    pub mode: XdpMode,
    /// bpfman priority, `1..=1000` (lower runs first).
    pub priority: i32,
}

/// Channels to configure and the queue ids the pod's sockets bind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueuePlan {
    /// Combined channel count to set; `None` leaves the NIC as it is.
    pub channels: Option<u32>,
    /// Queue ids: unique, non-empty, each below the channel count (or the
    /// device's rx queues when `channels` is `None`).
    pub queues: Vec<u32>,
}

/// Flow type of an ntuple rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowType {
    /// TCP over IPv4.
    Tcp4,
    /// UDP over IPv4.
    Udp4,
    /// SCTP over IPv4.
    Sctp4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv6.
    Udp6,
    /// SCTP over IPv6.
    Sctp6,
}

impl FlowType {
    /// Whether addresses of this flow type are IPv6.
    pub fn is_ipv6(self) -> bool {
        matches!(self, Self::Tcp6 | Self::Udp6 | Self::Sctp6)
    }

    /// The `ethtool -N flow-type` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp4 => "tcp4",
            Self::Udp4 => "udp4",
            Self::Sctp4 => "sctp4",
            Self::Tcp6 => "tcp6",
            Self::Udp6 => "udp6",
            Self::Sctp6 => "sctp6",
        }
    }
}

/// What a rule does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Steer to this rx queue.
    Queue(u32),
    /// Drop.
    Drop,
}

/// One NIC ntuple rule. Masks select the bits that must match; `None` means
/// exact match. A mask is only present with its value, in the same family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterRule {
    /// Flow type; fixes the address family of every address in the rule.
    pub flow_type: FlowType,
    /// Source address.
    pub src_ip: Option<IpAddr>,
    /// Source address mask.
    pub src_ip_mask: Option<IpAddr>,
    /// Destination address.
    pub dst_ip: Option<IpAddr>,
    /// Destination address mask.
    pub dst_ip_mask: Option<IpAddr>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Source port mask.
    pub src_port_mask: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Destination port mask.
    pub dst_port_mask: Option<u16>,
    /// Action.
    pub action: RuleAction,
}

/// One decision a policy can make (the WIT export names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    /// `select-program`.
    SelectProgram,
    /// `assign-queues`.
    AssignQueues,
    /// `filter-rules`.
    FilterRules,
    /// `preferred-allocation`.
    PreferredAllocation,
}

impl Decision {
    /// Every decision.
    pub const ALL: [Decision; 4] = [
        Self::SelectProgram,
        Self::AssignQueues,
        Self::FilterRules,
        Self::PreferredAllocation,
    ];

    /// The WIT export name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelectProgram => "select-program",
            Self::AssignQueues => "assign-queues",
            Self::FilterRules => "filter-rules",
            Self::PreferredAllocation => "preferred-allocation",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or(())
    }
}

/// What a policy says about itself (`metadata()`, called once at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Policy version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// The decisions it makes; names this host does not know are dropped
    /// (with a warning) at load.
    pub decisions: Vec<Decision>,
}

/// The policy's own reason for not deciding (WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestErrorCode {
    /// The inputs (pool config, pod annotations, ...) are not acceptable.
    InvalidInput,
    /// The policy does not make this decision.
    Unsupported,
    /// The policy refuses this pod or device.
    Denied,
    /// A bug in the policy.
    Internal,
}

impl fmt::Display for GuestErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidInput => "invalid-input",
            Self::Unsupported => "unsupported",
            Self::Denied => "denied",
            Self::Internal => "internal",
        })
    }
}
