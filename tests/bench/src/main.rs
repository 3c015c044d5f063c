//! `afxdp-bench`: the data path measured against its peers in one run.
//!
//! Prints one table (every row a value and its ratio to a floor or a peer
//! measured in the same run) and writes it as JSON for comparison across
//! commits. Needs root (netns, veths, `bpf(2)`). `tests/bench.sh` builds and
//! runs it; `--quick` bounds it for CI, which only proves it works.

mod bpfman;
mod control;
mod prog_cost;
mod receivers;
mod rx_bed;
mod rx_rate;
mod scale;
mod scale_dp;
mod table;
mod testrun;

use anyhow::{Context, Result};
use clap::Parser;
use receivers::Binaries;
use serde::Serialize;
use std::{path::PathBuf, time::Instant};
use table::Row;

#[derive(Parser, Debug)]
#[command(about = "afxdp-rs data-path bench: one table of ratios measured in the same run")]
struct Args {
    /// Few, short runs: proves the bench works, figures are rough.
    #[arg(long)]
    quick: bool,
    /// Also write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only these sections (default: all). Known: prog-cost, rx-rate, control, scale, bpfman.
    #[arg(long = "section")]
    sections: Vec<String>,
    /// afxdp-pod-app binary (default: beside this one).
    #[arg(long)]
    pod_app: Option<PathBuf>,
    /// The libxdp receiver tests/bench.sh compiles from tests/bench/c
    /// (default: target/bench/xsk-rx-libxdp).
    #[arg(long)]
    libxdp_rx: Option<PathBuf>,
    /// How the AF_XDP receivers of the receive-rate section wait for
    /// frames: poll (sleep), spin (on the rx ring) or busy-poll. They
    /// share their core with the receive NAPI thread: one that spins takes
    /// half of it from NAPI.
    #[arg(long, default_value = "poll", value_parser = ["poll", "spin", "busy-poll"])]
    rx_mode: String,
    /// SCHED_FIFO priority of every receiver of the receive-rate section
    /// (0: normal scheduling). On a shared machine a receiver at normal
    /// priority loses its CPU to other tasks (and to the receive NAPI
    /// thread beside it) for longer than its fill ring lasts; at FIFO it
    /// runs as soon as frames wake it, as on a core of its own.
    #[arg(long, default_value_t = 10)]
    rx_fifo_priority: i32,
}

/// How long each measurement runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Settings {
    /// Measurements per cell; the table shows their median.
    pub runs: usize,
    /// `BPF_PROG_TEST_RUN` repetitions per measurement.
    pub test_run_repeat: u32,
    /// Receive-rate measurements per receiver.
    pub rate_runs: usize,
    /// Frames sent per receive-rate measurement (the full run's 10 M take
    /// about 15 s at this machine's ~0.7 Mpps: 24 of them, 2 layouts).
    pub rate_frames: u32,
    /// Netdev counts of the scale section.
    pub scale_sizes: &'static [usize],
    /// Allocate calls timed per configuration (control plane).
    pub allocations: usize,
    /// Calls timed per policy decision (control plane).
    pub decisions: usize,
    /// Link down/up pairs timed per size (scale, ListAndWatch).
    pub link_changes: usize,
    /// Allocate calls per size (scale).
    pub scale_allocations: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Settings {
                runs: 3,
                test_run_repeat: 200_000,
                rate_runs: 1,
                rate_frames: 500_000,
                scale_sizes: &[64, 256],
                allocations: 20,
                decisions: 300,
                link_changes: 3,
                scale_allocations: 100,
            }
        } else {
            Settings {
                runs: 7,
                test_run_repeat: 10_000_000,
                rate_runs: 3,
                rate_frames: 10_000_000,
                scale_sizes: &[64, 256, 1024],
                allocations: 200,
                decisions: 5000,
                link_changes: 10,
                scale_allocations: 1000,
            }
        }
    }
}

/// The machine a table was measured on.
#[derive(Debug, Serialize)]
struct Machine {
    kernel: String,
    cpu: String,
    cores: usize,
}

impl Machine {
    fn here() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Machine { kernel, cpu, cores }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    machine: Machine,
    settings: Settings,
    quick: bool,
    rows: &'a [Row],
}

type Section = fn(&Settings, &Binaries) -> Result<Vec<Row>>;

const SECTIONS: [(&str, Section); 5] = [
    ("prog-cost", |s, _| prog_cost::run(s)),
    ("rx-rate", rx_rate::run),
    ("control", |s, _| control::run(s)),
    ("scale", |s, _| scale::run(s)),
    ("bpfman", |s, _| bpfman::run(s)),
];

/// The receivers' binaries: given, else where tests/bench.sh builds them.
fn binaries(args: &Args) -> Result<Binaries> {
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().context("no directory of current_exe")?;
    Ok(Binaries {
        pod_app: args
            .pod_app
            .clone()
            .unwrap_or_else(|| dir.join("afxdp-pod-app")),
        libxdp_rx: args
            .libxdp_rx
            .clone()
            .unwrap_or_else(|| dir.join("../bench/xsk-rx-libxdp")),
        rx_mode: args.rx_mode.clone(),
        rx_fifo: (args.rx_fifo_priority > 0).then_some(args.rx_fifo_priority),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    for s in &args.sections {
        if !SECTIONS.iter().any(|(n, _)| n == s) {
            anyhow::bail!(
                "unknown section {s:?}; known: {:?}",
                SECTIONS.map(|(n, _)| n)
            );
        }
    }
    let settings = Settings::new(args.quick);
    let bins = binaries(&args)?;
    let mut rows = Vec::new();
    for (name, section) in SECTIONS {
        if !args.sections.is_empty() && !args.sections.iter().any(|s| s == name) {
            continue;
        }
        let start = Instant::now();
        rows.extend(section(&settings, &bins).with_context(|| format!("section {name}"))?);
        eprintln!(
            "afxdp-bench: {name} took {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let machine = Machine::here();
    println!(
        "machine: {} · {} cores · Linux {}",
        machine.cpu, machine.cores, machine.kernel
    );
    print!("{}", table::render(&rows));
    if let Some(path) = &args.json {
        let report = Report {
            machine,
            settings,
            quick: args.quick,
            rows: &rows,
        };
        write_report(path, &report)?;
    }
    Ok(())
}

/// Writes the JSON report, creating its directory (a clean clone has no
/// `target/bench`).
fn write_report(path: &std::path::Path, report: &Report) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))
}
