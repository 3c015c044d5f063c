//! The program managers of afxdp-dp, chosen per pool: the native (aya)
//! manager for native pools, one [`BpfmanManager`] per pool whose config
//! says `programManager: bpfman`. [`Programs`] routes every call to the
//! manager of the pool the device is allocated in (attach) or the manager
//! holding the device's attachment (everything else), and is itself the
//! [`ProgramManager`] the UDS handshake and start-up reconciliation see.
//!
//! For a bpfman pool, bpfman pins the program's maps under its
//! `map_pin_path`; afxdp-dp pins the XSKMAP found there once more in its own
//! bpffs (`<state>/pins/bpfman-maps/<device>/xsks_map`): that directory is
//! what the pinned sharing mode mounts into the pod (the pod sees the
//! XSKMAP alone, not bpfman's other maps or directory), and the UDS mode
//! opens bpfman's pin (`BPF_OBJ_GET`) and passes the FD.
//!
//! Everything here **blocks** (bpfman calls, bpf syscalls): call it from
//! `spawn_blocking` or the agent's blocking threads.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use afxdp_bpfman::{
    BpfmanClient, BpfmanConfig, BpfmanError, BpfmanManager, Bytecode, Credentials, Direction,
    HookKind, Image, ListFilter, LoadChoice, PullPolicy, META_NODE, META_POOL,
};
use afxdp_config::{BpfmanPool, Config, ImagePullPolicy, PoolConfig};
use afxdp_program::{
    AttachRequest, Attachment, NativeManager, ProgramError, ProgramManager, XSKS_MAP_NAME,
};

/// Which hook bpfman attaches programs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BpfmanHook {
    /// XDP through bpfman's dispatcher (what pods need).
    #[default]
    Xdp,
    /// TCX ingress, for kernels that refuse bpfman's freplace XDP
    /// programs (tests): everything but the XDP hook runs (load, metadata,
    /// pins, sharing, reconcile, unload); pods get no frames through it.
    Tcx,
}

/// How afxdp-dp reaches bpfman.
#[derive(Debug, Clone)]
pub struct BpfmanOptions {
    /// bpfman-rpc's socket.
    pub socket: PathBuf,
    /// Where bpfman's paths (`map_pin_path`) are reached from afxdp-dp: `/`
    /// when both see the host's `/run/bpfman` (the usual DaemonSets).
    pub path_root: PathBuf,
    /// The hook.
    pub hook: BpfmanHook,
    /// Bound on each bpfman call (a load includes bpfman's image pull).
    pub call_timeout: Duration,
}

impl Default for BpfmanOptions {
    fn default() -> Self {
        Self {
            socket: afxdp_bpfman::DEFAULT_SOCKET.into(),
            path_root: "/".into(),
            hook: BpfmanHook::Xdp,
            call_timeout: afxdp_bpfman::DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// What an allocation's decision adds to the attach request for bpfman.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    /// A bytecode image the policy chose (given to bpfman as chosen).
    pub image: Option<&'a str>,
    /// The decided priority.
    pub priority: i32,
    /// The allocation id, written into the program's metadata.
    pub allocation: &'a str,
}

/// The per-pool program managers; see the module docs.
pub struct Programs {
    native: NativeManager,
    node: String,
    options: BpfmanOptions,
    /// The built-in object, written where bpfman reads it (pools without
    /// `bpfman.image`).
    builtin_file: PathBuf,
    /// afxdp-dp's own pins of bpfman's XSKMAPs, one directory per device.
    map_root: PathBuf,
    /// bpfman pools' managers, made on first use (bpfman may be down when
    /// afxdp-dp starts: their Allocates fail saying so until it is up).
    managers: Mutex<BTreeMap<String, Arc<BpfmanManager>>>,
    /// The bpfman pools of the config reconciled at start: until each has
    /// its manager, a device no manager holds may still be one of theirs.
    bpfman_pools: Mutex<BTreeSet<String>>,
}

impl Programs {
    /// `native` serves native pools; bpfman pools reach bpfman as
    /// `options` say. Writes the built-in object to
    /// `<state_dir>/bpfman/xsk_redirect.bpf.o` (for bpfman to read) and
    /// makes the map pin directory in the native manager's bpffs.
    ///
    /// # Errors
    /// Writing the object or making the directory.
    pub fn new(
        native: NativeManager,
        node: &str,
        options: BpfmanOptions,
        state_dir: &Path,
    ) -> Result<Self, ProgramError> {
        let dir = state_dir.join("bpfman");
        let builtin_file = dir.join("xsk_redirect.bpf.o");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&builtin_file, afxdp_program::builtin_object()))
            .map_err(|e| ProgramError::syscall("write", builtin_file.display(), e))?;
        let map_root = native.pin_root().join("bpfman-maps");
        std::fs::create_dir_all(&map_root)
            .map_err(|e| ProgramError::syscall("mkdir", map_root.display(), e))?;
        Ok(Self {
            native,
            node: node.to_string(),
            options,
            builtin_file,
            map_root,
            managers: Mutex::new(BTreeMap::new()),
            bpfman_pools: Mutex::new(BTreeSet::new()),
        })
    }

    /// Start-up reconciliation with bpfman: each bpfman pool of `config`
    /// adopts the programs bpfman holds for it (see [`BpfmanManager::new`]:
    /// programs left without a link are unloaded), programs of this node
    /// for pools that are not bpfman's any more are unloaded, and this
    /// daemon's map pins follow (re-pinned for adopted programs, removed for
    /// the rest). bpfman being down is logged: its pools' Allocates fail
    /// until it is back. Which adopted programs belong to live allocations
    /// is for [`crate::recover`] to decide (it detaches the rest).
    pub fn reconcile(&self, config: &Config) {
        let bpfman_pools: BTreeSet<&str> = config
            .pools
            .iter()
            .filter(|p| p.bpfman.is_some())
            .map(|p| p.name.as_str())
            .collect();
        *self
            .bpfman_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            bpfman_pools.iter().map(|p| p.to_string()).collect();
        for pool in &bpfman_pools {
            if let Err(e) = self.manager(pool) {
                tracing::warn!(pool, error = %e, "bpfman unavailable at start; the pool's allocations fail until it is back");
            }
        }
        // A node without bpfman pools looks only if bpfman runs (a pool
        // switched to native may have left programs there).
        if !bpfman_pools.is_empty() || self.options.socket.exists() {
            if let Err(e) = self.unload_other_pools(&bpfman_pools) {
                tracing::warn!(error = %e, "listing bpfman's programs of this node failed");
            }
        }
        self.reconcile_pins();
    }

    /// The manager of a bpfman pool, made (connected, adopting) on first use.
    ///
    /// # Errors
    /// bpfman down or refusing `List`.
    pub fn manager(&self, pool: &str) -> Result<Arc<BpfmanManager>, BpfmanError> {
        let mut managers = self.managers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = managers.get(pool) {
            return Ok(m.clone());
        }
        let mut config = BpfmanConfig::new(
            self.node.clone(),
            pool,
            Bytecode::File(self.builtin_file.clone()),
        );
        config.socket = self.options.socket.clone();
        config.call_timeout = self.options.call_timeout;
        config.path_root = self.options.path_root.clone();
        config.hook = match self.options.hook {
            BpfmanHook::Xdp => HookKind::default(),
            BpfmanHook::Tcx => HookKind::Tcx {
                priority: afxdp_config::DEFAULT_BPFMAN_PRIORITY,
                direction: Direction::Ingress,
            },
        };
        let manager = Arc::new(BpfmanManager::new(config)?);
        for a in manager.attachments() {
            tracing::info!(pool, device = %a.device, program_id = a.program_id, "bpfman program adopted");
            // Pinned again where the pod's directory is (kept when there).
            if let Err(e) = self.pin_map(&a) {
                tracing::error!(device = %a.device, error = %e, "re-pinning an adopted XSKMAP failed");
            }
        }
        managers.insert(pool.to_string(), manager.clone());
        Ok(manager)
    }

    /// Attaches `req` with the manager of `pool`: natively, or through
    /// bpfman with the pool's settings and `decided` (image, priority,
    /// allocation id). A bpfman attachment's map is pinned in afxdp-dp's
    /// own directory (returned as `map_dir`); nothing is left loaded or
    /// pinned when a step fails.
    ///
    /// # Errors
    /// The manager's: bpfman down, a refused load or attach (its words), an
    /// unreadable credentials file, the pin.
    pub fn attach_in(
        &self,
        pool: &PoolConfig,
        req: &AttachRequest<'_>,
        decided: &Decided<'_>,
    ) -> Result<Attachment, ProgramError> {
        let Some(settings) = &pool.bpfman else {
            return self.native.attach(req);
        };
        let manager = self.manager(&pool.name).map_err(backend)?;
        let choice = load_choice(settings, req, decided)?;
        let req = AttachRequest {
            function: req.function.or(settings.function.as_deref()),
            ..*req
        };
        let att = manager.attach_with(&req, &choice)?;
        match self.pin_map(&att) {
            Ok(ours) => Ok(ours),
            Err(e) => {
                if let Err(d) = manager.detach(req.device) {
                    tracing::error!(device = req.device, error = %d, "unloading after a failed pin");
                }
                Err(e)
            }
        }
    }

    /// Whether `pool` is a bpfman pool whose manager could not be made yet
    /// (bpfman was down): what it holds is unknown, its allocations must be
    /// kept as they are.
    pub fn unreachable(&self, pool: &str) -> bool {
        let configured = self
            .bpfman_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(pool);
        configured
            && !self
                .managers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(pool)
    }

    /// The bpfman pools whose manager could not be made yet.
    fn unreachable_pools(&self) -> Vec<String> {
        let pools: Vec<String> = self
            .bpfman_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        pools.into_iter().filter(|p| self.unreachable(p)).collect()
    }

    /// The bpfman manager holding `device`'s attachment; `Ok(None)` when
    /// no bpfman pool holds it, an error when a bpfman pool's manager still
    /// cannot be made (its holdings are unknown).
    fn holder_known(&self, device: &str) -> Result<Option<Arc<BpfmanManager>>, ProgramError> {
        let mut unreachable = None;
        for pool in &self.unreachable_pools() {
            if let Err(e) = self.manager(pool) {
                unreachable = Some(e);
            }
        }
        match (self.holder(device), unreachable) {
            (Some(m), _) => Ok(Some(m)),
            (None, Some(e)) => Err(backend(e)),
            (None, None) => Ok(None),
        }
    }

    /// The bpfman manager holding `device`'s attachment, if any.
    fn holder(&self, device: &str) -> Option<Arc<BpfmanManager>> {
        let managers = self.managers.lock().unwrap_or_else(PoisonError::into_inner);
        managers
            .values()
            .find(|m| m.allocation_of(device).is_some())
            .cloned()
    }

    /// The allocation id bpfman's metadata records for `device`'s program
    /// (`None`: not a bpfman attachment).
    pub fn allocation_of(&self, device: &str) -> Option<String> {
        self.holder(device).and_then(|m| m.allocation_of(device))
    }

    fn map_dir(&self, device: &str) -> PathBuf {
        self.map_root.join(device)
    }

    /// `att` with its XSKMAP pinned in afxdp-dp's directory (kept when
    /// already there).
    fn pin_map(&self, att: &Attachment) -> Result<Attachment, ProgramError> {
        let dir = self.map_dir(&att.device);
        let pin = dir.join(XSKS_MAP_NAME);
        let ours = Attachment {
            map_dir: dir.clone(),
            map_pin: pin.clone(),
            ..att.clone()
        };
        if pin.exists() {
            return Ok(ours);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| ProgramError::syscall("mkdir", dir.display(), e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ProgramError::syscall("chmod", dir.display(), e))?;
        let map = aya::maps::MapData::from_pin(&att.map_pin).map_err(|e| {
            ProgramError::syscall(
                "BPF_OBJ_GET",
                att.map_pin.display(),
                std::io::Error::other(e),
            )
        })?;
        map.pin(&pin).map_err(|e| {
            remove_map_dir(&dir);
            ProgramError::syscall("BPF_OBJ_PIN", pin.display(), std::io::Error::other(e))
        })?;
        Ok(ours)
    }

    /// Unloads programs bpfman holds for this node in pools that are not
    /// bpfman pools (any more).
    fn unload_other_pools(&self, bpfman_pools: &BTreeSet<&str>) -> Result<(), BpfmanError> {
        let client = BpfmanClient::new(&self.options.socket, self.options.call_timeout)?;
        let ours = client.list(&ListFilter {
            metadata: BTreeMap::from([(META_NODE.to_string(), self.node.clone())]),
            bpfman_only: true,
        })?;
        for p in ours {
            let pool = p
                .managed
                .as_ref()
                .and_then(|m| m.metadata.get(META_POOL))
                .cloned()
                .unwrap_or_default();
            if !bpfman_pools.contains(pool.as_str()) {
                tracing::warn!(
                    program_id = p.id,
                    pool,
                    "unloading a bpfman program of a pool that is not bpfman's"
                );
                client.unload(p.id)?;
            }
        }
        Ok(())
    }

    /// Removes the map pins no adopted program has (adopted ones were
    /// pinned again when their manager was made); none while a bpfman pool
    /// is unreachable (its devices' pins may belong to live pods).
    fn reconcile_pins(&self) {
        if !self.unreachable_pools().is_empty() {
            return;
        }
        let held: Vec<Attachment> = {
            let managers = self.managers.lock().unwrap_or_else(PoisonError::into_inner);
            managers.values().flat_map(|m| m.attachments()).collect()
        };
        for entry in std::fs::read_dir(&self.map_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let device = entry.file_name().to_string_lossy().into_owned();
            if !held.iter().any(|a| a.device == device) {
                tracing::warn!(device, "map pin without a bpfman program; removing");
                remove_map_dir(&entry.path());
            }
        }
    }
}

/// The [`ProgramManager`] calls, routed (inherent, so that callers holding
/// a `Programs` need not import the trait).
impl Programs {
    /// [`ProgramManager::attach`]: native attach (prepared attachments of native pools); bpfman pools
    /// attach through [`Programs::attach_in`].
    pub fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, ProgramError> {
        self.native.attach(req)
    }

    pub fn detach(&self, device: &str) -> Result<bool, ProgramError> {
        let Some(manager) = self.holder_known(device)? else {
            return self.native.detach(device);
        };
        let detached = manager.detach(device)?;
        remove_map_dir(&self.map_dir(device));
        Ok(detached)
    }

    /// bpfman's pin opened (`BPF_OBJ_GET`) for a bpfman attachment.
    pub fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, ProgramError> {
        match self.holder_known(device)? {
            Some(m) => m.xsk_map_fd(device),
            None => self.native.xsk_map_fd(device),
        }
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        let mut all = self.native.attachments();
        let managers: Vec<Arc<BpfmanManager>> = self
            .managers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for m in managers {
            all.extend(m.attachments().into_iter().map(|a| Attachment {
                map_dir: self.map_dir(&a.device),
                map_pin: self.map_dir(&a.device).join(XSKS_MAP_NAME),
                ..a
            }));
        }
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    /// Our pin of a bpfman XSKMAP, owned by `uid`, 0600.
    pub fn share_map_with(&self, device: &str, uid: u32) -> Result<(), ProgramError> {
        if self.holder(device).is_none() {
            return self.native.share_map_with(device, uid);
        }
        let pin = self.map_dir(device).join(XSKS_MAP_NAME);
        std::os::unix::fs::chown(&pin, Some(uid), None)
            .map_err(|e| ProgramError::syscall("chown", pin.display(), e))?;
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ProgramError::syscall("chmod", pin.display(), e))?;
        tracing::info!(device, uid, pin = %pin.display(), "shared bpfman's XSKMAP");
        Ok(())
    }
}

impl ProgramManager for Programs {
    fn attach(&self, req: &AttachRequest<'_>) -> Result<Attachment, ProgramError> {
        Programs::attach(self, req)
    }

    fn detach(&self, device: &str) -> Result<bool, ProgramError> {
        Programs::detach(self, device)
    }

    fn xsk_map_fd(&self, device: &str) -> Result<OwnedFd, ProgramError> {
        Programs::xsk_map_fd(self, device)
    }

    fn attachments(&self) -> Vec<Attachment> {
        Programs::attachments(self)
    }

    fn share_map_with(&self, device: &str, uid: u32) -> Result<(), ProgramError> {
        Programs::share_map_with(self, device, uid)
    }
}

/// What bpfman loads for a decision in a pool with `settings`: the chosen
/// image as chosen (the pool's pull policy and credentials), a file program
/// as the request names it, else the pool's image, else the built-in file.
fn load_choice(
    settings: &BpfmanPool,
    req: &AttachRequest<'_>,
    decided: &Decided<'_>,
) -> Result<LoadChoice, ProgramError> {
    let image = match (decided.image, req.program) {
        (Some(image), _) => Some(image),
        (None, Some(_)) => None,
        (None, None) => settings.image.as_deref(),
    };
    let bytecode = match image {
        Some(url) => Some(Bytecode::Image(Image {
            url: url.to_string(),
            pull_policy: pull_policy(settings.pull_policy),
            credentials: credentials(settings, url)?,
        })),
        None => None,
    };
    Ok(LoadChoice {
        bytecode,
        priority: Some(decided.priority),
        proceed_on: Some(settings.proceed_on.clone()),
        allocation: decided.allocation.to_string(),
    })
}

fn credentials(settings: &BpfmanPool, url: &str) -> Result<Option<Credentials>, ProgramError> {
    let Some(file) = &settings.credentials_file else {
        return Ok(None);
    };
    let found = afxdp_oci::registry_credentials(file, url).map_err(|e| {
        ProgramError::syscall(
            "read registry credentials",
            file.display(),
            std::io::Error::other(e),
        )
    })?;
    Ok(found.map(|(username, password)| Credentials { username, password }))
}

fn pull_policy(p: ImagePullPolicy) -> PullPolicy {
    match p {
        ImagePullPolicy::Always => PullPolicy::Always,
        ImagePullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
        ImagePullPolicy::Never => PullPolicy::Never,
    }
}

/// Removes a map pin directory (its pin first: bpffs refuses to remove a
/// directory that is not empty). Idempotent.
fn remove_map_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove map pin directory");
        }
    }
}

fn backend(e: BpfmanError) -> ProgramError {
    ProgramError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_config::ProceedOn;

    fn req(program: Option<&Path>) -> AttachRequest<'_> {
        AttachRequest {
            device: "eth0",
            ifindex: 2,
            mode: afxdp_program::XdpMode::Native,
            program,
            function: None,
        }
    }

    #[test]
    fn the_decision_reaches_bpfman_as_decided() {
        let settings = BpfmanPool {
            image: Some("r.example/pool@sha256:00".into()),
            pull_policy: ImagePullPolicy::Never,
            proceed_on: vec![ProceedOn::Drop],
            ..BpfmanPool::default()
        };
        let decided = Decided {
            image: Some("r.example/chosen:v2"),
            priority: 7,
            allocation: "a-1",
        };
        let c = load_choice(&settings, &req(None), &decided).expect("choice");
        let Some(Bytecode::Image(image)) = &c.bytecode else {
            panic!("{c:?}")
        };
        assert_eq!(
            (image.url.as_str(), image.pull_policy),
            ("r.example/chosen:v2", PullPolicy::Never)
        );
        assert_eq!(c.priority, Some(7));
        assert_eq!(c.proceed_on, Some(vec![ProceedOn::Drop]));
        assert_eq!(c.allocation, "a-1");
        // The built-in decision is the pool's image; a file program the file.
        let builtin = Decided {
            image: None,
            ..decided
        };
        let c = load_choice(&settings, &req(None), &builtin).expect("choice");
        assert!(
            matches!(&c.bytecode, Some(Bytecode::Image(i)) if i.url == "r.example/pool@sha256:00")
        );
        let c =
            load_choice(&settings, &req(Some(Path::new("/opt/x.o"))), &builtin).expect("choice");
        assert_eq!(c.bytecode, None, "the manager loads the request's file");
    }

    #[test]
    fn credentials_come_from_the_file_for_the_image_registry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(
            &file,
            r#"{"auths": {"r.example:5000": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        let settings = BpfmanPool {
            credentials_file: Some(file.clone()),
            ..BpfmanPool::default()
        };
        let c = credentials(&settings, "r.example:5000/x@sha256:00").expect("read");
        assert_eq!(c.map(|c| c.username), Some("u".to_string()));
        assert_eq!(
            credentials(&settings, "other.example/x:v1").expect("read"),
            None
        );
        std::fs::write(&file, "not json").unwrap();
        let err = credentials(&settings, "r.example:5000/x:v1").expect_err("bad file");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
