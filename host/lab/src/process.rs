//! afxdp-dp as its own process, the way a node runs it (the crash soak
//! SIGKILLs it): the lab's paths as its flags, every run's log appended to
//! one file, `/status` and `/readyz` read over its metrics address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{step, LabError, NodePaths, NODE_NAME};

/// A running afxdp-dp process.
pub struct DaemonProcess {
    child: Child,
    /// Its `--metrics-address`.
    pub metrics: SocketAddr,
    log: PathBuf,
}

/// A free loopback port (the kernel's pick, released for afxdp-dp to bind).
fn free_port() -> Result<SocketAddr, LabError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| step("free port")(e.to_string()))
}

impl DaemonProcess {
    /// Start `bin` on the lab's paths, logging (appended) to `log`.
    pub fn spawn(bin: &Path, paths: &NodePaths, log: &Path) -> Result<Self, LabError> {
        let metrics = free_port()?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| step("afxdp-dp log")(e.to_string()))?;
        let err = out
            .try_clone()
            .map_err(|e| step("afxdp-dp log")(e.to_string()))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&paths.config)
            .arg("--device-plugin-dir")
            .arg(&paths.device_plugin_dir)
            .arg("--pod-resources-socket")
            .arg(&paths.pod_resources)
            .arg("--state-dir")
            .arg(&paths.state_dir)
            .arg("--node-api-socket")
            .arg(&paths.node_api)
            .arg("--node-name")
            .arg(NODE_NAME)
            .arg("--policy-cache-dir")
            .arg(paths.root.join("policy-cache"))
            .arg("--kubeconfig")
            .arg(paths.root.join("kubeconfig"))
            .arg("--metrics-address")
            .arg(metrics.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| step(format!("start {}", bin.display()))(e.to_string()))?;
        Ok(Self {
            child,
            metrics,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (bounded) until `/readyz` says ready: config loaded and every
    /// pool registered with the kubelet. Blocks.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(step("afxdp-dp ready")(format!(
                    "exited with {exit}; log tail:\n{}",
                    self.log_tail(30)
                )));
            }
            let probe = afxdp_testnet::http::get(self.metrics, "/readyz", Duration::from_secs(1));
            if matches!(probe, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(step("afxdp-dp ready")(format!(
                    "not ready within {timeout:?} (last answer {probe:?}); log tail:\n{}",
                    self.log_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /status` (pools, devices, allocations). Blocks.
    pub fn status(&self) -> Result<serde_json::Value, LabError> {
        let (code, body) =
            afxdp_testnet::http::get(self.metrics, "/status", Duration::from_secs(5))
                .map_err(|e| step("afxdp-dp /status")(e.to_string()))?;
        if code != 200 {
            return Err(step("afxdp-dp /status")(format!("{code}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| step("afxdp-dp /status")(e.to_string()))
    }

    /// The last `lines` lines of the log file.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL, and reap it: nothing of its own shutdown runs.
    pub fn kill(mut self) {
        self.signal_and_reap(Signal::SIGKILL, Duration::from_secs(5));
    }

    /// SIGTERM (its clean shutdown), SIGKILL if it is not gone within 10 s.
    pub fn stop(mut self) {
        self.signal_and_reap(Signal::SIGTERM, Duration::from_secs(10));
    }

    fn signal_and_reap(&mut self, signal: Signal, grace: Duration) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    /// Last resort (a test panicked): never leave it running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
