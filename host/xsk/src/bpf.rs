//! The two `bpf(2)` commands an unprivileged pod needs, via raw
//! `syscall(SYS_bpf)`: no libbpf, no CAP_BPF.
//!
//! Since Linux 6.5 only `BPF_MAP_CREATE`/`BPF_PROG_LOAD` (and a few others)
//! are gated by `kernel.unprivileged_bpf_disabled`; `BPF_OBJ_GET` needs read
//! and write permission on the pinned file, and `BPF_MAP_UPDATE_ELEM` only a
//! writable map FD (one received over a UDS qualifies).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET: libc::c_long = 7;

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `bpf(cmd, attr, sizeof attr)`, the one raw entry point of the project's
/// BPF syscalls (the program manager uses it too).
///
/// # Safety
/// `T` must be the `repr(C)` prefix of `union bpf_attr` that `cmd` reads,
/// fully initialised, and every pointer in it must be valid for what the
/// kernel does with it for `cmd` (reads, or writes such as `OBJ_GET_INFO`'s).
///
/// # Errors
/// The syscall's errno.
pub unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees `attr` suits `cmd`; we pass its exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `BPF_OBJ_GET`: opens the BPF object pinned at `path` read-write.
///
/// # Errors
///
/// `EACCES` when the pin is not readable and writable by the caller,
/// `ENOENT` when it does not exist, `EPERM` on kernels before 6.5 with
/// `kernel.unprivileged_bpf_disabled` set.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let mut attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: ObjGetAttr is BPF_OBJ_GET's attr; `c` outlives the call.
    let fd = unsafe { sys_bpf(BPF_OBJ_GET, &mut attr) }?;
    // SAFETY: the kernel just returned this FD to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A path as a C string for `bpf_attr.pathname`.
///
/// # Errors
/// `InvalidInput` when the path holds a NUL byte.
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `BPF_MAP_UPDATE_ELEM` of a `u32` key with a `u32` value (`BPF_ANY`);
/// for an XSKMAP: queue → AF_XDP socket FD.
pub fn map_update_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: MapElemAttr is BPF_MAP_UPDATE_ELEM's attr; key/value outlive the call.
    unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}
