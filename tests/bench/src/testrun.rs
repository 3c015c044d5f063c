//! `BPF_PROG_TEST_RUN` on XDP programs, and the one-instruction programs
//! (`return XDP_PASS / XDP_DROP / XDP_TX`) the bench uses as floors,
//! ceilings and sender, loaded from raw instructions so nothing but the
//! action is measured.

use afxdp_xsk::bpf::sys_bpf;
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    time::Instant,
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// XDP actions (`enum xdp_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum XdpAction {
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames the program returns `XDP_TX` or
/// `XDP_REDIRECT` for really leave (the bench's packet sender).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as `BPF_PROG_TEST_RUN` takes it for context: the device
/// and queue the frame pretends to arrive on.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Loads `r0 = action; exit` as an XDP program named `name` (≤ 15 bytes).
///
/// # Errors
/// `BPF_PROG_LOAD`'s errno (needs CAP_BPF).
pub fn load_return_program(name: &str, action: XdpAction) -> io::Result<OwnedFd> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm = action; then BPF_JMP | BPF_EXIT.
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&(action as i32).to_le_bytes());
    insns[8] = 0x95;
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: the attr is the PROG_LOAD prefix; insns and license outlive the call.
    let fd = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }?;
    // SAFETY: the kernel returned a fresh FD we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One test run's request: the frame, where it arrives, how often.
#[derive(Debug, Clone, Copy)]
pub struct TestRun<'a> {
    pub frame: &'a [u8],
    /// Device the frame arrives on (in the caller's netns); 0 for none.
    pub ifindex: u32,
    pub rx_queue: u32,
    pub repeat: u32,
    /// `BPF_PROG_TEST_RUN` flags (0: hand each frame back).
    pub flags: u32,
    /// Frames per batch in live mode (0: the kernel's default, 64).
    pub batch_size: u32,
}

/// What one test run reported.
#[derive(Debug, Clone, Copy)]
pub struct TestRunResult {
    /// The program's return value (the action, in non-live mode).
    pub retval: u32,
    /// Mean nanoseconds per repetition by the wall clock around the call:
    /// sub-ns resolution; the call's fixed cost (µs) is noise over
    /// millions of repetitions.
    pub wall_ns_per_run: f64,
}

/// Runs `prog` `run.repeat` times on `run.frame` in the kernel.
///
/// Blocks for the whole run (seconds for millions of repeats).
///
/// # Errors
/// `BPF_PROG_TEST_RUN`'s errno: `ENODEV` for an ifindex not in the caller's
/// netns, `EINVAL` for a queue the device does not have.
pub fn test_run(prog: BorrowedFd<'_>, run: &TestRun<'_>) -> io::Result<TestRunResult> {
    let ctx = XdpMd {
        data_end: run.frame.len() as u32,
        ingress_ifindex: run.ifindex,
        rx_queue_index: run.rx_queue,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: run.frame.len() as u32,
        data_in: run.frame.as_ptr() as u64,
        repeat: run.repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: run.flags,
        batch_size: run.batch_size,
        ..Default::default()
    };
    let start = Instant::now();
    // SAFETY: the attr is the PROG_TEST_RUN prefix; frame and ctx outlive the
    // call and are only read (no data_out / ctx_out given).
    unsafe { sys_bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    let wall = start.elapsed();
    Ok(TestRunResult {
        retval: attr.retval,
        wall_ns_per_run: wall.as_nanos() as f64 / f64::from(run.repeat.max(1)),
    })
}
