//! afxdpctl: validate configs and run the lab.

mod image;
mod install_cni;
mod lab;
mod policy;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "afxdpctl", version, about = "afxdp-rs operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// A whole node on this machine: veth NICs, afxdp-dp, a kubelet stand-in,
    /// unprivileged pods receiving traffic, a live table. Needs root.
    Lab(lab::LabArgs),
    /// This node's network devices as JSON (the inventory `policy simulate` reads).
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Pool policies: push, inspect, run one decision, test cases.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// eBPF bytecode images (bpfman's layout): push, inspect.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Pools, devices, health, allocations and deciding policies of the
    /// running afxdp-dp.
    Status(status::StatusArgs),
    /// Copy afxdp-cni into the node's CNI bin dir, atomically, under each
    /// plugin name (the DaemonSet's init container).
    InstallCni(install_cni::InstallCniArgs),
}

#[derive(Debug, Subcommand)]
enum InventoryCommand {
    /// Print every netdev of this netns (name, driver, pci, mac, numa, queues, ...).
    Dump,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file; prints every error at once.
    Check { path: PathBuf },
}

/// The single-threaded runtime of the commands that talk to a registry.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { path },
        } => match afxdp_config::check_file(&path) {
            Ok(cfg) => {
                let pools: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
                println!(
                    "{}: valid ({} pools: {})",
                    path.display(),
                    pools.len(),
                    pools.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid", path.display());
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Inventory {
            command: InventoryCommand::Dump,
        } => match afxdp_netdev::list() {
            Ok(devs) => {
                let out: Vec<serde_json::Value> = devs
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "name": d.name, "driver": d.driver, "pci": d.pci, "mac": d.mac,
                            "numaNode": d.numa_node, "rxQueues": d.rx_queues, "txQueues": d.tx_queues,
                            "speedMbps": d.speed_mbps, "addresses": d.addresses,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("inventory: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Policy { command } => match policy::run(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("policy: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Status(args) => match status::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("status: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Image { command } => match image::run(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("image: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::InstallCni(args) => match install_cni::run(&args) {
            Ok(paths) => {
                for p in paths {
                    println!("installed {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("install-cni: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Lab(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            // Colour only on a terminal, never in a redirected log.
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            match lab::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lab failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
