//! Persisted allocations, written crash-safe (temp file, fsync, rename, fsync dir).
//!
//! The file is the daemon's memory across restarts: at start it is reconciled with
//! what the kernel still holds (see [`crate::reconcile`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sharing::SharingKind;

/// Current on-disk format version.
pub const STATE_VERSION: u32 = 1;

/// One device handed to a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub pool: String,
    pub device: String,
    pub ifindex: u32,
    pub program_id: u32,
    /// Unique on the node (`<device>-<unix nanos, hex>`); a bpfman pool's
    /// program carries it in its metadata, which is how a start tells the
    /// program of this allocation from a leftover. Empty in older files.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub allocation_id: String,
    pub sharing: SharingKind,
    /// Host directory mounted into the container at `/tmp/afxdp_dp/<device>`.
    pub host_dir: PathBuf,
    /// Queue ids the pod's sockets bind (empty: all).
    pub queues: Vec<u32>,
    pub channels: u32,
    /// Unix seconds.
    pub allocated_at: u64,
    /// The device as it was when allocated (it lives in a pod netns afterwards,
    /// out of the daemon's sight).
    pub netdev: afxdp_netdev::NetDev,
    /// Who decided program and queues: `policy sha256:...` or `default (...)`.
    #[serde(default)]
    pub decided_by: String,
    /// The program attached: `builtin`, `file <path>` or
    /// `image <registry/repo@sha256:...>`, with the function when named.
    #[serde(default)]
    pub program: String,
    /// `namespace/name` of the pod the allocation was decided for, when
    /// afxdp-dp could tell at Allocate (pools with a policy); empty otherwise.
    #[serde(default)]
    pub pod: String,
    /// The container CNI ADD plumbed the device into (see [`crate::agent::claim`]);
    /// `None` until the first ADD.
    #[serde(default)]
    pub claim: Option<crate::agent::Claim>,
    /// Rebuilt from the kernel after the state file was unreadable (see
    /// [`crate::recover`]): who plumbed it is unknown, so a CNI DEL from any
    /// container releases it.
    #[serde(default)]
    pub recovered: bool,
    /// A CNI DEL released it (persisted before the DEL was answered); the
    /// detach may not have run yet. A start finishes it.
    #[serde(default)]
    pub releasing: bool,
    /// `cdq` pools: the subfunction created for this allocation (its netdev
    /// is the one attached and handed to the pod); a release deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subfunction: Option<crate::subfunction::Subfunction>,
}

impl Allocation {
    /// The netdev carrying the program and handed to the pod: the device
    /// itself, or in a `cdq` pool its subfunction's netdev.
    pub fn attached_device(&self) -> &str {
        self.subfunction
            .as_ref()
            .map_or(self.device.as_str(), |sf| sf.netdev.as_str())
    }

    /// A fresh [`Allocation::allocation_id`] for `device`.
    pub fn new_id(device: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{device}-{nanos:x}-{n}")
    }

    /// Seconds since the epoch, for `allocated_at`.
    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    /// Keyed by device name (the device-plugin device ID).
    pub allocations: BTreeMap<String, Allocation>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}, this afxdp-dp reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The state file at `<state-dir>/allocations.json`.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("allocations.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state; a missing file is an empty state.
    pub fn load(&self) -> Result<StateFile, StateError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StateFile {
                    version: STATE_VERSION,
                    ..Default::default()
                })
            }
            Err(e) => return Err(io_err("read", &self.path)(e)),
        };
        let state: StateFile =
            serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path: self.path.clone(),
                found: state.version,
            });
        }
        Ok(state)
    }

    /// Move an unreadable state file out of the way, keeping it for the
    /// operator: `allocations.json.unreadable-<unix secs>`.
    pub fn set_aside(&self) -> Result<PathBuf, StateError> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".unreadable-{}", Allocation::now()));
        let aside = PathBuf::from(name);
        fs::rename(&self.path, &aside).map_err(io_err("rename", &self.path))?;
        Ok(aside)
    }

    /// Replace the state atomically: a crash leaves either the old or the new file.
    pub fn save(&self, state: &StateFile) -> Result<(), StateError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err("create dir", dir))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: tmp.clone(),
            source,
        })?;
        {
            let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(&body).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err("rename", &self.path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync dir", dir))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(dev: &str) -> Allocation {
        Allocation {
            pool: "p".into(),
            device: dev.into(),
            ifindex: 7,
            program_id: 42,
            allocation_id: String::new(),
            sharing: SharingKind::Uds,
            host_dir: PathBuf::from("/run/afxdp/uds").join(dev),
            queues: vec![0, 1],
            channels: 0,
            allocated_at: 1,
            netdev: afxdp_netdev::NetDev {
                driver: Some("veth".into()),
                mac: Some("02:00:00:00:00:01".into()),
                rx_queues: 4,
                tx_queues: 4,
                ..afxdp_netdev::NetDev::for_test(dev, 7)
            },
            decided_by: "default (no policy)".into(),
            program: "builtin".into(),
            pod: String::new(),
            claim: None,
            recovered: false,
            releasing: false,
            subfunction: None,
        }
    }

    #[test]
    fn missing_file_is_empty_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = StateStore::new(dir.path()).load().expect("load");
        assert!(s.allocations.is_empty());
        assert_eq!(s.version, STATE_VERSION);
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::new(dir.path());
        let mut state = StateFile {
            version: STATE_VERSION,
            ..Default::default()
        };
        state.allocations.insert("eth1".into(), sample("eth1"));
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), state);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("allocations.json")]);
    }

    #[test]
    fn corrupt_and_future_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::new(dir.path());
        fs::write(store.path(), b"{not json").expect("write");
        let err = store.load().expect_err("corrupt").to_string();
        assert!(
            err.contains("allocations.json") && err.contains("not valid"),
            "{err}"
        );
        fs::write(store.path(), br#"{"version":99,"allocations":{}}"#).expect("write");
        let err = store.load().expect_err("version").to_string();
        assert!(err.contains("version 99"), "{err}");
    }
}
