//! Start a process the way a pod runs: inside its netns, as a non-root user,
//! with only the capabilities listed (CAP_NET_RAW for an AF_XDP socket).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The pod's identity.
#[derive(Debug, Clone, Copy)]
pub struct PodUser {
    pub uid: u32,
    pub gid: u32,
    /// Capability numbers (e.g. `libc::CAP_NET_RAW`... see `linux/capability.h`).
    pub caps: &'static [u32],
}

/// CAP_NET_RAW, the one capability an AF_XDP socket needs.
pub const CAP_NET_RAW: u32 = 13;

impl PodUser {
    /// `nobody` with CAP_NET_RAW only.
    pub const fn nobody_net_raw() -> Self {
        Self { uid: 65534, gid: 65534, caps: &[CAP_NET_RAW] }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Arrange for `cmd` to enter `netns` and become `user` before exec. Only
/// async-signal-safe syscalls run after fork (no allocation).
pub fn confine(cmd: &mut Command, netns: OwnedFd, user: PodUser) {
    let mut mask = [0u32; 2];
    for &c in user.caps {
        mask[(c / 32) as usize] |= 1 << (c % 32);
    }
    let caps = user.caps;
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return fail();
            }
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                return fail();
            }
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return fail();
            }
            if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
                return fail();
            }
            if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
                return fail();
            }
            let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
            let data = [
                CapData { effective: mask[0], permitted: mask[0], inheritable: mask[0] },
                CapData { effective: mask[1], permitted: mask[1], inheritable: mask[1] },
            ];
            if libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) != 0 {
                return fail();
            }
            for &c in caps {
                if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, c as libc::c_ulong, 0, 0) != 0 {
                    return fail();
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return fail();
            }
            Ok(())
        });
    }
}

/// The effective capability mask of a running process (`CapEff` in /proc/<pid>/status).
pub fn effective_caps(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no CapEff line"))
}

/// The real, effective uid of a running process.
pub fn uids(pid: u32) -> std::io::Result<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Uid line"))?;
    let mut it = line.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
    match (it.next(), it.next()) {
        (Some(r), Some(e)) => Ok((r, e)),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Uid line")),
    }
}
