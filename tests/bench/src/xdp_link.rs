//! Attaching a program FD to a device as an XDP link (`BPF_LINK_CREATE`,
//! driver mode): the link holds the attachment and closing it detaches,
//! so nothing outlives the bench.

use afxdp_xsk::bpf::sys_bpf;
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`'s `BPF_XDP`.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Attaches `prog` in driver (native) mode to `ifindex` of the caller's
/// netns; detached when the returned link FD closes.
///
/// # Errors
/// `BPF_LINK_CREATE`'s errno (`EBUSY` when the device has a program).
pub fn attach_native(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: XDP_FLAGS_DRV_MODE,
    };
    // SAFETY: the attr is the LINK_CREATE prefix for a netdev target.
    let fd = unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) }?;
    // SAFETY: the kernel returned a fresh FD we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
