//! Content-addressed disk cache (synchronous; the fetcher calls it from
//! `spawn_blocking`).
//!
//! Layout under the cache directory (dirs 0700, files 0600, every file
//! written to a temp name, fsynced, then renamed):
//!
//! ```text
//! blobs/sha256/<hex>        manifests, Wasm layers, bytecode image configs
//!                           and layers (tar+gzip), named by their digest
//! refs/sha256/<hex>         manifest digest → layer digest (an index; the
//!                           manifest blob remains the source of truth)
//! tags/<sha256 of ref>      "registry/repo:tag" → manifest digest
//! objects/sha256/<hex>/<name.o>
//!                           the eBPF object extracted from bytecode layer
//!                           <hex>, under its name in the layer, for program
//!                           managers that load by path
//! ```
//!
//! Every read re-hashes the blob; a blob that no longer matches its name is
//! deleted and reported as absent, so the caller fetches it again. An object
//! file is derived data: it is rewritten from the (verified) layer whenever
//! its bytes differ.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

use crate::artifact::{sha256_digest, validate_manifest, Artifact};
use crate::reference::{digest_hex, validate_digest};
use crate::OciError;

/// An artifact found in the cache, fully re-verified and decoded.
pub(crate) struct CachedArtifact<A> {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub path: PathBuf,
    pub content: A,
}

#[derive(Clone, Debug)]
pub(crate) struct Cache {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Creates the directory tree (0700) if needed.
    pub(crate) fn open(root: &Path) -> Result<Self, OciError> {
        let c = Cache {
            root: root.to_path_buf(),
        };
        for d in [
            root.to_path_buf(),
            c.root.join("blobs/sha256"),
            c.root.join("refs/sha256"),
            c.root.join("tags"),
            c.root.join("objects/sha256"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|e| OciError::io("create dir", &d, e))?;
        }
        for d in [
            "blobs",
            "blobs/sha256",
            "refs",
            "refs/sha256",
            "tags",
            "objects",
            "objects/sha256",
        ] {
            let d = c.root.join(d);
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .map_err(|e| OciError::io("chmod", &d, e))?;
        }
        Ok(c)
    }

    /// Path of the blob named `digest` (`sha256:<hex>`, validated by the caller).
    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest_hex(digest))
    }

    fn ref_path(&self, manifest_digest: &str) -> PathBuf {
        self.root
            .join("refs/sha256")
            .join(digest_hex(manifest_digest))
    }

    fn tag_path(&self, tag_ref: &str) -> PathBuf {
        self.root
            .join("tags")
            .join(digest_hex(&sha256_digest(tag_ref.as_bytes())))
    }

    /// Writes `bytes` to `path` atomically with mode 0600.
    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| OciError::io("create", &tmp, e))?;
            f.write_all(bytes)
                .map_err(|e| OciError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| OciError::io("fsync", &tmp, e))?;
            fs::rename(&tmp, path).map_err(|e| OciError::io("rename into", path, e))?;
            // Make the rename durable.
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| OciError::io("fsync dir", dir, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn remove(path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove cache file"),
        }
    }

    /// Reads a file; `None` if it does not exist.
    fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, OciError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OciError::io("read", path, e)),
        }
    }

    /// Stores a blob under its digest (the caller verified it).
    pub(crate) fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, OciError> {
        let p = self.blob_path(digest);
        Self::write_atomic(&p, bytes)?;
        Ok(p)
    }

    /// Stores the object extracted from layer `layer_digest` as
    /// `objects/sha256/<hex>/<file_name>` (0600, atomically), unless the file
    /// already holds exactly these bytes. `file_name` is one path component
    /// (checked by the decoder).
    pub(crate) fn put_object(
        &self,
        layer_digest: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, OciError> {
        let dir = self
            .root
            .join("objects/sha256")
            .join(digest_hex(layer_digest));
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .or_else(|e| match e.kind() {
                ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| OciError::io("create dir", &dir, e))?;
        let p = dir.join(file_name);
        let intact = Self::read_opt(&p)?.is_some_and(|old| old == bytes)
            && fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600);
        if !intact {
            debug!(path = %p.display(), "writing object");
            Self::write_atomic(&p, bytes)?;
        }
        Ok(p)
    }

    /// Reads a blob and re-hashes it; a blob that fails is deleted and `None`
    /// is returned.
    pub(crate) fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let p = self.blob_path(digest);
        let Some(bytes) = Self::read_opt(&p)? else {
            return Ok(None);
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            warn!(path = %p.display(), expected = digest, %actual,
                "cached blob fails verification; deleting it");
            Self::remove(&p);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Records manifest → layer in the index.
    pub(crate) fn put_ref(
        &self,
        manifest_digest: &str,
        layer_digest: &str,
    ) -> Result<(), OciError> {
        Self::write_atomic(&self.ref_path(manifest_digest), layer_digest.as_bytes())
    }

    /// Records a tag resolution.
    pub(crate) fn put_tag(&self, tag_ref: &str, manifest_digest: &str) -> Result<(), OciError> {
        Self::write_atomic(&self.tag_path(tag_ref), manifest_digest.as_bytes())
    }

    /// The cached resolution of a tag, if any.
    pub(crate) fn get_tag(&self, tag_ref: &str) -> Result<Option<String>, OciError> {
        let p = self.tag_path(tag_ref);
        let Some(bytes) = Self::read_opt(&p)? else {
            return Ok(None);
        };
        match String::from_utf8(bytes) {
            Ok(d) if validate_digest(d.trim()).is_ok() => Ok(Some(d.trim().to_string())),
            _ => {
                warn!(path = %p.display(), "corrupt tag entry; deleting it");
                Self::remove(&p);
                Ok(None)
            }
        }
    }

    /// Loads a whole artifact of kind `A` by manifest digest: the manifest
    /// blob (hashed and validated), the index entry (repaired if it disagrees
    /// with the manifest), the config blob when the kind needs it and the
    /// layer blob (hashed), then decodes them. `None` if anything is missing
    /// or was corrupt (and has been deleted). Verified blobs that do not
    /// validate or decode as `A` give that (final) error: they are immutable
    /// under their digests, so the registry would serve the same.
    pub(crate) fn load<A: Artifact>(
        &self,
        reference: &str,
        manifest_digest: &str,
    ) -> Result<Option<CachedArtifact<A>>, OciError> {
        let Some(manifest) = self.get_blob(manifest_digest)? else {
            debug!(reference, manifest_digest, "manifest not in cache");
            return Ok(None);
        };
        let layout = validate_manifest(A::KIND, reference, &manifest)?;
        let layer = layout.layer;
        let indexed = Self::read_opt(&self.ref_path(manifest_digest))?;
        if indexed.as_deref() != Some(layer.digest.as_bytes()) {
            debug!(reference, manifest_digest, "repairing cache index entry");
            self.put_ref(manifest_digest, &layer.digest)?;
        }
        let config = if A::KIND.needs_config() {
            let Some(c) = self.get_blob(&layout.config.digest)? else {
                debug!(reference, config = %layout.config.digest, "config not in cache");
                return Ok(None);
            };
            Some(c)
        } else {
            None
        };
        let Some(bytes) = self.get_blob(&layer.digest)? else {
            debug!(reference, layer = %layer.digest, "layer not in cache");
            return Ok(None);
        };
        let content = A::decode(reference, config.as_deref(), &bytes).inspect_err(|e| {
            warn!(reference, layer = %layer.digest, error = %e, "cached artifact does not decode");
        })?;
        Ok(Some(CachedArtifact {
            layer: bytes,
            path: self.blob_path(&layer.digest),
            layer_digest: layer.digest,
            content,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_atomic_0600_and_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(&dir.path().join("cache")).unwrap();
        let data = b"\0asm\x0d\0\x01\0";
        let d = sha256_digest(data);
        let p = c.put_blob(&d, data).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let meta = fs::metadata(dir.path().join("cache/blobs/sha256")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(c.get_blob(&d).unwrap().as_deref(), Some(&data[..]));
        // No temp files left behind.
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);

        fs::write(&p, b"tampered").unwrap();
        assert!(c.get_blob(&d).unwrap().is_none());
        assert!(!p.exists(), "a blob failing verification is deleted");
    }

    #[test]
    fn tags_round_trip_and_corrupt_entries_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = sha256_digest(b"m");
        c.put_tag("r/x:v1", &d).unwrap();
        assert_eq!(c.get_tag("r/x:v1").unwrap(), Some(d));
        assert_eq!(c.get_tag("r/x:v2").unwrap(), None);
        fs::write(c.tag_path("r/x:v1"), "garbage").unwrap();
        assert_eq!(c.get_tag("r/x:v1").unwrap(), None);
    }
}
