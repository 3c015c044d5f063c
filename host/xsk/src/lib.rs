//! Minimal AF_XDP (XSK) receive sockets in pure Rust, for unprivileged pods.
//!
//! An [`XskSocket`] owns its UMEM, its fill/completion/rx rings and a socket
//! bound in copy mode (`XDP_COPY`) to one `(ifindex, queue)`. The pod
//! registers it in the XSKMAP it was handed ([`XskSocket::register`]) and
//! calls [`XskSocket::recv`], which hands each frame to a closure and gives
//! the frame back to the kernel.
//!
//! # Keeping the fill ring stocked
//!
//! The UMEM holds more frames than the fill ring (by default twice as
//! many, as libxdp's defaults: 4,096 frames, fill and rx rings of 2,048).
//! Frames the fill ring has no room for wait in a spare list, and every
//! [`XskSocket::recv`] tops the fill ring up from it, so the kernel finds
//! a full fill ring after each pass, even while frames it took are still
//! in the rx ring or in the app's hands. (With as many frames as fill
//! entries the fill ring can only hold what the app has given back, and
//! it runs dry exactly when the app is late.)
//!
//! # Receiving without sleeping
//!
//! [`XskSocket::wait_readable`] sleeps in `poll`; an app that must not
//! sleep calls [`XskSocket::recv`] in a loop (spinning on the rx ring,
//! no syscall), or asks for busy polling ([`XskSocket::enable_busy_poll`]):
//! then `poll`/[`XskSocket::busy_poll`] run the device's NAPI on the
//! caller's CPU.
//!
//! # Privileges and limits
//!
//! * `CAP_NET_RAW` to create the socket; nothing else. Registering in a map
//!   is `BPF_MAP_UPDATE_ELEM` on a map FD we already hold ([`bpf`]).
//! * The UMEM is pinned by the kernel and charged to `RLIMIT_MEMLOCK` of the
//!   user (unless `CAP_IPC_LOCK`). The default [`XskConfig`] uses 512
//!   frames of 2 KiB = 1 MiB per socket, so 4 sockets fit the common 8 MiB
//!   default twice over.
//! * Busy polling (`SO_PREFER_BUSY_POLL`, raising `SO_BUSY_POLL` or its
//!   budget) needs `CAP_NET_ADMIN`; without it a socket busy-polls only
//!   where the node's `net.core.busy_read`/`busy_poll` sysctls ask for it.
//! * Copy mode works on every XDP-capable device (veth included); zero-copy
//!   is not attempted.
//! * Linux 5.4+ for `XDP_USE_NEED_WAKEUP` and the ring `flags` offsets.
//!
//! # Why not an existing crate
//!
//! Compared (from their documentation, 2025): `xsk-rs` wraps libxdp/libbpf
//! (C build of libbpf + libelf + zlib in the pod image) and by default loads
//! libxdp's own XDP program; `xdpilone` is pure Rust, `no_std`, fast and well
//! designed, but leaves UMEM frame bookkeeping to the caller, has no BPF map
//! handling, and its API is built around shared-UMEM multi-threading we do not
//! need; `xdp` (Quilkin's) is pure Rust but self-described early and tied to
//! Quilkin's needs. None was clearly better for a small, auditable,
//! receive-only example app, so this crate is ~400 lines on `libc`. If the
//! pod side ever needs TX or zero-copy at speed, `xdpilone` is the candidate.
#![deny(missing_docs)]

pub mod bpf;
mod ring;

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    time::Duration,
};

use ring::{Mmap, Ring, RingOffset};
use tracing::debug;

const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;

const XDP_PGOFF_RX_RING: u64 = 0;
const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

const XDP_COPY: u16 = 1 << 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;

const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// What the kernel answered to each busy-poll option
/// ([`XskSocket::enable_busy_poll`]).
#[derive(Debug)]
pub struct BusyPollOptions {
    /// `SO_PREFER_BUSY_POLL`.
    pub prefer: io::Result<()>,
    /// `SO_BUSY_POLL`.
    pub usecs: io::Result<()>,
    /// `SO_BUSY_POLL_BUDGET`.
    pub budget: io::Result<()>,
}

impl BusyPollOptions {
    /// Whether the kernel took all three.
    pub fn all_taken(&self) -> bool {
        self.prefer.is_ok() && self.usecs.is_ok() && self.budget.is_ok()
    }
}

/// `struct xdp_umem_reg`.
#[repr(C)]
#[derive(Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// `struct xdp_desc`: one received frame.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// Kernel counters of a socket (`struct xdp_statistics`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Invalid rx descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid tx descriptors.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the tx ring was empty.
    pub tx_ring_empty_descs: u64,
}

/// Sizes of a socket's UMEM and rings. Ring sizes must be powers of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// Number of UMEM frames.
    pub frame_count: u32,
    /// Frame size: a power of two in 2048..=page size.
    pub frame_size: u32,
    /// Fill ring entries.
    pub fill_size: u32,
    /// Completion ring entries (unused for rx, but the kernel requires it).
    pub comp_size: u32,
    /// Rx ring entries.
    pub rx_size: u32,
}

impl Default for XskConfig {
    /// 512 × 2 KiB frames (1 MiB of locked memory per socket), fill and
    /// rx rings of 256: half the frames wait spare, to restock the fill
    /// ring.
    fn default() -> Self {
        XskConfig::with_frames(512)
    }
}

impl XskConfig {
    /// `frame_count` frames of 2 KiB, fill and rx rings of half as many
    /// (rounded up to a power of two, at least 1), so the fill ring can
    /// be kept full while as many frames again wait in the rx ring or in
    /// the app (libxdp's defaults are `with_frames(4096)`).
    pub fn with_frames(frame_count: u32) -> Self {
        let ring = (frame_count / 2).max(1).next_power_of_two();
        XskConfig {
            frame_count,
            frame_size: 2048,
            fill_size: ring,
            comp_size: 64,
            rx_size: ring,
        }
    }

    /// Bytes of UMEM, charged to `RLIMIT_MEMLOCK`.
    pub fn umem_bytes(&self) -> usize {
        self.frame_count as usize * self.frame_size as usize
    }

    fn validate(&self) -> Result<(), XskError> {
        let bad = |m: &str| Err(XskError::InvalidConfig(m.to_string()));
        if !(2048..=4096).contains(&self.frame_size) || !self.frame_size.is_power_of_two() {
            return bad("frame_size must be 2048 or 4096");
        }
        for (n, v) in [
            ("fill_size", self.fill_size),
            ("comp_size", self.comp_size),
            ("rx_size", self.rx_size),
        ] {
            if v == 0 || !v.is_power_of_two() {
                return Err(XskError::InvalidConfig(format!(
                    "{n} must be a power of two"
                )));
            }
        }
        if self.frame_count == 0 {
            return bad("frame_count must be > 0");
        }
        Ok(())
    }
}

/// Errors of this crate; each syscall failure names the call.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A syscall failed.
    #[error("{call} failed{hint}: {source}")]
    Syscall {
        /// The failing call (`socket(AF_XDP)`, `setsockopt(XDP_UMEM_REG)`...).
        call: &'static str,
        /// A hint for the operator, may be empty.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid AF_XDP configuration: {0}")]
    InvalidConfig(String),
}

fn sys_err(call: &'static str) -> XskError {
    let source = io::Error::last_os_error();
    let hint = match (call, source.raw_os_error()) {
        ("socket(AF_XDP)", Some(libc::EPERM)) => " (CAP_NET_RAW needed)",
        ("setsockopt(XDP_UMEM_REG)", Some(libc::ENOBUFS | libc::ENOMEM | libc::EPERM)) => {
            " (UMEM over RLIMIT_MEMLOCK? use fewer frames or CAP_IPC_LOCK)"
        }
        ("bind(AF_XDP)", Some(libc::EBUSY)) => " (another socket bound to this queue?)",
        ("bind(AF_XDP)", Some(libc::EINVAL)) => " (no such queue on the device?)",
        _ => "",
    };
    XskError::Syscall { call, hint, source }
}

fn setsockopt<T>(
    fd: &OwnedFd,
    opt: libc::c_int,
    val: &T,
    call: &'static str,
) -> Result<(), XskError> {
    // SAFETY: `val` is a valid `T` of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            val as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(sys_err(call))
    } else {
        Ok(())
    }
}

/// Counters of one [`XskSocket::recv`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvCounts {
    /// Frames handled.
    pub packets: u32,
    /// Bytes in those frames.
    pub bytes: u64,
}

/// An AF_XDP socket bound to one device queue in copy mode, receive only.
///
/// Not `Sync`: one thread drives its rings. Dropping it closes the socket,
/// which also removes it from any XSKMAP it was registered in.
pub struct XskSocket {
    // Rings first: unmapped before the socket closes.
    rx: Ring<XdpDesc>,
    fill: Ring<u64>,
    _comp: Ring<u64>,
    fd: OwnedFd,
    umem: Mmap,
    /// Frames owned by user space and not in the fill ring.
    spare: Vec<u64>,
    config: XskConfig,
    ifindex: u32,
    queue: u32,
}

// SAFETY: the raw pointers point into mappings owned by the socket; moving
// the owner to another thread moves all of them together.
unsafe impl Send for XskSocket {}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("config", &self.config)
            .finish()
    }
}

impl XskSocket {
    /// Creates a socket with its UMEM and rings, binds it in copy mode (with
    /// `XDP_USE_NEED_WAKEUP`) to `(ifindex, queue)` of the caller's netns and
    /// fills the fill ring.
    ///
    /// # Errors
    ///
    /// [`XskError::Syscall`] naming the failing step: `socket(AF_XDP)`
    /// (needs `CAP_NET_RAW`), `setsockopt(XDP_UMEM_REG)` (memlock limit),
    /// `bind(AF_XDP)` (queue missing or taken), ...
    pub fn new(ifindex: u32, queue: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys_err("socket(AF_XDP)"));
        }
        // SAFETY: fresh FD we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let umem = Mmap::anonymous(config.umem_bytes()).map_err(|source| XskError::Syscall {
            call: "mmap(UMEM)",
            hint: "",
            source,
        })?;
        let reg = UmemReg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: config.frame_size,
            ..Default::default()
        };
        setsockopt(&fd, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")?;
        setsockopt(
            &fd,
            XDP_UMEM_FILL_RING,
            &config.fill_size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        setsockopt(
            &fd,
            XDP_UMEM_COMPLETION_RING,
            &config.comp_size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        setsockopt(&fd, XDP_RX_RING, &config.rx_size, "setsockopt(XDP_RX_RING)")?;

        let mut off = MmapOffsets::default();
        let mut len = size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                &mut off as *mut MmapOffsets as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(sys_err("getsockopt(XDP_MMAP_OFFSETS)"));
        }
        if len as usize != size_of::<MmapOffsets>() {
            return Err(XskError::InvalidConfig(
                "kernel without ring flags in XDP_MMAP_OFFSETS (needs Linux 5.4+)".to_string(),
            ));
        }
        let map_err = |call| {
            move |source| XskError::Syscall {
                call,
                hint: "",
                source,
            }
        };
        let raw = fd.as_raw_fd();
        let fill = Ring::<u64>::map(raw, &off.fr, config.fill_size, XDP_UMEM_PGOFF_FILL_RING)
            .map_err(map_err("mmap(fill ring)"))?;
        let comp = Ring::<u64>::map(
            raw,
            &off.cr,
            config.comp_size,
            XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(map_err("mmap(completion ring)"))?;
        let rx = Ring::<XdpDesc>::map(raw, &off.rx, config.rx_size, XDP_PGOFF_RX_RING)
            .map_err(map_err("mmap(rx ring)"))?;

        let mut sock = XskSocket {
            rx,
            fill,
            _comp: comp,
            fd,
            umem,
            spare: (0..config.frame_count)
                .rev()
                .map(|i| u64::from(i) * u64::from(config.frame_size))
                .collect(),
            config: *config,
            ifindex,
            queue,
        };
        // Give the kernel frames before it can receive.
        let n = sock.restock_fill();

        let addr = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: XDP_COPY | XDP_USE_NEED_WAKEUP,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                &addr as *const SockaddrXdp as *const libc::sockaddr,
                size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(sys_err("bind(AF_XDP)"));
        }
        debug!(
            ifindex,
            queue,
            frames = n,
            "AF_XDP socket bound (copy mode)"
        );
        Ok(sock)
    }

    /// Registers this socket at key `queue` of `xsk_map` (an XSKMAP), so
    /// the XDP program redirects that queue's frames here. Needs no
    /// capability, only a writable map FD.
    ///
    /// The key should be the queue this socket is bound to: the kernel drops
    /// frames redirected to a socket bound to another queue.
    ///
    /// # Errors
    ///
    /// `BPF_MAP_UPDATE_ELEM` failures: `EBADF`/`EPERM` for a read-only map
    /// FD, `E2BIG` for a queue past the map's `max_entries`, `EINVAL` for a
    /// map that is not an XSKMAP.
    pub fn register(&self, xsk_map: BorrowedFd<'_>, queue: u32) -> Result<(), XskError> {
        bpf::map_update_u32(xsk_map, queue, self.fd.as_raw_fd() as u32).map_err(|source| {
            XskError::Syscall {
                call: "bpf(BPF_MAP_UPDATE_ELEM)",
                hint: "",
                source,
            }
        })
    }

    /// Device the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Waits up to `timeout` for frames. `Ok(false)` on timeout or signal.
    ///
    /// # Errors
    ///
    /// `poll` failures other than `EINTR`.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, XskError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(XskError::Syscall {
                call: "poll(AF_XDP)",
                hint: "",
                source: e,
            });
        }
        Ok(r > 0 && pfd.revents & libc::POLLIN != 0)
    }

    /// Consumes up to `max` received frames, calling `on_frame` with each
    /// frame's bytes, gives the frames back and tops the fill ring up from
    /// the spare frames (kicking the kernel when it asked for a wakeup).
    /// Never sleeps: call it in a loop to spin on the rx ring.
    ///
    /// # Errors
    ///
    /// A failed wakeup `recvfrom`.
    pub fn recv(
        &mut self,
        max: u32,
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<RecvCounts, XskError> {
        let n = self.rx.cons_available(max);
        let mut counts = RecvCounts::default();
        if n > 0 {
            let frame_mask = !(u64::from(self.config.frame_size) - 1);
            for i in 0..n {
                let desc = self.rx.cons_read(i);
                let end = desc.addr as usize + desc.len as usize;
                if end <= self.umem.len() {
                    // SAFETY: the range lies inside the UMEM, and the kernel
                    // does not write this frame until we hand it back.
                    let data = unsafe {
                        std::slice::from_raw_parts(
                            self.umem.as_ptr().add(desc.addr as usize),
                            desc.len as usize,
                        )
                    };
                    on_frame(data);
                    counts.packets += 1;
                    counts.bytes += u64::from(desc.len);
                }
                self.spare.push(desc.addr & frame_mask);
            }
            self.rx.cons_release(n);
        }
        self.restock_fill();
        if self.needs_wakeup() {
            self.kick()?;
        }
        Ok(counts)
    }

    /// Moves spare frames into the fill ring, as many as it has room for
    /// (the kernel publishes the fill entries it took a moment after the
    /// rx entries they became, `xsk_flush`: frames that do not fit yet
    /// stay spare until the next call). Returns how many it moved.
    fn restock_fill(&mut self) -> u32 {
        let spare = u32::try_from(self.spare.len()).unwrap_or(u32::MAX);
        if spare == 0 {
            return 0;
        }
        let n = self.fill.prod_free(spare).min(spare);
        for i in 0..n {
            let addr = self.spare.pop().expect("n <= spare.len()");
            self.fill.prod_write(i, addr);
        }
        if n > 0 {
            self.fill.prod_submit(n);
        }
        n
    }

    /// Frames in user space's hands that the fill ring had no room for.
    pub fn spare_frames(&self) -> usize {
        self.spare.len()
    }

    /// Asks the kernel to busy-poll this socket: `SO_PREFER_BUSY_POLL`,
    /// `SO_BUSY_POLL` = `usecs` and `SO_BUSY_POLL_BUDGET` = `budget`, each
    /// tried in turn. Then [`XskSocket::busy_poll`] (and `poll`) run the
    /// device's NAPI on the calling CPU for up to `usecs`, and with
    /// preference the kernel leaves NAPI to the app while it keeps
    /// polling. veth gives its rx queues a NAPI id once XDP runs on them,
    /// so this works on veth too (copy mode included).
    ///
    /// Returns which options the kernel took: without `CAP_NET_ADMIN` it
    /// refuses all three (`EPERM`), and the socket busy-polls only if the
    /// node's `net.core.busy_read` sysctl is set.
    pub fn enable_busy_poll(&self, usecs: u32, budget: u16) -> BusyPollOptions {
        let set = |opt: libc::c_int, val: libc::c_int| {
            // SAFETY: the options take an int; the socket is open.
            let r = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &val as *const libc::c_int as *const libc::c_void,
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let usecs = libc::c_int::try_from(usecs).unwrap_or(libc::c_int::MAX);
        BusyPollOptions {
            prefer: set(SO_PREFER_BUSY_POLL, 1),
            usecs: set(libc::SO_BUSY_POLL, usecs),
            budget: set(SO_BUSY_POLL_BUDGET, libc::c_int::from(budget)),
        }
    }

    /// One busy poll: a non-blocking `recvfrom`, which runs the device's
    /// NAPI on this CPU when busy polling is on for the socket (see
    /// [`XskSocket::enable_busy_poll`]), and otherwise returns at once.
    ///
    /// # Errors
    ///
    /// `recvfrom` errors other than the transient ones.
    pub fn busy_poll(&self) -> Result<(), XskError> {
        self.kick()
    }

    /// Whether the kernel asked to be woken up to process the fill ring.
    pub fn needs_wakeup(&self) -> bool {
        self.fill.flags() & XDP_RING_NEED_WAKEUP != 0
    }

    fn kick(&self) -> Result<(), XskError> {
        // SAFETY: zero-length recvfrom with no buffer is the documented kick.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR | libc::ENETDOWN) => {
                }
                _ => {
                    return Err(XskError::Syscall {
                        call: "recvfrom(AF_XDP wakeup)",
                        hint: "",
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// The kernel's drop counters for this socket (`XDP_STATISTICS`).
    ///
    /// # Errors
    ///
    /// `getsockopt` failure.
    pub fn statistics(&self) -> Result<XskStatistics, XskError> {
        let mut st = XskStatistics::default();
        let mut len = size_of::<XskStatistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_STATISTICS,
                &mut st as *mut XskStatistics as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(sys_err("getsockopt(XDP_STATISTICS)"));
        }
        Ok(st)
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_the_uapi() {
        assert_eq!(size_of::<UmemReg>(), 32);
        assert_eq!(size_of::<SockaddrXdp>(), 16);
        assert_eq!(size_of::<XdpDesc>(), 16);
        assert_eq!(size_of::<MmapOffsets>(), 128);
        assert_eq!(size_of::<XskStatistics>(), 48);
    }

    #[test]
    fn default_config_fits_four_sockets_in_8_mib() {
        let c = XskConfig::default();
        c.validate().unwrap();
        assert!(4 * c.umem_bytes() <= 8 << 20);
        assert!(
            c.frame_count > c.fill_size,
            "spare frames restock the fill ring"
        );
    }

    #[test]
    fn rings_hold_half_the_frames() {
        let c = XskConfig::with_frames(4096);
        assert_eq!((c.fill_size, c.rx_size), (2048, 2048));
        c.validate().unwrap();
        let odd = XskConfig::with_frames(1000);
        assert_eq!(odd.fill_size, 512);
        odd.validate().unwrap();
        XskConfig::with_frames(1).validate().unwrap();
    }

    #[test]
    fn config_validation() {
        let bad = [
            XskConfig {
                frame_size: 1024,
                ..Default::default()
            },
            XskConfig {
                frame_size: 3000,
                ..Default::default()
            },
            XskConfig {
                rx_size: 100,
                ..Default::default()
            },
            XskConfig {
                frame_count: 0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
