//! XDP program management for afxdp-rs.
//!
//! This crate owns the built-in `xsk_redirect` program (compiled from
//! `bpf/xsk_redirect.bpf.c` at build time) and the [`ProgramManager`] trait
//! the daemon codes against, with [`NativeManager`], its implementation on
//! aya and raw `bpf(2)` links.
//!
//! # Kernel requirements
//!
//! * XDP `bpf_link`s (`BPF_LINK_CREATE` with `BPF_XDP`): Linux 5.9. There is
//!   deliberately no fallback to netlink attachment: a netlink attachment
//!   cannot be pinned, so it would not survive a daemon restart, and it
//!   cannot be removed once the device moved into a pod's netns.
//! * `bpf_redirect_map` with a default action in its flags: Linux 5.3.
//! * bpffs; [`NativeManager::new`] mounts one on its pin root when needed.
//! * `CAP_BPF` + `CAP_NET_ADMIN` (or `CAP_SYS_ADMIN`), plus `CAP_SYS_ADMIN`
//!   to mount bpffs.
#![deny(missing_docs)]

mod bpffs;
mod native;
mod sys;

use std::{
    fmt,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

pub use bpffs::{is_bpffs, mount_bpffs};
pub use native::NativeManager;

/// Pins the BPF object `fd` (a map, a program, a link) at `path`, whose
/// parent directory must be on a bpffs (`BPF_OBJ_PIN`). The same object may
/// be pinned in several places and bpffs instances.
///
/// # Errors
/// [`ProgramError::Syscall`] naming `BPF_OBJ_PIN` (`EEXIST` when `path`
/// exists, `EPERM` off a bpffs).
pub fn pin_object(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> Result<(), ProgramError> {
    sys::obj_pin(fd, path).map_err(|e| ProgramError::syscall("BPF_OBJ_PIN", path.display(), e))
}

/// Attaches `prog` to `ifindex` of the caller's netns as an XDP link
/// (`BPF_LINK_CREATE`) in `mode` (native or generic; [`XdpMode::Auto`] is
/// native); closing the returned link FD detaches it. For programs the
/// caller loaded itself (the bench's floors); managed programs go through a
/// [`ProgramManager`].
///
/// # Errors
/// `BPF_LINK_CREATE`'s errno (`EBUSY` when the device has a program).
pub fn attach_xdp_link(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
    mode: XdpMode,
) -> std::io::Result<OwnedFd> {
    let flags = match mode {
        XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        _ => sys::XDP_FLAGS_DRV_MODE,
    };
    sys::xdp_link_create(prog, ifindex, flags)
}

/// Name of the XSKMAP every program managed here must define.
pub const XSKS_MAP_NAME: &str = "xsks_map";

/// Name of the XDP function of the built-in program.
pub const BUILTIN_PROGRAM_NAME: &str = "xsk_redirect";

static BUILTIN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk_redirect.bpf.o"));

/// The ELF object of the built-in program (`bpf/xsk_redirect.bpf.c`): one
/// XDP function [`BUILTIN_PROGRAM_NAME`] redirecting each frame to the
/// socket at key `rx_queue_index` of [`XSKS_MAP_NAME`], `XDP_PASS` when the
/// queue has none.
pub fn builtin_object() -> &'static [u8] {
    BUILTIN_OBJECT
}

/// How an XDP program is attached to a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver (native) XDP, `XDP_FLAGS_DRV_MODE`.
    Native,
    /// Generic (skb) XDP, `XDP_FLAGS_SKB_MODE`; works on every device, slower.
    Generic,
    /// Native when the driver supports it, else generic. An [`Attachment`]
    /// never holds `Auto`: it records the mode actually used.
    #[default]
    Auto,
}

impl XdpMode {
    /// The lowercase name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for XdpMode {
    type Err = ProgramError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(XdpMode::Native),
            "generic" => Ok(XdpMode::Generic),
            "auto" => Ok(XdpMode::Auto),
            other => Err(ProgramError::InvalidMode(other.to_string())),
        }
    }
}

/// What to attach where.
#[derive(Clone, Copy, Debug)]
pub struct AttachRequest<'a> {
    /// Device name; the key of the attachment (pins are named after it).
    pub device: &'a str,
    /// Interface index of `device` in the netns of the caller.
    pub ifindex: u32,
    /// Requested mode.
    pub mode: XdpMode,
    /// A custom ELF object (one XDP program and an XSKMAP named
    /// [`XSKS_MAP_NAME`]); `None` for the built-in program.
    pub program: Option<&'a Path>,
    /// The XDP function to attach from the object; `None`:
    /// [`BUILTIN_PROGRAM_NAME`] if present, else the object's only XDP program.
    pub function: Option<&'a str>,
}

/// A program attached to a device, with its pinned XSKMAP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Device name.
    pub device: String,
    /// Interface index at attach time.
    pub ifindex: u32,
    /// Kernel ID of the attached program.
    pub program_id: u32,
    /// Mode actually used (never [`XdpMode::Auto`]).
    pub mode: XdpMode,
    /// bpffs directory holding only the pinned map file `xsks_map`; this is
    /// the directory bind-mounted into pods in pinned-map mode.
    pub map_dir: PathBuf,
    /// The pinned XSKMAP, `map_dir/xsks_map`.
    pub map_pin: PathBuf,
}

/// Errors of program management. Each syscall failure names the call.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// A device name that cannot be a netdev name or a pin file name.
    #[error("invalid device name {name:?}: {reason}")]
    InvalidDevice {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An unknown XDP mode string.
    #[error("invalid XDP mode {0:?} (expected native, generic or auto)")]
    InvalidMode(String),
    /// The device already has an attachment made from a different request.
    #[error(
        "{device} already has an attachment (program id {program_id}, {mode} mode, ifindex \
         {ifindex}) that does not match the request; detach it first"
    )]
    AlreadyAttached {
        /// Device name.
        device: String,
        /// Program of the existing attachment.
        program_id: u32,
        /// Mode of the existing attachment.
        mode: XdpMode,
        /// ifindex of the existing attachment.
        ifindex: u32,
    },
    /// Nothing is attached for the device.
    #[error("no XDP attachment for {device}")]
    NotAttached {
        /// Device name.
        device: String,
    },
    /// A system call failed.
    #[error("{call} failed for {target}: {source}")]
    Syscall {
        /// The failing call (`mount`, `BPF_LINK_CREATE`, ...).
        call: &'static str,
        /// What it was applied to (a path, a device).
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The ELF object could not be read, parsed or its maps created.
    #[error("loading eBPF object {object}: {source}")]
    Load {
        /// `built-in` or the object path.
        object: String,
        /// aya's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// The object lacks what we need.
    #[error("eBPF object {object} is unusable: {reason}")]
    BadObject {
        /// `built-in` or the object path.
        object: String,
        /// What is missing.
        reason: String,
    },
    /// The kernel refused the program (verifier log in the source).
    #[error("loading XDP program {program} of {object} into the kernel: {source}")]
    ProgramLoad {
        /// `built-in` or the object path.
        object: String,
        /// Program name.
        program: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// The kernel refused the attachment in every mode tried.
    #[error("attaching XDP to {device} (ifindex {ifindex}) in {mode} mode: {source}")]
    Attach {
        /// Device name.
        device: String,
        /// ifindex used.
        ifindex: u32,
        /// Last mode tried.
        mode: XdpMode,
        /// `BPF_LINK_CREATE`'s error.
        #[source]
        source: std::io::Error,
    },
    /// An error of another [`ProgramManager`] implementation (bpfman's),
    /// shown as that implementation words it.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ProgramError {
    /// A [`ProgramError::Syscall`]: `call` failed on `target`.
    pub fn syscall(call: &'static str, target: impl fmt::Display, source: std::io::Error) -> Self {
        ProgramError::Syscall {
            call,
            target: target.to_string(),
            source,
        }
    }
}

/// Attaches XDP programs to devices and hands out their XSKMAP.
///
/// Implementations are the native one ([`NativeManager`]) and bpfman's
/// (crate `afxdp-bpfman`, kept out of this crate so that the CNI binary and
/// native-only users do not carry its gRPC client). Every method is safe to
/// call from several threads.
pub trait ProgramManager: Send + Sync {
    /// Attaches the requested program to `req.device`.
    ///
    /// Attaching an already attached device is an error
    /// ([`ProgramError::AlreadyAttached`]) unless the request is the same,
    /// in which case the existing attachment is returned.
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, ProgramError>;
    /// Idempotent: Ok(false) when nothing was attached for `device`.
    fn detach(&self, device: &str) -> Result<bool, ProgramError>;
    /// A fresh FD of the device's XSKMAP (for the UDS handshake).
    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, ProgramError>;
    /// Attachments currently held (incl. adopted ones).
    fn attachments(&self) -> Vec<Attachment>;
    /// Make the map pin readable+writable by `uid` (the pod user) for
    /// pinned-map sharing.
    fn share_map_with(&self, device: &str, uid: u32) -> Result<(), ProgramError>;
}

/// Checks that `name` can be a netdev name and a single path component.
///
/// # Errors
/// [`ProgramError::InvalidDevice`] saying what is wrong with it.
pub fn validate_device(name: &str) -> Result<(), ProgramError> {
    let bad = |reason| {
        Err(ProgramError::InvalidDevice {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("not a device name");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return bad("contains '/', ':', whitespace or NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_serde_is_lowercase() {
        assert_eq!(serde_plain(XdpMode::Native), "native");
        assert_eq!("generic".parse::<XdpMode>().unwrap(), XdpMode::Generic);
        assert!("drv".parse::<XdpMode>().is_err());
    }

    fn serde_plain(m: XdpMode) -> String {
        // serde's derive uses the same names as `as_str`.
        m.as_str().to_string()
    }

    #[test]
    fn device_names() {
        assert!(validate_device("eth0").is_ok());
        assert!(validate_device("veth-1234.10").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "0123456789abcdef"] {
            assert!(validate_device(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn builtin_object_is_bpf_elf() {
        let obj = builtin_object();
        assert_eq!(&obj[..4], b"\x7fELF");
        // e_machine == EM_BPF (247)
        assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 247);
    }
}
