//! Flooding the lab's pods (`afxdpctl lab --flood`, the flood test): each
//! pod's wire side sends 64-byte UDP frames to
//! `flows` ports as fast as one `AF_PACKET` socket can
//! (`afxdp_testnet::packet_sender`), on its own thread until stopped. The
//! live table then shows the receive rates. The rx queue a frame lands on
//! follows the CPU its sender ran on (see `packet_sender`), so the rates
//! show on as many queues as the node has CPUs.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
use std::thread::JoinHandle;

use afxdp_testnet::{frame::udp_frame, packet_sender::PacketSender};

use crate::{step, Lab, LabError};

/// Frames per port before the next port's turn.
const PER_PORT: u32 = 64;
const FIRST_PORT: u16 = 9000;

/// The senders of every pod's NIC.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    /// Starts one sender thread per pod, each on its NIC's wire side.
    ///
    /// # Errors
    /// A pod without its NIC, or the socket refused.
    pub fn start(lab: &Lab, flows: u16) -> Result<Self, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for pod in &lab.pods {
            let nic = lab
                .nics
                .iter()
                .find(|n| n.name == pod.device)
                .ok_or_else(|| step("flood")(format!("no NIC {}", pod.device)))?;
            let peer = nic.peer.clone();
            // The socket is opened in the wire netns and stays bound to it.
            let socket = lab
                .wire
                .run(|| {
                    let ifindex = nix::net::if_::if_nametoindex(peer.as_str())?;
                    PacketSender::open(ifindex)
                })
                .map_err(|e| step("flood")(e.to_string()))?
                .map_err(|e| step(format!("AF_PACKET socket on {peer}"))(e.to_string()))?;
            let frames: Vec<_> = (0..flows.max(1))
                .map(|i| udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], FIRST_PORT + i))
                .collect();
            let (stop, sent) = (stop.clone(), sent.clone());
            threads.push(std::thread::spawn(move || {
                send_until(&socket, &frames, &stop, &sent)
            }));
        }
        Ok(Flood {
            stop,
            sent,
            threads,
        })
    }

    /// Frames handed to the NICs so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the senders and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Sends `frames` round robin until `stop`, counting into `sent`; a send
/// error ends the thread (logged).
fn send_until(socket: &PacketSender, frames: &[[u8; 64]], stop: &AtomicBool, sent: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        for frame in frames {
            if let Err(e) = socket.send(frame, PER_PORT) {
                tracing::error!(error = %e, "flood sender stopped");
                return;
            }
            sent.fetch_add(u64::from(PER_PORT), Ordering::Relaxed);
        }
    }
}
