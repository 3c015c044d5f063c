//! Policy dispatch: one snapshot of a pool's policy per allocation, each
//! decision by the policy (under its failure policy) or the pool's default.
//! Calls block (Wasm): they take a [`Blocking`] and never run under the
//! agent's lock.

use std::sync::Arc;

use afxdp_policy::Blocking;

use super::{Agent, AllocateError};
use crate::policies;

/// The policy state an allocation decides with (taken once).
pub(super) enum PolicySnapshot {
    /// The pool has no policy configured.
    None,
    /// Configured but not loaded; `fail`: its failurePolicy is Fail.
    Unavailable {
        reason: String,
        fail: bool,
    },
    InForce(Arc<policies::PoolPolicy>),
}

impl PolicySnapshot {
    /// Whether a refused filter rule must fail the ADD, and the deciding digest.
    pub(super) fn filters_required(&self) -> (bool, Option<String>) {
        match self {
            PolicySnapshot::InForce(p) => (
                p.failure == afxdp_policy::FailurePolicy::Fail,
                Some(p.digest.clone()),
            ),
            _ => (false, None),
        }
    }
}

impl Agent {
    /// The policy in force for `pool`, if any (one snapshot per decision set).
    fn policy(&self, pool: &str) -> Option<Arc<policies::PoolPolicy>> {
        self.policies.as_ref().and_then(|s| s.get(pool))
    }

    /// The policy state of a pool for one allocation.
    pub(super) fn snapshot(&self, cfg: &afxdp_config::PoolConfig) -> PolicySnapshot {
        let Some(pc) = &cfg.policy else {
            return PolicySnapshot::None;
        };
        if let Some(p) = self.policy(&cfg.name) {
            return PolicySnapshot::InForce(p);
        }
        let reason = self
            .policies
            .as_ref()
            .and_then(|s| s.unavailable(&cfg.name))
            .unwrap_or_else(|| "not loaded yet".to_string());
        PolicySnapshot::Unavailable {
            reason,
            fail: pc.failure_policy == afxdp_config::FailurePolicy::Fail,
        }
    }

    /// GetPreferredAllocation for one container.
    pub fn preferred(
        &self,
        b: &Blocking,
        pool: &str,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> Vec<String> {
        let views: Vec<afxdp_policy::Netdev> = {
            let inner = self.lock();
            let Some(p) = inner.inventory.pool(pool) else {
                return Vec::new();
            };
            available
                .iter()
                .filter_map(|id| p.devices.get(id))
                .map(|d| policies::netdev_view(&d.netdev))
                .collect()
        };
        let default = || afxdp_policy::defaults::preferred_allocation(&views, must_include, size);
        match self.policy(pool) {
            None => default(),
            Some(p) if !p.loaded.makes(afxdp_policy::Decision::PreferredAllocation) => default(),
            Some(p) => {
                let r = p.call(|l, ctx| l.preferred_allocation(b, ctx, &views, must_include, size));
                match afxdp_policy::decide(pool, &p.digest, p.failure, r, default) {
                    Ok(d) => d.value,
                    // GetPreferredAllocation is advisory: kubelet falls back to
                    // its own choice when the answer is empty.
                    Err(e) => {
                        tracing::warn!(pool, digest = %p.digest, error = %e, "preferred allocation failed");
                        Vec::new()
                    }
                }
            }
        }
    }
}

/// One decision: by the pool's policy (with its failure policy), or the
/// built-in default when the pool has none.
pub(super) fn decide<T>(
    policy: &PolicySnapshot,
    pool: &str,
    decision: afxdp_policy::Decision,
    call: impl FnOnce(&policies::PoolPolicy) -> Result<T, afxdp_policy::DecisionError>,
    default: impl FnOnce() -> T,
) -> Result<afxdp_policy::Decided<T>, AllocateError> {
    match policy {
        PolicySnapshot::None => Ok(afxdp_policy::Decided::by_default(default(), "no policy")),
        PolicySnapshot::Unavailable { reason, fail: true } => {
            Err(AllocateError::PolicyUnavailable {
                pool: pool.into(),
                reason: reason.clone(),
            })
        }
        PolicySnapshot::Unavailable {
            reason,
            fail: false,
        } => {
            tracing::warn!(pool, decision = decision.as_str(), reason = %reason, "policy not loaded; using the default");
            Ok(afxdp_policy::Decided::by_default(
                default(),
                format!("policy not loaded: {reason}"),
            ))
        }
        // A decision the policy does not make (its metadata does not list
        // it) is the pool's configured default, on the policy's behalf.
        PolicySnapshot::InForce(p) if !p.loaded.makes(decision) => Ok(afxdp_policy::Decided {
            value: default(),
            by: afxdp_policy::DecidedBy::Policy {
                digest: p.digest.clone(),
            },
        }),
        PolicySnapshot::InForce(p) => {
            afxdp_policy::decide(pool, &p.digest, p.failure, call(p), default).map_err(|source| {
                AllocateError::Policy {
                    pool: pool.into(),
                    digest: p.digest.clone(),
                    decision: decision.as_str(),
                    source,
                }
            })
        }
    }
}

/// Who decided an allocation, for the record: `policy sha256:...` or
/// `default (<reason>)`; the first decision that fell back names the reason.
pub(super) fn decided_by(a: &afxdp_policy::DecidedBy, b: &afxdp_policy::DecidedBy) -> String {
    use afxdp_policy::DecidedBy::{Default, Policy};
    match (a, b) {
        (Policy { digest }, Policy { .. }) => format!("policy {digest}"),
        (Default { reason }, _) | (_, Default { reason }) => format!("default ({reason})"),
    }
}
