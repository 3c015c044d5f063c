//! Network namespaces: handles, running code inside one, and link changes in one.
//!
//! The caller's thread never changes namespace: [`in_netns`] runs its closure on a fresh
//! thread that `setns()`es and then exits. A socket keeps the namespace it was created in,
//! so anything a closure opens there keeps working after the thread is gone.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sched::CloneFlags;

use crate::discover;
use crate::ethtool::validate_ifname;
use crate::nl::{self, NlSocket};
use crate::NetdevError;

/// `NS_GET_NSTYPE` from `include/uapi/linux/nsfs.h`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace file (`/var/run/netns/<name>`, `/proc/<pid>/ns/net`, ...).
///
/// Holding the handle keeps the namespace alive even if its bind mount is removed.
#[derive(Debug)]
pub struct NetnsHandle {
    file: File,
    path: PathBuf,
}

impl NetnsHandle {
    /// Opens the network namespace at `path` and checks that it is one.
    ///
    /// # Errors
    /// [`NetdevError::OpenNetns`] when the file cannot be opened or is not a network
    /// namespace (`EINVAL`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetdevError> {
        let path = path.as_ref().to_owned();
        let file = File::open(&path).map_err(|source| NetdevError::OpenNetns {
            path: path.clone(),
            source,
        })?;
        // SAFETY: ioctl on an fd we own; NS_GET_NSTYPE takes no argument.
        let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if ty != libc::CLONE_NEWNET {
            let source = if ty < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::from_raw_os_error(libc::EINVAL)
            };
            return Err(NetdevError::OpenNetns { path, source });
        }
        Ok(NetnsHandle { file, path })
    }

    /// The network namespace of the calling thread.
    ///
    /// # Errors
    /// As [`NetnsHandle::open`] on `/proc/thread-self/ns/net`.
    pub fn current() -> Result<Self, NetdevError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path the handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when both handles refer to the same namespace (same nsfs inode).
    ///
    /// # Errors
    /// `fstat` failed.
    pub fn same_as(&self, other: &NetnsHandle) -> Result<bool, NetdevError> {
        let stat = |f: &File| {
            f.metadata().map_err(|source| NetdevError::Syscall {
                call: "fstat(netns)",
                source,
            })
        };
        let (a, b) = (stat(&self.file)?, stat(&other.file)?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }
}

impl AsFd for NetnsHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Runs `f` on a fresh thread that first joins the network namespace `ns`, and returns its
/// result. The calling thread's namespace never changes, so this is safe to call from any
/// thread, including a Tokio `spawn_blocking` worker.
///
/// A panic in `f` is propagated to the caller.
///
/// # Errors
/// The thread cannot be spawned, or `setns(CLONE_NEWNET)` fails (needs `CAP_SYS_ADMIN`).
pub fn in_netns<T: Send>(ns: &NetnsHandle, f: impl FnOnce() -> T + Send) -> Result<T, NetdevError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("afxdp-netns".into())
            .spawn_scoped(s, || {
                nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetdevError::Syscall {
                        call: "setns(CLONE_NEWNET)",
                        source: io::Error::from(e),
                    }
                })?;
                Ok(f())
            })
            .map_err(|source| NetdevError::Syscall {
                call: "clone (spawn netns thread)",
                source,
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Sends one `RTM_SETLINK` addressed by name inside `ns`, with the header's `flags` under
/// `change` and the attribute `attr`; blocks until the kernel's ack.
fn setlink(
    ns: &NetnsHandle,
    op: &'static str,
    ifname: &str,
    attr: Option<LinkAttribute>,
    flags: LinkFlags,
    change: LinkFlags,
) -> Result<(), NetdevError> {
    validate_ifname(ifname)?;
    let mut msg = LinkMessage::default();
    msg.header.flags = flags;
    msg.header.change_mask = change;
    msg.attributes
        .push(LinkAttribute::IfName(ifname.to_owned()));
    msg.attributes.extend(attr);
    in_netns(ns, || {
        let mut sock = NlSocket::open(0)?;
        sock.request_ack(op, RouteNetlinkMessage::SetLink(msg), 0)
    })?
    .map_err(|e| nl::enodev_to_no_such_link(e, ifname))
}

/// Moves the link `ifname` from namespace `from` to namespace `to`, keeping its name.
///
/// The request is made from inside `from` (`RTM_SETLINK` with `IFLA_NET_NS_FD`) and names the
/// link, so the kernel refuses with `EEXIST` rather than renaming it when `to` already has a
/// link of that name. The ifindex may change if it is taken in `to`.
///
/// # Errors
/// [`NetdevError::NoSuchLink`] when `from` has no such link (the CNI's DEL treats that as
/// done); [`NetdevError::Netlink`] with `EEXIST` on a name clash, `EINVAL` for devices that
/// cannot change namespace (`NETIF_F_NETNS_LOCAL`, e.g. `lo`).
pub fn move_link(ifname: &str, from: &NetnsHandle, to: &NetnsHandle) -> Result<(), NetdevError> {
    tracing::debug!(ifname, from = %from.path().display(), to = %to.path().display(), "moving link");
    let fd = to.as_fd().as_raw_fd();
    setlink(
        from,
        "RTM_SETLINK (IFLA_NET_NS_FD)",
        ifname,
        Some(LinkAttribute::NetNsFd(fd)),
        LinkFlags::empty(),
        LinkFlags::empty(),
    )
}

/// Sets `IFF_UP` on `ifname` in `ns` (`ip link set X up`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; other netlink errors.
pub fn set_link_up(ns: &NetnsHandle, ifname: &str) -> Result<(), NetdevError> {
    let up = LinkFlags::Up;
    setlink(ns, "RTM_SETLINK (up)", ifname, None, up, up)
}

/// Clears `IFF_UP` on `ifname` in `ns` (`ip link set X down`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; other netlink errors.
pub fn set_link_down(ns: &NetnsHandle, ifname: &str) -> Result<(), NetdevError> {
    setlink(
        ns,
        "RTM_SETLINK (down)",
        ifname,
        None,
        LinkFlags::empty(),
        LinkFlags::Up,
    )
}

/// Sets the MTU of `ifname` in `ns`.
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; `EINVAL` when the driver refuses the value (too large for the
/// device, or for an XDP program attached to it).
pub fn set_mtu(ns: &NetnsHandle, ifname: &str, mtu: u32) -> Result<(), NetdevError> {
    setlink(
        ns,
        "RTM_SETLINK (mtu)",
        ifname,
        Some(LinkAttribute::Mtu(mtu)),
        LinkFlags::empty(),
        LinkFlags::empty(),
    )
}

/// True when `ns` has a link called `ifname`.
///
/// Returns a `Result` (not a bare `bool`) so that a failure to look is never mistaken for
/// "absent".
///
/// # Errors
/// Entering the namespace or the netlink request failed for a reason other than `ENODEV`.
pub fn link_exists(ns: &NetnsHandle, ifname: &str) -> Result<bool, NetdevError> {
    validate_ifname(ifname)?;
    in_netns(ns, || {
        let mut sock = NlSocket::open(0)?;
        discover::link_by_name(&mut sock, ifname).map(|l| l.is_some())
    })?
}
