//! Making sure the pin root is a bpffs.

use std::path::Path;

use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};
use tracing::info;

use crate::ProgramError;

/// Whether `path` is on a bpffs (statfs magic `0xcafe4a11`).
///
/// # Errors
/// [`ProgramError::Syscall`] naming `statfs`.
pub fn is_bpffs(path: &Path) -> Result<bool, ProgramError> {
    let st = statfs(path).map_err(|e| ProgramError::syscall("statfs", path.display(), e.into()))?;
    Ok(st.filesystem_type() == BPF_FS_MAGIC)
}

/// Creates `path` and mounts a bpffs on it unless it already is one.
///
/// The mount's root is `0711`: the daemon's own tree is not listable by
/// others, while a process handed a map path further down can traverse it.
pub(crate) fn ensure_bpffs(path: &Path) -> Result<(), ProgramError> {
    std::fs::create_dir_all(path).map_err(|e| ProgramError::syscall("mkdir", path.display(), e))?;
    if is_bpffs(path)? {
        return Ok(());
    }
    mount_bpffs(path, 0o711)
}

/// Mounts a fresh bpffs instance on the existing directory `path`, its root
/// directory with permission bits `mode` (nosuid, nodev, noexec). Each mount
/// is a new, empty bpffs: what is pinned there is seen only through it.
///
/// # Errors
/// [`ProgramError::Syscall`] naming `mount(bpf)` (`EPERM` without
/// `CAP_SYS_ADMIN`).
pub fn mount_bpffs(path: &Path, mode: u32) -> Result<(), ProgramError> {
    let data = format!("mode={mode:04o}");
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| ProgramError::syscall("mount(bpf)", path.display(), e.into()))?;
    info!(path = %path.display(), "mounted bpffs");
    Ok(())
}
