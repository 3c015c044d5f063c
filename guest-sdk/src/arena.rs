//! The component's global allocator (wasm32, feature `arena`, on by
//! default): a bump arena in the module's own zero-initialised data, then the
//! system allocator once the arena is full.
//!
//! Why: the host instantiates a policy afresh for every call, so everything
//! a decision allocates lives exactly as long as the call. With libc's
//! `malloc` alone the first allocation of every call grows linear memory
//! (`memory.grow`: a trip through the host's resource limiter and an
//! `mprotect` to expose the pages, undone by another when the host resets
//! the instance's slot). The arena is part of the initial memory (zeroed
//! data takes no space in the `.wasm`), so a decision that fits in it never
//! grows memory, and a bump pointer is all an allocation costs. Memory freed
//! last-in-first-out (the common case for temporaries) is reused; other frees
//! are reclaimed when the call's instance is dropped.
//!
//! A policy that wants its own `#[global_allocator]` turns the feature off
//! (`default-features = false`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// Bytes of the arena. The example policies' decisions allocate well under
/// this; a larger request, or one that no longer fits, goes to `System`.
pub const ARENA_BYTES: usize = 256 * 1024;

#[repr(C, align(16))]
struct Bytes([u8; ARENA_BYTES]);

/// The arena and its bump offset. A component instance is single-threaded:
/// no synchronisation is needed (`Sync` only so it can be a `static`).
struct Arena {
    bytes: UnsafeCell<Bytes>,
    next: UnsafeCell<usize>,
}

// SAFETY: wasm32 components run one thread per instance.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new(Bytes([0; ARENA_BYTES])),
    next: UnsafeCell::new(0),
};

impl Arena {
    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.base() && p < self.base() + ARENA_BYTES
    }

    /// The end of the last allocation, as an address.
    fn top(&self) -> usize {
        // SAFETY: single-threaded (see `Sync` above).
        self.base() + unsafe { *self.next.get() }
    }

    fn set_top(&self, addr: usize) {
        // SAFETY: single-threaded (see `Sync` above).
        unsafe { *self.next.get() = addr - self.base() }
    }

    /// Room for `layout` at the top, or `None` when it does not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let start = self.top().checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        if end > self.base() + ARENA_BYTES {
            return None;
        }
        self.set_top(end);
        Some(start as *mut u8)
    }
}

/// The SDK's allocator: [`ARENA_BYTES`] of bump arena, then [`System`].
pub struct BumpThenSystem;

// SAFETY: every pointer handed out is either inside the arena, aligned and
// not overlapping any live allocation (the bump pointer only moves down past
// an allocation when that allocation is freed), or comes from `System` and
// goes back to it.
unsafe impl GlobalAlloc for BumpThenSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match ARENA.bump(layout) {
            Some(p) => p,
            // SAFETY: the caller's layout contract is passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ARENA.owns(ptr) {
            // SAFETY: not in the arena, so `System` allocated it.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // The last allocation: give its bytes back.
        if ptr as usize + layout.size() == ARENA.top() {
            ARENA.set_top(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ARENA.owns(ptr) {
            // SAFETY: not in the arena, so `System` allocated it.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let start = ptr as usize;
        // The last allocation grows or shrinks in place when it fits.
        if start + layout.size() == ARENA.top() {
            if let Some(end) = start.checked_add(new_size) {
                if end <= ARENA.base() + ARENA_BYTES {
                    ARENA.set_top(end);
                    return ptr;
                }
            }
        } else if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `new_size` and the old alignment form a valid layout (the
        // caller's contract for `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; the copy is the
            // smaller of the two sizes.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test only: the arena is a process-wide static.
    #[test]
    fn bump_reuse_grow_in_place_and_fallback() {
        let a = BumpThenSystem;
        let l = |size, align| Layout::from_size_align(size, align).expect("layout");
        // SAFETY: every pointer is used within its layout and freed once.
        unsafe {
            let p = a.alloc(l(10, 1));
            assert!(ARENA.owns(p));
            let q = a.alloc(l(8, 8));
            assert_eq!(q as usize % 8, 0);
            assert!(q as usize >= p as usize + 10);
            // The last one grows in place; its bytes are kept.
            q.write(7);
            let q2 = a.realloc(q, l(8, 8), 64);
            assert_eq!((q2, q2.read()), (q, 7));
            // Freed last-in-first-out: the next allocation reuses it.
            a.dealloc(q2, l(64, 8));
            assert_eq!(a.alloc(l(8, 8)), q);
            a.dealloc(q, l(8, 8));
            // Not the last one: growing moves (and copies).
            let r = a.alloc(l(4, 1));
            p.write(9);
            let p2 = a.realloc(p, l(10, 1), 20);
            assert_ne!(p2, p);
            assert_eq!(p2.read(), 9);
            a.dealloc(p2, l(20, 1));
            a.dealloc(r, l(4, 1));
            // Too big for the arena: the system allocator's.
            let big = a.alloc(l(ARENA_BYTES + 1, 16));
            assert!(!big.is_null() && !ARENA.owns(big));
            big.write(1);
            let big2 = a.realloc(big, l(ARENA_BYTES + 1, 16), 2 * ARENA_BYTES);
            assert!(!ARENA.owns(big2));
            a.dealloc(big2, l(2 * ARENA_BYTES, 16));
        }
    }
}
