//! A CSI volume of `csi.afxdp.io`: a fresh bpffs mounted at kubelet's
//! target path, holding `<device>/<map>` pins of the pod's devices, owned
//! by the pod's user and group. Synchronous: mount, `BPF_OBJ_PIN`, chown and
//! umount block; the gRPC edge calls these from `spawn_blocking`.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Who owns the volume's files (`None`: root).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One map to pin: `<device>/<name>` inside the volume.
#[derive(Debug)]
pub struct MapPin {
    pub device: String,
    pub name: String,
    pub fd: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{call} {path}: {source}")]
    Io {
        call: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] afxdp_program::ProgramError),
    #[error("{path} is mounted but holds {found:?}, not the maps asked for ({wanted:?})")]
    Different {
        path: PathBuf,
        found: Vec<String>,
        wanted: Vec<String>,
    },
}

fn io<'a>(call: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        call,
        path: path.to_path_buf(),
        source,
    }
}

/// The pins a volume holds, as `<device>/<map>`, sorted. Files at the
/// root (a fresh bpffs shows the kernel's `maps.debug`, `progs.debug`) are
/// not ours.
fn pins_under(target: &Path) -> Result<Vec<String>, VolumeError> {
    let mut out = Vec::new();
    for dev in std::fs::read_dir(target).map_err(io("readdir", target))? {
        let dev = dev.map_err(io("readdir", target))?;
        if !dev.file_type().map_err(io("stat", target))?.is_dir() {
            continue;
        }
        let dir = dev.path();
        for map in std::fs::read_dir(&dir).map_err(io("readdir", &dir))? {
            let map = map.map_err(io("readdir", &dir))?;
            out.push(format!(
                "{}/{}",
                dev.file_name().to_string_lossy(),
                map.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn wanted(maps: &[MapPin]) -> Vec<String> {
    let mut w: Vec<String> = maps
        .iter()
        .map(|m| format!("{}/{}", m.device, m.name))
        .collect();
    w.sort();
    w
}

/// Whether `target` is a bpffs mount (false when it does not exist).
fn is_mounted(target: &Path) -> Result<bool, VolumeError> {
    if !target.exists() {
        return Ok(false);
    }
    Ok(afxdp_program::is_bpffs(target)?)
}

/// Undoes a half-made volume unless disarmed.
struct Partial<'a> {
    target: &'a Path,
    created: bool,
    mounted: bool,
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = umount2(self.target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %self.target.display(), error = %e, "undo: umount failed");
            }
        }
        if self.created {
            if let Err(e) = std::fs::remove_dir(self.target) {
                tracing::warn!(target = %self.target.display(), error = %e, "undo: rmdir failed");
            }
        }
    }
}

/// Publish `maps` at `target`: create it, mount a fresh bpffs, pin each map
/// at `<device>/<name>`, give the tree to `owner` (directories 0750, pins
/// 0660: `BPF_OBJ_GET` opens read-write). Idempotent: a target already
/// holding exactly these pins is left as is. On failure nothing is left
/// (the mount and a directory this call made are removed).
pub fn publish(target: &Path, maps: &[MapPin], owner: Owner) -> Result<(), VolumeError> {
    if is_mounted(target)? {
        let found = pins_under(target)?;
        let wanted = wanted(maps);
        if found == wanted {
            tracing::info!(target = %target.display(), "volume already published");
            return Ok(());
        }
        return Err(VolumeError::Different {
            path: target.to_path_buf(),
            found,
            wanted,
        });
    }
    let mut partial = Partial {
        target,
        created: false,
        mounted: false,
    };
    match std::fs::create_dir(target) {
        Ok(()) => partial.created = true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("mkdir", target)(e)),
    }
    afxdp_program::mount_bpffs(target, 0o750)?;
    partial.mounted = true;
    give(target, owner)?;
    for m in maps {
        let dir = target.join(&m.device);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(io("mkdir", &dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
                .map_err(io("chmod", &dir))?;
            give(&dir, owner)?;
        }
        let pin = dir.join(&m.name);
        afxdp_program::pin_object(m.fd.as_fd(), &pin)?;
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o660))
            .map_err(io("chmod", &pin))?;
        give(&pin, owner)?;
    }
    std::mem::forget(partial);
    tracing::info!(target = %target.display(), pins = ?wanted(maps), ?owner, "volume published");
    Ok(())
}

fn give(path: &Path, owner: Owner) -> Result<(), VolumeError> {
    if owner == Owner::default() {
        return Ok(());
    }
    std::os::unix::fs::chown(path, owner.uid, owner.gid).map_err(io("chown", path))
}

/// Unpublish `target`: unmount its bpffs (the pins go with the instance)
/// and remove the directory. Idempotent: a missing target is success.
/// Returns whether something was removed.
pub fn unpublish(target: &Path) -> Result<bool, VolumeError> {
    let mut removed = false;
    if is_mounted(target)? {
        umount2(target, MntFlags::empty())
            .or_else(|e| {
                tracing::warn!(target = %target.display(), error = %e, "umount failed; detaching");
                umount2(target, MntFlags::MNT_DETACH)
            })
            .map_err(|e| io("umount", target)(e.into()))?;
        removed = true;
    }
    match std::fs::remove_dir(target) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("rmdir", target)(e)),
    }
    if removed {
        tracing::info!(target = %target.display(), "volume unpublished");
    }
    Ok(removed)
}
