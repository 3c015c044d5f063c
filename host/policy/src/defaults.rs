//! What the host decides without a policy, and what it does when a policy
//! call fails.
//!
//! | decision | default |
//! |---|---|
//! | program | the built-in XSKMAP redirect program, native mode, priority [`DEFAULT_PRIORITY`] |
//! | queues | every rx queue of the device, channels left as they are |
//! | filter rules | none |
//! | preferred allocation | [`preferred_allocation`]: NUMA- and queue-aware |
//!
//! A pool's [`FailurePolicy`] says what a failed call means: `Fail` refuses
//! the allocation with the error, `Ignore` uses the default (logged at warn
//! and counted in [`crate::metrics`]). [`decide`] applies it.

use std::collections::BTreeMap;

use crate::error::DecisionError;
use crate::metrics;
use crate::types::{FilterRule, Netdev, ProgramChoice, ProgramSource, QueuePlan, XdpMode};
use crate::validate::MAX_QUEUES;

/// bpfman priority of the default program (the middle of 1..=1000 would
/// do; 50 leaves room for programs that must run before it).
pub const DEFAULT_PRIORITY: i32 = 50;

/// What a pool does when its policy fails to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    /// Refuse: the allocation (or CNI ADD) fails with the policy's error.
    #[default]
    Fail,
    /// Fall back to the built-in default and carry on.
    Ignore,
}

/// Who made a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// The policy with this digest.
    Policy {
        /// `sha256:...`.
        digest: String,
    },
    /// The built-in default.
    Default {
        /// Why: no policy, or the failed call's error.
        reason: String,
    },
}

/// A decision and who made it (persisted with the allocation, shown by
/// afxdpctl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    /// The decision.
    pub value: T,
    /// Who made it.
    pub by: DecidedBy,
}

impl<T> Decided<T> {
    /// A default decision (e.g. the pool has no policy).
    pub fn by_default(value: T, reason: impl Into<String>) -> Self {
        Self {
            value,
            by: DecidedBy::Default {
                reason: reason.into(),
            },
        }
    }
}

/// Apply a pool's failure policy to a policy call's `result`.
///
/// - `Ok(v)` → `v`, decided by the policy `digest`.
/// - `Err(e)` with [`FailurePolicy::Fail`] → `Err(e)` (counted as a failure).
/// - `Err(e)` with [`FailurePolicy::Ignore`] → `default()`, decided by the
///   default with `e` as the reason; logged at warn with the pool and digest,
///   counted in [`metrics::fallbacks`].
pub fn decide<T>(
    pool: &str,
    digest: &str,
    failure: FailurePolicy,
    result: Result<T, DecisionError>,
    default: impl FnOnce() -> T,
) -> Result<Decided<T>, DecisionError> {
    match (result, failure) {
        (Ok(value), _) => Ok(Decided {
            value,
            by: DecidedBy::Policy {
                digest: digest.to_string(),
            },
        }),
        (Err(e), FailurePolicy::Fail) => {
            metrics::record_failure(pool);
            Err(e)
        }
        (Err(e), FailurePolicy::Ignore) => {
            metrics::record_fallback(pool);
            tracing::warn!(pool, digest, kind = e.kind(), error = %e, "policy failed; using the default");
            Ok(Decided::by_default(default(), e.to_string()))
        }
    }
}

/// The built-in program: XSKMAP redirect, native mode, [`DEFAULT_PRIORITY`].
pub fn program() -> ProgramChoice {
    ProgramChoice {
        source: ProgramSource::Builtin,
        function: None,
        mode: XdpMode::Native,
        priority: DEFAULT_PRIORITY,
    }
}

/// Every rx queue of `device` (at least queue 0), channels unchanged.
pub fn queue_plan(device: &Netdev) -> QueuePlan {
    let n = device.rx_queues.clamp(1, MAX_QUEUES as u32);
    QueuePlan {
        channels: None,
        queues: (0..n).collect(),
    }
}

/// No filter rules.
pub fn filter_rules() -> Vec<FilterRule> {
    Vec::new()
}

/// NUMA- and queue-aware default for GetPreferredAllocation: keep
/// `must_include` (in order, without duplicates), then fill from the NUMA
/// node that already holds most of the picks (or, with no picks, has the most
/// available devices; ties go to the lowest node, unknown first), larger
/// rx-queue counts first, then by name. The result has
/// [`validate::allocation_len`](crate::validate::allocation_len) names.
///
/// A `must_include` name missing from `available` is kept, with an unknown
/// NUMA node and no queues.
pub fn preferred_allocation(
    available: &[Netdev],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let by_name: BTreeMap<&str, &Netdev> = available.iter().map(|d| (d.name.as_str(), d)).collect();
    let numa = |id: &str| by_name.get(id).and_then(|d| d.numa_node);
    let queues = |id: &str| by_name.get(id).map_or(0, |d| d.rx_queues);

    let mut picked: Vec<&str> = Vec::new();
    for d in must_include {
        if !picked.contains(&d.as_str()) {
            picked.push(d);
        }
    }
    let must = picked.len();
    let mut rest: Vec<&str> = Vec::new();
    for d in available {
        if !picked.contains(&d.name.as_str()) && !rest.contains(&d.name.as_str()) {
            rest.push(&d.name);
        }
    }
    // The NUMA node to prefer: most common among picks, else among available.
    let basis: &[&str] = if picked.is_empty() { &rest } else { &picked };
    let mut counts: BTreeMap<Option<i64>, usize> = BTreeMap::new();
    for d in basis {
        *counts.entry(numa(d)).or_default() += 1;
    }
    let home = counts
        .iter()
        .max_by_key(|(node, n)| (**n, std::cmp::Reverse(**node)))
        .and_then(|(node, _)| *node);
    rest.sort_by_key(|d| (numa(d) != home, std::cmp::Reverse(queues(d)), *d));
    let want = size.max(must);
    picked.extend(rest.into_iter().take(want.saturating_sub(picked.len())));
    picked.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn dev(name: &str, numa: Option<i64>, queues: u32) -> Netdev {
        Netdev {
            numa_node: numa,
            ..Netdev::new(name, queues)
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// (case, available, must_include, size, expected)
    #[test]
    fn preferred_allocation_table() {
        let two_nodes = vec![
            dev("a0", Some(0), 4),
            dev("b1", Some(1), 8),
            dev("c1", Some(1), 2),
            dev("d0", Some(0), 8),
            dev("e1", Some(1), 4),
        ];
        let unknown = vec![dev("x", None, 1), dev("y", None, 4), dev("z", Some(0), 16)];
        let same = vec![dev("n2", Some(0), 2), dev("n1", Some(0), 2)];
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, &[Netdev], Vec<String>, usize, Vec<String>)> = vec![
            (
                "no picks: the node with most devices, more queues first",
                &two_nodes,
                vec![],
                2,
                names(&["b1", "e1"]),
            ),
            (
                "a pick on node 0 pulls the rest there",
                &two_nodes,
                names(&["a0"]),
                2,
                names(&["a0", "d0"]),
            ),
            (
                "node exhausted: spill to the other, by queues",
                &two_nodes,
                names(&["a0"]),
                4,
                names(&["a0", "d0", "b1", "e1"]),
            ),
            ("size 0", &two_nodes, vec![], 0, vec![]),
            (
                "must-include beyond size are all kept",
                &two_nodes,
                names(&["c1", "a0"]),
                1,
                names(&["c1", "a0"]),
            ),
            (
                "duplicate must-include kept once",
                &two_nodes,
                names(&["c1", "c1"]),
                2,
                names(&["c1", "b1"]),
            ),
            (
                "more than available: all of them",
                &two_nodes,
                vec![],
                9,
                names(&["b1", "e1", "c1", "d0", "a0"]),
            ),
            (
                "devices of unknown NUMA count as one node",
                &unknown,
                vec![],
                2,
                names(&["y", "x"]),
            ),
            (
                "same node and queues: by name",
                &same,
                vec![],
                1,
                names(&["n1"]),
            ),
        ];
        for (case, avail, must, size, want) in cases {
            let got = preferred_allocation(avail, &must, size);
            assert_eq!(got, want, "{case}");
            let mut must_unique = must.clone();
            must_unique.dedup();
            if must_unique.len() == must.len() {
                validate::preferred_allocation(&got, avail, &must, size)
                    .unwrap_or_else(|e| panic!("{case}: default fails validation: {e}"));
            }
        }
    }

    #[test]
    fn other_defaults_are_valid() {
        let d = Netdev::new("eth0", 4);
        assert!(validate::program(&program()).is_ok());
        let plan = queue_plan(&d);
        assert_eq!(plan.queues, vec![0, 1, 2, 3]);
        assert!(validate::queue_plan(&plan, &d).is_ok());
        assert_eq!(queue_plan(&Netdev::new("q0", 0)).queues, vec![0]);
        assert!(filter_rules().is_empty());
    }

    #[test]
    fn decide_applies_the_failure_policy() {
        let err = || DecisionError::Timeout {
            after: std::time::Duration::from_millis(5),
        };
        let ok = decide("p-ok", "sha256:x", FailurePolicy::Fail, Ok(1), || 0).unwrap();
        assert_eq!(
            ok.by,
            DecidedBy::Policy {
                digest: "sha256:x".into()
            }
        );
        assert_eq!(
            decide("p-fail", "d", FailurePolicy::Fail, Err(err()), || 0),
            Err(err())
        );
        assert_eq!(metrics::failures("p-fail"), 1);
        let fb = decide("p-ign", "d", FailurePolicy::Ignore, Err(err()), || 7).unwrap();
        assert_eq!(fb.value, 7);
        assert!(matches!(fb.by, DecidedBy::Default { ref reason } if reason.contains("deadline")));
        assert_eq!(metrics::fallbacks("p-ign"), 1);
    }
}
