//! The example unprivileged AF_XDP pod application of afxdp-rs.
//!
//! It gets the device's XSKMAP from a [`MapSource`], binds one AF_XDP socket
//! per rx queue (copy mode), registers each at its queue's key in the map,
//! counts frames per queue and prints JSON lines on stdout:
//!
//! ```text
//! {"type":"ready","device":"eth1","queues":[0,1,2,3],"rx_mode":"poll"}
//! {"type":"stats","device":"eth1","queue":0,"packets":12,"bytes":1032}
//! {"type":"total","device":"eth1","packets":40,"bytes":3440,"per_queue":{"0":{"packets":12,"bytes":1032},...},"kernel":{"rx_dropped":0,"rx_ring_full":0,"rx_fill_ring_empty":0},"elapsed_ms":812,"reason":"expect"}
//! ```
//!
//! It needs only `CAP_NET_RAW` (AF_XDP socket) and `RLIMIT_MEMLOCK` room for
//! its UMEMs (1 MiB per queue by default).
//!
//! How it waits for frames is its [`RxMode`]: sleeping in `poll` (the
//! default, no CPU while idle), spinning on the rx rings (a core, never
//! late to restock the fill ring), or busy polling (spinning too, and the
//! app's own calls run the device's NAPI where the kernel allows it).
#![deny(missing_docs)]

use std::{
    collections::BTreeMap,
    io::Write,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use afxdp_xsk::{XskConfig, XskError, XskSocket};
use serde::Serialize;
use tracing::{info, warn};

/// Prefix of the env var the device plugin sets for a pool
/// (`AFXDP_DEVICES_<POOL>`: device names, comma or space separated).
pub const DEVICES_ENV_PREFIX: &str = "AFXDP_DEVICES_";

/// Where the device's XSKMAP comes from.
///
/// This is the seam for the sharing modes: pinned-map mode gives a path
/// under a bind-mounted bpffs directory; the UDS handshake (crate
/// `afxdp-handshake`, `/xsk_map_fd` request) ends with a received FD, which
/// is [`MapSource::Fd`]: run the handshake first, then pass its FD here.
#[derive(Debug)]
pub enum MapSource {
    /// A pinned XSKMAP (opened with `BPF_OBJ_GET`; the pin must be readable
    /// and writable by this user).
    Pinned(PathBuf),
    /// An XSKMAP FD already held (e.g. received over the UDS handshake).
    Fd(OwnedFd),
}

impl MapSource {
    /// The map FD.
    ///
    /// # Errors
    ///
    /// [`AppError::MapOpen`] when `BPF_OBJ_GET` on the pin fails.
    pub fn into_fd(self) -> Result<OwnedFd, AppError> {
        match self {
            MapSource::Fd(fd) => Ok(fd),
            MapSource::Pinned(path) => {
                afxdp_xsk::bpf::obj_get(&path).map_err(|source| AppError::MapOpen { path, source })
            }
        }
    }
}

/// Errors of the app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No device given and none found in the environment.
    #[error("no device: pass --device or set {DEVICES_ENV_PREFIX}<POOL>{0}")]
    NoDevice(String),
    /// The device does not exist in this netns.
    #[error("if_nametoindex({0}) failed: no such device in this network namespace")]
    UnknownDevice(String),
    /// Listing the rx queues from sysfs failed.
    #[error("reading rx queues of {device} from {path}: {source}")]
    Queues {
        /// Device.
        device: String,
        /// sysfs path read.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `BPF_OBJ_GET` on the pinned map failed.
    #[error("bpf(BPF_OBJ_GET) on {path} failed: {source}")]
    MapOpen {
        /// The pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Socket creation, binding or registration failed.
    #[error("queue {queue}: {source}")]
    Xsk {
        /// Queue.
        queue: u32,
        /// The error.
        #[source]
        source: XskError,
    },
    /// `poll` failed.
    #[error("poll failed: {0}")]
    Poll(#[source] std::io::Error),
    /// Writing the JSON output failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

/// What to run.
#[derive(Debug)]
pub struct Config {
    /// Device name (in this netns).
    pub device: String,
    /// Rx queues to bind; empty = all of them (from sysfs).
    pub queues: Vec<u32>,
    /// Where the XSKMAP comes from.
    pub map: MapSource,
    /// Stop after this long (success unless `expect` is set and unmet).
    pub duration: Option<Duration>,
    /// Stop with success once this many packets arrived in total.
    pub expect: Option<u64>,
    /// Period of the `stats` lines.
    pub stats_interval: Duration,
    /// UMEM and ring sizes per socket.
    pub xsk: XskConfig,
    /// How to wait for frames.
    pub rx_mode: RxMode,
}

/// How the app waits when every rx ring is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RxMode {
    /// Sleep in `poll` until a socket is readable (no CPU while idle; a
    /// wakeup per burst, and frames arrive while the app sleeps).
    #[default]
    Poll,
    /// Spin on the rx rings, no syscall: a core busy, the fill ring
    /// restocked as soon as frames arrive.
    Spin,
    /// Spin with busy polling: `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` and
    /// `SO_BUSY_POLL_BUDGET` on each socket ([`BUSY_POLL_USECS`],
    /// [`BUSY_POLL_BUDGET`]), and a non-blocking `recvfrom` on each
    /// socket whose ring was empty, which runs the device's NAPI on the
    /// app's CPU. Without `CAP_NET_ADMIN` the kernel refuses the options
    /// (the ready line lists them) and this spins as [`RxMode::Spin`] plus
    /// a syscall, unless the node's `net.core.busy_read` sysctl is set.
    BusyPoll,
}

/// `SO_BUSY_POLL` of [`RxMode::BusyPoll`] (µs a busy poll may spin).
pub const BUSY_POLL_USECS: u32 = 20;
/// `SO_BUSY_POLL_BUDGET` of [`RxMode::BusyPoll`] (frames per NAPI poll).
pub const BUSY_POLL_BUDGET: u16 = 64;

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// `expect` packets arrived.
    Expect,
    /// `duration` elapsed.
    Duration,
    /// SIGTERM/SIGINT.
    Signal,
}

/// Counters of one queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueCount {
    /// Frames received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
}

/// Frames the kernel dropped before this app saw them, summed over its
/// sockets (from `XDP_STATISTICS`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelDrops {
    /// Dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Dropped because the rx ring was full (the app fell behind).
    pub rx_ring_full: u64,
    /// Times a frame found the fill ring empty (the app refilled too late).
    pub rx_fill_ring_empty: u64,
}

impl KernelDrops {
    fn add(&mut self, st: &afxdp_xsk::XskStatistics) {
        self.rx_dropped += st.rx_dropped;
        self.rx_ring_full += st.rx_ring_full;
        self.rx_fill_ring_empty += st.rx_fill_ring_empty_descs;
    }
}

/// Result of a run (also printed as the `total` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Device.
    pub device: String,
    /// Frames over all queues.
    pub packets: u64,
    /// Bytes over all queues.
    pub bytes: u64,
    /// Per queue.
    pub per_queue: BTreeMap<u32, QueueCount>,
    /// The kernel's drop counters (`XDP_STATISTICS`) summed over the sockets.
    pub kernel: KernelDrops,
    /// Run time after the sockets were ready.
    pub elapsed_ms: u64,
    /// Why it stopped.
    pub reason: StopReason,
}

impl Totals {
    /// Whether the run met its `expect` (true when there was none).
    pub fn success(&self, expect: Option<u64>) -> bool {
        expect.is_none_or(|n| self.packets >= n)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line<'a> {
    Ready {
        device: &'a str,
        queues: &'a [u32],
        rx_mode: RxMode,
        /// Busy-poll socket options the kernel refused (busy-poll mode).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        busy_poll_refused: Vec<String>,
    },
    Stats {
        device: &'a str,
        queue: u32,
        packets: u64,
        bytes: u64,
    },
    Total(&'a Totals),
}

fn emit(out: &mut impl Write, line: &Line<'_>) -> Result<(), AppError> {
    let mut s = serde_json::to_string(line).expect("plain data serializes");
    s.push('\n');
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(AppError::Output)
}

/// Parses a device list from `AFXDP_DEVICES_<POOL>` syntax.
pub fn parse_device_list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Picks the device: `explicit`, else the first device of
/// `AFXDP_DEVICES_<pool>` (or of the only `AFXDP_DEVICES_*` var when `pool`
/// is `None`) in `env`.
///
/// # Errors
///
/// [`AppError::NoDevice`] when nothing fits.
pub fn resolve_device(
    explicit: Option<&str>,
    pool: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<String, AppError> {
    if let Some(d) = explicit {
        return Ok(d.to_string());
    }
    let vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(DEVICES_ENV_PREFIX))
        .collect();
    let chosen = match pool {
        Some(p) => {
            let key = format!("{DEVICES_ENV_PREFIX}{}", p.to_uppercase().replace('-', "_"));
            vars.into_iter().find(|(k, _)| *k == key)
        }
        None if vars.len() == 1 => vars.into_iter().next(),
        None if vars.is_empty() => None,
        None => {
            return Err(AppError::NoDevice(
                " (several pools in the environment: pass --pool)".to_string(),
            ))
        }
    };
    let (key, value) = chosen.ok_or_else(|| AppError::NoDevice(String::new()))?;
    let devices = parse_device_list(&value);
    if devices.len() > 1 {
        warn!(%key, ?devices, "several devices; using the first (run one app per device)");
    }
    devices
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NoDevice(format!(" ({key} is empty)")))
}

/// Rx queues of `device` from `<sysfs_net>/<device>/queues/rx-N`.
///
/// sysfs shows the netns it was mounted in (the pod's own, in a pod).
///
/// # Errors
///
/// [`AppError::Queues`] when the directory cannot be read.
pub fn rx_queues(sysfs_net: &Path, device: &str) -> Result<Vec<u32>, AppError> {
    let path = sysfs_net.join(device).join("queues");
    let err = |source| AppError::Queues {
        device: device.to_string(),
        path: path.clone(),
        source,
    };
    let mut queues: Vec<u32> = std::fs::read_dir(&path)
        .map_err(err)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("rx-")?.parse().ok())
        .collect();
    queues.sort_unstable();
    Ok(queues)
}

/// All rx queues of `device`, asked over netlink/ethtool in the current netns
/// (right wherever the app runs); sysfs as a fallback.
pub fn device_queues(device: &str) -> Result<Vec<u32>, AppError> {
    match afxdp_netdev::get(device) {
        Ok(Some(nd)) if nd.rx_queues > 0 => Ok((0..nd.rx_queues).collect()),
        _ => rx_queues(Path::new("/sys/class/net"), device),
    }
}

fn ifindex(device: &str) -> Result<u32, AppError> {
    let c = std::ffi::CString::new(device).map_err(|_| AppError::UnknownDevice(device.into()))?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(AppError::UnknownDevice(device.to_string())),
        i => Ok(i),
    }
}

/// Binds the sockets, registers them, receives until a stop condition and
/// returns the totals, printing JSON lines to `out` along the way.
///
/// `stop` is polled at least every 100 ms (set it from a signal handler).
///
/// # Errors
///
/// Setup failures (device, map, sockets) and output errors.
pub fn run(cfg: Config, out: &mut impl Write, stop: &AtomicBool) -> Result<Totals, AppError> {
    let queues = if cfg.queues.is_empty() {
        device_queues(&cfg.device)?
    } else {
        cfg.queues.clone()
    };
    let mut sockets = bind_and_register(&cfg.device, &queues, cfg.map, &cfg.xsk)?;
    info!(device = %cfg.device, ?queues, rx_mode = ?cfg.rx_mode, "sockets bound and registered");
    let busy_poll_refused = if cfg.rx_mode == RxMode::BusyPoll {
        enable_busy_poll(&sockets)
    } else {
        Vec::new()
    };
    emit(
        out,
        &Line::Ready {
            device: &cfg.device,
            queues: &queues,
            rx_mode: cfg.rx_mode,
            busy_poll_refused,
        },
    )?;

    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut next_stats = start + cfg.stats_interval;
    // Parallel to `sockets`: no map lookup per socket and pass.
    let mut counts = vec![QueueCount::default(); sockets.len()];
    let mut total = 0u64;
    let mut busy_passes = 0u32;
    let mut waiter = Waiter::new(&sockets);

    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break StopReason::Signal;
        }
        let got = drain(&mut sockets, &mut counts)?;
        total += got;
        if cfg.expect.is_some_and(|n| total >= n) {
            break StopReason::Expect;
        }
        if got > 0 {
            // Under traffic the clock is read every CLOCK_EVERY_BUSY
            // passes only: deadline and stats lines need no better.
            busy_passes = busy_passes.wrapping_add(1);
            if !busy_passes.is_multiple_of(CLOCK_EVERY_BUSY) {
                continue;
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break StopReason::Duration;
        }
        if now >= next_stats {
            emit_stats(out, &cfg.device, &queues, &counts)?;
            next_stats += cfg.stats_interval;
        }
        if got == 0 {
            match cfg.rx_mode {
                RxMode::Poll => {
                    // Nothing on any ring: sleep in poll until frames, the
                    // next stats line or the deadline (at most 100 ms, to
                    // see `stop`).
                    let mut wait = next_stats
                        .saturating_duration_since(now)
                        .min(Duration::from_millis(100));
                    if let Some(d) = deadline {
                        wait = wait.min(d.saturating_duration_since(now));
                    }
                    waiter.wait(wait)?;
                }
                RxMode::Spin => std::hint::spin_loop(),
                RxMode::BusyPoll => busy_poll(&sockets)?,
            }
        }
    };

    let kernel = kernel_drops(&sockets);
    let totals = Totals {
        device: cfg.device.clone(),
        packets: total,
        bytes: counts.iter().map(|c| c.bytes).sum(),
        per_queue: queues.iter().copied().zip(counts).collect(),
        kernel,
        elapsed_ms: start.elapsed().as_millis() as u64,
        reason,
    };
    emit(out, &Line::Total(&totals))?;
    Ok(totals)
}

/// Frames taken from one ring per pass: a pass over every socket stays
/// short, so no queue waits long behind another.
const RECV_BATCH: u32 = 256;

/// Passes that found frames between two clock reads (deadline, stats
/// lines): a pass that found none reads it anyway, to size its sleep.
/// Reading it on every pass cost as much as the ring work of a wakeup
/// (bench rx-rate, all queues: `clock_gettime` 2.6% of the pod app's CPU).
const CLOCK_EVERY_BUSY: u32 = 64;

/// One socket per queue, each bound and registered in the XSKMAP at its
/// queue.
fn bind_and_register(
    device: &str,
    queues: &[u32],
    map: MapSource,
    xsk: &XskConfig,
) -> Result<Vec<XskSocket>, AppError> {
    let ifindex = ifindex(device)?;
    let map = map.into_fd()?;
    let mut sockets = Vec::with_capacity(queues.len());
    for &q in queues {
        let xsk_err = |source| AppError::Xsk { queue: q, source };
        let sock = XskSocket::new(ifindex, q, xsk).map_err(xsk_err)?;
        sock.register(map.as_fd(), q).map_err(xsk_err)?;
        sockets.push(sock);
    }
    Ok(sockets)
}

/// Turns busy polling on for every socket; returns the options the kernel
/// refused (`"SO_PREFER_BUSY_POLL: EPERM"`...), logged once.
fn enable_busy_poll(sockets: &[XskSocket]) -> Vec<String> {
    let mut refused = Vec::new();
    for sock in sockets {
        let o = sock.enable_busy_poll(BUSY_POLL_USECS, BUSY_POLL_BUDGET);
        for (name, r) in [
            ("SO_PREFER_BUSY_POLL", &o.prefer),
            ("SO_BUSY_POLL", &o.usecs),
            ("SO_BUSY_POLL_BUDGET", &o.budget),
        ] {
            if let Err(e) = r {
                let text = format!("{name}: {e}");
                if !refused.contains(&text) {
                    warn!(queue = sock.queue(), "busy poll: {text}");
                    refused.push(text);
                }
            }
        }
    }
    refused
}

/// One busy poll on every socket (the rings were all empty).
fn busy_poll(sockets: &[XskSocket]) -> Result<(), AppError> {
    for sock in sockets {
        sock.busy_poll().map_err(|source| AppError::Xsk {
            queue: sock.queue(),
            source,
        })?;
    }
    Ok(())
}

/// Takes what every socket's rx ring holds (up to [`RECV_BATCH`] each),
/// counting it in the socket's entry of `counts`; returns the frames taken.
fn drain(sockets: &mut [XskSocket], counts: &mut [QueueCount]) -> Result<u64, AppError> {
    let mut got = 0u64;
    for (sock, qc) in sockets.iter_mut().zip(counts) {
        let q = sock.queue();
        let c = sock
            .recv(RECV_BATCH, |_frame| {})
            .map_err(|source| AppError::Xsk { queue: q, source })?;
        qc.packets += u64::from(c.packets);
        qc.bytes += c.bytes;
        got += u64::from(c.packets);
    }
    Ok(got)
}

fn emit_stats(
    out: &mut impl Write,
    device: &str,
    queues: &[u32],
    counts: &[QueueCount],
) -> Result<(), AppError> {
    for (&queue, qc) in queues.iter().zip(counts) {
        emit(
            out,
            &Line::Stats {
                device,
                queue,
                packets: qc.packets,
                bytes: qc.bytes,
            },
        )?;
    }
    Ok(())
}

/// The kernel's drop counters summed over the sockets (logged when any is
/// non-zero).
fn kernel_drops(sockets: &[XskSocket]) -> KernelDrops {
    let mut kernel = KernelDrops::default();
    for sock in sockets {
        if let Ok(st) = sock.statistics() {
            if st != Default::default() {
                warn!(queue = sock.queue(), ?st, "kernel AF_XDP drop counters");
            }
            kernel.add(&st);
        }
    }
    kernel
}

/// `poll` over every socket.
struct Waiter {
    pfds: Vec<libc::pollfd>,
}

impl Waiter {
    fn new(sockets: &[XskSocket]) -> Self {
        let pfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Waiter { pfds }
    }

    /// Blocks until a socket is readable or `wait` passed (or a signal).
    fn wait(&mut self, wait: Duration) -> Result<(), AppError> {
        // SAFETY: `pfds` is a valid array of pollfd.
        let r = unsafe {
            libc::poll(
                self.pfds.as_mut_ptr(),
                self.pfds.len() as libc::nfds_t,
                wait.as_millis() as libc::c_int,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(AppError::Poll(e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn device_lists() {
        assert_eq!(parse_device_list("a,b c , d"), vec!["a", "b", "c", "d"]);
        assert!(parse_device_list(" , ").is_empty());
    }

    #[test]
    fn device_resolution() {
        let e = env(&[("AFXDP_DEVICES_FAST", "eth1,eth2"), ("HOME", "/")]);
        assert_eq!(resolve_device(Some("x"), None, e.clone()).unwrap(), "x");
        assert_eq!(resolve_device(None, None, e.clone()).unwrap(), "eth1");
        assert_eq!(
            resolve_device(None, Some("fast"), e.clone()).unwrap(),
            "eth1"
        );
        assert!(resolve_device(None, Some("slow"), e).is_err());
        let two = env(&[("AFXDP_DEVICES_A", "x"), ("AFXDP_DEVICES_B", "y")]);
        assert!(resolve_device(None, None, two).is_err());
        assert!(resolve_device(None, None, env(&[("AFXDP_DEVICES_A", "")])).is_err());
    }

    #[test]
    fn json_lines() {
        let mut per_queue = BTreeMap::new();
        per_queue.insert(
            1,
            QueueCount {
                packets: 2,
                bytes: 84,
            },
        );
        let t = Totals {
            device: "d".into(),
            packets: 2,
            bytes: 84,
            per_queue,
            kernel: KernelDrops::default(),
            elapsed_ms: 5,
            reason: StopReason::Expect,
        };
        let mut buf = Vec::new();
        emit(&mut buf, &Line::Total(&t)).unwrap();
        emit(
            &mut buf,
            &Line::Stats {
                device: "d",
                queue: 1,
                packets: 2,
                bytes: 84,
            },
        )
        .unwrap();
        let s = String::from_utf8(buf).unwrap();
        let mut lines = s.lines();
        let total: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(total["type"], "total");
        assert_eq!(total["per_queue"]["1"]["packets"], 2);
        assert_eq!(total["reason"], "expect");
        let stats: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(stats["type"], "stats");
        assert_eq!(stats["queue"], 1);
        assert!(t.success(Some(2)) && !t.success(Some(3)) && t.success(None));
    }

    #[test]
    fn rx_queues_from_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        for q in ["rx-0", "rx-10", "rx-2", "tx-0"] {
            std::fs::create_dir_all(dir.path().join("eth9/queues").join(q)).unwrap();
        }
        assert_eq!(rx_queues(dir.path(), "eth9").unwrap(), vec![0, 2, 10]);
        assert!(rx_queues(dir.path(), "nope").is_err());
    }
}
