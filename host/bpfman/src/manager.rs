//! [`BpfmanManager`]: the [`ProgramManager`] that has bpfman load and attach.

use std::{
    collections::{BTreeMap, HashMap},
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::PermissionsExt,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use afxdp_program::{
    validate_device, AttachRequest, Attachment, ProgramError, ProgramManager, XdpMode,
    BUILTIN_PROGRAM_NAME, XSKS_MAP_NAME,
};
use tracing::{info, warn};

use crate::{
    client::{BpfmanClient, DEFAULT_CALL_TIMEOUT, DEFAULT_SOCKET},
    BpfmanError, Bytecode, Direction, Hook, ListFilter, LoadSpec, ProceedOn, Program, ProgramType,
};

/// Metadata key: the node whose afxdp-dp owns the program.
pub const META_NODE: &str = "afxdp.io/node";
/// Metadata key: the pool of the device.
pub const META_POOL: &str = "afxdp.io/pool";
/// Metadata key: the device the program is attached to.
pub const META_DEVICE: &str = "afxdp.io/device";
/// Metadata key: the allocation the attachment belongs to.
pub const META_ALLOCATION: &str = "afxdp.io/allocation";
/// Metadata key bpfman's CSI driver matches `csi.bpfman.io/program` against.
pub const META_PROGRAM_NAME: &str = "bpfman.io/ProgramName";

/// Which hook the manager attaches programs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// XDP through bpfman's dispatcher: what pods need. bpfman attaches
    /// XDP programs as freplace extensions of its dispatcher, so the kernel
    /// must accept `BPF_PROG_TYPE_EXT`.
    Xdp {
        /// 1 (first) to 1000 (last).
        priority: i32,
        /// Actions after which the next program of the dispatcher runs.
        proceed_on: Vec<ProceedOn>,
    },
    /// TCX (Linux 6.6) with a tc function of the same object: for kernels
    /// that refuse freplace, where it exercises everything but the hook
    /// (load, metadata, map pins, reconcile, unload). Pods get no frames
    /// through it.
    Tcx {
        /// 1 (first) to 1000 (last).
        priority: i32,
        /// Ingress or egress.
        direction: Direction,
    },
}

impl Default for HookKind {
    fn default() -> Self {
        HookKind::Xdp {
            priority: 50,
            proceed_on: vec![ProceedOn::Pass, ProceedOn::DispatcherReturn],
        }
    }
}

/// Settings of a [`BpfmanManager`].
#[derive(Clone, Debug)]
pub struct BpfmanConfig {
    /// bpfman-rpc's socket.
    pub socket: PathBuf,
    /// Bound on each bpfman call.
    pub call_timeout: Duration,
    /// The node name written into each program's metadata.
    pub node: String,
    /// The pool: written into each program's metadata; the manager adopts
    /// only its own pool's programs.
    pub pool: String,
    /// The object loaded when a request names none (the built-in program,
    /// published as an image or written where bpfman can read it).
    pub builtin: Bytecode,
    /// The hook.
    pub hook: HookKind,
    /// Where bpfman's paths (`map_pin_path`) are reached from this process:
    /// `/` when both share the host's mounts, `/proc/<pid>/root` to look
    /// into the mount namespace of bpfman's process `<pid>`.
    pub path_root: PathBuf,
    /// The network namespace file of the pool's devices, as bpfman reaches
    /// it; `None`: bpfman's own (the host's, where devices are at Allocate).
    pub netns: Option<PathBuf>,
}

impl BpfmanConfig {
    /// Defaults for `node` and `pool`: the default socket and timeout, XDP,
    /// paths as seen from `/`.
    pub fn new(node: impl Into<String>, pool: impl Into<String>, builtin: Bytecode) -> Self {
        Self {
            socket: DEFAULT_SOCKET.into(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            node: node.into(),
            pool: pool.into(),
            builtin,
            hook: HookKind::default(),
            path_root: "/".into(),
            netns: None,
        }
    }
}

/// What one attach asks bpfman for beyond the [`AttachRequest`]: the
/// decision's bytecode and dispatcher settings, and the allocation the
/// program is loaded for. Unset fields take the manager's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadChoice {
    /// What bpfman loads; `None`: the request's file, else
    /// [`BpfmanConfig::builtin`].
    pub bytecode: Option<Bytecode>,
    /// Dispatcher (or TCX) priority, 1..=1000; `None`: the hook's.
    pub priority: Option<i32>,
    /// XDP `proceed_on`; `None`: the hook's.
    pub proceed_on: Option<Vec<ProceedOn>>,
    /// The allocation id written into [`META_ALLOCATION`].
    pub allocation: String,
}

/// Metadata key: the XDP mode the decision asked for (bpfman's API takes
/// none: bpfman picks the mode from its own configuration).
pub const META_XDP_MODE: &str = "afxdp.io/xdp-mode";

/// One attachment and what it is made of in bpfman.
#[derive(Clone, Debug)]
struct Record {
    attachment: Attachment,
    program_key: String,
    link_id: u32,
    allocation: String,
}

/// A [`ProgramManager`] that has bpfman (`bpfman-rpc`) load and attach each
/// device's program and pin its maps; the XSKMAP is the `xsks_map` under
/// the program's `map_pin_path`.
///
/// Every load carries metadata naming its owner ([`META_NODE`],
/// [`META_POOL`], [`META_DEVICE`], [`META_ALLOCATION`]) and
/// [`META_PROGRAM_NAME`]; [`BpfmanManager::new`] adopts what bpfman already
/// holds for the node and pool, so a restart of afxdp-dp or of bpfman loads
/// nothing twice.
///
/// Every method **blocks** on bpfman (see [`BpfmanClient`]): call them from
/// `spawn_blocking` or a plain thread, never from an async task.
#[derive(Debug)]
pub struct BpfmanManager {
    client: BpfmanClient,
    config: BpfmanConfig,
    records: Mutex<HashMap<String, Record>>,
}

impl BpfmanManager {
    /// Connects to bpfman and adopts the programs it holds for this node
    /// and pool. Programs of ours without a link (a crash between load and
    /// attach) and second programs for one device are unloaded.
    ///
    /// # Errors
    /// bpfman down or refusing `List`.
    pub fn new(config: BpfmanConfig) -> Result<Self, BpfmanError> {
        let client = BpfmanClient::new(&config.socket, config.call_timeout)?;
        let mgr = Self {
            client,
            config,
            records: Mutex::new(HashMap::new()),
        };
        let adopted = mgr.reconcile()?;
        *mgr.lock() = adopted;
        Ok(mgr)
    }

    /// The client, for calls the trait does not cover.
    pub fn client(&self) -> &BpfmanClient {
        &self.client
    }

    /// The programs bpfman holds for this manager's node and pool.
    ///
    /// # Errors
    /// bpfman down or refusing `List`.
    pub fn owned_programs(&self) -> Result<Vec<Program>, BpfmanError> {
        let metadata = BTreeMap::from([
            (META_NODE.to_string(), self.config.node.clone()),
            (META_POOL.to_string(), self.config.pool.clone()),
        ]);
        self.client.list(&ListFilter {
            metadata,
            bpfman_only: true,
        })
    }

    /// Attaches like [`ProgramManager::attach`], recording `allocation` in
    /// the program's metadata.
    ///
    /// # Errors
    /// As [`ProgramManager::attach`].
    pub fn attach_for(
        &self,
        req: &AttachRequest<'_>,
        allocation: &str,
    ) -> Result<Attachment, ProgramError> {
        self.attach_with(
            req,
            &LoadChoice {
                allocation: allocation.to_string(),
                ..LoadChoice::default()
            },
        )
    }

    /// Attaches like [`ProgramManager::attach`] what `choice` says (its
    /// bytecode, priority, proceed_on), for `choice.allocation`. A program
    /// of ours bpfman holds for the device without this manager knowing it
    /// (a `Load` whose answer was lost when bpfman restarted) is unloaded
    /// first: a retried load never leaves two.
    ///
    /// # Errors
    /// As [`ProgramManager::attach`].
    pub fn attach_with(
        &self,
        req: &AttachRequest<'_>,
        choice: &LoadChoice,
    ) -> Result<Attachment, ProgramError> {
        validate_device(req.device)?;
        let program_key = program_key(req, choice);
        let mut records = self.lock();
        if let Some(existing) = records.get(req.device) {
            return same_or_busy(existing, req, &program_key);
        }
        self.unload_strays(req.device).map_err(backend)?;
        let record = match self.load_and_attach(req, program_key, choice) {
            Ok(r) => r,
            Err(e) => {
                if matches!(
                    e,
                    BpfmanError::Unavailable { .. } | BpfmanError::Timeout { .. }
                ) {
                    // bpfman may have loaded it before going away.
                    if let Err(e) = self.unload_strays(req.device) {
                        warn!(device = req.device, error = %e, "cleaning up after a lost Load");
                    }
                }
                return Err(backend(e));
            }
        };
        let attachment = record.attachment.clone();
        records.insert(req.device.to_string(), record);
        Ok(attachment)
    }

    /// The allocation id recorded for `device`'s attachment.
    pub fn allocation_of(&self, device: &str) -> Option<String> {
        self.lock().get(device).map(|r| r.allocation.clone())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists our programs; returns the ones to adopt, unloads the rest.
    fn reconcile(&self) -> Result<HashMap<String, Record>, BpfmanError> {
        let mut records = HashMap::new();
        for program in self.owned_programs()? {
            match self.adoptable(&program) {
                Ok(record) if !records.contains_key(&record.attachment.device) => {
                    info!(
                        device = record.attachment.device,
                        program_id = program.id,
                        "adopted bpfman program"
                    );
                    records.insert(record.attachment.device.clone(), record);
                }
                Ok(_) => self.unload_orphan(program.id, "a second program for its device")?,
                Err(reason) => self.unload_orphan(program.id, &reason)?,
            }
        }
        Ok(records)
    }

    /// Unloads programs bpfman holds for `device` of this node and pool
    /// that have no record here (the caller holds the records' lock and
    /// found none for the device).
    fn unload_strays(&self, device: &str) -> Result<(), BpfmanError> {
        let metadata = BTreeMap::from([
            (META_NODE.to_string(), self.config.node.clone()),
            (META_POOL.to_string(), self.config.pool.clone()),
            (META_DEVICE.to_string(), device.to_string()),
        ]);
        let strays = self.client.list(&ListFilter {
            metadata,
            bpfman_only: true,
        })?;
        for p in strays {
            self.unload_orphan(p.id, "loaded for the device without a record here")?;
        }
        Ok(())
    }

    fn unload_orphan(&self, id: u32, reason: &str) -> Result<(), BpfmanError> {
        warn!(
            program_id = id,
            reason, "unloading a leftover bpfman program"
        );
        self.client.unload(id)
    }

    /// The record of one of our programs, or why it cannot be adopted.
    fn adoptable(&self, program: &Program) -> Result<Record, String> {
        let managed = program.managed.as_ref().ok_or("not bpfman's")?;
        let device = managed
            .metadata
            .get(META_DEVICE)
            .ok_or("no device in its metadata")?;
        validate_device(device).map_err(|e| e.to_string())?;
        let &[link_id] = managed.links.as_slice() else {
            return Err(format!("{} links, not one", managed.links.len()));
        };
        let (map_dir, map_pin) = self.map_paths(&managed.map_pin_path);
        Ok(Record {
            attachment: Attachment {
                device: device.clone(),
                ifindex: meta_u32(&managed.metadata, "afxdp.io/ifindex"),
                program_id: program.id,
                mode: self.reported_mode(XdpMode::Auto),
                map_dir,
                map_pin,
            },
            program_key: managed
                .metadata
                .get("afxdp.io/program")
                .cloned()
                .unwrap_or_default(),
            link_id,
            allocation: managed
                .metadata
                .get(META_ALLOCATION)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Load, check the map pin, attach; anything loaded is unloaded when a
    /// later step fails.
    fn load_and_attach(
        &self,
        req: &AttachRequest<'_>,
        program_key: String,
        choice: &LoadChoice,
    ) -> Result<Record, BpfmanError> {
        let spec = self.load_spec(req, &program_key, choice);
        let program = self.client.load(&spec)?;
        let loaded = Loaded::new(&self.client, program.id);
        let (map_dir, map_pin) = self.map_paths(&map_pin_path(&program)?);
        check_map_pin(&map_pin, &spec)?;
        let link_id = self.client.attach(program.id, &self.hook(req, choice))?;
        loaded.keep();
        info!(
            device = req.device,
            program_id = program.id,
            link_id,
            map_pin = %map_pin.display(),
            "bpfman attached program"
        );
        Ok(Record {
            attachment: Attachment {
                device: req.device.to_string(),
                ifindex: req.ifindex,
                program_id: program.id,
                mode: self.reported_mode(req.mode),
                map_dir,
                map_pin,
            },
            program_key,
            link_id,
            allocation: choice.allocation.clone(),
        })
    }

    fn load_spec(
        &self,
        req: &AttachRequest<'_>,
        program_key: &str,
        choice: &LoadChoice,
    ) -> LoadSpec {
        let bytecode = match (&choice.bytecode, req.program) {
            (Some(b), _) => b.clone(),
            (None, Some(p)) => Bytecode::File(p.to_path_buf()),
            (None, None) => self.config.builtin.clone(),
        };
        let program_type = match self.config.hook {
            HookKind::Xdp { .. } => ProgramType::Xdp,
            HookKind::Tcx { .. } => ProgramType::Tcx,
        };
        let c = &self.config;
        let metadata = BTreeMap::from([
            (META_NODE.to_string(), c.node.clone()),
            (META_POOL.to_string(), c.pool.clone()),
            (META_DEVICE.to_string(), req.device.to_string()),
            (META_ALLOCATION.to_string(), choice.allocation.clone()),
            (META_XDP_MODE.to_string(), req.mode.to_string()),
            (
                META_PROGRAM_NAME.to_string(),
                format!("afxdp-{}-{}", c.pool, req.device),
            ),
            ("afxdp.io/ifindex".to_string(), req.ifindex.to_string()),
            ("afxdp.io/program".to_string(), program_key.to_string()),
        ]);
        LoadSpec {
            bytecode,
            function: req.function.unwrap_or(BUILTIN_PROGRAM_NAME).to_string(),
            program_type,
            metadata,
        }
    }

    fn hook(&self, req: &AttachRequest<'_>, choice: &LoadChoice) -> Hook {
        let iface = req.device.to_string();
        let netns = self.config.netns.clone();
        match &self.config.hook {
            HookKind::Xdp {
                priority,
                proceed_on,
            } => Hook::Xdp {
                iface,
                priority: choice.priority.unwrap_or(*priority),
                proceed_on: choice.proceed_on.clone().unwrap_or(proceed_on.clone()),
                netns,
            },
            HookKind::Tcx {
                priority,
                direction,
            } => Hook::Tcx {
                iface,
                priority: choice.priority.unwrap_or(*priority),
                direction: *direction,
                netns,
            },
        }
    }

    /// bpfman picks the XDP mode itself (its config's per-interface
    /// `xdp_mode`, native by default, generic when the driver refuses) and
    /// does not say which it used: the request is reported, `auto` as
    /// native. A TCX hook is an skb hook: generic.
    fn reported_mode(&self, requested: XdpMode) -> XdpMode {
        match (&self.config.hook, requested) {
            (HookKind::Tcx { .. }, _) => XdpMode::Generic,
            (HookKind::Xdp { .. }, XdpMode::Auto) => XdpMode::Native,
            (HookKind::Xdp { .. }, mode) => mode,
        }
    }

    /// bpfman's map directory as reached from here, and the XSKMAP pin in it.
    fn map_paths(&self, map_pin_path: &Path) -> (PathBuf, PathBuf) {
        let relative = map_pin_path.strip_prefix("/").unwrap_or(map_pin_path);
        let dir = self.config.path_root.join(relative);
        let pin = dir.join(XSKS_MAP_NAME);
        (dir, pin)
    }

    /// Whether bpfman still holds program `id` (`Get` answers with its
    /// record).
    fn bpfman_has(&self, id: u32) -> Result<bool, ProgramError> {
        match self.client.get(id) {
            Ok(p) => Ok(p.managed.is_some()),
            Err(BpfmanError::Refused { .. }) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    fn record(&self, device: &str) -> Result<Record, ProgramError> {
        validate_device(device)?;
        self.lock()
            .get(device)
            .cloned()
            .ok_or_else(|| ProgramError::NotAttached {
                device: device.to_string(),
            })
    }
}

impl ProgramManager for BpfmanManager {
    /// Has bpfman load the requested object (a file path as bpfman sees it,
    /// or the configured built-in bytecode) and attach its function
    /// (`xsk_redirect` unless named) to the device. A failed attach unloads
    /// what was loaded. Blocks on bpfman.
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, ProgramError> {
        self.attach_for(req, &new_allocation_id(req.device))
    }

    /// Detaches the link and unloads the program (bpfman removes its pins).
    fn detach(&self, device: &str) -> Result<bool, ProgramError> {
        validate_device(device)?;
        let mut records = self.lock();
        let Some(record) = records.get(device) else {
            return Ok(false);
        };
        let id = record.attachment.program_id;
        if let Err(e) = self.client.detach(record.link_id) {
            // Unload detaches too; only bpfman being away is worth stopping for.
            if matches!(e, BpfmanError::Unavailable { .. }) {
                return Err(backend(e));
            }
            warn!(device, link_id = record.link_id, error = %e, "bpfman Detach");
        }
        match self.client.unload(id) {
            Ok(()) => info!(device, program_id = id, "bpfman unloaded program"),
            // bpfman no longer has it (unloaded by hand, its state lost):
            // nothing is left to unload, the record goes.
            Err(e @ BpfmanError::Refused { .. }) if !self.bpfman_has(id)? => {
                warn!(device, program_id = id, error = %e, "bpfman no longer holds the program");
            }
            Err(e) => return Err(backend(e)),
        }
        records.remove(device);
        Ok(true)
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, ProgramError> {
        let record = self.record(device)?;
        open_map_pin(&record.attachment.map_pin)
    }

    fn attachments(&self) -> Vec<Attachment> {
        let mut v: Vec<Attachment> = self.lock().values().map(|r| r.attachment.clone()).collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    fn share_map_with(&self, device: &str, uid: u32) -> Result<(), ProgramError> {
        let record = self.record(device)?;
        let pin = &record.attachment.map_pin;
        std::os::unix::fs::chown(pin, Some(uid), None)
            .map_err(|e| ProgramError::syscall("chown", pin.display(), e))?;
        std::fs::set_permissions(pin, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ProgramError::syscall("chmod", pin.display(), e))?;
        info!(device, uid, pin = %pin.display(), "shared bpfman's XSKMAP pin");
        Ok(())
    }
}

/// Unloads a loaded program on drop unless [`Loaded::keep`] was called.
struct Loaded<'a> {
    client: &'a BpfmanClient,
    id: Option<u32>,
}

impl<'a> Loaded<'a> {
    fn new(client: &'a BpfmanClient, id: u32) -> Self {
        Self {
            client,
            id: Some(id),
        }
    }

    fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for Loaded<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            match self.client.unload(id) {
                Ok(()) => info!(program_id = id, "unloaded after a failed attach"),
                Err(e) => warn!(program_id = id, error = %e, "unload after a failed attach"),
            }
        }
    }
}

fn same_or_busy(
    existing: &Record,
    req: &AttachRequest<'_>,
    program_key: &str,
) -> Result<Attachment, ProgramError> {
    let a = &existing.attachment;
    if a.ifindex == req.ifindex && existing.program_key == program_key {
        return Ok(a.clone());
    }
    Err(ProgramError::AlreadyAttached {
        device: req.device.to_string(),
        program_id: a.program_id,
        mode: a.mode,
        ifindex: a.ifindex,
    })
}

/// What makes two requests the same attachment: object, function and
/// dispatcher settings.
fn program_key(req: &AttachRequest<'_>, choice: &LoadChoice) -> String {
    let object = match (&choice.bytecode, req.program) {
        (Some(b), _) => b.to_string(),
        (None, Some(p)) => format!("file:{}", p.display()),
        (None, None) => "builtin".to_string(),
    };
    let mut key = match req.function {
        Some(f) => format!("{object}#{f}"),
        None => object,
    };
    if let Some(p) = choice.priority {
        key.push_str(&format!(" priority {p}"));
    }
    if let Some(actions) = &choice.proceed_on {
        key.push_str(&format!(" proceed_on {actions:?}"));
    }
    key
}

fn map_pin_path(program: &Program) -> Result<PathBuf, BpfmanError> {
    program
        .managed
        .as_ref()
        .map(|m| m.map_pin_path.clone())
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(BpfmanError::Malformed {
            call: "Load",
            missing: "map_pin_path",
        })
}

fn check_map_pin(pin: &Path, spec: &LoadSpec) -> Result<(), BpfmanError> {
    if pin.exists() {
        return Ok(());
    }
    Err(BpfmanError::NoXskMap {
        object: spec.bytecode.to_string(),
        pin: pin.to_path_buf(),
    })
}

fn open_map_pin(pin: &Path) -> Result<OwnedFd, ProgramError> {
    let map = aya::maps::MapData::from_pin(pin).map_err(|e| {
        ProgramError::syscall("BPF_OBJ_GET", pin.display(), std::io::Error::other(e))
    })?;
    map.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| ProgramError::syscall("dup", pin.display(), e))
}

fn meta_u32(meta: &BTreeMap<String, String>, key: &str) -> u32 {
    meta.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `<device>-<unix nanos in hex>-<counter>`: unique on the node.
fn new_allocation_id(device: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{device}-{nanos:x}-{n}")
}

fn backend(e: BpfmanError) -> ProgramError {
    ProgramError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BpfmanConfig {
        BpfmanConfig::new("node-a", "fast", Bytecode::File("/opt/x.o".into()))
    }

    #[test]
    fn map_paths_go_through_the_root() {
        let mut c = config();
        c.path_root = "/proc/42/root".into();
        let mgr = BpfmanManager {
            client: BpfmanClient::new("/nonexistent.sock", Duration::from_secs(1)).unwrap(),
            config: c,
            records: Mutex::new(HashMap::new()),
        };
        let (dir, pin) = mgr.map_paths(Path::new("/run/bpfman/fs/maps/7"));
        assert_eq!(dir, Path::new("/proc/42/root/run/bpfman/fs/maps/7"));
        assert_eq!(pin, dir.join("xsks_map"));
    }

    #[test]
    fn allocation_ids_are_unique() {
        assert_ne!(new_allocation_id("eth0"), new_allocation_id("eth0"));
    }

    #[test]
    fn program_keys_name_file_and_function() {
        let req = |program, function| AttachRequest {
            device: "eth0",
            ifindex: 3,
            mode: XdpMode::Auto,
            program,
            function,
        };
        let none = LoadChoice::default();
        assert_eq!(program_key(&req(None, None), &none), "builtin");
        assert_eq!(
            program_key(&req(Some(Path::new("/a.o")), Some("f")), &none),
            "file:/a.o#f"
        );
        let image = LoadChoice {
            bytecode: Some(Bytecode::File("/b.o".into())),
            priority: Some(7),
            ..LoadChoice::default()
        };
        assert_eq!(
            program_key(&req(None, Some("f")), &image),
            "file /b.o#f priority 7"
        );
    }
}
