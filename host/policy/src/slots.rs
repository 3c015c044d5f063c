//! Where a call's instance lives: slots of wasmtime's pooling allocator,
//! reused call after call, and the bound on calls in flight that keeps the
//! pool from running out.
//!
//! Every call still gets a fresh `Store` and instance; what is reused is the
//! address space under it. With the default on-demand allocator each call
//! mmaps its linear memory, takes a page fault on every page it touches and
//! munmaps it again (a TLB shootdown across the daemon's threads): about
//! two thirds of a small decision's time. Here a memory slot is reset in
//! place when its call ends: the kernel's `PAGEMAP_SCAN` (Linux ≥ 6.7) finds
//! the pages the call wrote and only those are restored (up to
//! [`KEEP_RESIDENT`] bytes, the rest is released with `madvise`), so the next
//! call starts on resident pages holding exactly the component's initial
//! image. No state crosses calls: a slot holds what a fresh instantiation
//! would, byte for byte. Without `PAGEMAP_SCAN` slots are reset with
//! `madvise` alone (correct, and as slow as the on-demand allocator).

use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Default calls (stores) of one engine alive at once, all policies and
/// pools together ([`EngineConfig::concurrent_calls`](crate::EngineConfig)).
/// A call beyond waits for a slot, at most its deadline; a pool's own
/// `maxConcurrentCalls` usually bounds it first (a call that waited there
/// may wait here too: each wait is bounded by the deadline, and a slot
/// frees within microseconds unless calls run to their deadlines).
pub const CONCURRENT_CALLS: usize = 64;
/// Most calls an engine may be configured to run at once.
pub(crate) const MAX_CONCURRENT_CALLS: usize = 1024;

/// Largest memory limit a call may have, bytes (all its memories together):
/// the size of a memory slot.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;

/// Linear memories one policy instance may have (a Rust, C or Go component
/// has one; a core module behind a preview-1 adapter two).
const MEMORIES_PER_CALL: u32 = 2;
/// Tables one policy instance may have (a Rust component has two: its own
/// and wit-component's shim table).
const TABLES_PER_CALL: u32 = 8;
/// Core instances one policy instance may have (a Rust component has three).
const CORE_INSTANCES_PER_CALL: u32 = 32;
/// Most elements of one table.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Bytes of a slot's memory (and of a table) restored in place after a call
/// instead of released. The example policies' decisions run as fast with
/// this as with 1 MiB (`cargo bench -p afxdp-policy --bench examples`); it
/// bounds what idle slots keep resident (at most `2 × concurrent_calls`
/// memories, 32 MiB at the default).
const KEEP_RESIDENT: usize = 256 << 10;

/// How the engine allocates instances for `calls` calls at once, and
/// whether slots are reset by `PAGEMAP_SCAN` (else `madvise`).
pub(crate) fn allocation(calls: u32) -> (InstanceAllocationStrategy, bool) {
    let scan = PoolingAllocationConfig::is_pagemap_scan_available();
    let keep = if scan { KEEP_RESIDENT } else { 0 };
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(calls)
        .total_core_instances(calls * CORE_INSTANCES_PER_CALL)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .total_memories(calls * MEMORIES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .max_memories_per_module(MEMORIES_PER_CALL)
        .max_memory_size(MAX_MEMORY_LIMIT)
        .total_tables(calls * TABLES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .max_tables_per_module(TABLES_PER_CALL)
        .table_elements(MAX_TABLE_ELEMENTS)
        // Policies are synchronous: no fiber stacks.
        .total_stacks(0)
        .linear_memory_keep_resident(keep)
        .table_keep_resident(keep)
        .pagemap_scan(if scan { Enabled::Yes } else { Enabled::No });
    (InstanceAllocationStrategy::Pooling(pool), scan)
}
