//! A real bpfman daemon (`bpfman-rpc`) for tests, isolated from the host.
//!
//! bpfman keeps everything under `/run/bpfman` (its database, a bpffs with
//! the pins) and reads `/etc/bpfman/bpfman.toml`. [`Bpfmand::start`] gives it
//! a private mount namespace, held by a `sleep` process so that it outlives
//! a restart of the daemon:
//!
//! - a tmpfs on `/run` (its state, gone with the namespace);
//! - an overlay on `/etc` whose upper layer holds `bpfman/bpfman.toml`
//!   (`allow_unsigned = true`, `verify_enabled = false`): the host's `/etc`
//!   is never written;
//! - the socket in a temporary directory of the host (`--socket-path`);
//! - `LD_PRELOAD` of a shim (compiled here with `cc`) that makes
//!   `setrlimit(RLIMIT_MEMLOCK)` succeed: bpfman insists on raising it and
//!   the test process may lack `CAP_SYS_RESOURCE` (BPF memory is charged to
//!   the memory cgroup on current kernels, the limit does not matter).
//!
//! Paths bpfman reports (`map_pin_path`) are reached through
//! [`Bpfmand::root`] (`/proc/<pid>/root`); netns files of the host through
//! [`host_path`]. Drop kills the daemon and the holder: the namespace, its
//! tmpfs and bpffs (pins, so programs and links) go with them, also when
//! the test panics.

use std::{
    io::{BufRead, BufReader},
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The daemon's binary name (`cargo install --locked bpfman-api`).
pub const BPFMAN_RPC: &str = "bpfman-rpc";

const CONFIG: &str = "[signing]\nallow_unsigned = true\nverify_enabled = false\n";

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/resource.h>

/* bpfman raises RLIMIT_MEMLOCK and stops when it cannot; let it. */
int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
	int (*real)(__rlimit_resource_t, const struct rlimit *);
	if (resource == RLIMIT_MEMLOCK)
		return 0;
	real = dlsym(RTLD_NEXT, "setrlimit");
	return real(resource, rlim);
}

int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rlim)
{
	int (*real)(__rlimit_resource_t, const struct rlimit64 *);
	if (resource == RLIMIT_MEMLOCK)
		return 0;
	real = dlsym(RTLD_NEXT, "setrlimit64");
	return real(resource, rlim);
}
"#;

/// Where `bpfman-rpc` is: on `PATH`, else in cargo's bin directory.
pub fn bpfman_rpc() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|h| h.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|d| d.join(BPFMAN_RPC))
        .find(|p| p.is_file())
}

/// Compiles the eBPF C source `src` into the object `out` with clang, as
/// `host/program/build.rs` builds `bpf/` (`CLANG` names another compiler).
///
/// # Panics
/// clang missing, or the source does not compile (its stderr in the message).
pub fn compile_bpf(src: &Path, out: &Path) {
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let res = Command::new(std::env::var("CLANG").unwrap_or_else(|_| "clang".into()))
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", &multiarch, "-c",
        ])
        .arg(src)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run clang");
    assert!(
        res.status.success(),
        "clang {}: {}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// `path` of the host's mount namespace, as a process in another one (bpfman
/// in [`Bpfmand`]) reaches it: through this process's `/proc/<pid>/root`.
/// Symlinks are resolved here first (an absolute link target, such as
/// `/var/run` -> `/run`, would resolve in the other namespace).
pub fn host_path(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let relative = real.strip_prefix("/").unwrap_or(&real);
    Path::new("/proc")
        .join(std::process::id().to_string())
        .join("root")
        .join(relative)
}

/// A running `bpfman-rpc` in its own mount namespace; see the module docs.
pub struct Bpfmand {
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// More arguments of `bpfman-rpc` (`--csi-support`).
    args: Vec<String>,
    dir: tempfile::TempDir,
    holder: Child,
    rpc: Option<Child>,
}

impl Bpfmand {
    /// Starts bpfman, or `None` (the caller skips, saying so) when
    /// `bpfman-rpc` is not installed outside CI; in CI (`CI=true`) a missing
    /// daemon is a failure.
    pub fn start_or_skip() -> Option<Bpfmand> {
        Bpfmand::start_or_skip_with_env(&[])
    }

    /// [`Bpfmand::start_or_skip`] with more environment for the daemon.
    pub fn start_or_skip_with_env(env: &[(&str, &str)]) -> Option<Bpfmand> {
        if bpfman_rpc().is_none() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{BPFMAN_RPC} is missing (tests/install.sh installs it: cargo install --locked bpfman-api)"
            );
            eprintln!("skipping: {BPFMAN_RPC} not installed");
            return None;
        }
        Some(Bpfmand::start_with_env(env))
    }

    /// Starts bpfman and waits (up to 30 s) until its socket accepts.
    ///
    /// # Panics
    /// Not root, `bpfman-rpc` missing, the namespace or the shim cannot be
    /// made, or the daemon does not come up (its log is in the message).
    pub fn start() -> Bpfmand {
        Bpfmand::start_with_env(&[])
    }

    /// [`Bpfmand::start`] with more environment for the daemon (e.g.
    /// `SSL_CERT_FILE`, the CA bpfman trusts when it pulls images).
    ///
    /// # Panics
    /// As [`Bpfmand::start`].
    pub fn start_with_env(env: &[(&str, &str)]) -> Bpfmand {
        crate::require_root();
        let bin = bpfman_rpc().unwrap_or_else(|| {
            panic!("{BPFMAN_RPC} is missing (cargo install --locked bpfman-api; tests/install.sh)")
        });
        let dir = tempfile::Builder::new()
            .prefix("afxdp-bpfman-")
            .tempdir()
            .expect("tempdir");
        write_etc(dir.path());
        build_shim(dir.path());
        let holder = spawn_holder(dir.path());
        let mut d = Bpfmand {
            bin,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: Vec::new(),
            dir,
            holder,
            rpc: None,
        };
        d.start_rpc();
        d
    }

    /// [`Bpfmand::start_or_skip`] with bpfman's CSI node plugin
    /// (`--csi-support`, `KUBE_NODE_NAME=node`) serving on
    /// [`Bpfmand::csi_socket`].
    pub fn start_csi_or_skip(node: &str) -> Option<Bpfmand> {
        let mut d = Bpfmand::start_or_skip_with_env(&[("KUBE_NODE_NAME", node)])?;
        d.kill();
        d.args = vec!["--csi-support".into()];
        d.start_rpc();
        Some(d)
    }

    /// bpfman's CSI socket (`/run/bpfman/csi/csi.sock` in its namespace),
    /// reached from here.
    pub fn csi_socket(&self) -> PathBuf {
        self.path(Path::new("/run/bpfman/csi/csi.sock"))
    }

    /// bpfman-rpc's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock/bpfman.sock")
    }

    /// The namespace's root as reached from here: prefix of the paths bpfman
    /// reports.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
    }

    /// `path` as bpfman reports it (`/run/bpfman/...`), reached from here.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.root().join(path.strip_prefix("/").unwrap_or(path))
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bpfman.log")).unwrap_or_default()
    }

    /// Kills the daemon (SIGKILL: a crash); its namespace and state stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.rpc.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Kills the daemon and starts it again in the same namespace (its
    /// database and pins survive, as over a restart of bpfman's pod).
    pub fn restart(&mut self) {
        self.kill();
        self.start_rpc();
    }

    fn start_rpc(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bpfman.log"))
            .expect("bpfman log file");
        let log2 = log.try_clone().expect("dup log");
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--"])
            .arg(&self.bin)
            .args(["--timeout", "0", "--socket-path"])
            .arg(self.socket())
            .args(&self.args)
            .env("LD_PRELOAD", self.dir.path().join("shim.so"))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn nsenter bpfman-rpc");
        self.rpc = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.rpc.as_mut().map(|c| c.try_wait()) {
                panic!("bpfman-rpc exited ({status}) at start:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "bpfman-rpc not accepting on {} after 30 s:\n{}",
            self.socket().display(),
            self.log()
        );
    }
}

impl Drop for Bpfmand {
    fn drop(&mut self) {
        self.kill();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The overlay's upper layer: `bpfman/bpfman.toml`; and the socket dir.
fn write_etc(dir: &Path) {
    for d in ["etc-upper/bpfman", "etc-work", "sock"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::write(dir.join("etc-upper/bpfman/bpfman.toml"), CONFIG).expect("write bpfman.toml");
}

fn build_shim(dir: &Path) {
    let src = dir.join("shim.c");
    std::fs::write(&src, SHIM).expect("write shim.c");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(dir.join("shim.so"))
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc (build-essential)");
    assert!(
        out.status.success(),
        "cc failed building the setrlimit shim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `unshare -m` running the mounts, then `sleep` holding the namespace.
fn spawn_holder(dir: &Path) -> Child {
    let script = format!(
        "set -e; \
         mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc; \
         mount -t tmpfs -o mode=0755 tmpfs /run; \
         echo ready; exec sleep 86400",
        d = dir.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("spawn unshare");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait unshare");
        panic!(
            "cannot make bpfman's mount namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child
}

/// SIGKILL the child when the thread that started it dies (a test process
/// killed outright leaves no daemon behind).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
