//! The normalised configuration model the daemon uses, whatever form the
//! file was written in.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigWarning;

/// Extended-resource prefix: pool `p` is advertised as `afxdp/p`.
pub const RESOURCE_PREFIX: &str = "afxdp";
/// Prefix of the per-pool environment variable handed to containers.
pub const ENV_VAR_PREFIX: &str = "AFXDP_DEVICES_";
/// UDS inactivity timeout used when none is configured (upstream default).
pub const DEFAULT_UDS_TIMEOUT: Duration = Duration::from_secs(30);
/// Directory that upstream places a bare `logFile` name in.
pub const UPSTREAM_LOG_DIR: &str = "/var/log/afxdp-k8s-plugins";

/// Which document form the configuration was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// The upstream Go plugin's `config.json` (any of its versions).
    Upstream,
    /// Our `apiVersion: afxdp.io/v1alpha1` form.
    V1Alpha1,
}

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Form the file was written in.
    pub source_format: SourceFormat,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Log file; `None` logs to stderr.
    pub log_file: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// The program manager of pools that do not name their own
    /// (v1alpha1 top-level `programManager`, upstream top-level
    /// `bpfdClientEnable`). Each pool's own is [`PoolConfig::bpfman`].
    pub program_manager: ProgramManagerKind,
    /// Also consider virtual netdevs (veth, bridges, VLANs, ...; see
    /// [`crate::selector`]) as candidate devices. Upstream's `kindCluster:
    /// true` (or `clusterType: "kind"`) sets it; the `lab` needs it.
    pub include_virtual_devices: bool,
    /// The pools, in file order (which is also selection priority: the first
    /// pool that selects a device gets it).
    pub pools: Vec<PoolConfig>,
    /// Non-fatal findings (legacy keys ignored, defaults filled in, settings
    /// without effect). Empty for a clean file.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// The pool called `name`, if any.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// One device pool: one extended resource `afxdp/<name>` on each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pool name; see [`PoolConfig::resource_name`] and
    /// [`PoolConfig::env_var_name`].
    pub name: String,
    /// How devices of the pool are handed out.
    pub mode: PoolMode,
    /// How the XSKMAP reaches the pod.
    pub sharing: SharingMode,
    /// Owner (uid) of the UDS socket and pinned map directory; 0 = root only.
    pub uid: u32,
    /// UDS inactivity timeout; [`Duration::ZERO`] means "never time out".
    /// Only meaningful with [`SharingMode::Uds`]; other pools carry the default.
    pub uds_timeout: Duration,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// Custom XDP program; `None` = the built-in AF_XDP redirect program.
    pub program: Option<ProgramSource>,
    /// Only take devices on nodes that allow unprivileged BPF
    /// (`kernel.unprivileged_bpf_disabled = 0`). Always `false` for now: the
    /// daemon does not check the node yet, so both forms refuse `true`.
    pub requires_unprivileged_bpf: bool,
    /// Which netdevs belong to the pool.
    pub selector: Selector,
    /// Requested combined channel (queue) count for each device, if any.
    pub channels: Option<u32>,
    /// Upstream `ethtoolCmds`' ntuple rules, translated
    /// ([`crate::ethtool_cmd`]): the pool's filter rules when no policy
    /// decides them, programmed at CNI ADD with `-ip-` the pod's address and
    /// required (a device that refuses them fails the ADD, as upstream's
    /// ethtool run would). Their `-L combined N` sets
    /// [`PoolConfig::channels`]. Always empty in the richer form, where
    /// filter rules come from the pool policy.
    pub ethtool_cmds: Vec<crate::ethtool_cmd::NtupleTemplate>,
    /// The pool's Wasm policy; `None` = the built-in decisions.
    pub policy: Option<PolicyConfig>,
    /// `Some`: bpfman (`bpfman-rpc`) loads and attaches the pool's programs,
    /// with these settings; `None`: afxdp-dp's native (aya) manager.
    pub bpfman: Option<BpfmanPool>,
}

/// How bpfman loads a pool's program (`programManager: bpfman`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfmanPool {
    /// The bytecode image (bpfman's image spec) loaded when the decision is
    /// the built-in program; always pinned by digest
    /// (`registry/repo@sha256:<64 hex>`). `None`: afxdp-dp hands bpfman
    /// its built-in object as a file (or the pool's `program` path).
    pub image: Option<String>,
    /// When bpfman pulls images.
    pub pull_policy: ImagePullPolicy,
    /// A dockerconfigjson file (`{"auths": {"host:port": {"auth": ...}}}`)
    /// with the registry's credentials, read at each load; `None`: anonymous.
    pub credentials_file: Option<PathBuf>,
    /// The function loaded from the object when the decision names none;
    /// `None`: `xsk_redirect`.
    pub function: Option<String>,
    /// Position in bpfman's XDP dispatcher, 1 (first) ..= 1000 (last).
    pub priority: i32,
    /// XDP actions after which bpfman's dispatcher runs the next program.
    pub proceed_on: Vec<ProceedOn>,
}

/// Default [`BpfmanPool::priority`] (bpfman's own default).
pub const DEFAULT_BPFMAN_PRIORITY: i32 = 50;

impl Default for BpfmanPool {
    fn default() -> Self {
        Self {
            image: None,
            pull_policy: ImagePullPolicy::IfNotPresent,
            credentials_file: None,
            function: None,
            priority: DEFAULT_BPFMAN_PRIORITY,
            proceed_on: vec![ProceedOn::Pass, ProceedOn::DispatcherReturn],
        }
    }
}

/// When bpfman pulls a bytecode image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullPolicy {
    /// On every load.
    Always,
    /// Unless bpfman has it already (default).
    #[default]
    IfNotPresent,
    /// Never: bpfman must have it.
    Never,
}

impl ImagePullPolicy {
    /// Name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// An XDP action in bpfman's `proceed_on` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProceedOn {
    /// `XDP_ABORTED`.
    Aborted,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_PASS`.
    Pass,
    /// `XDP_TX`.
    Tx,
    /// `XDP_REDIRECT`.
    Redirect,
    /// bpfman's dispatcher return value.
    DispatcherReturn,
}

impl ProceedOn {
    /// Every action with its name as written in the config.
    pub const ALL: [(&'static str, ProceedOn); 6] = [
        ("aborted", ProceedOn::Aborted),
        ("drop", ProceedOn::Drop),
        ("pass", ProceedOn::Pass),
        ("tx", ProceedOn::Tx),
        ("redirect", ProceedOn::Redirect),
        ("dispatcher_return", ProceedOn::DispatcherReturn),
    ];

    /// Name as written in the config.
    pub fn as_str(self) -> &'static str {
        ProceedOn::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(n, _)| n)
    }
}

/// Whether `image` is pinned by digest: `...@sha256:` and 64 lower-case hex
/// digits.
pub fn is_digest_pinned(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(name, hex)| {
        !name.is_empty()
            && hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A pool's Wasm policy (richer form only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Where the component comes from.
    pub source: PolicySource,
    /// What a failing decision (fetch, validation, trap, timeout, bad output) does.
    pub failure_policy: FailurePolicy,
    /// Deadline per decision; `None` = the daemon default (100 ms).
    pub timeout: Option<Duration>,
    /// Memory cap per decision; `None` = the daemon default (32 MiB).
    pub memory_limit: Option<usize>,
    /// Decisions of the pool running at once; `None` = the node's CPUs.
    pub max_concurrent_calls: Option<usize>,
    /// The policy's own configuration (JSON text; `{}` when not given),
    /// checked by the policy's `validate-config` at load time.
    pub config_json: String,
}

/// Where a policy component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// An OCI artifact, `registry/repo@sha256:...` (or a tag with a pull policy).
    Oci {
        /// The reference as written.
        reference: String,
        /// Required for tags; `None` for digest references.
        pull_policy: Option<PullPolicy>,
        /// Allow plain HTTP to a non-loopback registry. Always `false` for
        /// now (`insecure: true` is refused: not supported yet).
        insecure: bool,
    },
    /// A component file on the node (absolute path; its sha256 is its identity).
    File(PathBuf),
}

/// When a tag reference is resolved again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Use the cached tag → digest mapping when there is one.
    IfNotPresent,
    /// Resolve the tag online every time the policy is loaded.
    Always,
}

/// What a failed policy decision does to the allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The allocation fails with the policy's message.
    #[default]
    Fail,
    /// The built-in default decision is used; a warning is logged and counted.
    Ignore,
}

impl PoolConfig {
    /// Kubernetes extended resource name: `afxdp/<name>`.
    pub fn resource_name(&self) -> String {
        format!("{RESOURCE_PREFIX}/{}", self.name)
    }

    /// Environment variable listing the pool's devices in a container:
    /// `AFXDP_DEVICES_` + the name upper-cased with `-` mapped to `_`
    /// (`fast-net` → `AFXDP_DEVICES_FAST_NET`, `myPool` → `AFXDP_DEVICES_MYPOOL`).
    pub fn env_var_name(&self) -> String {
        env_var_name(&self.name)
    }

    /// Which manager loads the pool's programs.
    pub fn program_manager(&self) -> ProgramManagerKind {
        match self.bpfman {
            Some(_) => ProgramManagerKind::Bpfman,
            None => ProgramManagerKind::Native,
        }
    }
}

/// See [`PoolConfig::env_var_name`].
pub fn env_var_name(pool: &str) -> String {
    let suffix: String = pool
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    format!("{ENV_VAR_PREFIX}{suffix}")
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings (upstream `warning`).
    Warn,
    /// Normal operation (default).
    #[default]
    Info,
    /// Detailed.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Name in the richer form (`error`, `warn`, `info`, `debug`, `trace`),
    /// also a valid `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Name in the richer form.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// How devices of a pool are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// The whole netdev (NIC port) goes to one pod.
    #[default]
    Primary,
    /// Subfunctions (Intel's CDQ; any driver with devlink PCI subfunctions):
    /// each selected device advertises `secondary` slots (1 when not given);
    /// Allocate creates and activates a subfunction on the device over
    /// devlink and hands the pod its netdev, release deletes it.
    Cdq,
}

impl PoolMode {
    /// Name as written in both forms.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Primary => "primary",
            PoolMode::Cdq => "cdq",
        }
    }
}

/// How the XSKMAP reaches the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharingMode {
    /// The daemon serves the map FD over a per-allocation Unix socket (the
    /// upstream handshake). Upstream: neither `UdsServerDisable` nor
    /// `BpfMapPinningEnable`.
    #[default]
    Uds,
    /// The map is pinned in bpffs and the pin directory is mounted into the
    /// pod (hostPath). Upstream: `UdsServerDisable` + `BpfMapPinningEnable`.
    PinnedMap,
    /// afxdp-dp annotates the pod at Allocate and its CSI node plugin
    /// (`csi.afxdp.io`) pins the map into the pod's inline volume.
    Csi,
    /// Nothing is loaded; the pod gets the raw netdev and brings its own
    /// program (it needs the privileges for that). Upstream:
    /// `UdsServerDisable` alone. Not supported yet: the parser refuses it.
    Unmanaged,
}

impl SharingMode {
    /// Name in the richer form.
    pub fn as_str(self) -> &'static str {
        match self {
            SharingMode::Uds => "uds",
            SharingMode::PinnedMap => "pinned",
            SharingMode::Csi => "csi",
            SharingMode::Unmanaged => "none",
        }
    }
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Driver (native) mode; fails if the driver lacks XDP support. Default
    /// in the richer form. veth supports it.
    #[default]
    Native,
    /// Generic (skb) mode: works everywhere, slower. veth supports it too.
    Generic,
    /// Let the kernel choose (native when the driver supports it, generic
    /// otherwise): what upstream's loader did, so upstream files get it.
    Auto,
}

impl XdpMode {
    /// Name in the richer form.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

/// Which program manager the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgramManagerKind {
    /// aya, in process (default).
    #[default]
    Native,
    /// bpfman over its gRPC socket (upstream `bpfdClientEnable`).
    Bpfman,
}

impl ProgramManagerKind {
    /// Name in the richer form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramManagerKind::Native => "native",
            ProgramManagerKind::Bpfman => "bpfman",
        }
    }
}

/// A custom XDP program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramSource {
    /// An object file on the node.
    File {
        /// Absolute path of the ELF object.
        path: PathBuf,
        /// Program (function) name inside it; `None` = the only XDP program.
        function: Option<String>,
    },
    /// A bytecode image (bpfman image spec). Upstream: `bpfByteCodeImage`
    /// and `bpfByteCodeSection`.
    Image {
        /// Image reference, ideally pinned by digest.
        image: String,
        /// Program (function/section) name inside it.
        function: Option<String>,
    },
}

/// Which netdevs a pool takes. See [`crate::selector`] for the semantics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Devices taken by driver.
    pub drivers: Vec<DriverSelector>,
    /// Devices named explicitly.
    pub devices: Vec<DeviceSelector>,
    /// Per-node overrides: on a node listed here, that entry's drivers and
    /// devices replace the two lists above (an entry with neither opts the
    /// node out of the pool).
    pub nodes: Vec<NodeSelector>,
}

/// Take the devices bound to one kernel driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSelector {
    /// Kernel driver name as in `/sys/class/net/<dev>/device/driver` (`ice`, `veth`).
    pub name: String,
    /// At most this many devices of this driver per node (upstream `primary`).
    pub max_devices: Option<u32>,
    /// Secondary devices (CDQ subfunctions) per device, inherited by each
    /// device this selector takes.
    pub secondary: Option<u32>,
    /// Devices never taken by this selector.
    pub exclude: Vec<DeviceMatch>,
    /// Skip devices that have IP addresses (IPv6 link-local ones do not
    /// count: the kernel gives one to every link that comes up).
    pub exclude_addressed: bool,
}

/// One explicitly chosen device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSelector {
    /// How the device is identified.
    pub matcher: DeviceMatch,
    /// Secondary devices (CDQ subfunctions) to create on it.
    pub secondary: Option<u32>,
}

/// Identifies a netdev by exactly one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMatch {
    /// Interface name (exact).
    Name(String),
    /// PCI address of the device.
    Pci(PciAddress),
    /// Permanent or current MAC address.
    Mac(MacAddress),
}

/// Node-specific selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelector {
    /// Kubernetes node name (compared case-insensitively).
    pub hostname: String,
    /// Drivers on that node.
    pub drivers: Vec<DriverSelector>,
    /// Devices on that node.
    pub devices: Vec<DeviceSelector>,
}

/// A PCI address `dddd:bb:dd.f` (domain, bus, device, function), parsed
/// case-insensitively and printed in lower case with a 4-digit domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// Domain (segment); 4 hex digits, up to 8 accepted for VMD domains.
    pub domain: u32,
    /// Bus, 2 hex digits.
    pub bus: u8,
    /// Device, 2 hex digits, 0..=0x1f.
    pub device: u8,
    /// Function, 0..=7.
    pub function: u8,
}

/// Error from [`PciAddress::from_str`] and [`MacAddress::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressParseError(pub String);

impl FromStr for PciAddress {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            AddressParseError(format!(
                "invalid PCI address {s:?}: {why} (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"
            ))
        };
        let hex = |t: &str, min: usize, max: usize| -> Option<u32> {
            if t.len() < min || t.len() > max || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(t, 16).ok()
        };
        let mut parts = s.split(':');
        let (Some(dom), Some(bus), Some(devfn), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("wrong number of ':'-separated parts"));
        };
        let Some((dev, func)) = devfn.split_once('.') else {
            return Err(bad("missing '.' before the function"));
        };
        let domain = hex(dom, 4, 8).ok_or_else(|| bad("domain must be 4 hex digits"))?;
        let bus = hex(bus, 2, 2).ok_or_else(|| bad("bus must be 2 hex digits"))?;
        let device = hex(dev, 2, 2).ok_or_else(|| bad("device must be 2 hex digits"))?;
        if device > 0x1f {
            return Err(bad("device must be at most 1f"));
        }
        let function = hex(func, 1, 1).ok_or_else(|| bad("function must be 1 digit"))?;
        if function > 7 {
            return Err(bad("function must be 0-7"));
        }
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// A 48-bit MAC address, parsed from `aa:bb:cc:dd:ee:ff` or
/// `aa-bb-cc-dd-ee-ff` in any case and printed lower-case with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = AddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            AddressParseError(format!(
                "invalid MAC address {s:?} (expected six hex octets like 68:05:ca:2d:e9:1b)"
            ))
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            n += 1;
        }
        if n != 6 {
            return Err(bad());
        }
        Ok(MacAddress(out))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceMatch::Name(n) => write!(f, "name {n}"),
            DeviceMatch::Pci(p) => write!(f, "pci {p}"),
            DeviceMatch::Mac(m) => write!(f, "mac {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        let ok = [
            ("0000:81:00.1", "0000:81:00.1"),
            ("0000:3B:1F.7", "0000:3b:1f.7"),
            ("10000:e1:00.0", "10000:e1:00.0"),
        ];
        for (input, shown) in ok {
            let p: PciAddress = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.to_string(), shown);
        }
        for bad in [
            "",
            "81:00.1",
            "0000:81:00",
            "0000:81:00.",
            "000:81:00.1",
            "0000:8:00.1",
            "0000:81:0.1",
            "0000:81:20.0",
            "0000:81:00.8",
            "0000:81:00.1 ",
            "x0000:81:00.1",
            "0000:81:00.1:0",
            "0000:81:00.a",
            "123456789:00:00.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mac_addresses() {
        for input in [
            "68:05:ca:2d:e9:1b",
            "68:05:CA:2D:E9:1B",
            "68-05-ca-2d-E9-1b",
        ] {
            let m: MacAddress = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(m.to_string(), "68:05:ca:2d:e9:1b");
        }
        for bad in [
            "",
            "68:05:ca:2d:e9",
            "68:05:ca:2d:e9:1b:00",
            "68:05:ca:2d:e9:1",
            "68:05-ca:2d:e9:1b",
            "68:05:ca:2d:e9:zz",
            "6805.ca2d.e91b",
            "68:05:ca:2d:e9:1b ",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_name("fast-net"), "AFXDP_DEVICES_FAST_NET");
        assert_eq!(env_var_name("myPool"), "AFXDP_DEVICES_MYPOOL");
        assert_eq!(env_var_name("e2e"), "AFXDP_DEVICES_E2E");
    }
}
