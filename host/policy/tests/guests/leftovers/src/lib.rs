//! Looks for what an earlier call left behind: every call must start from
//! the component's initial image, even though the host reuses memory slots.
//!
//! `validate-config(config)`:
//! - `"check"`: checks its statics (a counter in `.bss`, a word in `.data`),
//!   a 3 MiB zeroed static buffer and the memory size, answers an
//!   `internal` error naming what it found if anything differs, then dirties
//!   all of it (counts the call, overwrites the word, fills the buffer, grows
//!   memory by 4 MiB and fills that too) and answers `ok`.
//! - `"trap"`: dirties all of it, then traps.
//! - `"size"`: always an error whose message is `pages <n>`, the memory
//!   size at entry.
//!
//! It makes no decisions.
wit_bindgen::generate!({
    path: "../../../../../wit",
    world: "pool-policy",
});

use core::arch::wasm32::{memory_grow, memory_size};
use core::ptr::{addr_of, addr_of_mut};

use afxdp::policy::types::{
    ErrorCode, FilterRule, Netdev, Pod, PolicyError, PolicyMetadata, Pool, ProgramChoice, QueuePlan,
};
use exports::afxdp::policy::decisions::Guest;

const WORD: u64 = 0x1234_5678_9abc_def0;
const PAGE: usize = 64 * 1024;
const GROW_PAGES: usize = 64;

static mut CALLS: u32 = 0;
static mut INITIAL: u64 = WORD;
static mut SCRATCH: [u8; 3 << 20] = [0; 3 << 20];

fn error(message: String) -> PolicyError {
    PolicyError {
        code: ErrorCode::Internal,
        message,
    }
}

fn found() -> Vec<String> {
    let mut found = Vec::new();
    // SAFETY: single-threaded guest; nothing else holds these.
    unsafe {
        if CALLS != 0 {
            found.push(format!("counter {}", CALLS));
        }
        if INITIAL != WORD {
            found.push(format!("data word {:#x}", INITIAL));
        }
        let scratch = &*addr_of!(SCRATCH);
        if let Some(i) = scratch.iter().position(|&b| b != 0) {
            found.push(format!("buffer byte {i} = {:#x}", scratch[i]));
        }
    }
    found
}

fn dirty() {
    // SAFETY: as above; the grown pages are ours once `memory_grow` returns.
    unsafe {
        CALLS += 1;
        INITIAL = 0;
        (*addr_of_mut!(SCRATCH)).fill(0xaa);
        let old = memory_grow(0, GROW_PAGES);
        assert!(old != usize::MAX, "memory.grow refused");
        core::ptr::write_bytes((old * PAGE) as *mut u8, 0xaa, GROW_PAGES * PAGE);
    }
}

fn unsupported() -> PolicyError {
    PolicyError {
        code: ErrorCode::Unsupported,
        message: "leftovers makes no decisions".into(),
    }
}

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "leftovers".into(),
            version: "0.1.0".into(),
            description: "looks for state left by earlier calls".into(),
            decisions: vec![],
        }
    }
    fn validate_config(config: String) -> Result<(), PolicyError> {
        let pages = memory_size(0);
        match config.as_str() {
            "check" => {
                let found = found();
                dirty();
                if found.is_empty() {
                    Ok(())
                } else {
                    Err(error(format!("left behind: {}", found.join(", "))))
                }
            }
            "trap" => {
                dirty();
                core::arch::wasm32::unreachable()
            }
            "size" => Err(error(format!("pages {pages}"))),
            other => Err(error(format!("unknown config {other:?}"))),
        }
    }
    fn select_program(_: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        Err(unsupported())
    }
    fn assign_queues(_: Pool, _: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        Err(unsupported())
    }
    fn filter_rules(
        _: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        Err(unsupported())
    }
    fn preferred_allocation(
        _: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        Err(unsupported())
    }
}

export!(Policy);
