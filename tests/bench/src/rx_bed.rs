//! The receive-rate testbed: a netns the bench made, holding a veth pair.
//! Receivers sit on the rx end ([`RX_DEV`], 10.99.0.2/24, fixed MAC); the
//! sender is a live-frames `BPF_PROG_TEST_RUN` of an `XDP_TX` program on
//! the wire end, which veth hands to the rx end's XDP program (veth takes
//! such frames only when the rx end runs XDP, so every receiver keeps a
//! program there). Where the kernel refuses live frames (`EPERM`), an
//! `AF_PACKET` socket sends instead ([`PacketSender`]), slower: the rows
//! name the sender and the load it offered.

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
}

impl Testbed {
    /// Makes the netns and veth pair (`queues` each), addresses and MACs.
    pub fn new(queues: u32) -> Result<Self> {
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
        Ok(Testbed {
            ns,
            _veth: veth,
            rx_ifindex,
            wire_ifindex,
            sender,
            frame,
        })
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
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays in bounds
    // for cpu < CPU_SETSIZE, checked by the kernel's EINVAL otherwise.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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
