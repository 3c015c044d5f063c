//! afxdp-dp, the node agent binary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use afxdp_dp::daemon::{Daemon, Options};
use afxdp_dp::programs::{BpfmanHook, BpfmanOptions};

/// The afxdp-rs node agent: kubelet device plugin for AF_XDP pools.
#[derive(Debug, Parser)]
#[command(name = "afxdp-dp", version)]
struct Cli {
    /// Config file (upstream config.json or afxdp.io/v1alpha1).
    #[arg(long, env = "AFXDP_CONFIG", default_value = "/etc/afxdp/config.json")]
    config: PathBuf,
    /// Where kubelet.sock lives and pool sockets go.
    #[arg(
        long,
        env = "AFXDP_DEVICE_PLUGIN_DIR",
        default_value = "/var/lib/kubelet/device-plugins"
    )]
    device_plugin_dir: PathBuf,
    /// Kubelet's PodResources socket.
    #[arg(
        long,
        env = "AFXDP_POD_RESOURCES_SOCKET",
        default_value = "/var/lib/kubelet/pod-resources/kubelet.sock"
    )]
    pod_resources_socket: PathBuf,
    /// State, UDS sockets (uds/) and bpffs pins (pins/).
    #[arg(long, env = "AFXDP_STATE_DIR", default_value = "/run/afxdp")]
    state_dir: PathBuf,
    /// The node API socket afxdp-cni talks to.
    #[arg(
        long,
        env = "AFXDP_NODE_API_SOCKET",
        default_value = "/run/afxdp/node.sock"
    )]
    node_api_socket: PathBuf,
    /// This node's name (selects `nodes[]` entries); default the hostname.
    #[arg(long, env = "AFXDP_NODE_NAME")]
    node_name: Option<String>,
    /// Policy artifacts and precompiled components (kept across node restarts).
    #[arg(
        long,
        env = "AFXDP_POLICY_CACHE_DIR",
        default_value = "/var/lib/afxdp/policies"
    )]
    policy_cache_dir: PathBuf,
    /// Kubeconfig for reading pod metadata (default: in-cluster service account).
    #[arg(long, env = "AFXDP_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Keep a fresh XDP program attached to free pool devices so Allocate
    /// skips the attach (free devices then always carry the program).
    #[arg(long, env = "AFXDP_PREPARE_ATTACHMENTS")]
    prepare_attachments: bool,
    /// Where /metrics, /healthz and /readyz are served (`host:port`), or `off`.
    #[arg(
        long,
        env = "AFXDP_METRICS_ADDRESS",
        default_value = "127.0.0.1:9740",
        value_parser = metrics_address
    )]
    metrics_address: MetricsAddress,
    /// bpfman-rpc's socket (pools with `programManager: bpfman`).
    #[arg(
        long,
        env = "AFXDP_BPFMAN_SOCKET",
        default_value = afxdp_bpfman::DEFAULT_SOCKET
    )]
    bpfman_socket: PathBuf,
    /// Where bpfman's paths (its `/run/bpfman/fs/maps/...` pins) are reached
    /// from afxdp-dp: `/` when both mount the host's `/run/bpfman`, or
    /// `/proc/<pid>/root` to look into bpfman's mount namespace.
    #[arg(long, env = "AFXDP_BPFMAN_ROOT", default_value = "/")]
    bpfman_root: PathBuf,
    /// The hook bpfman attaches pool programs to: `xdp`, or `tcx` (a tc
    /// function of the pool's object; for kernels that refuse bpfman's
    /// freplace XDP programs: tests only, pods get no frames).
    #[arg(long, env = "AFXDP_BPFMAN_HOOK", value_enum, default_value = "xdp")]
    bpfman_hook: BpfmanHookArg,
    /// Serve the CSI node plugin `csi.afxdp.io` (pools with sharing `csi`)
    /// on this socket (conventionally
    /// `/var/lib/kubelet/plugins/csi.afxdp.io/csi.sock`); unset: not served.
    #[arg(long, env = "AFXDP_CSI_SOCKET")]
    csi_socket: Option<PathBuf>,
    /// Kubelet's plugin registration directory (the CSI plugin registers there).
    #[arg(
        long,
        env = "AFXDP_PLUGINS_REGISTRY_DIR",
        default_value = afxdp_dp::csi::DEFAULT_REGISTRY_DIR
    )]
    plugins_registry_dir: PathBuf,
    /// Log format (default: the config file's logFormat, else text).
    #[arg(long, env = "AFXDP_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
}

/// `--metrics-address`: an address, or not served.
#[derive(Debug, Clone, Copy)]
struct MetricsAddress(Option<std::net::SocketAddr>);

fn metrics_address(s: &str) -> Result<MetricsAddress, String> {
    if s == "off" {
        return Ok(MetricsAddress(None));
    }
    s.parse()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|e| format!("{s:?} is neither host:port nor off: {e}"))
}

/// `--bpfman-hook` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BpfmanHookArg {
    Xdp,
    Tcx,
}

/// `--log-format` values; anything else is a usage error naming these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for afxdp_config::LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => afxdp_config::LogFormat::Text,
            LogFormatArg::Json => afxdp_config::LogFormat::Json,
        }
    }
}

/// Accept upstream's single-dash `-config` spelling.
fn normalized_args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.strip_prefix("-config") {
            Some(rest) if !a.starts_with("--") => format!("--config{rest}"),
            _ => a,
        })
        .collect()
}

/// Where and how afxdp-dp logs. Each setting comes from the command line
/// (or its env var) when given, else from the config file, else the
/// default; `RUST_LOG`, when set, replaces the level as the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogSettings {
    level: afxdp_config::LogLevel,
    format: afxdp_config::LogFormat,
    /// Appended to; `None` = stderr.
    file: Option<PathBuf>,
}

impl LogSettings {
    fn resolve(cli_format: Option<LogFormatArg>, config: Option<&afxdp_config::Config>) -> Self {
        LogSettings {
            level: config.map(|c| c.log_level).unwrap_or_default(),
            format: cli_format
                .map(Into::into)
                .or(config.map(|c| c.log_format))
                .unwrap_or_default(),
            file: config.and_then(|c| c.log_file.clone()),
        }
    }
}

/// Opens `path` for appending, creating its directory.
fn open_log_file(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Installs the global subscriber. Colour only on a terminal (never in a
/// file, a pipe or a container log). A log file that cannot be opened is
/// reported on stderr, which is then used. Returns whether logs go to a
/// file.
fn init_logging(settings: &LogSettings) -> bool {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.level.as_str()));
    let mut file_error = None;
    let file = settings
        .file
        .as_deref()
        .and_then(|p| match open_log_file(p) {
            Ok(f) => Some(f),
            Err(e) => {
                file_error = Some(format!("cannot open log file {}: {e}", p.display()));
                None
            }
        });
    let to_file = file.is_some();
    let (writer, ansi) = match file {
        Some(f) => (BoxMakeWriter::new(std::sync::Mutex::new(f)), false),
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match settings.format {
        afxdp_config::LogFormat::Json => b.json().init(),
        afxdp_config::LogFormat::Text => b.init(),
    }
    if let Some(e) = file_error {
        tracing::error!("{e}; logging to stderr");
    }
    to_file
}

/// glibc malloc arenas afxdp-dp keeps unless `MALLOC_ARENA_MAX` says
/// otherwise. glibc's default (eight per core) gives every thread that
/// allocates (tokio's blocking pool, policy calls, link events) an arena
/// of its own that stays resident: at 1,024 netdevs with 8 policies the
/// daemon's VmHWM was 73 MiB with the default and 53 MiB with two arenas
/// (`bash tests/bench.sh --section scale`), with no change in its latencies.
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`] unless the environment
/// sets `MALLOC_ARENA_MAX`; false when glibc refused. Must run before any
/// thread starts.
fn limit_malloc_arenas() -> bool {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter, and no other
        // thread exists yet to allocate concurrently.
        return unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) } == 1;
    }
    true
}

fn main() -> ExitCode {
    let arenas_limited = limit_malloc_arenas();
    let cli = Cli::parse_from(normalized_args());
    // Read once here for the log settings only; an invalid config is
    // reported by the daemon (logged with the defaults).
    let config = afxdp_config::load(&cli.config).ok();
    let to_file = init_logging(&LogSettings::resolve(cli.log_format, config.as_ref()));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %cli.config.display(), "afxdp-dp starting");
    if !arenas_limited {
        tracing::warn!(
            "glibc refused M_ARENA_MAX={MALLOC_ARENAS}: malloc keeps its default arenas"
        );
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if to_file {
                eprintln!("afxdp-dp: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let node_name = match cli.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("hostname")?
            .into_string()
            .map_err(|_| anyhow::anyhow!("hostname is not UTF-8"))?,
    };
    let csi = cli.csi_socket.map(|socket| afxdp_dp::csi::CsiOptions {
        socket,
        registry_dir: Some(cli.plugins_registry_dir),
    });
    let opts = Options {
        config: cli.config,
        device_plugin_dir: cli.device_plugin_dir,
        pod_resources_socket: cli.pod_resources_socket,
        state_dir: cli.state_dir,
        node_api_socket: cli.node_api_socket,
        node_name,
        kubelet_poll: Duration::from_millis(500),
        policy_cache_dir: cli.policy_cache_dir,
        config_poll: Duration::from_secs(2),
        kubeconfig: cli.kubeconfig,
        prepare_attachments: cli.prepare_attachments,
        metrics_address: cli.metrics_address.0,
        bpfman: BpfmanOptions {
            socket: cli.bpfman_socket,
            path_root: cli.bpfman_root,
            hook: match cli.bpfman_hook {
                BpfmanHookArg::Xdp => BpfmanHook::Xdp,
                BpfmanHookArg::Tcx => BpfmanHook::Tcx,
            },
            ..BpfmanOptions::default()
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut daemon = Daemon::start(opts).await?;
        if let Some(csi) = &csi {
            daemon.serve_csi(csi)?;
        }
        tracing::info!("afxdp-dp running");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        daemon.stop().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_config::{LogFormat, LogLevel};

    fn config(text: &str) -> afxdp_config::Config {
        afxdp_config::parse(text).expect("valid config")
    }

    #[test]
    fn log_settings_flag_over_config_over_default() {
        let c = config(
            r#"{"apiVersion":"afxdp.io/v1alpha1","logLevel":"debug","logFormat":"json",
                "logFile":"/var/log/afxdp/dp.log","pools":[]}"#,
        );
        let from_config = LogSettings::resolve(None, Some(&c));
        assert_eq!(
            from_config,
            LogSettings {
                level: LogLevel::Debug,
                format: LogFormat::Json,
                file: Some(PathBuf::from("/var/log/afxdp/dp.log")),
            }
        );
        let flag = LogSettings::resolve(Some(LogFormatArg::Text), Some(&c));
        assert_eq!(flag.format, LogFormat::Text, "the flag wins");
        assert_eq!(flag.level, LogLevel::Debug);
        let defaults = LogSettings::resolve(None, None);
        assert_eq!(
            defaults,
            LogSettings {
                level: LogLevel::Info,
                format: LogFormat::Text,
                file: None,
            }
        );
        // Upstream files give level and file (no format).
        let up = config(r#"{"logLevel":"warning","logFile":"afxdp-dp.log","pools":[]}"#);
        let s = LogSettings::resolve(Some(LogFormatArg::Json), Some(&up));
        assert_eq!(s.level, LogLevel::Warn);
        assert_eq!(s.format, LogFormat::Json);
        assert_eq!(
            s.file.as_deref(),
            Some(Path::new("/var/log/afxdp-k8s-plugins/afxdp-dp.log"))
        );
    }

    #[test]
    fn unknown_log_format_is_a_usage_error() {
        let e = Cli::try_parse_from(["afxdp-dp", "--log-format", "yaml"]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("yaml") && msg.contains("text") && msg.contains("json"),
            "{msg}"
        );
    }
}
