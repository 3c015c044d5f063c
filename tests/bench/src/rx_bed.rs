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
}

impl Testbed {
    /// Makes the netns and veth pair (`queues` each), addresses and MACs,
    /// with the rx end's NAPI threaded and pinned to `napi_cpu`.
    pub fn new(queues: u32, napi_cpu: usize) -> Result<Self> {
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
        let napi_threads = threaded_napi(&ns, napi_cpu)?;
        Ok(Testbed {
            ns,
            _veth: veth,
            rx_ifindex,
            wire_ifindex,
            sender,
            frame,
            napi_threads,
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
        }
        Ok(sum)
    }

    /// The sender's name, for the rows' notes.
    pub fn sender_name(&self) -> &'static str {
        match self.sender {
            Sender::LiveFrames(_) => "live-frames XDP_TX",
            Sender::Packet(_) => "AF_PACKET sendmmsg (live frames refused)",
        }
    }

    /// Sends `count` frames from one thread pinned to `cpu`; returns how
    /// long sending took (blocks that long).
    pub fn send(&self, count: u32, cpu: usize) -> Result<Duration> {
        self.ns.run(|| {
            pin_current_thread(cpu)?;
            let start = Instant::now();
            match &self.sender {
                Sender::LiveFrames(prog) => {
                    live_frames(prog, self.wire_ifindex, &self.frame, count)?;
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
        let stats = self.ns.exec(&["ethtool", "-S", RX_DEV])?;
        let total = sum_queue_stat(&stats, "xdp_packets");
        match total {
            Some(n) => Ok(n),
            None => bail!("no rx_queue_*_xdp_packets in ethtool -S {RX_DEV}:\n{stats}"),
        }
    }
}

/// Turns the rx end's NAPI threaded (GRO on first: veth then keeps its
/// NAPI, and the kthread, while receivers attach and detach XDP) and pins
/// the kthreads to `cpu`; returns their pids. The setting dies with the
/// netns.
fn threaded_napi(ns: &Netns, cpu: usize) -> Result<Vec<u32>> {
    // Kernel threads are not in any netns: the bed's own are those that
    // appear now (another netns's afxbr0 may have some already).
    let before = napi_kthreads()?;
    ns.exec(&["ethtool", "-K", RX_DEV, "gro", "on"])?;
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{RX_DEV}/threaded"),
    ])?;
    let pids: Vec<u32> = napi_kthreads()?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if pids.is_empty() {
        bail!("no napi/{RX_DEV}-* kthread after enabling threaded NAPI on {RX_DEV}");
    }
    for &pid in &pids {
        pin_task(pid, cpu).with_context(|| format!("pinning napi kthread {pid}"))?;
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
    let probe = ns.run(|| live_frames(&prog, wire_ifindex, frame, 1))?;
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

fn live_frames(prog: &OwnedFd, ifindex: u32, frame: &[u8], count: u32) -> std::io::Result<()> {
    let run = TestRun {
        frame,
        ifindex,
        rx_queue: 0,
        repeat: count,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: SEND_BATCH,
    };
    test_run(prog.as_fd(), &run).map(|_| ())
}

/// Sum of `rx_queue_<n>_<name>` over the queues in `ethtool -S` output.
fn sum_queue_stat(stats: &str, name: &str) -> Option<u64> {
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
    (!values.is_empty()).then(|| values.iter().sum())
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
    fn queue_stats_are_summed() {
        let s = "NIC statistics:\n     rx_queue_0_xdp_packets: 10\n     rx_queue_1_xdp_packets: 5\n     rx_queue_0_xdp_bytes: 640\n     tx_queue_0_xdp_packets: 99\n";
        assert_eq!(sum_queue_stat(s, "xdp_packets"), Some(15));
        assert_eq!(sum_queue_stat(s, "nope"), None);
    }
}
