//! The receive-rate testbed: a netns the bench made, holding a veth pair.
//! Receivers sit on the rx end ([`RX_DEV`], 10.99.0.2/24, fixed MAC); the
//! sender is a live-frames `BPF_PROG_TEST_RUN` of an `XDP_TX` program on
//! the wire end, which veth hands to the rx end's XDP program (veth takes
//! such frames only when the rx end runs XDP, so every receiver keeps a
//! program there). Where the kernel refuses live frames (`EPERM`), an
//! `AF_PACKET` socket sends instead ([`PacketSender`]), slower: the rows
//! name the sender and the load it offered.
//!
//! veth runs the rx end's NAPI (its XDP program, and for AF_XDP the copy
//! into the UMEM) in softirq on the CPU that sent the frame, so the
//! sender's CPU would pay each receiver's kernel cost and every row would
//! offer its own load. The bed makes the rx end's NAPI threaded instead
//! (GRO on, which keeps NAPI up between receivers, then
//! `/sys/class/net/<rx>/threaded`) and pins its kthreads
//! (`napi/<rx>-<id>`) to the receive CPU: the sender's CPU only sends.

use crate::receivers::Sched;
use crate::testrun::{
    load_return_program, test_run, TestRun, XdpAction, BPF_F_TEST_XDP_LIVE_FRAMES,
};
use afxdp_testnet::{frame::udp_frame, packet_sender::PacketSender, Netns, VethOptions, VethPair};
use anyhow::{bail, Context, Result};
use nix::net::if_::if_nametoindex;
use std::{
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

/// The rx end, where receivers sit.
pub const RX_DEV: &str = "afxbr0";
/// The wire end, where the sender runs.
pub const WIRE_DEV: &str = "afxbr1";
const RX_MAC: [u8; 6] = [0x02, 0xaf, 0xb0, 0, 0, 2];
const WIRE_MAC: [u8; 6] = [0x02, 0xaf, 0xb0, 0, 0, 1];
/// The UDP port the frames go to.
pub const UDP_PORT: u16 = 9001;
/// The rx end's address (the frames' destination).
pub const RX_ADDR: &str = "10.99.0.2";
/// Frames per live-frames batch (the kernel's maximum).
const SEND_BATCH: u32 = 256;

/// How frames leave the wire end.
enum Sender {
    /// Live-frames test runs of an `XDP_TX` program.
    LiveFrames(OwnedFd),
    /// An `AF_PACKET` socket, where the kernel refuses live frames.
    Packet(PacketSender),
}

/// The netns, its veth pair and the sender.
pub struct Testbed {
    pub ns: Netns,
    _veth: VethPair,
    pub rx_ifindex: u32,
    wire_ifindex: u32,
    sender: Sender,
    frame: [u8; afxdp_testnet::frame::FRAME_LEN],
    /// The rx end's threaded-NAPI kthreads.
    napi_threads: Vec<u32>,
    queues: u32,
}

impl Testbed {
    /// Makes the netns and veth pair (`queues` each), addresses and MACs,
    /// with the rx end's NAPI threaded: the kthread of queue `q` pinned to
    /// `napi_cpus[q % len]`.
    pub fn new(queues: u32, napi_cpus: &[usize]) -> Result<Self> {
        let ns = Netns::new("afxb-rx")?;
        let veth = VethPair::create(
            VethOptions::new(RX_DEV, WIRE_DEV)
                .a_netns(&ns)
                .b_netns(&ns)
                .queues(queues),
        )?;
        for (dev, mac) in [(RX_DEV, RX_MAC), (WIRE_DEV, WIRE_MAC)] {
            ns.ip(&["link", "set", dev, "address", &mac_text(mac), "up"])?;
        }
        ns.ip(&["addr", "add", &format!("{RX_ADDR}/24"), "dev", RX_DEV])?;
        let (rx_ifindex, wire_ifindex) =
            ns.run(|| Ok::<_, nix::Error>((if_nametoindex(RX_DEV)?, if_nametoindex(WIRE_DEV)?)))??;
        let frame = udp_frame(WIRE_MAC, RX_MAC, UDP_PORT);
        let sender = choose_sender(&ns, wire_ifindex, &frame)?;
        let napi_threads = threaded_napi(&ns, napi_cpus)?;
        Ok(Testbed {
            ns,
            _veth: veth,
            rx_ifindex,
            wire_ifindex,
            sender,
            frame,
            napi_threads,
            queues,
        })
    }

    /// CPU and wait time of the rx end's NAPI kthreads so far.
    pub fn napi_sched(&self) -> Result<Sched> {
        let mut sum = Sched::default();
        for &pid in &self.napi_threads {
            let s =
                Sched::of_pid(pid).with_context(|| format!("schedstat of napi thread {pid}"))?;
            sum.cpu += s.cpu;
            sum.waited += s.waited;
            sum.runs += s.runs;
        }
        Ok(sum)
    }

    /// Queues of each end.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// The sender's name, for the rows' notes.
    pub fn sender_name(&self) -> &'static str {
        match self.sender {
            Sender::LiveFrames(_) => "live-frames XDP_TX",
            Sender::Packet(_) => "AF_PACKET sendmmsg (live frames refused)",
        }
    }

    /// Sends `count` frames from one thread per CPU of `cpus` (pinned, an
    /// equal share each; `AF_PACKET` picks the tx queue, so the peer's rx
    /// queue, from the sending CPU; live frames go to queue = index);
    /// returns how long the slowest took.
    pub fn send(&self, count: u32, cpus: &[usize]) -> Result<Duration> {
        let share = count / u32::try_from(cpus.len().max(1)).unwrap_or(1);
        std::thread::scope(|s| {
            let threads: Vec<_> = cpus
                .iter()
                .enumerate()
                .map(|(i, &cpu)| s.spawn(move || self.send_on(share, cpu, i as u32)))
                .collect();
            let mut slowest = Duration::ZERO;
            for t in threads {
                let took = t
                    .join()
                    .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
                slowest = slowest.max(took);
            }
            Ok(slowest)
        })
    }

    fn send_on(&self, count: u32, cpu: usize, queue: u32) -> Result<Duration> {
        self.ns.run(|| {
            pin_current_thread(cpu)?;
            let start = Instant::now();
            match &self.sender {
                Sender::LiveFrames(prog) => {
                    live_frames(prog, self.wire_ifindex, &self.frame, count, queue)?;
                }
                Sender::Packet(socket) => {
                    socket.send(&self.frame, count).context("AF_PACKET send")?;
                }
            }
            Ok(start.elapsed())
        })?
    }

    /// Frames the rx end's XDP program saw so far, over all its queues
    /// (veth's `rx_queue_<n>_xdp_packets`).
    pub fn rx_xdp_packets(&self) -> Result<u64> {
        Ok(self.rx_xdp_packets_per_queue()?.iter().sum())
    }

    /// Frames the rx end's XDP program saw so far, per queue.
    pub fn rx_xdp_packets_per_queue(&self) -> Result<Vec<u64>> {
        let stats = self.ns.exec(&["ethtool", "-S", RX_DEV])?;
        match queue_stat(&stats, "xdp_packets") {
            Some(n) => Ok(n),
            None => bail!("no rx_queue_*_xdp_packets in ethtool -S {RX_DEV}:\n{stats}"),
        }
    }
}

/// Turns the rx end's NAPI threaded (GRO on first: veth then keeps its
/// NAPI, and the kthread, while receivers attach and detach XDP) and pins
/// the kthreads to `cpu`; returns their pids. The setting dies with the
/// netns.
fn threaded_napi(ns: &Netns, cpus: &[usize]) -> Result<Vec<u32>> {
    // Kernel threads are not in any netns: the bed's own are those that
    // appear now (another netns's afxbr0 may have some already).
    let before = napi_kthreads()?;
    ns.exec(&["ethtool", "-K", RX_DEV, "gro", "on"])?;
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{RX_DEV}/threaded"),
    ])?;
    // veth makes them queue by queue: pids go up with the queue index.
    let mut found: Vec<u32> = napi_kthreads()?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    found.sort_unstable();
    if found.is_empty() || cpus.is_empty() {
        bail!("no napi/{RX_DEV}-* kthread after enabling threaded NAPI on {RX_DEV}");
    }
    let mut pids = Vec::new();
    for (i, &pid) in found.iter().enumerate() {
        let cpu = cpus[i % cpus.len()];
        pin_task(pid, cpu).with_context(|| format!("pinning napi kthread {pid}"))?;
        pids.push(pid);
    }
    Ok(pids)
}

/// Pids of the kthreads named `napi/<RX_DEV>-<id>`.
fn napi_kthreads() -> Result<Vec<u32>> {
    let prefix = format!("napi/{RX_DEV}-");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(&prefix) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Binds task `pid` to `cpu`.
fn pin_task(pid: u32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in pin_current_thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Live frames where the kernel runs them (one frame sent to probe), else
/// an `AF_PACKET` socket.
fn choose_sender(ns: &Netns, wire_ifindex: u32, frame: &[u8]) -> Result<Sender> {
    let prog = load_return_program("bench_tx", XdpAction::Tx)?;
    let probe = ns.run(|| live_frames(&prog, wire_ifindex, frame, 1, 0))?;
    match probe {
        Ok(()) => Ok(Sender::LiveFrames(prog)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("afxdp-bench: live-frames test runs refused (EPERM): sending with AF_PACKET");
            let socket = ns.run(|| PacketSender::open(wire_ifindex))??;
            Ok(Sender::Packet(socket))
        }
        Err(e) => Err(e).context("live-frames test run"),
    }
}

fn live_frames(
    prog: &OwnedFd,
    ifindex: u32,
    frame: &[u8],
    count: u32,
    rx_queue: u32,
) -> std::io::Result<()> {
    let run = TestRun {
        frame,
        ifindex,
        rx_queue,
        repeat: count,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: SEND_BATCH,
    };
    test_run(prog.as_fd(), &run).map(|_| ())
}

/// `rx_queue_<n>_<name>` of each queue in `ethtool -S` output, in order.
fn queue_stat(stats: &str, name: &str) -> Option<Vec<u64>> {
    let suffix = format!("_{name}:");
    let values: Vec<u64> = stats
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("rx_queue_"))
        .filter_map(|l| {
            let (_, v) = l.split_once(suffix.as_str())?;
            v.trim().parse().ok()
        })
        .collect();
    (!values.is_empty()).then_some(values)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Binds the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    pin_task(0, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_stats_are_read_per_queue() {
        let s = "NIC statistics:\n     rx_queue_0_xdp_packets: 10\n     rx_queue_1_xdp_packets: 5\n     rx_queue_0_xdp_bytes: 640\n     tx_queue_0_xdp_packets: 99\n";
        assert_eq!(queue_stat(s, "xdp_packets"), Some(vec![10, 5]));
        assert_eq!(queue_stat(s, "nope"), None);
    }
}
