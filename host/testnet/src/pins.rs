//! A temporary directory for a program manager's pin root (it mounts bpffs
//! on `<dir>/pins`), unmounted and removed on drop, even after a failure.

use std::path::{Path, PathBuf};

/// `<tempdir>/pins` for pins, `<tempdir>` for anything else the test keeps
/// beside them (objects, staged binaries).
#[derive(Debug)]
pub struct PinRoot {
    dir: tempfile::TempDir,
}

impl PinRoot {
    /// A fresh directory, mode 0755 (so an unprivileged pod user can reach
    /// files staged in it).
    ///
    /// # Errors
    /// Creating the directory or setting its mode.
    pub fn new() -> std::io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    /// As [`PinRoot::new`], under `parent`: outside `/tmp` when confined
    /// pods, whose `/tmp` is a fresh tmpfs, bind-mount pins or exec staged
    /// binaries from it.
    ///
    /// # Errors
    /// Creating the directory or setting its mode.
    pub fn new_in(parent: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("afxdp-pins-")
            .tempdir_in(parent)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(PinRoot { dir })
    }

    /// Where the pins go (the program manager's root).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pins")
    }

    /// The directory holding `pins/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}
