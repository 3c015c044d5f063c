//! Latency of policy decisions and loads (the well-behaved test guest).
//!
//! `cargo bench -p afxdp-policy --bench decisions` prints one table:
//! per-decision latency (fresh Store + instantiate + call + validation),
//! cold load from the precompiled cache, and first load with compilation.
//! Targets: decision p50 ≤ 30 µs, cache load ≤ 5 ms.

#[path = "../tests/common/mod.rs"]
mod common;
mod stats;

use std::time::Duration;

use stats::{blk, load_times, percentiles, time, us};

use afxdp_policy::{sha256_digest, CallCtx, EngineConfig, Netdev, Pod, PolicyEngine};

fn row(name: &str, n: usize, samples: Vec<Duration>, target: &str) {
    let p = percentiles(samples);
    println!(
        "{name:<40} {n:>6} {:>12.1} {:>12.1} {:>12.1}   {target}",
        us(p.p50),
        us(p.p99),
        us(p.max)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special: run a short version then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 50 } else { 5000 };
    let loads = if quick { 2 } else { 20 };

    let wasm = common::guest("well-behaved");
    let digest = sha256_digest(&wasm);
    println!(
        "{:<40} {:>6} {:>12} {:>12} {:>12}   target",
        "operation", "n", "p50 µs", "p99 µs", "max µs"
    );

    let engine = PolicyEngine::new(EngineConfig::default()).unwrap();
    let p = engine.load(&blk(), &wasm, &digest).unwrap();
    let ctx = CallCtx::new("bench", r#"{"queues":2,"port":4791}"#);
    let dev = Netdev {
        numa_node: Some(0),
        addresses: vec!["10.0.0.1".parse().unwrap()],
        ..Netdev::new("eth0", 4)
    };
    let pod = Pod::default();
    let avail: Vec<Netdev> = (0..8).map(|i| Netdev::new(format!("eth{i}"), 4)).collect();
    let addrs = ["10.1.2.3".parse().unwrap(), "fd00::1".parse().unwrap()];
    // Warm up (page in code, first-touch allocations).
    for _ in 0..20 {
        p.assign_queues(&blk(), &ctx, &dev, &pod).unwrap();
    }
    row(
        "validate-config",
        n,
        time(n, || p.validate_config(&blk(), &ctx).unwrap()),
        "",
    );
    row(
        "select-program",
        n,
        time(n, || p.select_program(&blk(), &ctx, &dev, &pod).unwrap()),
        "p50 ≤ 30",
    );
    row(
        "assign-queues",
        n,
        time(n, || p.assign_queues(&blk(), &ctx, &dev, &pod).unwrap()),
        "p50 ≤ 30",
    );
    row(
        "filter-rules (2 addresses)",
        n,
        time(n, || {
            p.filter_rules(&blk(), &ctx, &dev, &pod, &addrs).unwrap()
        }),
        "p50 ≤ 30",
    );
    row(
        "preferred-allocation (8 devices)",
        n,
        time(n, || {
            p.preferred_allocation(&blk(), &ctx, &avail, &[], 2)
                .unwrap()
        }),
        "p50 ≤ 30",
    );

    let times = load_times(&wasm, &digest, loads, loads.min(5));
    row(
        "load from precompiled cache (+metadata)",
        loads,
        times.cached,
        "≤ 5000",
    );
    row(
        "first load: compile (+metadata)",
        loads.min(5),
        times.compiled,
        "",
    );
}
