//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while looking at or changing host network devices.
///
/// Each variant names the operation that failed (syscall, netlink request or ethtool command)
/// and keeps the kernel's errno in its [`io::Error`] source. Use [`NetdevError::is_no_such_link`]
/// and [`NetdevError::is_not_supported`] rather than matching errno values by hand.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// A plain syscall failed (`socket`, `bind`, `setns`, `poll`, ...).
    #[error("{call} failed: {source}")]
    Syscall {
        /// The syscall, e.g. `"socket(AF_NETLINK)"`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered a netlink request with an error.
    #[error("netlink {op} failed: {source}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Netlink {
        /// The request, e.g. `"RTM_SETLINK (set mtu)"`.
        op: &'static str,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, when it sent one.
        message: Option<String>,
    },
    /// The named link does not exist in the network namespace the operation ran in (`ENODEV`).
    ///
    /// The CNI relies on this to make DEL idempotent: a link that is already gone is not a failure.
    #[error("{op}: no such link {name:?}")]
    NoSuchLink {
        /// The operation that looked the link up.
        op: &'static str,
        /// The interface name.
        name: String,
    },
    /// An ethtool command failed: an `SIOCETHTOOL` ioctl, or an ethtool-netlink message the
    /// kernel refused. `EOPNOTSUPP` means the driver does not implement the command.
    #[error("ethtool {cmd} on {ifname} failed: {source}{}{}", if source.raw_os_error() == Some(libc::EOPNOTSUPP) { " (not supported by the driver)" } else { "" }, message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Ethtool {
        /// The ethtool command, e.g. `"ETHTOOL_MSG_CHANNELS_SET"` or `"ETHTOOL_SRXCLSRLINS"`.
        cmd: &'static str,
        /// The interface name.
        ifname: String,
        /// The errno of the ioctl or the netlink error.
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message (netlink only), when it sent one.
        message: Option<String>,
    },
    /// The kernel refused a devlink request (a subfunction port's create, activate or delete).
    #[error("devlink {op} on {device} failed: {source}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Devlink {
        /// The devlink command, e.g. `"DEVLINK_CMD_PORT_NEW"`.
        op: &'static str,
        /// The devlink device as `devlink` shows it, e.g. `pci/0000:81:00.0`.
        device: String,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
        /// The kernel's extended-ack message, when it sent one.
        message: Option<String>,
    },
    /// The kernel has no `devlink` generic-netlink family (built without `CONFIG_NET_DEVLINK`),
    /// so no subfunction can be created on this host.
    #[error("the kernel has no devlink generic-netlink family (built without CONFIG_NET_DEVLINK?): {source}")]
    NoDevlink {
        /// The error of the family lookup (`ENOENT`).
        #[source]
        source: io::Error,
    },
    /// The kernel sent a netlink message this crate could not parse.
    #[error("malformed netlink reply to {op}: {detail}")]
    Malformed {
        /// The request whose reply was malformed.
        op: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The interface name cannot be a Linux interface name (empty, too long, `/`, NUL, ...).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A network namespace file could not be opened.
    #[error("cannot open network namespace {}: {source}", path.display())]
    OpenNetns {
        /// The path that was opened.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading a sysfs attribute failed in a way that is not "attribute absent".
    #[error("reading {}: {source}", path.display())]
    Sysfs {
        /// The sysfs path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl NetdevError {
    pub(crate) fn syscall(call: &'static str) -> Self {
        NetdevError::Syscall {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// The kernel errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetdevError::Syscall { source, .. }
            | NetdevError::Netlink { source, .. }
            | NetdevError::Ethtool { source, .. }
            | NetdevError::Devlink { source, .. }
            | NetdevError::NoDevlink { source }
            | NetdevError::OpenNetns { source, .. }
            | NetdevError::Sysfs { source, .. } => source.raw_os_error(),
            NetdevError::NoSuchLink { .. } => Some(libc::ENODEV),
            NetdevError::Malformed { .. } | NetdevError::InvalidName { .. } => None,
        }
    }

    /// True when the link named in the operation does not exist (`ENODEV`).
    pub fn is_no_such_link(&self) -> bool {
        matches!(self, NetdevError::NoSuchLink { .. })
    }

    /// True when the driver or kernel does not implement the operation (`EOPNOTSUPP`).
    pub fn is_not_supported(&self) -> bool {
        self.errno() == Some(libc::EOPNOTSUPP)
    }
}
