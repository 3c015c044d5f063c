//! What operators see: Prometheus metrics and readiness, served by
//! [`crate::observe`] on `--metrics-address`.
//!
//! | metric | labels |
//! |---|---|
//! | `afxdp_allocations_total` | pool |
//! | `afxdp_releases_total` | pool |
//! | `afxdp_allocation_failures_total` | pool, cause |
//! | `afxdp_devices` | pool, health |
//! | `afxdp_policy_calls_total` | pool, digest, outcome |
//! | `afxdp_policy_call_seconds` (histogram) | pool, digest |
//! | `afxdp_oci_pulls_total` | kind (`policy` / `image`), outcome |
//! | `afxdp_handshakes_total` | outcome |
//!
//! Ready (`/readyz`) means the config is loaded and every pool is registered
//! with the kubelet.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub pool: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    pub pool: String,
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub pool: String,
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyCallLabels {
    pub pool: String,
    pub digest: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

fn call_seconds() -> Histogram {
    // 5 µs .. ~2.6 s
    Histogram::new(exponential_buckets(5e-6, 4.0, 10))
}

/// The daemon's metrics and readiness (shared, `Arc`).
pub struct Metrics {
    registry: Registry,
    allocations: Family<PoolLabels, Counter>,
    releases: Family<PoolLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    devices: Family<HealthLabels, Gauge>,
    policy_calls: Family<PolicyCallLabels, Counter>,
    policy_seconds: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    pulls: Family<PullLabels, Counter>,
    handshakes: Family<OutcomeLabels, Counter>,
    readiness: Mutex<Readiness>,
}

#[derive(Default)]
struct Readiness {
    config_loaded: bool,
    pools: BTreeSet<String>,
    registered: BTreeSet<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            allocations: Family::default(),
            releases: Family::default(),
            failures: Family::default(),
            devices: Family::default(),
            policy_calls: Family::default(),
            policy_seconds: Family::new_with_constructor(call_seconds),
            pulls: Family::default(),
            handshakes: Family::default(),
            readiness: Mutex::default(),
        };
        let r = &mut m.registry;
        r.register(
            "afxdp_allocations",
            "Devices allocated",
            m.allocations.clone(),
        );
        r.register("afxdp_releases", "Devices released", m.releases.clone());
        r.register(
            "afxdp_allocation_failures",
            "Allocations that failed, by cause",
            m.failures.clone(),
        );
        r.register(
            "afxdp_devices",
            "Pool devices by health, as kubelet sees them",
            m.devices.clone(),
        );
        r.register(
            "afxdp_policy_calls",
            "Policy decisions, by outcome",
            m.policy_calls.clone(),
        );
        r.register(
            "afxdp_policy_call_seconds",
            "Policy decision latency",
            m.policy_seconds.clone(),
        );
        r.register(
            "afxdp_oci_pulls",
            "OCI fetches of policies and bytecode images",
            m.pulls.clone(),
        );
        r.register(
            "afxdp_handshakes",
            "UDS handshake /connect answers",
            m.handshakes.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn allocated(&self, pool: &str, devices: usize) {
        let c = self
            .allocations
            .get_or_create(&PoolLabels { pool: pool.into() });
        c.inc_by(u64::try_from(devices).unwrap_or(u64::MAX));
    }

    pub fn released(&self, pool: &str) {
        self.releases
            .get_or_create(&PoolLabels { pool: pool.into() })
            .inc();
    }

    pub fn allocation_failed(&self, pool: &str, cause: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                pool: pool.into(),
                cause: cause.into(),
            })
            .inc();
    }

    /// The pool's device counts by health (`Healthy` / `Unhealthy`).
    pub fn devices(&self, pool: &str, healthy: usize, unhealthy: usize) {
        for (health, n) in [("Healthy", healthy), ("Unhealthy", unhealthy)] {
            self.devices
                .get_or_create(&HealthLabels {
                    pool: pool.into(),
                    health: health.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One policy call: its outcome (`ok` or the error kind) and duration.
    pub fn policy_call(&self, pool: &str, digest: &str, outcome: &str, took: Duration) {
        self.policy_calls
            .get_or_create(&PolicyCallLabels {
                pool: pool.into(),
                digest: digest.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.policy_seconds
            .get_or_create(&PolicyLabels {
                pool: pool.into(),
                digest: digest.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn pulled(&self, kind: &str, ok: bool) {
        self.pulls
            .get_or_create(&PullLabels {
                kind: kind.into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    pub fn handshake(&self, outcome: &str) {
        self.handshakes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    fn readiness(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The config is loaded; these pools must register before ready.
    pub fn config_loaded(&self, pools: impl IntoIterator<Item = String>) {
        let mut r = self.readiness();
        r.config_loaded = true;
        r.pools = pools.into_iter().collect();
    }

    /// `pool` is registered with the kubelet (`false`: no longer, e.g. the
    /// kubelet restarted).
    pub fn registered(&self, pool: &str, yes: bool) {
        let mut r = self.readiness();
        if yes {
            r.registered.insert(pool.to_string());
        } else {
            r.registered.remove(pool);
        }
    }

    /// Ready, or why not.
    pub fn ready(&self) -> Result<(), String> {
        let r = self.readiness();
        if !r.config_loaded {
            return Err("config not loaded".into());
        }
        let waiting: Vec<&String> = r.pools.difference(&r.registered).collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("not registered with the kubelet: {waiting:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_the_config_and_every_pool_registered() {
        let m = Metrics::default();
        assert!(m.ready().is_err());
        m.config_loaded(["a".to_string(), "b".to_string()]);
        m.registered("a", true);
        assert!(m.ready().unwrap_err().contains("\"b\""));
        m.registered("b", true);
        assert!(m.ready().is_ok());
        m.registered("a", false);
        assert!(m.ready().is_err());
    }

    #[test]
    fn counters_show_in_the_exposition() {
        let m = Metrics::default();
        m.allocated("fast", 2);
        m.allocation_failed("fast", "not_present");
        m.policy_call("fast", "sha256:ab", "ok", Duration::from_micros(9));
        let text = m.encode();
        assert!(
            text.contains(r#"afxdp_allocations_total{pool="fast"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"afxdp_allocation_failures_total{pool="fast",cause="not_present"} 1"#),
            "{text}"
        );
        assert!(text.contains("afxdp_policy_call_seconds_bucket"), "{text}");
    }
}
