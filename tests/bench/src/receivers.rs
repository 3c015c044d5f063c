//! The receivers the receive-rate section compares, each started on the
//! testbed's rx end before the sender runs and finished after it:
//!
//! - **XDP_DROP ceiling**: the cheapest a program can take a frame; counted
//!   by veth's own XDP counters;
//! - **UDP socket**: `XDP_PASS` in front (veth needs a program there), a
//!   socket on [`RX_ADDR`] read with `recvmmsg` on a thread of the bench;
//! - **afxdp-pod-app**: our built-in program attached by the native
//!   program manager, the app confined as a pod (nobody, CAP_NET_RAW only,
//!   the pinned map bind-mounted), as in pinned-map mode;
//! - **libxdp receiver**: `xsk-rx-libxdp` (tests/bench/c), libxdp loading
//!   its own program, the same ring sizes.
//!
//! Every receiver takes all of the bed's queues and runs on `cpu` (or
//! where the scheduler puts it).

use crate::rx_bed::{pin_current_thread, Testbed, RX_ADDR, RX_DEV, UDP_PORT};
use crate::testrun::{load_return_program, XdpAction};
use afxdp_program::{AttachRequest, NativeManager, ProgramManager, XdpMode};
use afxdp_testnet::pod::{confine, spawn_retrying, stage_binary, ContainerMounts, PodUser};
use afxdp_testnet::PinRoot;
use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, BufReader},
    net::UdpSocket,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

/// UMEM frames of both AF_XDP receivers on one queue (fill and rx rings
/// hold half as many; libxdp's defaults). 8 MiB: the pod's whole
/// `RLIMIT_MEMLOCK`, so on several queues each socket gets its share.
pub const XSK_FRAMES: u32 = 4096;
/// Where the pod sees the pinned-map directory.
const POD_MAP_DIR: &str = "/tmp/afxdp_dp/xsk";
const READY_WITHIN: Duration = Duration::from_secs(10);
const TOTAL_WITHIN: Duration = Duration::from_secs(10);

/// What a receiver got in one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub packets: u64,
    /// Times a frame found the fill ring empty (AF_XDP receivers).
    pub fill_ring_empty: Option<u64>,
    /// CPU time the receiving process or thread used while receiving.
    pub cpu: Option<Duration>,
    /// Time it was runnable but waited for its CPU (other tasks ran
    /// there): an AF_XDP receiver that waits longer than its fill ring
    /// lasts drops frames on an empty fill ring.
    pub waited: Option<Duration>,
    /// Times it was put on a CPU while receiving: wakeups, for a receiver
    /// that sleeps when idle (each costs a context switch, which on this
    /// VM outweighs the per-frame work of an AF_XDP receiver).
    pub runs: Option<u64>,
}

/// The receivers, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DropCeiling,
    PodApp,
    Libxdp,
    UdpSocket,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::DropCeiling,
        Kind::PodApp,
        Kind::Libxdp,
        Kind::UdpSocket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::DropCeiling => "XDP_DROP ceiling",
            Kind::PodApp => "afxdp-pod-app (unprivileged)",
            Kind::Libxdp => "libxdp receiver",
            Kind::UdpSocket => "UDP socket (recvmmsg)",
        }
    }
}

/// The binaries the child receivers run.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub pod_app: PathBuf,
    pub libxdp_rx: PathBuf,
    /// How both AF_XDP receivers wait for frames (afxdp-pod-app's
    /// `--rx-mode`: poll, spin, busy-poll).
    pub rx_mode: String,
    /// Every receiver's `SCHED_FIFO` priority (none: normal scheduling).
    pub rx_fifo: Option<i32>,
}

/// A receiver running on the testbed.
pub trait Receiver {
    /// Stops receiving and reports (after the sender finished).
    fn finish(self: Box<Self>, bed: &Testbed) -> Result<Received>;
}

/// Starts `kind` on every queue of the rx end, receiving on `cpu` (any
/// CPU when `None`); returns once it can receive.
pub fn start(
    kind: Kind,
    bed: &Testbed,
    bins: &Binaries,
    scratch: &PinRoot,
    cpu: Option<usize>,
) -> Result<Box<dyn Receiver>> {
    Ok(match kind {
        Kind::DropCeiling => Box::new(DropCeiling::start(bed)?),
        Kind::UdpSocket => Box::new(UdpReceiver::start(bed, cpu, bins.rx_fifo)?),
        Kind::PodApp => Box::new(PodApp::start(bed, bins, scratch, cpu)?),
        Kind::Libxdp => Box::new(ChildReceiver::libxdp(bed, bins, cpu)?),
    })
}

fn attach_return_program(bed: &Testbed, action: XdpAction) -> Result<OwnedFd> {
    let prog = load_return_program("bench_rx", action)?;
    let ifindex = bed.rx_ifindex;
    let link = bed
        .ns
        .run(|| afxdp_program::attach_xdp_link(prog.as_fd(), ifindex, XdpMode::Native))?
        .with_context(|| format!("attaching {action:?} to {RX_DEV}"))?;
    Ok(link)
}

struct DropCeiling {
    _link: OwnedFd,
    before: u64,
}

impl DropCeiling {
    fn start(bed: &Testbed) -> Result<Self> {
        let link = attach_return_program(bed, XdpAction::Drop)?;
        Ok(DropCeiling {
            _link: link,
            before: bed.rx_xdp_packets()?,
        })
    }
}

impl Receiver for DropCeiling {
    fn finish(self: Box<Self>, bed: &Testbed) -> Result<Received> {
        Ok(Received {
            packets: bed.rx_xdp_packets()? - self.before,
            ..Default::default()
        })
    }
}

/// `recvmmsg` batch and buffer per message.
const UDP_BATCH: usize = 64;
const UDP_BUF: usize = 2048;
const UDP_RCVBUF: libc::c_int = 4 << 20;

struct UdpReceiver {
    _link: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<(u64, Sched)>>,
}

impl UdpReceiver {
    fn start(bed: &Testbed, cpu: Option<usize>, fifo: Option<i32>) -> Result<Self> {
        let link = attach_return_program(bed, XdpAction::Pass)?;
        let socket = bed
            .ns
            .run(|| UdpSocket::bind((RX_ADDR, UDP_PORT)))?
            .context("binding the UDP socket")?;
        set_rcvbuf(&socket, UDP_RCVBUF)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu)?;
            }
            if let Some(prio) = fifo {
                set_fifo(0, prio)?;
            }
            recv_until(&socket, &flag)
        });
        Ok(UdpReceiver {
            _link: link,
            stop,
            thread,
        })
    }
}

impl Receiver for UdpReceiver {
    fn finish(self: Box<Self>, _bed: &Testbed) -> Result<Received> {
        self.stop.store(true, Ordering::Relaxed);
        let (packets, cpu) = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("UDP receiver thread panicked"))??;
        Ok(Received {
            packets,
            fill_ring_empty: None,
            cpu: Some(cpu.cpu),
            waited: Some(cpu.waited),
            runs: Some(cpu.runs),
        })
    }
}

fn set_rcvbuf(socket: &UdpSocket, bytes: libc::c_int) -> std::io::Result<()> {
    // SAFETY: SO_RCVBUFFORCE takes an int; the socket is open.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads datagrams in `recvmmsg` batches until `stop`; returns how many and
/// the thread's CPU and wait time.
fn recv_until(socket: &UdpSocket, stop: &AtomicBool) -> std::io::Result<(u64, Sched)> {
    let mut bufs = vec![[0u8; UDP_BUF]; UDP_BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: UDP_BUF,
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let sched_start = Sched::of_path("/proc/thread-self/schedstat")?;
    let mut packets = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs point into iovs and bufs, alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                UDP_BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            packets += n as u64;
            continue;
        }
        let e = std::io::Error::last_os_error();
        if !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ) {
            return Err(e);
        }
    }
    let sched = Sched::of_path("/proc/thread-self/schedstat")?;
    Ok((packets, sched.since(sched_start)))
}

/// afxdp-pod-app on our program, attached and shared by the native
/// program manager as afxdp-dp does in pinned-map mode.
struct PodApp {
    app: ChildReceiver,
    manager: NativeManager,
}

impl PodApp {
    fn start(
        bed: &Testbed,
        bins: &Binaries,
        scratch: &PinRoot,
        cpu: Option<usize>,
    ) -> Result<Self> {
        let manager = NativeManager::new(scratch.path()).context("native program manager")?;
        let ifindex = bed.rx_ifindex;
        let attachment = bed.ns.run(|| {
            manager.attach(&AttachRequest {
                device: RX_DEV,
                ifindex,
                mode: XdpMode::Native,
                program: None,
                function: None,
            })
        })??;
        let user = PodUser::nobody_net_raw();
        manager.share_map_with(RX_DEV, user.uid)?;
        let staged = stage_binary(&bins.pod_app, &scratch.dir().join("bin"))?;
        let mut cmd = Command::new(staged);
        cmd.env_clear()
            .args([
                "--device",
                RX_DEV,
                "--queues",
                &queue_list(bed),
                "--pinned-map",
            ])
            .arg(Path::new(POD_MAP_DIR).join(afxdp_program::XSKS_MAP_NAME))
            .args(["--frames", &frames_per_queue(bed).to_string()])
            .args(["--rx-mode", &bins.rx_mode])
            .args(["--stats-interval-ms", "3600000"]);
        let mounts = ContainerMounts {
            root: PathBuf::from("/tmp"),
            binds: vec![(attachment.map_dir.clone(), PathBuf::from(POD_MAP_DIR))],
        };
        confine(&mut cmd, netns_fd(bed)?, user, &mounts)?;
        let app = ChildReceiver::spawn(cmd, cpu, bins.rx_fifo).context("afxdp-pod-app")?;
        Ok(PodApp { app, manager })
    }
}

impl Receiver for PodApp {
    fn finish(self: Box<Self>, bed: &Testbed) -> Result<Received> {
        let PodApp { app, manager } = *self;
        let got = Box::new(app).finish(bed);
        // Detaching finds the device by index: in its netns.
        bed.ns.run(|| manager.detach(RX_DEV))??;
        got
    }
}

/// The bed's queues as an afxdp-pod-app `--queues` list: `0,1,...`.
fn queue_list(bed: &Testbed) -> String {
    (0..bed.queues())
        .map(|q| q.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// [`XSK_FRAMES`] shared among the queues: the pod's memlock holds one
/// queue's worth in all.
fn frames_per_queue(bed: &Testbed) -> u32 {
    (XSK_FRAMES / bed.queues().max(1)).next_power_of_two()
}

fn netns_fd(bed: &Testbed) -> Result<OwnedFd> {
    Ok(std::fs::File::open(bed.ns.path())
        .with_context(|| format!("opening {}", bed.ns.path().display()))?
        .into())
}

/// A receiver process speaking afxdp-pod-app's JSON lines (`ready`, then
/// `total` after SIGTERM), pinned to one CPU.
struct ChildReceiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    at_ready: Sched,
}

impl ChildReceiver {
    /// `xsk-rx-libxdp` in the testbed's netns as root (libxdp loads its own
    /// program), attaching directly (no dispatcher, as for one program).
    fn libxdp(bed: &Testbed, bins: &Binaries, cpu: Option<usize>) -> Result<Self> {
        let binary = &bins.libxdp_rx;
        let mut cmd = Command::new(binary);
        cmd.args([
            RX_DEV,
            &queue_list(bed),
            &frames_per_queue(bed).to_string(),
            &bins.rx_mode,
        ])
        .env("LIBXDP_SKIP_DISPATCHER", "1");
        let ns = netns_fd(bed)?;
        // SAFETY: setns is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::spawn(cmd, cpu, bins.rx_fifo).with_context(|| binary.display().to_string())
    }

    /// Spawns `cmd` on `cpu`, made `SCHED_FIFO` at `fifo` by the bench
    /// (root) once running: the pod app drops its privileges first.
    fn spawn(mut cmd: Command, cpu: Option<usize>, fifo: Option<i32>) -> Result<Self> {
        if let Some(cpu) = cpu {
            // SAFETY: sched_setaffinity is async-signal-safe.
            unsafe { cmd.pre_exec(move || pin_current_thread(cpu)) };
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_retrying(&mut cmd)?;
        if let Some(prio) = fifo {
            if let Err(e) = set_fifo(child.id(), prio) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("sched_setscheduler(SCHED_FIFO)");
            }
        }
        let out = child.stdout.take().context("child stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = ChildReceiver {
            child,
            lines,
            at_ready: Sched::default(),
        };
        if let Err(e) = me.wait_line("ready", READY_WITHIN) {
            let _ = me.child.kill();
            let _ = me.child.wait();
            return Err(e);
        }
        me.at_ready = Sched::of_pid(me.child.id())?;
        Ok(me)
    }

    fn wait_line(&self, kind: &str, within: Duration) -> Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no {kind:?} line within {within:?}"))?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["type"] == kind {
                    return Ok(v);
                }
            }
        }
    }
}

impl Receiver for ChildReceiver {
    fn finish(mut self: Box<Self>, _bed: &Testbed) -> Result<Received> {
        let sched = Sched::of_pid(self.child.id())?.since(self.at_ready);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let total = self.wait_line("total", TOTAL_WITHIN);
        let status = self.child.wait()?;
        let total = total?;
        if !status.success() {
            bail!("receiver exited with {status}");
        }
        let packets = total["packets"]
            .as_u64()
            .context("total line without packets")?;
        Ok(Received {
            packets,
            fill_ring_empty: total["kernel"]["rx_fill_ring_empty"].as_u64(),
            cpu: Some(sched.cpu),
            waited: Some(sched.waited),
            runs: Some(sched.runs),
        })
    }
}

/// Makes task `pid` (0: the calling thread) `SCHED_FIFO` at `prio`. A
/// receiver that sleeps when idle (poll mode) then runs as soon as frames
/// wake it, as on a core of its own; one that spins is held to the
/// kernel's real-time share (`sched_rt_runtime_us`).
fn set_fifo(pid: u32, prio: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: a valid sched_param; the kernel checks pid and permission.
    if unsafe { libc::sched_setscheduler(pid as libc::pid_t, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A task's scheduler times (`schedstat`, nanosecond resolution).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sched {
    /// Time on a CPU.
    pub cpu: Duration,
    /// Time runnable, waiting for a CPU.
    pub waited: Duration,
    /// Times it was put on a CPU (schedstat's third field): for a receiver
    /// that sleeps when idle, its wakeups.
    pub runs: u64,
}

impl Sched {
    /// Of a single-threaded process or a kernel thread.
    pub fn of_pid(pid: u32) -> std::io::Result<Self> {
        Self::of_path(&format!("/proc/{pid}/schedstat"))
    }

    fn of_path(path: &str) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        match (f.next().flatten(), f.next().flatten(), f.next().flatten()) {
            (Some(cpu), Some(waited), Some(runs)) => Ok(Sched {
                cpu: Duration::from_nanos(cpu),
                waited: Duration::from_nanos(waited),
                runs,
            }),
            _ => Err(std::io::Error::other(format!(
                "unreadable {path}: {text:?}"
            ))),
        }
    }

    /// The times since `start`.
    pub fn since(self, start: Sched) -> Sched {
        Sched {
            cpu: self.cpu.saturating_sub(start.cpu),
            waited: self.waited.saturating_sub(start.waited),
            runs: self.runs.saturating_sub(start.runs),
        }
    }
}
