//! Section "af_xdp receive rate": 64-byte frames sent as fast as one core
//! can (live-frames `XDP_TX` on the wire veth, else `AF_PACKET`
//! `sendmmsg`) into one rx queue, taken by each receiver of [`receivers`]
//! in turn, rounds interleaved. Every rate is frames the receiver got over
//! the sender's time.
//!
//! Who runs where (2 cores): the sender alone on CPU 0; on CPU 1 the rx
//! end's NAPI, threaded and pinned there by the bed (the XDP program, and
//! for AF_XDP the copy into the UMEM), and the receiving process. So the
//! sender offers the same load to every row, and each row is what one
//! receive core sustains. The notes split that core's time per frame
//! between NAPI (its kthread's CPU time over the frames its XDP program
//! saw) and the receiver.
//!
//! Then all queues: a veth with one queue per CPU (2 here), one sender
//! thread per CPU (`AF_PACKET` picks the tx queue, so the rx queue, from
//! the sending CPU: with 2 CPUs at most 2 queues carry traffic), each
//! queue's NAPI kthread pinned to its sender's CPU, and the receiver on
//! all queues, placed by the scheduler. Every CPU then sends, runs NAPI
//! and shares the receiver: these rows are what the whole machine
//! sustains.
//!
//! The AF_XDP copy-mode floor is the pod app row's NAPI time alone: the
//! rate CPU 1 would deliver into the UMEM with a receiver that cost
//! nothing. When 0.8× the ceiling lies above it, the pod app is held to
//! 0.8× that floor instead (the project's rule for a target below a
//! physical floor measured in the same run).

use crate::{
    receivers::{self, Binaries, Kind, Received, Sched},
    rx_bed::Testbed,
    table::{median, Row},
    Settings,
};
use afxdp_testnet::PinRoot;
use anyhow::Result;
use std::time::Duration;

const SECTION: &str = "af_xdp receive rate";
const SENDER_CPU: usize = 0;
const RECEIVER_CPU: usize = 1;
/// After the sender stops, frames still in rings reach the receiver.
const SETTLE: Duration = Duration::from_millis(200);

/// One measurement of one receiver.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Frames the receiver got per µs of sending (Mpps).
    mpps: f64,
    /// Frames sent per µs (the offered load).
    offered_mpps: f64,
    got: Received,
    /// The receive NAPI's CPU time during the measurement.
    napi: Sched,
    /// Frames the rx end's XDP program saw.
    xdp_frames: u64,
    /// Queues that carried frames, and the busiest one's share.
    queues_hit: usize,
    busiest_share: f64,
    /// How long sending took.
    wall: Duration,
}

impl Sample {
    /// The receive NAPI's CPU time per frame it handled (ns).
    fn napi_ns_per_frame(&self) -> f64 {
        self.napi.cpu.as_nanos() as f64 / self.xdp_frames.max(1) as f64
    }

    /// Receive-side CPU time per frame received: NAPI and receiver (ns).
    fn core_ns_per_frame(&self) -> f64 {
        let receiver = self.got.cpu.unwrap_or_default().as_nanos() as f64;
        self.napi_ns_per_frame() + receiver / self.got.packets.max(1) as f64
    }

    /// What one receive core would sustain at that cost (Mpps): the
    /// comparison that stays fair when the sender, not the receive side,
    /// bounds the measured rates.
    fn core_capacity_mpps(&self) -> f64 {
        1e3 / self.core_ns_per_frame().max(f64::MIN_POSITIVE)
    }
}

/// Where senders, NAPI and receivers run.
struct Layout {
    /// Row name prefix.
    name: String,
    queues: u32,
    sender_cpus: Vec<usize>,
    napi_cpus: Vec<usize>,
    receiver_cpu: Option<usize>,
    /// Who does what, for the notes' time split.
    cores: &'static str,
}

impl Layout {
    fn one_queue() -> Self {
        Layout {
            name: "1 queue".into(),
            queues: 1,
            sender_cpus: vec![SENDER_CPU],
            napi_cpus: vec![RECEIVER_CPU],
            receiver_cpu: Some(RECEIVER_CPU),
            cores: "CPU 1",
        }
    }

    /// One queue per CPU (at most 8).
    fn all_queues() -> Self {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let all: Vec<usize> = (0..cpus).collect();
        Layout {
            name: format!("all {cpus} queues"),
            queues: cpus as u32,
            sender_cpus: all.clone(),
            napi_cpus: all,
            receiver_cpu: None,
            cores: "all CPUs (each sends to its queue and runs its NAPI)",
        }
    }
}

/// Runs the section on one queue, then on all queues.
pub fn run(settings: &Settings, bins: &Binaries) -> Result<Vec<Row>> {
    // Under /run: the confined pod app's /tmp is its own tmpfs.
    let scratch = PinRoot::new_in(std::path::Path::new("/run"))?;
    let mut out = Vec::new();
    for layout in [Layout::one_queue(), Layout::all_queues()] {
        let bed = Testbed::new(layout.queues, &layout.napi_cpus)?;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Kind::ALL.len()];
        for _ in 0..settings.rate_runs {
            for (kind, s) in Kind::ALL.into_iter().zip(samples.iter_mut()) {
                s.push(measure(
                    kind,
                    &bed,
                    bins,
                    &scratch,
                    settings.rate_frames,
                    &layout,
                )?);
            }
        }
        out.extend(rows(&samples, bed.sender_name(), &layout, bins.rx_fifo));
    }
    Ok(out)
}

fn measure(
    kind: Kind,
    bed: &Testbed,
    bins: &Binaries,
    scratch: &PinRoot,
    frames: u32,
    layout: &Layout,
) -> Result<Sample> {
    let rx = receivers::start(kind, bed, bins, scratch, layout.receiver_cpu)?;
    let (napi_before, xdp_before) = (bed.napi_sched()?, bed.rx_xdp_packets_per_queue()?);
    let sent = bed.send(frames, &layout.sender_cpus);
    std::thread::sleep(SETTLE);
    let (napi, xdp_after) = (bed.napi_sched(), bed.rx_xdp_packets_per_queue());
    let got = rx.finish(bed);
    let (wall, got) = (sent?, got?);
    let per_queue: Vec<u64> = xdp_after?
        .iter()
        .zip(&xdp_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let xdp_frames: u64 = per_queue.iter().sum();
    let us = wall.as_secs_f64() * 1e6;
    Ok(Sample {
        mpps: got.packets as f64 / us,
        offered_mpps: f64::from(frames) / us,
        wall,
        got,
        napi: napi?.since(napi_before),
        xdp_frames,
        queues_hit: per_queue.iter().filter(|&&n| n > 0).count(),
        busiest_share: per_queue.iter().copied().max().unwrap_or(0) as f64
            / xdp_frames.max(1) as f64,
    })
}

/// The median sample of a receiver's runs, by rate.
fn median_of(samples: &[Sample]) -> Sample {
    let mut rates: Vec<f64> = samples.iter().map(|s| s.mpps).collect();
    let m = median(&mut rates);
    *samples
        .iter()
        .min_by(|a, b| (a.mpps - m).abs().total_cmp(&(b.mpps - m).abs()))
        .expect("at least one run")
}

fn rows(samples: &[Vec<Sample>], sender: &str, layout: &Layout, fifo: Option<i32>) -> Vec<Row> {
    let med: Vec<Sample> = samples.iter().map(|s| median_of(s)).collect();
    let prefix = format!("{}: ", layout.name);
    let row = |kind: Kind| {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let s = med[i];
        let r = Row::new(SECTION, format!("{prefix}{}", kind.name()), s.mpps, "Mpps")
            .note(note(&s, sender, layout, fifo));
        (r, s)
    };
    let (ceiling, _) = row(Kind::DropCeiling);
    let (udp, udp_s) = row(Kind::UdpSocket);
    let (libxdp, libxdp_s) = row(Kind::Libxdp);
    let (ours, ours_s) = row(Kind::PodApp);
    let floor = floor_row(&ours_s, layout);
    let drops = ours_s.got.fill_ring_empty.unwrap_or(0);
    let ours_vs_ceiling = versus_ceiling(&ours, &ceiling, &floor, drops);
    let vs = |peer: &Row, peer_s: &Sample, text: &str, at_least: f64| {
        let mut r = ours.clone().versus(peer);
        r.name = format!(
            "{prefix}afxdp-pod-app vs {}",
            peer.name.trim_start_matches(prefix.as_str())
        );
        r.note = Some(capacity_note(&ours_s, peer_s, at_least));
        let met = r.ratio.is_some_and(|x| x >= at_least);
        r.target(text, met)
    };
    vec![
        ceiling.clone(),
        udp.clone().versus(&ceiling),
        libxdp.clone().versus(&ceiling),
        floor.clone().versus(&ceiling),
        ours_vs_ceiling,
        vs(&udp, &udp_s, "≥ 5× the UDP socket", 5.0),
        vs(&libxdp, &libxdp_s, "≥ the libxdp receiver", 1.0),
    ]
}

/// The AF_XDP copy-mode floor: what the receive core delivers into the
/// UMEM when it runs NAPI alone (the pod app row's NAPI time per frame).
fn floor_row(ours: &Sample, layout: &Layout) -> Row {
    // NAPI time per frame summed over queues; the queues' NAPIs run on
    // as many CPUs, so the machine delivers that many times the rate.
    let ns = ours.napi_ns_per_frame();
    let napi_cpus = layout.napi_cpus.len().max(1) as f64;
    Row::new(
        SECTION,
        format!(
            "{}: AF_XDP copy-mode floor (receive NAPI alone)",
            layout.name
        ),
        if ns > 0.0 { 1e3 * napi_cpus / ns } else { 0.0 },
        "Mpps",
    )
    .note(format!(
        "the receive NAPI in the pod app row: XDP program + redirect + copy into the UMEM, {ns:.0} ns/frame on {}, with no receiver",
        layout.cores
    ))
}

/// The pod app against the ceiling: ≥ 0.8× it, or, where 0.8× the
/// ceiling lies above the copy-mode floor, ≥ 0.8× that floor; and no
/// fill-ring drops.
fn versus_ceiling(ours: &Row, ceiling: &Row, floor: &Row, drops: u64) -> Row {
    let target = 0.8 * ceiling.value;
    let row = ours.clone().versus(ceiling);
    if target <= floor.value {
        let met = ours.value >= target && drops == 0;
        return row.target("≥ 0.8× ceiling, no fill-ring drops", met);
    }
    let of_floor = ours.value / floor.value.max(f64::MIN_POSITIVE);
    let met = of_floor >= 0.8 && drops == 0;
    row.target(
        format!(
            "at the floor: 0.8× ceiling ({target:.2} Mpps) is above the copy-mode floor ({:.2} Mpps); ours {of_floor:.2}× the floor (≥ 0.8×), no fill-ring drops",
            floor.value
        ),
        met,
    )
}

/// The receive side's CPU per frame of ours against a peer's, as
/// capacities (Mpps one core would sustain), and whether `at_least` times
/// the peer's capacity lies above one core's copy-mode floor (our NAPI
/// time alone).
fn capacity_note(ours: &Sample, peer: &Sample, at_least: f64) -> String {
    let floor = 1e3 / ours.napi_ns_per_frame().max(f64::MIN_POSITIVE);
    let (o, p) = (ours.core_capacity_mpps(), peer.core_capacity_mpps());
    let mut text = format!(
        "receive-side CPU per frame: ours {:.0} ns, the peer {:.0} ns; as one core's capacity {o:.2} vs {p:.2} Mpps = {:.2}×",
        ours.core_ns_per_frame(),
        peer.core_ns_per_frame(),
        o / p.max(f64::MIN_POSITIVE)
    );
    if at_least * p > floor {
        text.push_str(&format!(
            "; {at_least}× the peer's capacity ({:.2} Mpps) is above one core's copy-mode floor ({floor:.2} Mpps): at the floor",
            at_least * p,
        ));
    }
    text
}

/// Offered load, where the receive core's time goes, and for socket
/// receivers their drops and CPU waits.
fn note(s: &Sample, sender: &str, layout: &Layout, fifo: Option<i32>) -> String {
    let senders = match layout.sender_cpus.as_slice() {
        [one] => format!("CPU {one}"),
        all => format!("{} threads, one per CPU", all.len()),
    };
    let mut parts = vec![format!(
        "offered {:.2} Mpps by {sender} on {senders}",
        s.offered_mpps
    )];
    if layout.queues > 1 {
        parts.push(format!(
            "frames on {} of {} queues, the busiest {:.0}%",
            s.queues_hit,
            layout.queues,
            s.busiest_share * 100.0
        ));
    }
    let mut cpu1 = format!(
        "{}: NAPI {:.0} ns/frame",
        layout.cores,
        s.napi_ns_per_frame()
    );
    if let Some(cpu) = s.got.cpu {
        let per = cpu.as_nanos() as f64 / s.got.packets.max(1) as f64;
        cpu1.push_str(&format!(" + receiver {per:.0} ns/frame"));
        if let Some(prio) = fifo {
            cpu1.push_str(&format!(" (SCHED_FIFO {prio})"));
        }
        if let Some(runs) = s.got.runs.filter(|&r| r > 0) {
            // A receiver that sleeps when idle pays a context switch per
            // wakeup: its CPU per frame is mostly that cost over the
            // frames each wakeup finds, which the arrival pattern sets.
            cpu1.push_str(&format!(
                " ({:.0} frames and {:.1} µs CPU per wakeup)",
                s.got.packets as f64 / runs as f64,
                cpu.as_secs_f64() * 1e6 / runs as f64
            ));
        }
    }
    if layout.receiver_cpu.is_some() {
        // The receive core's load while sending: below 100% the sender,
        // not the receive side, bounds the row.
        let busy = (s.napi.cpu + s.got.cpu.unwrap_or_default()).as_secs_f64()
            / s.wall.as_secs_f64().max(f64::MIN_POSITIVE);
        cpu1.push_str(&format!(" (busy {:.0}% of the time)", busy * 100.0));
    }
    parts.push(cpu1);
    if let Some(n) = s.got.fill_ring_empty {
        parts.push(format!("fill ring empty ×{n}"));
    }
    if let Some(w) = s.got.waited {
        parts.push(format!(
            "receiver waited {:.1} ms for its CPU",
            w.as_secs_f64() * 1e3
        ));
    }
    parts.join(", ")
}
