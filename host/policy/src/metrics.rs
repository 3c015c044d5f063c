//! Process-wide counters of policy failures, per pool.
//!
//! Plain atomics behind a map, read by whoever exports metrics (afxdp-dp's
//! status endpoint, afxdpctl). Counts only grow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Counters of one pool.
#[derive(Debug, Default)]
struct Counters {
    fallbacks: AtomicU64,
    failures: AtomicU64,
}

/// A pool's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCounts {
    /// Failed calls answered with the default ([`FailurePolicy::Ignore`](crate::FailurePolicy::Ignore)).
    pub fallbacks: u64,
    /// Failed calls returned as errors ([`FailurePolicy::Fail`](crate::FailurePolicy::Fail)).
    pub failures: u64,
}

fn registry() -> &'static Mutex<BTreeMap<String, Arc<Counters>>> {
    static R: OnceLock<Mutex<BTreeMap<String, Arc<Counters>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn counters(pool: &str) -> Arc<Counters> {
    let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = r.get(pool) {
        return c.clone();
    }
    let c = Arc::new(Counters::default());
    r.insert(pool.to_string(), c.clone());
    c
}

pub(crate) fn record_fallback(pool: &str) {
    counters(pool).fallbacks.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn record_failure(pool: &str) {
    counters(pool).failures.fetch_add(1, Ordering::Relaxed);
}

/// Failed calls of `pool` answered with the default.
pub fn fallbacks(pool: &str) -> u64 {
    counts(pool).fallbacks
}

/// Failed calls of `pool` returned as errors.
pub fn failures(pool: &str) -> u64 {
    counts(pool).failures
}

/// The counts of `pool` (zero when it never failed).
pub fn counts(pool: &str) -> PoolCounts {
    let r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    r.get(pool)
        .map_or_else(PoolCounts::default, |c| PoolCounts {
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        })
}

/// Every pool that ever failed, with its counts.
pub fn snapshot() -> Vec<(String, PoolCounts)> {
    let r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    r.iter()
        .map(|(pool, c)| {
            (
                pool.clone(),
                PoolCounts {
                    fallbacks: c.fallbacks.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                },
            )
        })
        .collect()
}
