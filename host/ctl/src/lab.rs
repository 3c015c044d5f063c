//! `afxdpctl lab`: build the lab node, admit pods, send traffic, print a live
//! table of packets per pod and queue, tear down on exit or Ctrl-C.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use afxdp_lab::{Lab, LabConfig, Sharing};

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Number of pods (one NIC each).
    #[arg(long, default_value_t = 2)]
    pods: usize,
    /// Queues per NIC.
    #[arg(long, default_value_t = 4)]
    queues: u32,
    /// How pods get their XSKMAP: uds or pinned.
    #[arg(long, default_value = "uds")]
    sharing: String,
    /// XDP attach mode: native or generic.
    #[arg(long, default_value = "native")]
    xdp_mode: String,
    /// Run this many seconds, then tear down (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// UDP packets per flow per tick, per pod.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Flows per pod (different ports spread over queues).
    #[arg(long, default_value_t = 8)]
    flows: u16,
    /// Flood: each pod's wire side sends 64-byte frames as fast as an
    /// AF_PACKET socket can (one thread per pod) instead of `--rate`
    /// datagrams per tick; the table shows the receive rates.
    #[arg(long)]
    flood: bool,
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let sharing = match args.sharing.as_str() {
        "uds" => Sharing::Uds,
        "pinned" => Sharing::Pinned,
        other => anyhow::bail!("--sharing must be uds or pinned, not {other:?}"),
    };
    let xdp_mode: &'static str = match args.xdp_mode.as_str() {
        "native" => "native",
        "generic" => "generic",
        other => anyhow::bail!("--xdp-mode must be native or generic, not {other:?}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let cfg = LabConfig {
            nics: args.pods,
            queues: args.queues,
            sharing,
            xdp_mode,
            policy: None,
            ..Default::default()
        };
        eprintln!(
            "building the lab node: {} NICs x {} queues, sharing {}",
            cfg.nics, cfg.queues, args.sharing
        );
        let mut lab = Lab::start(cfg).await.context("starting the lab")?;
        let result = drive(&mut lab, &args).await;
        eprintln!("\ntearing down");
        let down = lab.teardown().await.context("teardown");
        result.and(down)
    })
}

async fn drive(lab: &mut Lab, args: &LabArgs) -> anyhow::Result<()> {
    for i in 0..args.pods {
        let pod = lab
            .add_pod(&format!("pod-{i}"))
            .await
            .with_context(|| format!("admitting pod-{i}"))?;
        let pid = pod.app_pid().unwrap_or(0);
        eprintln!(
            "pod-{i}: device {} via {}, app pid {pid} as uid 65534 with CAP_NET_RAW only",
            pod.device,
            pod.mounts
                .first()
                .map(|(c, h)| format!("{} <- {}", c.display(), h.display()))
                .unwrap_or_default()
        );
    }
    let flood = if args.flood {
        Some(afxdp_lab::flood::Flood::start(lab, args.flows).context("starting the flood")?)
    } else {
        None
    };
    let result = show(lab, args, flood.as_ref()).await;
    if let Some(f) = flood {
        f.stop();
    }
    result
}

/// Sends (unless flooding) and prints the table every tick until Ctrl-C or
/// the duration.
async fn show(
    lab: &mut Lab,
    args: &LabArgs,
    flood: Option<&afxdp_lab::flood::Flood>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut last = Snapshot::default();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tick.tick() => {}
        }
        match flood {
            Some(f) => sent = f.sent(),
            None => {
                let devices: Vec<String> = lab.pods.iter().map(|p| p.device.clone()).collect();
                for d in &devices {
                    sent += lab
                        .send(d, args.flows, args.rate)
                        .context("sending traffic")?;
                }
            }
        }
        last = print_table(lab, sent, start.elapsed(), &last);
        if args.duration > 0 && start.elapsed() >= Duration::from_secs(args.duration) {
            return Ok(());
        }
    }
}

/// Counts at the previous tick, for packets per second over the last interval.
#[derive(Default)]
struct Snapshot {
    at: Option<Instant>,
    counts: std::collections::BTreeMap<(String, u32), u64>,
    sent: u64,
}

fn print_table(lab: &Lab, sent: u64, elapsed: Duration, last: &Snapshot) -> Snapshot {
    let now = Instant::now();
    let interval = last
        .at
        .map(|t| now.duration_since(t).as_secs_f64())
        .unwrap_or(0.0)
        .max(0.001);
    let mut next = Snapshot {
        at: Some(now),
        counts: Default::default(),
        sent: 0,
    };
    let received: u64 = lab.pods.iter().map(|p| p.total()).sum();
    let sent_pps = sent.saturating_sub(last.sent) as f64 / interval;
    next.sent = sent;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[2J\x1b[H");
    let _ = writeln!(
        out,
        "afxdp-rs lab  t={:.1}s  sent={sent} ({sent_pps:.0}/s)  received={received}",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<10} {:<16} {:>6} {:>12} {:>10}",
        "POD", "DEVICE", "QUEUE", "PACKETS", "PPS"
    );
    for pod in &lab.pods {
        let mut pod_pps = 0.0;
        for (q, n) in pod.counts() {
            let before = last
                .counts
                .get(&(pod.name.clone(), q))
                .copied()
                .unwrap_or(0);
            let pps = n.saturating_sub(before) as f64 / interval;
            pod_pps += pps;
            next.counts.insert((pod.name.clone(), q), n);
            let _ = writeln!(
                out,
                "{:<10} {:<16} {:>6} {:>12} {:>10.0}",
                pod.name, pod.device, q, n, pps
            );
        }
        let _ = writeln!(
            out,
            "{:<10} {:<16} {:>6} {:>12} {:>10.0}",
            pod.name,
            pod.device,
            "all",
            pod.total(),
            pod_pps
        );
    }
    let _ = out.flush();
    next
}
