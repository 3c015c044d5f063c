//! Start a process the way a container runtime starts a pod's container:
//! inside the pod netns, in its own mount namespace with the pod's hostPath
//! mounts bind-mounted at their container paths, as a non-root user with only
//! the capabilities listed (CAP_NET_RAW for an AF_XDP socket) and the default
//! 8 MiB RLIMIT_MEMLOCK.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The pod's identity.
#[derive(Debug, Clone, Copy)]
pub struct PodUser {
    /// User id the process runs as.
    pub uid: u32,
    /// Group id the process runs as (no supplementary groups).
    pub gid: u32,
    /// Capability numbers (see `linux/capability.h`), e.g. [`CAP_NET_RAW`].
    pub caps: &'static [u32],
}

/// CAP_NET_RAW, the one capability an AF_XDP socket needs.
pub const CAP_NET_RAW: u32 = 13;

impl PodUser {
    /// `nobody` with CAP_NET_RAW only.
    pub const fn nobody_net_raw() -> Self {
        Self {
            uid: 65534,
            gid: 65534,
            caps: &[CAP_NET_RAW],
        }
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

/// Bind mounts of a container: every target lies under `root` (e.g. `/tmp`),
/// which gets a fresh tmpfs in the container's mount namespace, as a
/// container's own `/tmp`; nothing on the host changes.
#[derive(Debug, Clone, Default)]
pub struct ContainerMounts {
    /// The container's own tmpfs (its `/tmp`); every bind target lies under it
    /// and nothing on the host changes.
    pub root: PathBuf,
    /// (host path, container path) pairs.
    pub binds: Vec<(PathBuf, PathBuf)>,
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Mount-syscall arguments prepared before fork.
struct PreparedMounts {
    root: CString,
    /// Directories to create inside the tmpfs, parents first.
    dirs: Vec<CString>,
    binds: Vec<(CString, CString)>,
}

impl PreparedMounts {
    fn new(m: &ContainerMounts) -> std::io::Result<Self> {
        let mut binds = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (host, container) in &m.binds {
            let rel = container.strip_prefix(&m.root).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} is not under {}", container.display(), m.root.display()),
                )
            })?;
            let mut dir = m.root.clone();
            for part in rel.components() {
                dir.push(part);
                if !dirs.contains(&dir) {
                    dirs.push(dir.clone());
                }
            }
            binds.push((cstr(host)?, cstr(container)?));
        }
        let dirs = dirs
            .iter()
            .map(|d| cstr(d))
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            root: cstr(&m.root)?,
            dirs,
            binds,
        })
    }

    /// In the child, after fork: private mount namespace, tmpfs at root, binds.
    unsafe fn apply(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        if self.binds.is_empty() {
            return Ok(());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail();
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return fail();
        }
        if libc::mount(
            c"tmpfs".as_ptr(),
            self.root.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"mode=0755".as_ptr().cast(),
        ) != 0
        {
            return fail();
        }
        for dir in &self.dirs {
            if libc::mkdir(dir.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST {
                return fail();
            }
        }
        for (src, dst) in &self.binds {
            if libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
        }
        Ok(())
    }
}

/// Container default for RLIMIT_MEMLOCK (what the UMEM is charged against).
pub const DEFAULT_MEMLOCK: u64 = 8 << 20;

/// Arrange for `cmd` to enter `netns` and its own mount namespace with
/// `mounts`, and become `user` before exec. Only syscalls run after fork (all
/// strings are prepared before).
///
/// # Errors
/// A bind whose container path is outside `mounts.root`, or a path with a NUL.
pub fn confine(
    cmd: &mut Command,
    netns: OwnedFd,
    user: PodUser,
    mounts: &ContainerMounts,
) -> std::io::Result<()> {
    let mounts = PreparedMounts::new(mounts)?;
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
            mounts.apply()?;
            let memlock = libc::rlimit {
                rlim_cur: DEFAULT_MEMLOCK,
                rlim_max: DEFAULT_MEMLOCK,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &memlock) != 0 {
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
            let hdr = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [
                CapData {
                    effective: mask[0],
                    permitted: mask[0],
                    inheritable: mask[0],
                },
                CapData {
                    effective: mask[1],
                    permitted: mask[1],
                    inheritable: mask[1],
                },
            ];
            if libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) != 0 {
                return fail();
            }
            for &c in caps {
                if libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    c as libc::c_ulong,
                    0,
                    0,
                ) != 0
                {
                    return fail();
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return fail();
            }
            Ok(())
        });
    }
    Ok(())
}

/// Copy `binary` into `dir` (made 0755) so a non-root user can exec it even
/// when the build tree sits under a private directory.
///
/// # Errors
/// Copy or permission errors.
pub fn stage_binary(binary: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let name = binary
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let dst = dir.join(name);
    std::fs::copy(binary, &dst)?;
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))?;
    Ok(dst)
}

/// Spawn, retrying on ETXTBSY: a child forked concurrently (by another
/// thread) may briefly hold a just-copied binary open for writing.
///
/// # Errors
/// The spawn error once retries ran out (2 s).
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
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
    let mut it = line
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    match (it.next(), it.next()) {
        (Some(r), Some(e)) => Ok((r, e)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad Uid line",
        )),
    }
}
