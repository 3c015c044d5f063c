//! A real OCI registry (Debian's `docker-registry`) on 127.0.0.1 for tests:
//! a random free port, its own storage, killed and reaped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether a test may use the tool `bin`: true when it is installed; false
/// (the caller skips, saying so) when it is missing on a developer machine;
/// a panic when it is missing in CI (`CI=true`), where tests fail rather
/// than skip.
pub fn installed_or_skip(bin: &str) -> bool {
    present_or_skip(bin, "tests/install.sh installs it")
}

/// [`installed_or_skip`] for a tool that `hint` says how to get.
pub fn present_or_skip(bin: &str, hint: &str) -> bool {
    if Path::new(bin).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{bin} is missing ({hint})"
    );
    eprintln!("skipping: {bin} not installed ({hint})");
    false
}

/// A running registry; killed and reaped on drop (also on panic).
pub struct Registry {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
    htpasswd: Option<PathBuf>,
}

impl Registry {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// [`Registry::start`], or `None` (skip) when `docker-registry` is not
    /// installed outside CI (see [`installed_or_skip`]).
    pub fn start_or_skip(htpasswd: Option<&Path>) -> Option<Registry> {
        installed_or_skip(REGISTRY_BIN).then(|| Registry::start(htpasswd))
    }

    /// Starts a registry; `htpasswd` enables Basic auth with that file.
    ///
    /// # Panics
    /// When `docker-registry` is missing or does not come up in 20 s (tests
    /// fail, not skip: `tests/install.sh` installs it).
    pub fn start(htpasswd: Option<&Path>) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing (install docker-registry: tests/install.sh)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let auth = auth_section(htpasswd);
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n\
             {auth}",
            root = dir.path().join("storage").display(),
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let reg = Registry {
            child: Some(child),
            addr,
            dir,
            htpasswd: htpasswd.map(Path::to_path_buf),
        };
        reg.wait_ready(Duration::from_secs(20));
        reg
    }

    /// Waits until `GET /v2/` gets any HTTP answer (200, or 401 with auth).
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && buf.starts_with(b"HTTP/1.")
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!(
                    "registry on {} not ready within {limit:?}; log:\n{log}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry (the storage stays until the guard is dropped).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// The registry config's `auth` section: Basic auth with the `htpasswd`
/// file, or none.
fn auth_section(htpasswd: Option<&Path>) -> String {
    htpasswd.map_or(String::new(), |p| {
        format!(
            "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
            p.display()
        )
    })
}

/// Where Debian's apache2-utils installs `htpasswd`.
pub const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";

/// Writes an htpasswd file at `path` with one `user` (bcrypt, as
/// `docker-registry` requires) for [`Registry::start`].
///
/// # Panics
/// `htpasswd` missing or failing (tests/install.sh installs apache2-utils).
pub fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new(HTPASSWD_BIN)
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd (tests/install.sh installs apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(path, &out.stdout).expect("write htpasswd file");
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A registry's storage served again over HTTPS, with a certificate for
/// 127.0.0.1 made here (bpfman pulls only over HTTPS: give it [`Self::ca`]
/// as `SSL_CERT_FILE`). Killed and reaped on drop.
pub struct HttpsMirror {
    child: Child,
    addr: String,
    ca: PathBuf,
}

impl HttpsMirror {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The self-signed certificate to trust.
    pub fn ca(&self) -> &Path {
        &self.ca
    }
}

impl Drop for HttpsMirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Serves this registry's storage over HTTPS too (push over plain HTTP
    /// to [`Registry::addr`], pull over HTTPS from the mirror), with the
    /// same Basic auth as the registry when it was started with one.
    ///
    /// # Panics
    /// `openssl` missing or failing, or the mirror not up within 20 s.
    pub fn https_mirror(&self) -> HttpsMirror {
        let (key, ca) = (
            self.dir.path().join("tls-key.pem"),
            self.dir.path().join("tls-cert.pem"),
        );
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=afxdp-test-registry"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("run openssl (tests/install.sh installs it)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {addr}\n  tls:\n    certificate: {ca}\n    key: {key}\n\
             {auth}",
            root = self.dir.path().join("storage").display(),
            ca = ca.display(),
            key = key.display(),
            auth = auth_section(self.htpasswd.as_deref()),
        );
        let cfg_path = self.dir.path().join("config-https.yml");
        std::fs::write(&cfg_path, config).expect("write registry config");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn docker-registry");
        let mirror = HttpsMirror { child, addr, ca };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&mirror.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "HTTPS registry on {} not up",
                mirror.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mirror
    }
}
