//! afxdp-dp, the node agent binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use afxdp_dp::daemon::{Daemon, Options};

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
    /// Log format: text or json.
    #[arg(long, env = "AFXDP_LOG_FORMAT", default_value = "text")]
    log_format: String,
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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(normalized_args());
    init_logging(&cli.log_format);
    let node_name = match cli.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("hostname")?
            .into_string()
            .map_err(|_| anyhow::anyhow!("hostname is not UTF-8"))?,
    };
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
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let daemon = Daemon::start(opts).await?;
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
