//! The few `bpf(2)` commands aya 0.14 does not expose the way we need them.
//!
//! aya's `Xdp::attach_to_if_index` silently falls back to a netlink attach
//! that cannot be pinned, survives nothing and cannot be detached once the
//! device changed netns; we create, pin and detach XDP `bpf_link`s directly.

use afxdp_xsk::bpf::{c_path, sys_bpf};
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `enum bpf_attach_type::BPF_XDP`.
const BPF_XDP: u32 = 37;
/// `enum bpf_link_type::BPF_LINK_TYPE_XDP`.
pub(crate) const BPF_LINK_TYPE_XDP: u32 = 6;

/// `XDP_FLAGS_SKB_MODE` (generic XDP).
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE` (native XDP).
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// `struct bpf_link_info`, large enough for any kernel's version of it; the
/// kernel copies at most `info_len` bytes.
#[repr(C, align(8))]
struct LinkInfoBuf([u8; 256]);

/// What the kernel reports about an XDP link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct XdpLinkInfo {
    pub link_type: u32,
    pub prog_id: u32,
    /// 0 once the device is gone (the link is then defunct).
    pub ifindex: u32,
}

/// `BPF_OBJ_PIN`: pins `fd` at `path` (parent on a bpffs).
pub(crate) fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: ObjAttr is BPF_OBJ_PIN's attr; `path` outlives the call.
    unsafe { sys_bpf(BPF_OBJ_PIN, &mut attr) }.map(drop)
}

/// `BPF_OBJ_GET`: a new read-write FD of the object pinned at `path`.
pub(crate) use afxdp_xsk::bpf::obj_get;

/// `BPF_LINK_CREATE` for an XDP program on `ifindex` (current netns).
pub(crate) fn xdp_link_create(
    prog_fd: BorrowedFd<'_>,
    ifindex: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog_fd.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: LinkCreateAttr is BPF_LINK_CREATE's attr.
    let fd = unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) }?;
    // SAFETY: the kernel just returned this FD to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_LINK_DETACH`: detaches the link from its device whoever else holds
/// references to it, and wherever (whichever netns) the device is.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkDetachAttr {
        link_fd: link.as_raw_fd() as u32,
    };
    // SAFETY: LinkDetachAttr is BPF_LINK_DETACH's attr.
    unsafe { sys_bpf(BPF_LINK_DETACH, &mut attr) }.map(drop)
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a link.
pub(crate) fn xdp_link_info(link: BorrowedFd<'_>) -> io::Result<XdpLinkInfo> {
    let mut buf = LinkInfoBuf([0; 256]);
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: buf.0.len() as u32,
        info: buf.0.as_mut_ptr() as u64,
    };
    // SAFETY: InfoAttr is OBJ_GET_INFO_BY_FD's attr; `buf` outlives the call
    // and `info_len` bounds what the kernel writes.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let word = |off: usize| {
        u32::from_ne_bytes([buf.0[off], buf.0[off + 1], buf.0[off + 2], buf.0[off + 3]])
    };
    Ok(XdpLinkInfo {
        link_type: word(0),
        prog_id: word(8),
        ifindex: word(16),
    })
}
