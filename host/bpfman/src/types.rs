//! Domain types of the bpfman API and their one conversion each to and from
//! the wire (`crate::wire`). Nothing outside this file builds wire messages.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use crate::{wire, BpfmanError};

/// Where bpfman reads an eBPF object from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytecode {
    /// An object file, by its path as bpfman sees it (bpfman opens it).
    File(PathBuf),
    /// An OCI bytecode image (bpfman's image spec), pulled by bpfman.
    Image(Image),
}

impl fmt::Display for Bytecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bytecode::File(p) => write!(f, "file {}", p.display()),
            Bytecode::Image(i) => write!(f, "image {}", i.url),
        }
    }
}

/// A bytecode image reference and how bpfman pulls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `registry/repo:tag` or `registry/repo@sha256:...`.
    pub url: String,
    /// When bpfman pulls it.
    pub pull_policy: PullPolicy,
    /// Registry credentials, if it needs any.
    pub credentials: Option<Credentials>,
}

/// Registry credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// bpfman's image pull policies (wire values 0, 1, 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every load.
    Always,
    /// Pull unless bpfman has the image already.
    #[default]
    IfNotPresent,
    /// Never pull: the image must be there.
    Never,
}

impl PullPolicy {
    fn wire(self) -> i32 {
        match self {
            PullPolicy::Always => 0,
            PullPolicy::IfNotPresent => 1,
            PullPolicy::Never => 2,
        }
    }

    fn from_wire(v: i32) -> Option<Self> {
        match v {
            0 => Some(PullPolicy::Always),
            1 => Some(PullPolicy::IfNotPresent),
            2 => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

/// The program families afxdp-rs loads through bpfman.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramType {
    /// XDP (attached through bpfman's dispatcher, an freplace program).
    Xdp,
    /// TC classifier on bpfman's TC dispatcher.
    Tc,
    /// TCX (Linux 6.6): a tc classifier on a `bpf_link`, no dispatcher.
    Tcx,
}

impl ProgramType {
    fn wire(self) -> wire::BpfmanProgramType {
        match self {
            ProgramType::Xdp => wire::BpfmanProgramType::Xdp,
            ProgramType::Tc => wire::BpfmanProgramType::Tc,
            ProgramType::Tcx => wire::BpfmanProgramType::Tcx,
        }
    }
}

/// What to load: one function of an object, with its metadata.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The object.
    pub bytecode: Bytecode,
    /// The function (program) to load from it.
    pub function: String,
    /// How bpfman treats it.
    pub program_type: ProgramType,
    /// Key/value pairs bpfman stores with the program; `List` filters on them.
    pub metadata: BTreeMap<String, String>,
}

/// An XDP action, as `proceed_on` lists them: the config's own type (one
/// list of actions from the pool's `proceedOn` to bpfman's wire).
pub use afxdp_config::ProceedOn;

/// bpfman's wire value of `a` (the kernel's `XDP_*` value; the dispatcher's
/// own return value is 31).
fn proceed_on_wire(a: ProceedOn) -> i32 {
    match a {
        ProceedOn::Aborted => 0,
        ProceedOn::Drop => 1,
        ProceedOn::Pass => 2,
        ProceedOn::Tx => 3,
        ProceedOn::Redirect => 4,
        ProceedOn::DispatcherReturn => 31,
    }
}

/// Traffic direction of a TC/TCX hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received traffic.
    Ingress,
    /// Sent traffic.
    Egress,
}

impl Direction {
    /// `ingress` or `egress`, as bpfman spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Where to attach a loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP on `iface`, through bpfman's XDP dispatcher.
    Xdp {
        /// Interface name (in `netns` when given).
        iface: String,
        /// 1 (first) to 1000 (last).
        priority: i32,
        /// Actions after which the dispatcher runs the next program.
        proceed_on: Vec<ProceedOn>,
        /// A network namespace file (`/var/run/netns/<name>`, `/proc/<pid>/ns/net`).
        netns: Option<PathBuf>,
    },
    /// TCX on `iface`.
    Tcx {
        /// Interface name (in `netns` when given).
        iface: String,
        /// 1 (first) to 1000 (last).
        priority: i32,
        /// Ingress or egress.
        direction: Direction,
        /// A network namespace file.
        netns: Option<PathBuf>,
    },
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, iface, netns) = match self {
            Hook::Xdp { iface, netns, .. } => ("XDP", iface, netns),
            Hook::Tcx {
                iface,
                netns,
                direction,
                ..
            } => {
                write!(f, "{} ", direction.as_str())?;
                ("TCX", iface, netns)
            }
        };
        write!(f, "{kind} on {iface}")?;
        if let Some(ns) = netns {
            write!(f, " in netns {}", ns.display())?;
        }
        Ok(())
    }
}

/// What `List` filters on.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only programs whose metadata holds every one of these pairs.
    pub metadata: BTreeMap<String, String>,
    /// Only programs bpfman loaded (not every program of the kernel).
    pub bpfman_only: bool,
}

impl ListFilter {
    /// bpfman's programs whose metadata has `key` = `value`.
    pub fn matching(key: &str, value: &str) -> Self {
        Self {
            metadata: BTreeMap::from([(key.to_string(), value.to_string())]),
            bpfman_only: true,
        }
    }
}

/// A program as `List`, `Get` and `Load` describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Kernel program id (what `Attach`, `Unload` and `Get` take).
    pub id: u32,
    /// Name in the kernel (at most 15 bytes of the function name).
    pub kernel_name: String,
    /// `BPF_PROG_TYPE_*` number.
    pub kernel_type: u32,
    /// bpfman's record, when bpfman loaded it.
    pub managed: Option<Managed>,
}

/// What bpfman keeps about a program it loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// Function name given at load.
    pub name: String,
    /// Where it came from.
    pub bytecode: Option<Bytecode>,
    /// Ids of the links bpfman made for it.
    pub links: Vec<u32>,
    /// bpffs directory holding its maps, as bpfman sees it.
    pub map_pin_path: PathBuf,
    /// The program whose maps it shares, if any.
    pub map_owner_id: Option<u32>,
    /// Metadata given at load.
    pub metadata: BTreeMap<String, String>,
}

impl From<&Image> for wire::BytecodeImage {
    fn from(i: &Image) -> Self {
        wire::BytecodeImage {
            url: i.url.clone(),
            image_pull_policy: i.pull_policy.wire(),
            username: i.credentials.as_ref().map(|c| c.username.clone()),
            password: i.credentials.as_ref().map(|c| c.password.clone()),
        }
    }
}

impl From<&Bytecode> for wire::BytecodeLocation {
    fn from(b: &Bytecode) -> Self {
        use wire::bytecode_location::Location;
        let location = match b {
            Bytecode::File(p) => Location::File(p.display().to_string()),
            Bytecode::Image(i) => Location::Image(i.into()),
        };
        wire::BytecodeLocation {
            location: Some(location),
        }
    }
}

/// bpfman's record of where a program came from; credentials are dropped
/// (they are not ours to keep around).
impl From<wire::BytecodeLocation> for Option<Bytecode> {
    fn from(b: wire::BytecodeLocation) -> Self {
        use wire::bytecode_location::Location;
        match b.location? {
            Location::File(p) => Some(Bytecode::File(p.into())),
            Location::Image(i) => Some(Bytecode::Image(Image {
                url: i.url,
                pull_policy: PullPolicy::from_wire(i.image_pull_policy).unwrap_or_default(),
                credentials: None,
            })),
        }
    }
}

impl From<&LoadSpec> for wire::LoadRequest {
    fn from(s: &LoadSpec) -> Self {
        wire::LoadRequest {
            bytecode: Some((&s.bytecode).into()),
            metadata: s.metadata.clone().into_iter().collect(),
            global_data: Default::default(),
            uuid: None,
            map_owner_id: None,
            info: vec![wire::LoadInfo {
                name: s.function.clone(),
                program_type: s.program_type.wire().into(),
            }],
        }
    }
}

impl From<&Hook> for wire::AttachInfo {
    fn from(h: &Hook) -> Self {
        use wire::attach_info::Info;
        let netns = |n: &Option<PathBuf>| n.as_ref().map(|p| p.display().to_string());
        let info = match h {
            Hook::Xdp {
                iface,
                priority,
                proceed_on,
                netns: ns,
            } => Info::XdpAttachInfo(wire::XdpAttachInfo {
                priority: *priority,
                iface: iface.clone(),
                position: 0,
                proceed_on: proceed_on.iter().copied().map(proceed_on_wire).collect(),
                netns: netns(ns),
                metadata: Default::default(),
            }),
            Hook::Tcx {
                iface,
                priority,
                direction,
                netns: ns,
            } => Info::TcxAttachInfo(wire::TcxAttachInfo {
                priority: *priority,
                iface: iface.clone(),
                position: 0,
                direction: direction.as_str().to_string(),
                netns: netns(ns),
                metadata: Default::default(),
            }),
        };
        wire::AttachInfo { info: Some(info) }
    }
}

impl From<&ListFilter> for wire::ListRequest {
    fn from(f: &ListFilter) -> Self {
        wire::ListRequest {
            program_type: None,
            bpfman_programs_only: Some(f.bpfman_only),
            match_metadata: f.metadata.clone().into_iter().collect(),
        }
    }
}

impl From<wire::ProgramInfo> for Managed {
    fn from(i: wire::ProgramInfo) -> Self {
        Managed {
            name: i.name,
            bytecode: i.bytecode.and_then(Into::into),
            links: i.links,
            map_pin_path: i.map_pin_path.into(),
            map_owner_id: i.map_owner_id,
            metadata: i.metadata.into_iter().collect(),
        }
    }
}

/// One program of an answer: bpfman's part (optional) and the kernel's
/// (required: it holds the id).
pub(crate) fn program(
    call: &'static str,
    info: Option<wire::ProgramInfo>,
    kernel: Option<wire::KernelProgramInfo>,
) -> Result<Program, BpfmanError> {
    let kernel = kernel.ok_or(BpfmanError::Malformed {
        call,
        missing: "kernel_info",
    })?;
    Ok(Program {
        id: kernel.id,
        kernel_name: kernel.name,
        kernel_type: kernel.program_type,
        managed: info.map(Managed::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_debug_printed() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn image_round_trip_drops_credentials() {
        let b = Bytecode::Image(Image {
            url: "r/x@sha256:00".into(),
            pull_policy: PullPolicy::Never,
            credentials: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
        });
        let w: wire::BytecodeLocation = (&b).into();
        let back: Option<Bytecode> = w.into();
        let Some(Bytecode::Image(i)) = back else {
            panic!("not an image: {back:?}")
        };
        assert_eq!(i.pull_policy, PullPolicy::Never);
        assert_eq!(i.credentials, None);
    }

    #[test]
    fn hooks_on_the_wire() {
        use wire::attach_info::Info;
        let tcx = Hook::Tcx {
            iface: "veth0".into(),
            priority: 50,
            direction: Direction::Egress,
            netns: Some("/var/run/netns/x".into()),
        };
        assert_eq!(
            tcx.to_string(),
            "egress TCX on veth0 in netns /var/run/netns/x"
        );
        let Some(Info::TcxAttachInfo(t)) = wire::AttachInfo::from(&tcx).info else {
            panic!("not TCX")
        };
        assert_eq!((t.direction.as_str(), t.priority), ("egress", 50));
        let xdp = Hook::Xdp {
            iface: "eth1".into(),
            priority: 1,
            proceed_on: vec![ProceedOn::Pass, ProceedOn::DispatcherReturn],
            netns: None,
        };
        let Some(Info::XdpAttachInfo(x)) = wire::AttachInfo::from(&xdp).info else {
            panic!("not XDP")
        };
        assert_eq!(x.proceed_on, vec![2, 31]);
        assert_eq!(x.netns, None);
    }

    #[test]
    fn program_needs_kernel_info() {
        assert!(matches!(
            program("List", None, None),
            Err(BpfmanError::Malformed { .. })
        ));
    }
}
