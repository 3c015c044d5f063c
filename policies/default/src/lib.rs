//! `default`: exactly what afxdp-dp does for a pool without a policy, as a
//! policy. A starting point to copy, and a reference the host's behaviour can
//! be compared with.
//!
//! - `select-program`: the built-in XSKMAP redirect program, native mode,
//!   priority 50.
//! - `assign-queues`: every rx queue of the device (at least queue 0), no
//!   channel change.
//! - `filter-rules`: none.
//! - `preferred-allocation`: NUMA- and queue-aware, mirroring
//!   `host/dp/src/pool.rs` `preferred_allocation`: keep `must-include`, then
//!   fill from the NUMA node that holds most of the picks (or, with no picks,
//!   most of the available devices), devices with more queues first, then by
//!   name.
//!
//! Config: none (an empty object, `null` or nothing).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use afxdp_policy_sdk::prelude::*;

/// No settings: only `{}` (or no config) is accepted.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The default policy.
pub struct DefaultPolicy;

/// The program the host attaches without a policy.
pub fn program() -> ProgramChoice {
    ProgramChoice::builtin()
}

/// Every rx queue of `device` (queue 0 when it reports none), channels untouched.
pub fn queue_plan(device: &Netdev) -> QueuePlan {
    QueuePlan::queues(all_queues(device.rx_queues.max(1)))
}

/// The host's preferred allocation over `available`; see the crate docs.
/// Devices named in `must_include` but absent from `available` count as
/// NUMA-unknown with no queues (the host would look them up in its pool).
pub fn preferred(available: &[Netdev], must_include: &[String], size: usize) -> Vec<String> {
    let by_name: BTreeMap<&str, &Netdev> = available.iter().map(|d| (d.name.as_str(), d)).collect();
    let numa = |id: &str| by_name.get(id).and_then(|d| d.numa_node);
    let queues = |id: &str| by_name.get(id).map_or(0, |d| d.rx_queues);

    let mut picked: Vec<String> = Vec::new();
    for d in must_include {
        if !picked.contains(d) {
            picked.push(d.clone());
        }
    }
    let mut rest: Vec<&str> = Vec::new();
    for d in available {
        if !picked.contains(&d.name) && !rest.contains(&d.name.as_str()) {
            rest.push(&d.name);
        }
    }
    // The NUMA node to prefer: most common among picks, else among available;
    // ties go to the lowest node (unknown first), as in the host.
    let mut counts: BTreeMap<Option<i64>, usize> = BTreeMap::new();
    let basis: Vec<&str> = if picked.is_empty() {
        rest.clone()
    } else {
        picked.iter().map(String::as_str).collect()
    };
    for d in basis {
        *counts.entry(numa(d)).or_default() += 1;
    }
    let home: Option<i64> = counts
        .iter()
        .max_by_key(|(node, n)| (**n, Reverse(**node)))
        .and_then(|(node, _)| *node);
    rest.sort_by_key(|d| (numa(d) != home, Reverse(queues(d)), *d));
    for d in rest {
        if picked.len() >= size {
            break;
        }
        picked.push(d.to_string());
    }
    picked.truncate(size.max(must_include.len()));
    picked
}

impl Policy for DefaultPolicy {
    type Config = Config;

    fn metadata() -> Metadata {
        Metadata::new(
            "default",
            env!("CARGO_PKG_VERSION"),
            "the host's built-in behaviour: builtin program, all queues, no rules, NUMA-packed allocation",
            &decision::ALL,
        )
    }

    fn select_program(_: &Ctx<Config>, _: &Netdev, _: &Pod) -> Result<ProgramChoice, PolicyError> {
        Ok(program())
    }

    fn assign_queues(_: &Ctx<Config>, device: &Netdev, _: &Pod) -> Result<QueuePlan, PolicyError> {
        Ok(queue_plan(device))
    }

    fn filter_rules(
        _: &Ctx<Config>,
        _: &Netdev,
        _: &Pod,
        _: &[std::net::IpAddr],
    ) -> Result<Vec<FilterRule>, PolicyError> {
        Ok(Vec::new())
    }

    fn preferred_allocation(
        _: &Ctx<Config>,
        available: &[Netdev],
        must_include: &[String],
        size: u32,
    ) -> Result<Vec<String>, PolicyError> {
        Ok(preferred(available, must_include, size as usize))
    }
}

afxdp_policy_sdk::export_policy!(DefaultPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_policy_sdk::testing::{devs, names};

    /// (available, must-include, size, expected)
    type AllocCase<'a> = (&'a [&'a str], &'a [&'a str], u32, &'a [&'a str]);

    #[test]
    fn preferred_allocation_table() {
        // (available, must-include, size, expected)
        let cases: &[AllocCase] = &[
            // No picks: the node with most available devices, more queues first.
            (&["a:4:0", "b:4:1", "c:8:1", "d:2:1"], &[], 2, &["c", "b"]),
            (
                &["a:4:0", "b:4:1", "c:8:1", "d:2:1"],
                &[],
                4,
                &["c", "b", "d", "a"],
            ),
            // A pick pulls the home node to its own.
            (
                &["a:4:0", "b:4:1", "c:8:1", "e:1:0"],
                &["a"],
                2,
                &["a", "e"],
            ),
            (
                &["a:4:0", "b:4:1", "c:8:1", "e:1:0"],
                &["a"],
                3,
                &["a", "e", "c"],
            ),
            // Ties between nodes: the lowest node.
            (&["x:1:1", "y:1:0"], &[], 1, &["y"]),
            // Unknown NUMA ties with a known node: unknown wins (as in the host).
            (&["x:1:-", "y:1:0"], &[], 1, &["x"]),
            // Equal queues: by name.
            (&["b:4:0", "a:4:0", "c:4:0"], &[], 2, &["a", "b"]),
            // Must-include beyond size is kept whole.
            (&["a:1:0", "b:1:0", "c:1:0"], &["c", "b"], 1, &["c", "b"]),
            // Not enough devices.
            (&["a:1:0"], &[], 3, &["a"]),
            // Nothing asked.
            (&["a:1:0"], &[], 0, &[]),
            // Must-include repeated: once.
            (&["a:1:0", "b:1:0"], &["a", "a"], 2, &["a", "b"]),
        ];
        for (avail, must, size, want) in cases {
            let got = preferred(&devs(avail), &names(must), *size as usize);
            assert_eq!(
                got,
                names(want),
                "available {avail:?} must {must:?} size {size}"
            );
            // Through the exported entry point too (config parsing + answer checks).
            let pool = Pool::new("p", "");
            let via = runtime::preferred_allocation::<DefaultPolicy>(
                &pool,
                &devs(avail),
                &names(must),
                *size,
            );
            assert_eq!(via, Ok(names(want)));
        }
    }

    #[test]
    fn program_queues_rules() {
        let pool = Pool::new("p", "{}");
        let pod = Pod::new("ns", "a");
        let choice = runtime::select_program::<DefaultPolicy>(&pool, &Netdev::new("eth0", 4), &pod);
        assert_eq!(
            choice,
            Ok(ProgramChoice {
                source: ProgramSource::Builtin,
                function: None,
                mode: XdpMode::Native,
                priority: 50,
            })
        );
        for (rx, want) in [(4u32, vec![0, 1, 2, 3]), (1, vec![0]), (0, vec![0])] {
            let plan =
                runtime::assign_queues::<DefaultPolicy>(&pool, &Netdev::new("eth0", rx), &pod);
            assert_eq!(
                plan,
                Ok(QueuePlan {
                    channels: None,
                    queues: want
                }),
                "rx {rx}"
            );
        }
        let rules = runtime::filter_rules::<DefaultPolicy>(
            &pool,
            &Netdev::new("eth0", 4),
            &pod,
            &["10.0.0.1".into()],
        );
        assert_eq!(rules, Ok(vec![]));
    }

    #[test]
    fn config_must_be_empty() {
        assert!(runtime::validate_config::<DefaultPolicy>("").is_ok());
        assert!(runtime::validate_config::<DefaultPolicy>("{}").is_ok());
        let e = runtime::validate_config::<DefaultPolicy>(r#"{"queues": 1}"#)
            .expect_err("unknown field");
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.contains("queues"), "{}", e.message);
    }

    #[test]
    fn metadata_lists_every_decision() {
        let m = runtime::metadata::<DefaultPolicy>();
        assert_eq!(m.name, "default");
        assert_eq!(m.decisions.len(), 4);
    }
}
