//! Driving CNI plugins through libcni, as Multus, containerd and CRI-O do:
//! the Go harness in `tests/libcni` (built once per test process by its
//! `build.sh`, cached under `target/libcni`) runs each command with libcni's
//! config parsing, chaining, result cache and version conversion.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where Go is looked for (`$GO` overrides).
pub const DEFAULT_GO: &str = "/usr/local/go/bin/go";

/// One libcni call's outcome: the harness's JSON (the ADD result as
/// `raw`/`rawVersion`/`current`, or `error`/`code`/`msg` on failure).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub success: bool,
    pub json: serde_json::Value,
    pub stderr: String,
}

impl Outcome {
    /// The plugin's CNI error code libcni passed up (0: none).
    pub fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }

    /// libcni's error text.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// The pod side of one attachment (`CNI_CONTAINERID`, `CNI_NETNS`,
/// `CNI_IFNAME`, and the pod named in `CNI_ARGS`).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub pod: (String, String),
}

impl Attachment {
    /// `container` of pod `lab/<container>` in `netns` as `ifname`.
    pub fn new(container: &str, netns: &Path, ifname: &str) -> Self {
        Self {
            container: container.to_string(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            pod: ("lab".to_string(), container.to_string()),
        }
    }

    fn flags(&self) -> Vec<String> {
        let (namespace, pod) = &self.pod;
        vec![
            "-container".into(),
            self.container.clone(),
            "-netns".into(),
            self.netns.display().to_string(),
            "-ifname".into(),
            self.ifname.clone(),
            "-args".into(),
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}"),
        ]
    }
}

/// A runtime calling plugins through libcni: its own CNI bin dir (the
/// plugin under test as `afxdp-cni` and as `afxdp`, the type upstream's
/// NADs name, then Debian's plugins), result cache and working directory
/// (a relative `logFile` lands there). Attachments it added and did not
/// delete get a DEL when it drops, also when a test panics; drop it before
/// their netns.
pub struct Libcni {
    harness: PathBuf,
    dir: tempfile::TempDir,
    cni_path: String,
    calls: AtomicUsize,
    added: Mutex<Vec<Vec<String>>>,
}

impl Libcni {
    /// A runtime calling plugins with `harness` (see [`harness`]), `plugin`
    /// (the afxdp-cni binary) on its CNI path.
    pub fn new(harness: &Path, plugin: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("afxdp-libcni-")
            .tempdir()
            .expect("libcni runtime dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("CNI bin dir");
        for name in ["afxdp-cni", "afxdp"] {
            std::os::unix::fs::symlink(plugin, bin.join(name)).expect("plugin link");
        }
        let cni_path = format!("{}:/usr/lib/cni", bin.display());
        Self {
            harness: harness.to_path_buf(),
            dir,
            cni_path,
            calls: AtomicUsize::new(0),
            added: Mutex::new(Vec::new()),
        }
    }

    /// The working directory plugins run in.
    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    /// libcni's result cache (a runtime's `/var/lib/cni`).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `AddNetworkList` (a conflist) or `AddNetwork` (a single config).
    pub fn add(&self, conf: &serde_json::Value, a: &Attachment) -> Outcome {
        let file = self.conf_file(conf);
        let out = self.run("add", &file, a.flags());
        if out.success {
            let mut args = vec!["-conf".to_string(), file.display().to_string()];
            args.extend(a.flags());
            self.added.lock().expect("added").push(args);
        }
        out
    }

    /// `CheckNetworkList` / `CheckNetwork`.
    pub fn check(&self, conf: &serde_json::Value, a: &Attachment) -> Outcome {
        self.run("check", &self.conf_file(conf), a.flags())
    }

    /// `DelNetworkList` / `DelNetwork`.
    pub fn del(&self, conf: &serde_json::Value, a: &Attachment) -> Outcome {
        let out = self.run("del", &self.conf_file(conf), a.flags());
        if out.success {
            let flags = a.flags();
            self.added
                .lock()
                .expect("added")
                .retain(|args| args[2..] != flags[..]);
        }
        out
    }

    /// `GetStatusNetworkList`.
    pub fn status(&self, conf: &serde_json::Value) -> Outcome {
        self.run("status", &self.conf_file(conf), Vec::new())
    }

    /// `GCNetworkList` with `valid` as the valid attachments, libcni's
    /// cache in `cache_dir` (`None`: this runtime's).
    pub fn gc(
        &self,
        conf: &serde_json::Value,
        valid: &[&Attachment],
        cache_dir: Option<&Path>,
    ) -> Outcome {
        let valid: Vec<String> = valid
            .iter()
            .map(|a| format!("{}/{}", a.container, a.ifname))
            .collect();
        let mut flags = vec!["-valid".to_string(), valid.join(",")];
        if let Some(cache) = cache_dir {
            flags.extend(["-cache-dir".to_string(), cache.display().to_string()]);
        }
        self.run("gc", &self.conf_file(conf), flags)
    }

    /// Write `conf` to a file of its own (kept: a DEL on drop reads it).
    fn conf_file(&self, conf: &serde_json::Value) -> PathBuf {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.path().join(format!("conf-{n}.json"));
        std::fs::write(&file, conf.to_string()).expect("write the network config");
        file
    }

    fn run(&self, cmd: &str, conf: &Path, flags: Vec<String>) -> Outcome {
        let mut args = vec!["-conf".to_string(), conf.display().to_string()];
        args.extend(flags);
        self.exec(cmd, &args)
    }

    fn exec(&self, cmd: &str, args: &[String]) -> Outcome {
        // Later flags win: a GC's own -cache-dir overrides this one.
        let out = Command::new(&self.harness)
            .current_dir(self.dir.path())
            .args(["-cmd", cmd, "-path", &self.cni_path, "-cache-dir"])
            .arg(self.cache_dir())
            .args(args)
            .output()
            .expect("run the libcni harness");
        let stdout = String::from_utf8_lossy(&out.stdout);
        Outcome {
            success: out.status.success(),
            json: serde_json::from_str(stdout.trim())
                .unwrap_or_else(|_| serde_json::json!({ "error": stdout.trim() })),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Libcni {
    /// DEL every attachment still added (a test that failed half-way).
    fn drop(&mut self) {
        let added = std::mem::take(&mut *self.added.lock().unwrap_or_else(|e| e.into_inner()));
        for args in added.iter().rev() {
            let out = self.exec("del", args);
            if !out.success {
                eprintln!("libcni: cleanup DEL {args:?} failed: {out:?}");
            }
        }
    }
}

/// The harness binary, built once per process (`tests/libcni/build.sh`:
/// nothing to do when built), or `None` when Go is missing outside CI (the
/// caller skips, saying so).
///
/// # Panics
/// Go missing in CI (`CI=true`), or the harness does not build.
pub fn harness() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let go = std::env::var("GO").unwrap_or_else(|_| DEFAULT_GO.to_string());
            let hint = "Go builds the libcni harness; set GO=/path/to/go";
            if !afxdp_testnet::registry::present_or_skip(&go, hint) {
                return None;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("libcni/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .env("GO", &go)
                .output()
                .expect("run tests/libcni/build.sh");
            assert!(
                out.status.success(),
                "building the libcni harness failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .clone()
}
