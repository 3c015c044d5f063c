//! The precompiled-artifact disk cache.
//!
//! One file per (policy digest, wasmtime version, engine compatibility hash):
//! `<cache_dir>/<digest-hex>-wasmtime<major>-<compat>.cwasm`. Only this host
//! writes it: atomically (temp file in the same directory, fsync, rename), mode
//! 0600. A file is only deserialized when it is a regular file owned by this
//! process's user, not writable by group or others, and its embedded SHA-256
//! matches its payload; anything else is treated as a miss, recompiled and
//! replaced.
//!
//! Why the checks: `Component::deserialize` trusts its input (it maps the
//! bytes as executable code). Wasmtime itself refuses artifacts from another
//! version or engine configuration; the checksum catches corruption, the
//! ownership and mode checks keep other users out.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::PolicyError;

/// Major version of the wasmtime this crate is built with (the exact version
/// is part of the engine compatibility hash).
const WASMTIME: &str = "wasmtime48";
/// File header: magic, then the SHA-256 of the payload.
const MAGIC: &[u8; 8] = b"AFXPCW01";
const HEADER: usize = MAGIC.len() + 32;

/// A [`Hasher`] feeding SHA-256, so the compatibility hash is stable across
/// processes and Rust versions (`DefaultHasher` promises neither).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// 16 hex digits identifying which precompiled artifacts `engine` can run.
pub(crate) fn compat_hash(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..8])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache directory.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

/// Why a cached artifact was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheMiss {
    #[error("not cached")]
    Absent,
    #[error("unusable cached artifact: {0}")]
    Unusable(String),
}

impl ArtifactCache {
    /// Open (create, mode 0700) the cache directory.
    pub(crate) fn open(dir: &Path) -> Result<Self, PolicyError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PolicyError::CacheDir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The artifact path for a policy digest (hex part) on this engine.
    pub(crate) fn path(&self, digest_hex: &str, compat: &str) -> PathBuf {
        self.dir
            .join(format!("{digest_hex}-{WASMTIME}-{compat}.cwasm"))
    }

    /// Load a cached artifact.
    pub(crate) fn load(&self, engine: &Engine, path: &Path) -> Result<Component, CacheMiss> {
        let unusable = |s: String| CacheMiss::Unusable(s);
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheMiss::Absent),
            Err(e) => return Err(unusable(format!("stat: {e}"))),
        };
        if !meta.file_type().is_file() {
            return Err(unusable("not a regular file".into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(unusable(format!("owned by uid {}, not {euid}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unusable(format!(
                "mode {:o} is writable by group or others",
                meta.mode() & 0o777
            )));
        }
        let bytes = fs::read(path).map_err(|e| unusable(format!("read: {e}")))?;
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(unusable("bad header".into()));
        }
        let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
        if Sha256::digest(payload).as_slice() != sum {
            return Err(unusable("checksum mismatch".into()));
        }
        // SAFETY: the payload is what `Component::serialize` produced in this
        // host (see the module docs: written only by this host, owned by
        // this user, not group/other-writable, checksum verified). Wasmtime
        // checks that it was compiled by a compatible engine.
        unsafe { Component::deserialize(engine, payload) }
            .map_err(|e| unusable(format!("deserialize: {e}")))
    }

    /// Store `component`'s artifact at `path`, atomically, mode 0600.
    pub(crate) fn store(&self, path: &Path, component: &Component) -> io::Result<()> {
        let payload = component.serialize().map_err(io::Error::other)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".cwasm")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(&payload))?;
        tmp.write_all(&payload)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
