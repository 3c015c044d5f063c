//! `afxdp-pod-app`: receive on every rx queue of an AF_XDP device, print
//! JSON counters. See the library docs for the output format.
//!
//! Exit status: 0 on success (or on SIGTERM/SIGINT), 1 on error, 3 when
//! `--expect` was not met before `--duration` ran out.

use std::{
    io::IsTerminal,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use afxdp_handshake::{Client, PodRef};
use afxdp_pod_app::{resolve_device, run, Config, MapSource, RxMode};
use afxdp_xsk::XskConfig;
use clap::Parser;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use tracing::error;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Example unprivileged AF_XDP app: binds one socket per rx queue, registers
/// them in the device's XSKMAP, counts packets per queue.
#[derive(Debug, Parser)]
#[command(name = "afxdp-pod-app", version)]
struct Args {
    /// Device name; default: the first device of AFXDP_DEVICES_<POOL>.
    #[arg(long)]
    device: Option<String>,
    /// Pool whose AFXDP_DEVICES_<POOL> variable names the device (needed
    /// only when several pools are in the environment).
    #[arg(long)]
    pool: Option<String>,
    /// Rx queues, comma separated; default: afxdp-dp's plan in
    /// AFXDP_QUEUES_<DEVICE>, else all of the device's rx queues.
    #[arg(long, value_delimiter = ',')]
    queues: Vec<u32>,
    /// Pinned XSKMAP (pinned-map sharing mode), e.g. /tmp/afxdp_dp/<dev>/xsks_map.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "uds",
        required_unless_present = "uds"
    )]
    pinned_map: Option<PathBuf>,
    /// afxdp-dp's handshake socket (UDS sharing mode), e.g. /tmp/afxdp_dp/<dev>/afxdp.sock.
    #[arg(long, value_name = "PATH")]
    uds: Option<PathBuf>,
    /// This pod, as sent in `/connect`: `<name>` or `<namespace>/<name>`;
    /// default $POD_NAME, else the hostname (what DPDK sends).
    #[arg(long, env = "POD_NAME")]
    pod: Option<String>,
    /// Handshake timeout per step.
    #[arg(long, default_value_t = 5000)]
    uds_timeout_ms: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Exit 0 once this many packets arrived in total (3 on timeout).
    #[arg(long, value_name = "N")]
    expect: Option<u64>,
    /// Period of the per-queue stats lines.
    #[arg(long, default_value_t = 1000)]
    stats_interval_ms: u64,
    /// UMEM frames per socket (2 KiB each, charged to RLIMIT_MEMLOCK);
    /// the fill and rx rings hold half as many, the rest restock the fill
    /// ring.
    #[arg(long, default_value_t = 512)]
    frames: u32,
    /// How to wait for frames: sleep in poll, spin on the rx rings, or
    /// spin with busy polling (its socket options need CAP_NET_ADMIN).
    #[arg(long, value_enum, default_value_t = RxMode::Poll)]
    rx_mode: RxMode,
}

fn install_signal_handlers() -> nix::Result<()> {
    // No SA_RESTART: poll returns EINTR and the loop sees STOP at once.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// The queue ids afxdp-dp's pool policy chose (`AFXDP_QUEUES_<DEVICE>`).
fn planned_queues(device: &str) -> Vec<u32> {
    std::env::var(afxdp_handshake::env::queues_env_name(device))
        .ok()
        .map(|v| v.split(',').filter_map(|q| q.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The upstream handshake: /connect, /version, /xsk_map_fd, /fin.
fn map_over_uds(
    sock: &std::path::Path,
    pod: Option<&str>,
    device: &str,
    timeout_ms: u64,
) -> Result<std::os::fd::OwnedFd, String> {
    let pod = match pod {
        Some(p) => p.to_string(),
        None => nix::unistd::gethostname()
            .map_err(|e| format!("hostname: {e}"))?
            .to_string_lossy()
            .into_owned(),
    };
    let pod = PodRef::parse(&pod).ok_or_else(|| format!("invalid pod name {pod:?}"))?;
    let mut client =
        Client::connect(sock, Duration::from_millis(timeout_ms)).map_err(|e| e.to_string())?;
    client.hello(&pod).map_err(|e| e.to_string())?;
    let version = client.version().map_err(|e| e.to_string())?;
    let fd = client.xsk_map_fd(device).map_err(|e| e.to_string())?;
    client.fin().map_err(|e| e.to_string())?;
    tracing::info!(%pod, device, %version, "got the XSKMAP over the UDS");
    Ok(fd)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if let Err(e) = install_signal_handlers() {
        error!("sigaction failed: {e}");
        return ExitCode::from(1);
    }
    let device = match resolve_device(
        args.device.as_deref(),
        args.pool.as_deref(),
        std::env::vars(),
    ) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(1);
        }
    };
    let map = match (&args.uds, &args.pinned_map) {
        (Some(sock), _) => {
            match map_over_uds(sock, args.pod.as_deref(), &device, args.uds_timeout_ms) {
                Ok(fd) => MapSource::Fd(fd),
                Err(e) => {
                    error!("UDS handshake with afxdp-dp: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        (None, Some(pin)) => MapSource::Pinned(pin.clone()),
        (None, None) => {
            error!("one of --uds or --pinned-map is required");
            return ExitCode::from(1);
        }
    };
    let queues = if args.queues.is_empty() {
        planned_queues(&device)
    } else {
        args.queues.clone()
    };
    let frames = args.frames.max(1);
    let cfg = Config {
        device,
        queues,
        map,
        duration: args.duration.map(Duration::from_secs_f64),
        expect: args.expect,
        stats_interval: Duration::from_millis(args.stats_interval_ms.max(10)),
        xsk: XskConfig::with_frames(frames),
        rx_mode: args.rx_mode,
    };
    let expect = cfg.expect;
    match run(cfg, &mut std::io::stdout().lock(), &STOP) {
        Ok(t) if t.success(expect) || t.reason == afxdp_pod_app::StopReason::Signal => {
            ExitCode::SUCCESS
        }
        Ok(t) => {
            error!(
                got = t.packets,
                ?expect,
                "expected packet count not reached"
            );
            ExitCode::from(3)
        }
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}
