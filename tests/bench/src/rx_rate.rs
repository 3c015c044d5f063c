//! Section "af_xdp receive rate": 64-byte frames sent as fast as one core
//! can (live-frames `XDP_TX` on the wire veth, CPU 0) into one rx queue,
//! taken by each receiver of [`receivers`] on CPU 1 in turn, rounds
//! interleaved. Every rate is frames the receiver got over the sender's
//! time, so all rows share one offered load and one clock.
//!
//! veth runs the rx end's XDP program (and, in copy mode, the copy into
//! the UMEM) in the sender's NAPI on CPU 0; CPU 1 holds only the
//! receiving process, whose CPU time per frame the notes show.

use crate::{
    receivers::{self, Binaries, Kind, Received},
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
}

/// Runs the section on one queue.
pub fn run(settings: &Settings, bins: &Binaries) -> Result<Vec<Row>> {
    let bed = Testbed::new(1)?;
    // Under /run: the confined pod app's /tmp is its own tmpfs.
    let scratch = PinRoot::new_in(std::path::Path::new("/run"))?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Kind::ALL.len()];
    for _ in 0..settings.rate_runs {
        for (kind, s) in Kind::ALL.into_iter().zip(samples.iter_mut()) {
            s.push(measure(kind, &bed, bins, &scratch, settings.rate_frames)?);
        }
    }
    Ok(rows(&samples, bed.sender_name()))
}

fn measure(
    kind: Kind,
    bed: &Testbed,
    bins: &Binaries,
    scratch: &PinRoot,
    frames: u32,
) -> Result<Sample> {
    let rx = receivers::start(kind, bed, bins, scratch, RECEIVER_CPU)?;
    let sent = bed.send(frames, SENDER_CPU);
    std::thread::sleep(SETTLE);
    let got = rx.finish(bed);
    let (wall, got) = (sent?, got?);
    let us = wall.as_secs_f64() * 1e6;
    Ok(Sample {
        mpps: got.packets as f64 / us,
        offered_mpps: f64::from(frames) / us,
        got,
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

fn rows(samples: &[Vec<Sample>], sender: &str) -> Vec<Row> {
    let med: Vec<Sample> = samples.iter().map(|s| median_of(s)).collect();
    let row = |kind: Kind| {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let s = med[i];
        let r = Row::new(SECTION, format!("1 queue: {}", kind.name()), s.mpps, "Mpps")
            .note(note(&s, sender));
        (r, s)
    };
    let (ceiling, _) = row(Kind::DropCeiling);
    let (udp, _) = row(Kind::UdpSocket);
    let (libxdp, _) = row(Kind::Libxdp);
    let (ours, ours_s) = row(Kind::PodApp);
    let ceiling_ratio = ours.value / ceiling.value.max(f64::MIN_POSITIVE);
    let drops = ours_s.got.fill_ring_empty.unwrap_or(0);
    let ours_vs_ceiling = ours.clone().versus(&ceiling).target(
        "≥ 0.8× ceiling, no fill-ring drops",
        ceiling_ratio >= 0.8 && drops == 0,
    );
    let vs = |peer: &Row, text: &str, at_least: f64| {
        let mut r = ours.clone().versus(peer);
        r.name = format!(
            "1 queue: afxdp-pod-app vs {}",
            peer.name.trim_start_matches("1 queue: ")
        );
        r.note = None;
        let met = r.ratio.is_some_and(|x| x >= at_least);
        r.target(text, met)
    };
    vec![
        ceiling.clone(),
        udp.clone().versus(&ceiling),
        libxdp.clone().versus(&ceiling),
        ours_vs_ceiling,
        vs(&udp, "≥ 5× the UDP socket", 5.0),
        vs(&libxdp, "≥ the libxdp receiver", 1.0),
    ]
}

/// Offered load, and for socket receivers their CPU per frame and drops.
fn note(s: &Sample, sender: &str) -> String {
    let mut parts = vec![format!("offered {:.2} Mpps by {sender}", s.offered_mpps)];
    if let Some(cpu) = s.got.cpu {
        let per = cpu.as_nanos() as f64 / s.got.packets.max(1) as f64;
        parts.push(format!("receiver CPU {per:.0} ns/frame"));
    }
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
