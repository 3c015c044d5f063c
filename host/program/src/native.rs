//! [`NativeManager`]: XDP attachments with aya and pinned `bpf_link`s.
//!
//! # Layout under the pin root (a bpffs)
//!
//! ```text
//! <pin_root>/maps/<device>/xsks_map      pinned XSKMAP; its directory is what pods see
//! <pin_root>/links/<device>              pinned XDP bpf_link (keeps the program attached)
//! <pin_root>/meta/<device>/<key>=<value> empty directories: ifindex, mode, requested, program
//! ```
//!
//! bpffs holds only BPF objects and directories, so the little metadata the
//! kernel cannot tell us back (the mode actually used, the request) is kept
//! as names of empty directories next to the pins: everything that describes
//! an attachment lives and dies on the same filesystem.
//!
//! The link pin is written last: it is the commit point of an attach, and a
//! device without one is a leftover cleaned by [`NativeManager::new`].
//!
//! # Netns moves
//!
//! An XDP `bpf_link` stays attached when the device moves to another netns
//! (the CNI moves it into the pod after Allocate) and back. Detach goes
//! through `BPF_LINK_DETACH` on the pinned link, which reaches the device
//! wherever it is now; nothing is looked up by ifindex after attach.

use std::{
    collections::HashMap,
    fs, io,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::{DirBuilderExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use aya::{
    maps::Map,
    programs::{Program, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use tracing::{debug, info, warn};

use crate::{
    bpffs, builtin_object, sys, validate_device, AttachRequest, Attachment, ProgramError,
    ProgramManager, XdpMode, BUILTIN_PROGRAM_NAME, XSKS_MAP_NAME,
};

const BUILTIN_KEY: &str = "builtin";

/// One attachment and what it was made from.
#[derive(Debug, Clone)]
struct Record {
    attachment: Attachment,
    requested: XdpMode,
    program_key: String,
}

/// The native [`ProgramManager`]: loads programs with aya, attaches them with
/// pinned XDP `bpf_link`s under a bpffs pin root.
///
/// State lives in bpffs, so a new manager on the same pin root adopts what a
/// previous process left (see [`NativeManager::new`]).
#[derive(Debug)]
pub struct NativeManager {
    pin_root: PathBuf,
    records: Mutex<HashMap<String, Record>>,
    loader: ObjectLoader,
}

/// Loads eBPF objects without re-reading the kernel's BTF on every attach.
///
/// aya's `Ebpf::load` reads and parses `/sys/kernel/btf/vmlinux` (megabytes,
/// in 4 KiB sysfs reads) twice per call; on an Allocate that was most of the
/// time not spent inside `BPF_LINK_CREATE`. `EbpfLoader::new` parses it once
/// and a loader can be reused, so:
/// - the built-in program (no CO-RE relocations) goes through one loader
///   whose BTF is dropped right after it is built (parsed BTF is tens of
///   MiB; a node agent should not hold it for nothing);
/// - other objects may need CO-RE relocations: they go through a second
///   loader that keeps the kernel's BTF, made on the first such load (the
///   kernel's BTF does not change while it runs).
struct ObjectLoader {
    builtin: Mutex<EbpfLoader<'static>>,
    with_btf: Mutex<Option<EbpfLoader<'static>>>,
}

impl ObjectLoader {
    fn new() -> Self {
        let mut builtin = EbpfLoader::new();
        builtin.btf(None);
        Self {
            builtin: Mutex::new(builtin),
            with_btf: Mutex::new(None),
        }
    }

    /// The built-in object, or the one at `path`.
    fn load(&self, path: Option<&Path>) -> Result<Ebpf, EbpfError> {
        match path {
            None => lock(&self.builtin).load(builtin_object()),
            Some(p) => lock(&self.with_btf)
                .get_or_insert_with(EbpfLoader::new)
                .load_file(p),
        }
    }
}

/// The data behind `m`, poisoned or not: every user here keeps its data
/// usable across a panic (a loader mutates nothing while loading).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for ObjectLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectLoader")
    }
}

impl NativeManager {
    /// Opens (and if needed mounts) the bpffs at `pin_root` (the daemon's
    /// default is `/run/afxdp/pins`) and adopts the attachments a previous
    /// run left there. Half-made leftovers (a map or metadata without a link,
    /// a link without its map, a link whose device is gone) are detached and
    /// removed.
    ///
    /// # Errors
    ///
    /// `mkdir`/`statfs`/`mount` failures on `pin_root`, or I/O errors while
    /// scanning it.
    pub fn new(pin_root: PathBuf) -> Result<Self, ProgramError> {
        bpffs::ensure_bpffs(&pin_root)?;
        let mgr = NativeManager {
            pin_root,
            records: Mutex::new(HashMap::new()),
            loader: ObjectLoader::new(),
        };
        for (dir, mode) in [("maps", 0o711), ("links", 0o700), ("meta", 0o700)] {
            mkdir(&mgr.pin_root.join(dir), mode, true)?;
        }
        let adopted = mgr.adopt()?;
        *mgr.lock() = adopted;
        Ok(mgr)
    }

    /// The bpffs root this manager pins under.
    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        // A panic while holding the lock leaves bpffs consistent (every
        // change is guarded), so the map is still usable.
        lock(&self.records)
    }

    fn map_dir(&self, device: &str) -> PathBuf {
        self.pin_root.join("maps").join(device)
    }

    fn link_pin(&self, device: &str) -> PathBuf {
        self.pin_root.join("links").join(device)
    }

    fn meta_dir(&self, device: &str) -> PathBuf {
        self.pin_root.join("meta").join(device)
    }

    /// Scans the pin root; returns complete attachments, cleans the rest.
    fn adopt(&self) -> Result<HashMap<String, Record>, ProgramError> {
        let mut devices: Vec<String> = Vec::new();
        for dir in ["maps", "links", "meta"] {
            let path = self.pin_root.join(dir);
            let entries = fs::read_dir(&path)
                .map_err(|e| ProgramError::syscall("readdir", path.display(), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| ProgramError::syscall("readdir", path.display(), e))?;
                if let Some(name) = entry.file_name().to_str() {
                    if !devices.iter().any(|d| d == name) {
                        devices.push(name.to_string());
                    }
                }
            }
        }
        let mut records = HashMap::new();
        for device in devices {
            match self.adopt_one(&device) {
                Ok(record) => {
                    info!(
                        device,
                        program_id = record.attachment.program_id,
                        mode = %record.attachment.mode,
                        "adopted XDP attachment"
                    );
                    records.insert(device, record);
                }
                Err(reason) => {
                    warn!(device, reason, "cleaning leftover pins");
                    self.remove_pins(&device)?;
                }
            }
        }
        Ok(records)
    }

    fn adopt_one(&self, device: &str) -> Result<Record, String> {
        validate_device(device).map_err(|e| e.to_string())?;
        let link_path = self.link_pin(device);
        let link = sys::obj_get(&link_path).map_err(|e| format!("no usable link pin: {e}"))?;
        let info = sys::xdp_link_info(link.as_fd()).map_err(|e| format!("link info: {e}"))?;
        if info.link_type != sys::BPF_LINK_TYPE_XDP {
            return Err(format!("link pin is of type {}, not XDP", info.link_type));
        }
        if info.ifindex == 0 {
            return Err("the device of the link is gone".to_string());
        }
        let map_pin = self.map_dir(device).join(XSKS_MAP_NAME);
        sys::obj_get(&map_pin).map_err(|e| format!("no usable map pin: {e}"))?;
        let meta = read_meta(&self.meta_dir(device)).map_err(|e| format!("metadata: {e}"))?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| format!("metadata lacks {k}"))
        };
        let mode: XdpMode = get("mode")?
            .parse()
            .map_err(|e: ProgramError| e.to_string())?;
        let requested: XdpMode = get("requested")?
            .parse()
            .map_err(|e: ProgramError| e.to_string())?;
        Ok(Record {
            attachment: Attachment {
                device: device.to_string(),
                ifindex: info.ifindex,
                program_id: info.prog_id,
                mode,
                map_dir: self.map_dir(device),
                map_pin,
            },
            requested,
            program_key: get("program")?,
        })
    }

    /// Removes every pin and directory of `device`, detaching its link first
    /// (best effort: used on leftovers). Missing pieces are fine.
    fn remove_pins(&self, device: &str) -> Result<(), ProgramError> {
        match sys::obj_get(&self.link_pin(device)) {
            Ok(link) => {
                if let Err(e) = sys::link_detach(link.as_fd()) {
                    // Not an XDP link we can detach (or already defunct):
                    // unpinning below drops our reference anyway.
                    debug!(device, error = %e, "BPF_LINK_DETACH");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => debug!(device, error = %e, "BPF_OBJ_GET on link pin"),
        }
        self.remove_files(device)
    }

    /// Unlinks the pins and removes the directories of `device`.
    fn remove_files(&self, device: &str) -> Result<(), ProgramError> {
        remove_file(&self.link_pin(device))?;
        let map_dir = self.map_dir(device);
        remove_file(&map_dir.join(XSKS_MAP_NAME))?;
        remove_dir_all(&map_dir)?;
        remove_dir_all(&self.meta_dir(device))
    }

    fn do_attach(
        &self,
        req: &AttachRequest<'_>,
        program_key: String,
    ) -> Result<Record, ProgramError> {
        let object_name = match req.program {
            None => "built-in".to_string(),
            Some(p) => p.display().to_string(),
        };
        let mut ebpf = self
            .loader
            .load(req.program)
            .map_err(|e| ProgramError::Load {
                object: object_name.clone(),
                source: Box::new(e),
            })?;

        if !matches!(ebpf.map(XSKS_MAP_NAME), Some(Map::XskMap(_))) {
            return Err(ProgramError::BadObject {
                object: object_name,
                reason: format!("no map named {XSKS_MAP_NAME} of type BPF_MAP_TYPE_XSKMAP"),
            });
        }
        let program_name =
            pick_program(&ebpf, req.function).map_err(|reason| ProgramError::BadObject {
                object: object_name.clone(),
                reason,
            })?;
        let xdp: &mut Xdp = match ebpf.program_mut(&program_name) {
            Some(Program::Xdp(xdp)) => xdp,
            _ => unreachable!("pick_program returns an XDP program"),
        };
        let load_err = |e| ProgramError::ProgramLoad {
            object: object_name.clone(),
            program: program_name.clone(),
            source: Box::new(e),
        };
        xdp.load().map_err(load_err)?;
        let program_id = xdp.info().map_err(load_err)?.id();
        let prog_fd = xdp
            .fd()
            .map_err(load_err)?
            .try_clone()
            .map_err(|e| ProgramError::syscall("dup", format!("program {program_name}"), e))?;

        let mut undo = Undo::default();

        // 1. The map, in its own directory (the one pods get).
        let map_dir = self.map_dir(req.device);
        mkdir(&map_dir, 0o755, false)?;
        undo.push(map_dir.clone(), true);
        let map_pin = map_dir.join(XSKS_MAP_NAME);
        let map = ebpf.map(XSKS_MAP_NAME).expect("checked above");
        map.pin(&map_pin).map_err(|e| {
            ProgramError::syscall("BPF_OBJ_PIN", map_pin.display(), io::Error::other(e))
        })?;
        undo.push(map_pin.clone(), false);

        // 2. Metadata the kernel cannot give back.
        let meta_dir = self.meta_dir(req.device);
        mkdir(&meta_dir, 0o700, false)?;
        undo.push(meta_dir.clone(), true);

        // 3. The link; dropping its FD before it is pinned detaches it.
        let (mode, link) = self.create_link(req, prog_fd.as_fd())?;
        for (k, v) in [
            ("ifindex", req.ifindex.to_string()),
            ("mode", mode.to_string()),
            ("requested", req.mode.to_string()),
            ("program", program_key.clone()),
        ] {
            mkdir(&meta_dir.join(format!("{k}={v}")), 0o700, false)?;
        }

        // 4. Commit point: the pinned link.
        let link_pin = self.link_pin(req.device);
        sys::obj_pin(link.as_fd(), &link_pin)
            .map_err(|e| ProgramError::syscall("BPF_OBJ_PIN", link_pin.display(), e))?;
        undo.disarm();
        drop(link);

        info!(
            device = req.device,
            ifindex = req.ifindex,
            program_id,
            %mode,
            map_pin = %map_pin.display(),
            "attached XDP program"
        );
        Ok(Record {
            attachment: Attachment {
                device: req.device.to_string(),
                ifindex: req.ifindex,
                program_id,
                mode,
                map_dir,
                map_pin,
            },
            requested: req.mode,
            program_key,
        })
    }

    fn create_link(
        &self,
        req: &AttachRequest<'_>,
        prog_fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(XdpMode, OwnedFd), ProgramError> {
        let modes: &[XdpMode] = match req.mode {
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Generic => &[XdpMode::Generic],
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Generic],
        };
        let mut last = None;
        for &mode in modes {
            let flags = match mode {
                XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
                _ => sys::XDP_FLAGS_SKB_MODE,
            };
            match sys::xdp_link_create(prog_fd, req.ifindex, flags) {
                Ok(fd) => return Ok((mode, fd)),
                Err(e) => {
                    debug!(device = req.device, %mode, error = %e, "BPF_LINK_CREATE failed");
                    last = Some((mode, e));
                }
            }
        }
        let (mode, source) = last.expect("at least one mode tried");
        Err(ProgramError::Attach {
            device: req.device.to_string(),
            ifindex: req.ifindex,
            mode,
            source,
        })
    }
}

impl ProgramManager for NativeManager {
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, ProgramError> {
        validate_device(req.device)?;
        let program_key = match (req.program, req.function) {
            (None, None) => BUILTIN_KEY.to_string(),
            (None, Some(f)) => format!("{BUILTIN_KEY}#{f}"),
            (Some(p), None) => program_key(p),
            (Some(p), Some(f)) => format!("{}#{f}", program_key(p)),
        };
        let mut records = self.lock();
        if let Some(existing) = records.get(req.device) {
            let a = &existing.attachment;
            let same_mode = existing.requested == req.mode || a.mode == req.mode;
            if a.ifindex == req.ifindex && same_mode && existing.program_key == program_key {
                debug!(
                    device = req.device,
                    "attach: same request, already attached"
                );
                return Ok(a.clone());
            }
            return Err(ProgramError::AlreadyAttached {
                device: req.device.to_string(),
                program_id: a.program_id,
                mode: a.mode,
                ifindex: a.ifindex,
            });
        }
        let record = self.do_attach(req, program_key)?;
        let attachment = record.attachment.clone();
        records.insert(req.device.to_string(), record);
        Ok(attachment)
    }

    fn detach(&self, device: &str) -> Result<bool, ProgramError> {
        validate_device(device)?;
        let mut records = self.lock();
        if !records.contains_key(device) {
            return Ok(false);
        }
        let link_path = self.link_pin(device);
        match sys::obj_get(&link_path) {
            Ok(link) => match sys::link_detach(link.as_fd()) {
                Ok(()) => {}
                // Already defunct (device destroyed): nothing to detach.
                Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
                Err(e) => {
                    return Err(ProgramError::syscall(
                        "BPF_LINK_DETACH",
                        link_path.display(),
                        e,
                    ))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                warn!(device, "link pin vanished; cleaning the rest");
            }
            Err(e) => return Err(ProgramError::syscall("BPF_OBJ_GET", link_path.display(), e)),
        }
        self.remove_files(device)?;
        records.remove(device);
        info!(device, "detached XDP program");
        Ok(true)
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, ProgramError> {
        validate_device(device)?;
        let records = self.lock();
        let record = records
            .get(device)
            .ok_or_else(|| ProgramError::NotAttached {
                device: device.to_string(),
            })?;
        let pin = &record.attachment.map_pin;
        sys::obj_get(pin).map_err(|e| ProgramError::syscall("BPF_OBJ_GET", pin.display(), e))
    }

    fn attachments(&self) -> Vec<Attachment> {
        let mut v: Vec<Attachment> = self.lock().values().map(|r| r.attachment.clone()).collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    fn share_map_with(&self, device: &str, uid: u32) -> Result<(), ProgramError> {
        validate_device(device)?;
        let records = self.lock();
        let record = records
            .get(device)
            .ok_or_else(|| ProgramError::NotAttached {
                device: device.to_string(),
            })?;
        let pin = &record.attachment.map_pin;
        // BPF_OBJ_GET with no flags opens read-write: the pod user needs both.
        std::os::unix::fs::chown(pin, Some(uid), None)
            .map_err(|e| ProgramError::syscall("chown", pin.display(), e))?;
        fs::set_permissions(pin, fs::Permissions::from_mode(0o600))
            .map_err(|e| ProgramError::syscall("chmod", pin.display(), e))?;
        info!(device, uid, pin = %pin.display(), "shared XSKMAP pin");
        Ok(())
    }
}

/// The program to attach: `function` when named (it must be an XDP
/// program), else `xsk_redirect` if present, else the only XDP one.
fn pick_program(ebpf: &Ebpf, function: Option<&str>) -> Result<String, String> {
    let xdp: Vec<&str> = ebpf
        .programs()
        .filter(|(_, p)| matches!(p, Program::Xdp(_)))
        .map(|(n, _)| n)
        .collect();
    if let Some(f) = function {
        return if xdp.contains(&f) {
            Ok(f.to_string())
        } else {
            Err(format!(
                "no XDP program named {f:?} (XDP programs: {xdp:?})"
            ))
        };
    }
    if xdp.contains(&BUILTIN_PROGRAM_NAME) {
        return Ok(BUILTIN_PROGRAM_NAME.to_string());
    }
    match xdp.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err("no XDP program".to_string()),
        _ => Err(format!(
            "several XDP programs and none named {BUILTIN_PROGRAM_NAME}: name the function ({xdp:?})"
        )),
    }
}

/// Stable key of a custom object path (FNV-1a 64), fit for a file name.
fn program_key(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("file-{h:016x}")
}

fn read_meta(dir: &Path) -> io::Result<HashMap<String, String>> {
    let mut meta = HashMap::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some((k, v)) = name.to_str().and_then(|n| n.split_once('=')) {
            meta.insert(k.to_string(), v.to_string());
        }
    }
    Ok(meta)
}

fn mkdir(path: &Path, mode: u32, exist_ok: bool) -> Result<(), ProgramError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if exist_ok && e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ProgramError::syscall("mkdir", path.display(), e)),
    }
}

fn remove_file(path: &Path) -> Result<(), ProgramError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ProgramError::syscall("unlink", path.display(), e))
        }
        _ => Ok(()),
    }
}

fn remove_dir_all(path: &Path) -> Result<(), ProgramError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ProgramError::syscall("rmdir", path.display(), e))
        }
        _ => Ok(()),
    }
}

/// Paths to remove, newest first, unless disarmed.
#[derive(Default)]
struct Undo {
    steps: Vec<(PathBuf, bool)>,
}

impl Undo {
    fn push(&mut self, path: PathBuf, is_dir: bool) {
        self.steps.push((path, is_dir));
    }

    fn disarm(&mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some((path, is_dir)) = self.steps.pop() {
            let res = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = res {
                warn!(path = %path.display(), error = %e, "undo of a failed attach");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_key_is_stable_and_path_specific() {
        let a = program_key(Path::new("/opt/a.o"));
        assert_eq!(a, program_key(Path::new("/opt/a.o")));
        assert_ne!(a, program_key(Path::new("/opt/b.o")));
        assert!(!a.contains('/'));
    }

    #[test]
    fn undo_removes_in_reverse_unless_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        let file = sub.join("f");
        fs::write(&file, b"x").unwrap();
        {
            let mut u = Undo::default();
            u.push(sub.clone(), true);
            u.push(file.clone(), false);
            u.disarm();
        }
        assert!(file.exists());
        {
            let mut u = Undo::default();
            u.push(sub.clone(), true);
            u.push(file.clone(), false);
        }
        assert!(!sub.exists());
    }
}
