//! Timing and percentiles shared by the policy benches.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use afxdp_policy::{Blocking, EngineConfig, PolicyEngine};

/// Benches run on plain threads: policy calls may block there.
pub fn blk() -> Blocking {
    Blocking::here().expect("benches run outside any async runtime")
}

/// p50, p99 and max of a sample set.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Percentiles of `samples` (nearest rank); `samples` must not be empty.
pub fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: samples[samples.len() - 1],
    }
}

/// Run `f` `n` times (after a warm-up); the wall time of each run.
pub use afxdp_policy::examples::time;

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Wall times of loading `wasm` (with its metadata call) into a fresh
/// engine: `cached` loads from a precompiled artifact (written once before),
/// then `compiled` loads that compile it (no cache).
pub struct LoadTimes {
    pub cached: Vec<Duration>,
    pub compiled: Vec<Duration>,
}

/// [`LoadTimes`] over `cached` and `compiled` loads.
pub fn load_times(wasm: &[u8], digest: &str, cached: usize, compiled: usize) -> LoadTimes {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = |cache: bool| {
        PolicyEngine::new(EngineConfig {
            cache_dir: cache.then(|| dir.path().to_path_buf()),
            ..EngineConfig::default()
        })
        .expect("engine")
    };
    let loads = |n: usize, cache: bool| -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let e = engine(cache);
                let start = Instant::now();
                let p = e.load(&blk(), wasm, digest).expect("load");
                let t = start.elapsed();
                drop(p);
                t
            })
            .collect()
    };
    // Write the artifact once.
    engine(true).load(&blk(), wasm, digest).expect("load");
    LoadTimes {
        cached: loads(cached, true),
        compiled: loads(compiled, false),
    }
}
