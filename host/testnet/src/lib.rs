//! Test and lab tooling for afxdp-rs: RAII guards over real kernel objects.
//!
//! [`Netns`] and [`VethPair`] create network namespaces and veth pairs with unique names and
//! remove them on drop, also when the test panics. [`send_udp`] sends a known number of UDP
//! packets from inside a namespace. Everything shells out to `ip` (iproute2) except the
//! traffic, which uses a thread that `setns()`es into the namespace.
//!
//! Not used by the daemon or the CNI. Needs root: call [`require_root`] first so that a test
//! run without privileges fails loudly instead of passing vacuously.
#![deny(missing_docs)]

pub mod apiserver;
pub mod bpfman;
pub mod frame;
pub mod http;
pub mod packet_sender;
mod pins;
pub mod pod;
pub mod registry;

pub use pins::PinRoot;

/// The built example policy component `name` (e.g. `numa-spread`):
/// `$AFXDP_POLICY_WASM_DIR/afxdp_policy_<name>.wasm`, else under
/// `policies/target/wasm32-wasip2/release` (tests/all.sh builds them first:
/// `cargo build --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release`).
///
/// # Panics
/// When the file is not there, saying how to build it.
pub fn policy_component(name: &str) -> PathBuf {
    let dir = std::env::var_os("AFXDP_POLICY_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../policies/target/wasm32-wasip2/release")
        });
    let file = dir.join(format!("afxdp_policy_{}.wasm", name.replace('-', "_")));
    assert!(
        file.is_file(),
        "{} missing: build the policies first (cargo build --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release; tests/all.sh does)",
        file.display()
    );
    file
}

/// The built test guest `name` (`panic`, `infinite-loop`, ... of
/// `host/policy/tests/guests`): `$AFXDP_TEST_GUEST_DIR/guest_<name>.wasm`,
/// else under the workspace's `target/policy-guests` (tests/all.sh builds
/// them first, as afxdp-policy's own tests do).
///
/// # Panics
/// When the file is not there, saying how to build it.
pub fn test_guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("AFXDP_TEST_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| guest_target_dir().join("wasm32-wasip2/release"));
    let file = dir.join(format!("guest_{}.wasm", name.replace('-', "_")));
    assert!(
        file.is_file(),
        "{} missing: build the test guests first (cargo build --manifest-path host/policy/tests/guests/Cargo.toml --target wasm32-wasip2 --release --target-dir target/policy-guests; tests/all.sh does)",
        file.display()
    );
    file
}

/// Where the test guests are built: `<workspace>/target/policy-guests`.
pub fn guest_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/policy-guests")
}

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// A command could not be started.
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// A syscall or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The failing operation.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A thread running inside a namespace panicked.
    #[error("thread inside netns {0} panicked")]
    Panicked(String),
}

/// Result type of this crate.
pub type Result<T, E = TestnetError> = std::result::Result<T, E>;

/// Longest Linux interface name (`IFNAMSIZ - 1`).
pub const MAX_IFNAME: usize = 15;

/// Panics with a clear message unless the process runs as root.
///
/// Privileged tests call this first: without root they must fail, not skip.
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "this test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces and \
         veth pairs); it runs as uid {euid}. Run it as root (e.g. in CI or a privileged container)."
    );
}

/// A name unique to this process and call: `prefix` + pid + a counter, at most
/// [`MAX_IFNAME`] bytes so that it is usable as an interface or netns name.
///
/// The numbers are written in decimal when they fit, else in hex, and the prefix is cut
/// last; uniqueness comes from the pid and counter, never from the prefix.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let dec = format!("{pid}-{n}");
    let suffix = if prefix.len() + dec.len() <= MAX_IFNAME {
        dec
    } else {
        format!("{pid:x}-{n:x}")
    };
    let keep = MAX_IFNAME.saturating_sub(suffix.len()).min(prefix.len());
    format!("{}{}", &prefix[..keep], suffix)
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| TestnetError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(TestnetError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip args…` and returns its stdout; a failure carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// Polls `condition` every `poll` until it holds (`true`) or `timeout` passes (`false`).
/// The condition is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, poll: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// True when the current network namespace has a link called `ifname`.
pub fn link_exists(ifname: &str) -> bool {
    ip(&["link", "show", "dev", ifname]).is_ok()
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates a namespace named [`unique_name`]`(prefix)` and brings its `lo` up.
    ///
    /// # Errors
    /// `ip netns add` failed (not root?).
    pub fn new(prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            path: PathBuf::from("/var/run/netns").join(&name),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind mount, e.g. `/var/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip -n <name> args…`.
    ///
    /// # Errors
    /// As [`ip`].
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec <name> cmd…`) and returns its stdout.
    ///
    /// # Errors
    /// The command could not start or exited unsuccessfully (stderr in the error).
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        let mut a = vec!["netns", "exec", self.name.as_str()];
        a.extend_from_slice(cmd);
        ip(&a)
    }

    /// True when the namespace has a link called `ifname`.
    pub fn has_link(&self, ifname: &str) -> bool {
        self.ip(&["link", "show", "dev", ifname]).is_ok()
    }

    /// Runs `f` on a fresh thread that has joined this namespace; the caller's thread stays
    /// where it is.
    ///
    /// # Errors
    /// Opening the namespace or `setns` failed; `f` panicked.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let file = File::open(&self.path).map_err(|source| TestnetError::Io {
            what: format!("open {}", self.path.display()),
            source,
        })?;
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    TestnetError::Io {
                        what: format!("setns({})", self.name),
                        source: io::Error::from(e),
                    }
                })?;
                Ok(f())
            });
            h.join()
                .map_err(|_| TestnetError::Panicked(self.name.clone()))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("afxdp-testnet: cannot delete netns {}: {e}", self.name);
        }
    }
}

/// Options for [`VethPair::create`].
#[derive(Debug, Clone)]
pub struct VethOptions<'a> {
    /// Name of the first end.
    pub a: String,
    /// Name of the second end (the peer).
    pub b: String,
    /// Namespace of the first end; `None` for the caller's current one.
    pub a_netns: Option<&'a Netns>,
    /// Namespace of the second end; `None` for the caller's current one.
    pub b_netns: Option<&'a Netns>,
    /// RX queues of each end (`numrxqueues`).
    pub rx_queues: u32,
    /// TX queues of each end (`numtxqueues`).
    pub tx_queues: u32,
}

impl<'a> VethOptions<'a> {
    /// Both ends in the current namespace, one queue each.
    pub fn new(a: impl Into<String>, b: impl Into<String>) -> Self {
        VethOptions {
            a: a.into(),
            b: b.into(),
            a_netns: None,
            b_netns: None,
            rx_queues: 1,
            tx_queues: 1,
        }
    }

    /// Sets the RX and TX queue counts of both ends.
    pub fn queues(mut self, n: u32) -> Self {
        self.rx_queues = n;
        self.tx_queues = n;
        self
    }

    /// Puts the first end in `ns`.
    pub fn a_netns(mut self, ns: &'a Netns) -> Self {
        self.a_netns = Some(ns);
        self
    }

    /// Puts the second end in `ns`.
    pub fn b_netns(mut self, ns: &'a Netns) -> Self {
        self.b_netns = Some(ns);
        self
    }
}

/// A veth pair, deleted on drop wherever it still is.
///
/// On drop each end is looked for in the current namespace, in the namespaces it was created
/// in and in any added with [`VethPair::also_look_in`] (for tests that move an end); deleting
/// either end deletes both. A namespace that is already gone took its end (and so the pair)
/// with it.
#[derive(Debug)]
pub struct VethPair {
    a: String,
    b: String,
    places: Vec<Option<String>>,
}

impl VethPair {
    /// Creates the pair described by `opts`.
    ///
    /// # Errors
    /// `ip link add` failed (name taken, not root, ...).
    pub fn create(opts: VethOptions<'_>) -> Result<Self> {
        let rxq = opts.rx_queues.to_string();
        let txq = opts.tx_queues.to_string();
        let mut args: Vec<&str> = Vec::new();
        if let Some(ns) = opts.a_netns {
            args.extend(["-n", ns.name()]);
        }
        args.extend([
            "link",
            "add",
            &opts.a,
            "numrxqueues",
            &rxq,
            "numtxqueues",
            &txq,
        ]);
        args.extend(["type", "veth", "peer", "name", &opts.b]);
        args.extend(["numrxqueues", &rxq, "numtxqueues", &txq]);
        if let Some(ns) = opts.b_netns {
            args.extend(["netns", ns.name()]);
        }
        ip(&args)?;
        let mut places = vec![None];
        places.extend(opts.a_netns.map(|n| Some(n.name().to_owned())));
        places.extend(opts.b_netns.map(|n| Some(n.name().to_owned())));
        Ok(VethPair {
            a: opts.a,
            b: opts.b,
            places,
        })
    }

    /// Creates `a`/`b` in the current namespace with `queues` RX and TX queues each.
    ///
    /// # Errors
    /// As [`VethPair::create`].
    pub fn new(a: &str, b: &str, queues: u32) -> Result<Self> {
        Self::create(VethOptions::new(a, b).queues(queues))
    }

    /// Name of the first end.
    pub fn a(&self) -> &str {
        &self.a
    }

    /// Name of the second end.
    pub fn b(&self) -> &str {
        &self.b
    }

    /// Also looks in `ns` on drop (after a test moved an end there).
    pub fn also_look_in(&mut self, ns: &Netns) {
        let n = Some(ns.name().to_owned());
        if !self.places.contains(&n) {
            self.places.push(n);
        }
    }

    fn delete_from(place: &Option<String>, ifname: &str) -> bool {
        let mut args = Vec::new();
        if let Some(ns) = place {
            if !Path::new("/var/run/netns").join(ns).exists() {
                return false;
            }
            args.extend(["-n", ns.as_str()]);
        }
        args.extend(["link", "del", "dev", ifname]);
        ip(&args).is_ok()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            for place in &self.places {
                if Self::delete_from(place, name) {
                    return;
                }
            }
        }
    }
}

fn bind_to_device(sock: &UdpSocket, ifname: &str) -> io::Result<()> {
    // SAFETY: the name pointer and length describe a live byte slice; sock is a valid fd.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `count_per_port` UDP datagrams to each port of `dst_ports` on `dst_ip`, out of
/// `src_ifname`, from inside `netns`. Returns how many were sent.
///
/// Each destination port gets its own socket (and so its own source port), so flows hash to
/// different TX queues on the sender, which a veth peer carries to different RX queues when
/// it has an XDP program. Payloads read `afxdp-testnet <port> <seq>`.
///
/// Sending is only the first hop: the caller makes `dst_ip` reachable on `src_ifname`
/// (an address and route, plus a static neighbour if the peer will not answer ARP/ND, e.g.
/// when an XDP program redirects everything).
///
/// # Errors
/// Entering the namespace, creating or binding a socket, or a send failed.
pub fn send_udp(
    netns: &Netns,
    src_ifname: &str,
    dst_ip: IpAddr,
    dst_ports: RangeInclusive<u16>,
    count_per_port: usize,
) -> Result<usize> {
    let io_err = |what: String| move |source| TestnetError::Io { what, source };
    netns.run(|| {
        let any: IpAddr = match dst_ip {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let mut sent = 0;
        for port in dst_ports {
            let sock = UdpSocket::bind(SocketAddr::new(any, 0))
                .map_err(io_err("bind UDP socket".into()))?;
            bind_to_device(&sock, src_ifname)
                .map_err(io_err(format!("SO_BINDTODEVICE {src_ifname}")))?;
            let dst = SocketAddr::new(dst_ip, port);
            for seq in 0..count_per_port {
                let payload = format!("afxdp-testnet {port} {seq}");
                sock.send_to(payload.as_bytes(), dst)
                    .map_err(io_err(format!("send to {dst}")))?;
                sent += 1;
            }
        }
        Ok(sent)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_and_differ() {
        let a = unique_name("afxdp-veth-long-prefix");
        let b = unique_name("afxdp-veth-long-prefix");
        assert_ne!(a, b);
        for n in [&a, &b, &unique_name(""), &unique_name("v")] {
            assert!(n.len() <= MAX_IFNAME, "{n}");
            assert!(
                n.contains(&format!("{:x}", std::process::id()))
                    || n.contains(&std::process::id().to_string())
            );
        }
        assert!(unique_name("v").starts_with('v'));
        assert!(!unique_name("a/b c").contains(['/', ' ']));
    }

    #[test]
    fn wait_until_is_bounded() {
        let t = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(100),
            Duration::from_millis(10),
            || false
        ));
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2));
        let mut n = 0;
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                n == 3
            }
        ));
    }

    #[test]
    fn ip_error_carries_stderr() {
        let e = ip(&["link", "show", "dev", "no-such-dev-xx"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("ip link show dev no-such-dev-xx"), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
    }
}
