//! Timing and percentiles shared by the policy benches.
#![allow(dead_code)]

use std::time::{Duration, Instant};

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

/// Run `f` `n` times; the wall time of each run.
pub fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect()
}

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
