//! `numa-spread`: spread a pod's devices over NUMA nodes and give it a
//! balanced share of queues.
//!
//! - `preferred-allocation`: keep `must-include`, then pick round-robin by
//!   NUMA node: always from the node holding the fewest picks so far (ties:
//!   the node with more devices left, then the lowest node), within a node
//!   more rx queues first, then by name. Devices whose node is unknown form
//!   a group of their own. Picks per node end up differing by at most one
//!   whenever every node has devices to give.
//! - `assign-queues`: the pod binds queues `0..n` on each device, and the
//!   channel count is set to `n` (unless `setChannels` is false) so RSS
//!   spreads its traffic over exactly the bound queues. `n` is
//!   `ceil(queuesPerPod / requested)` when `queuesPerPod` is configured (the
//!   pod's total over the devices it requested), otherwise
//!   `rx-queues / requested` (a pod gets about one device's worth of queues
//!   in total); at least 1, at most the device's rx queues.
//! - `select-program` and `filter-rules`: not made (the host's defaults).
//!
//! Config (all optional):
//!
//! ```json
//! { "queuesPerPod": 4, "setChannels": true }
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

use afxdp_policy_sdk::numa::dedup_names;
use afxdp_policy_sdk::prelude::*;

/// The most `queuesPerPod` accepted.
pub const MAX_QUEUES_PER_POD: u32 = 1024;

/// The pool's config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// Queues a pod binds in total over the devices it requested; `None`:
    /// derive from the device's rx queues and the pod's request.
    pub queues_per_pod: Option<u32>,
    /// Set the channel count to the queues bound (default true).
    pub set_channels: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queues_per_pod: None,
            set_channels: true,
        }
    }
}

/// The numa-spread policy.
pub struct NumaSpread;

/// Config checks beyond the types.
pub fn validate(config: &Config) -> Result<(), PolicyError> {
    match config.queues_per_pod {
        Some(q) if q == 0 || q > MAX_QUEUES_PER_POD => Err(PolicyError::invalid_input(format!(
            "queuesPerPod: {q} is outside 1..={MAX_QUEUES_PER_POD}"
        ))),
        _ => Ok(()),
    }
}

/// The queues `pod` binds on `device`; see the crate docs.
pub fn queue_plan(config: &Config, device: &Netdev, pod: &Pod) -> QueuePlan {
    let device_queues = device.rx_queues.max(1);
    let requested = pod.requested.max(1);
    let wanted = match config.queues_per_pod {
        Some(total) => total.div_ceil(requested),
        None => device_queues / requested,
    }
    .max(1);
    if wanted > device_queues {
        log!(
            LogLevel::Info,
            "{}: {wanted} queues wanted, the device has {device_queues}",
            device.name
        );
    }
    let n = wanted.min(device_queues);
    let plan = QueuePlan::queues(all_queues(n));
    if config.set_channels && n != device.rx_queues {
        plan.with_channels(n)
    } else {
        plan
    }
}

/// Spread picks over NUMA nodes; see the crate docs.
pub fn spread(available: &[Netdev], must_include: &[String], size: usize) -> Vec<String> {
    let mut picked = dedup_names(must_include);
    let node_of: BTreeMap<&str, Option<i64>> = available
        .iter()
        .map(|d| (d.name.as_str(), d.numa_node))
        .collect();
    // Devices left per node, best first.
    let mut left: BTreeMap<Option<i64>, VecDeque<&Netdev>> = BTreeMap::new();
    for (node, devs) in group_by_numa(available) {
        let free: VecDeque<&Netdev> = devs
            .into_iter()
            .filter(|d| !picked.contains(&d.name))
            .collect();
        left.insert(node, free);
    }
    let mut count: BTreeMap<Option<i64>, usize> = BTreeMap::new();
    for p in &picked {
        *count
            .entry(node_of.get(p.as_str()).copied().flatten())
            .or_default() += 1;
    }
    while picked.len() < size {
        let next = left
            .iter()
            .filter(|(_, devs)| !devs.is_empty())
            .min_by_key(|(node, devs)| {
                (
                    count.get(node).copied().unwrap_or(0),
                    Reverse(devs.len()),
                    **node,
                )
            })
            .map(|(node, _)| *node);
        let Some(node) = next else { break };
        let Some(dev) = left.get_mut(&node).and_then(VecDeque::pop_front) else {
            break;
        };
        if !picked.contains(&dev.name) {
            picked.push(dev.name.clone());
            *count.entry(node).or_default() += 1;
        }
    }
    picked
}

impl Policy for NumaSpread {
    type Config = Config;

    fn metadata() -> Metadata {
        Metadata::new(
            "numa-spread",
            env!("CARGO_PKG_VERSION"),
            "spread a pod's devices over NUMA nodes; balanced queue share per pod",
            &[decision::ASSIGN_QUEUES, decision::PREFERRED_ALLOCATION],
        )
    }

    fn validate(config: &Config) -> Result<(), PolicyError> {
        validate(config)
    }

    fn assign_queues(
        ctx: &Ctx<Config>,
        device: &Netdev,
        pod: &Pod,
    ) -> Result<QueuePlan, PolicyError> {
        Ok(queue_plan(&ctx.config, device, pod))
    }

    fn preferred_allocation(
        _: &Ctx<Config>,
        available: &[Netdev],
        must_include: &[String],
        size: u32,
    ) -> Result<Vec<String>, PolicyError> {
        Ok(spread(available, must_include, size as usize))
    }
}

afxdp_policy_sdk::export_policy!(NumaSpread);

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_policy_sdk::testing::{devs, names};

    /// (available, must-include, size, expected)
    type AllocCase<'a> = (&'a [&'a str], &'a [&'a str], u32, &'a [&'a str]);

    const FOUR_BY_TWO: &[&str] = &["a0:4:0", "b0:8:0", "c0:4:0", "a1:4:1", "b1:2:1", "c1:4:1"];

    #[test]
    fn spread_table() {
        // (available, must-include, size, expected)
        let cases: &[AllocCase] = &[
            // Alternate nodes, best device of each first; tie on count goes
            // to the node with more left, then the lowest node.
            (FOUR_BY_TWO, &[], 2, &["b0", "a1"]),
            (FOUR_BY_TWO, &[], 4, &["b0", "a1", "a0", "c1"]),
            (FOUR_BY_TWO, &[], 6, &["b0", "a1", "a0", "c1", "c0", "b1"]),
            // Must-include on node 0 twice: node 1 catches up first.
            (FOUR_BY_TWO, &["a0", "c0"], 4, &["a0", "c0", "a1", "c1"]),
            // Node with more devices left wins a tie.
            (&["x:1:0", "y:1:1", "z:1:1"], &[], 1, &["y"]),
            // One node runs out: the rest come from the other.
            (
                &["x:1:0", "y:1:1", "z:1:1", "w:1:1"],
                &[],
                4,
                &["w", "x", "y", "z"],
            ),
            // Unknown NUMA is a group of its own.
            (&["u:1:-", "x:1:0"], &[], 2, &["u", "x"]),
            // Not enough devices; nothing asked; must-include beyond size.
            (&["x:1:0"], &[], 3, &["x"]),
            (&["x:1:0"], &[], 0, &[]),
            (&["x:1:0", "y:1:0"], &["y", "x"], 1, &["y", "x"]),
            // A must-include absent from available counts as unknown NUMA.
            (&["x:1:0", "y:1:1"], &["m"], 2, &["m", "x"]),
        ];
        for (avail, must, size, want) in cases {
            let got = spread(&devs(avail), &names(must), *size as usize);
            assert_eq!(
                got,
                names(want),
                "available {avail:?} must {must:?} size {size}"
            );
            let via = runtime::preferred_allocation::<NumaSpread>(
                &Pool::new("p", ""),
                &devs(avail),
                &names(must),
                *size,
            );
            assert_eq!(via, Ok(names(want)));
        }
    }

    #[test]
    fn spread_is_balanced() {
        // 3 nodes with 5 devices each: any size gives per-node counts within 1.
        let avail: Vec<Netdev> = (0..15)
            .map(|i| Netdev::new(format!("d{i:02}"), 1 + i % 3).with_numa(i64::from(i % 3)))
            .collect();
        for size in 0..=15 {
            let got = spread(&avail, &[], size);
            assert_eq!(got.len(), size);
            let mut per = [0usize; 3];
            for n in &got {
                let d = avail
                    .iter()
                    .find(|d| &d.name == n)
                    .expect("picked an available device");
                per[d.numa_node.expect("numa") as usize] += 1;
            }
            let (min, max) = (per.iter().min(), per.iter().max());
            assert!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "size {size}: {per:?}"
            );
        }
    }

    #[test]
    fn queue_plan_table() {
        let dev = |q| Netdev::new("eth0", q);
        let pod = |r| Pod::new("ns", "p").with_requested(r);
        let cfg = |q: Option<u32>, set| Config {
            queues_per_pod: q,
            set_channels: set,
        };
        // (config, device rx queues, pod requested, queues, channels)
        let cases: &[(Config, u32, u32, u32, Option<u32>)] = &[
            // Derived: one device's worth spread over the request.
            (cfg(None, true), 8, 1, 8, None),
            (cfg(None, true), 8, 2, 4, Some(4)),
            (cfg(None, true), 8, 3, 2, Some(2)),
            (cfg(None, true), 2, 4, 1, Some(1)),
            (cfg(None, true), 0, 1, 1, Some(1)),
            (cfg(None, true), 8, 0, 8, None), // requested 0 (unknown): as 1
            // Configured total, split over the devices (rounded up).
            (cfg(Some(4), true), 8, 1, 4, Some(4)),
            (cfg(Some(4), true), 8, 2, 2, Some(2)),
            (cfg(Some(5), true), 8, 2, 3, Some(3)),
            (cfg(Some(16), true), 8, 1, 8, None), // capped to the device
            (cfg(Some(1), true), 8, 4, 1, Some(1)),
            // Channels left alone.
            (cfg(Some(2), false), 8, 1, 2, None),
            (cfg(None, false), 8, 2, 4, None),
        ];
        for (c, rx, req, n, channels) in cases {
            let plan = queue_plan(c, &dev(*rx), &pod(*req));
            assert_eq!(
                plan,
                QueuePlan {
                    channels: *channels,
                    queues: all_queues(*n)
                },
                "{c:?} rx {rx} requested {req}"
            );
            if *rx > 0 {
                assert!(afxdp_policy_sdk::runtime::check_queue_plan(&plan, &dev(*rx)).is_ok());
            }
        }
        // Capping is logged.
        let _ = afxdp_policy_sdk::take_logs();
        queue_plan(&cfg(Some(16), true), &dev(8), &pod(1));
        let logs = afxdp_policy_sdk::take_logs();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].1.contains("16 queues wanted"), "{logs:?}");
    }

    #[test]
    fn config_table() {
        let cases: &[(&str, Result<(), ErrorCode>)] = &[
            ("", Ok(())),
            ("{}", Ok(())),
            (r#"{"queuesPerPod": 4}"#, Ok(())),
            (r#"{"queuesPerPod": 4, "setChannels": false}"#, Ok(())),
            (r#"{"queuesPerPod": 0}"#, Err(ErrorCode::InvalidInput)),
            (r#"{"queuesPerPod": 5000}"#, Err(ErrorCode::InvalidInput)),
            (r#"{"queuesPerPod": -1}"#, Err(ErrorCode::InvalidInput)),
            (r#"{"queues_per_pod": 4}"#, Err(ErrorCode::InvalidInput)),
        ];
        for (json, want) in cases {
            let got = runtime::validate_config::<NumaSpread>(json).map_err(|e| e.code);
            assert_eq!(&got, want, "{json}");
        }
        let through = runtime::assign_queues::<NumaSpread>(
            &Pool::new("p", r#"{"queuesPerPod": 2}"#),
            &Netdev::new("eth0", 8),
            &Pod::new("ns", "p"),
        );
        assert_eq!(through, Ok(QueuePlan::queues(vec![0, 1]).with_channels(2)));
        let e = runtime::select_program::<NumaSpread>(
            &Pool::default(),
            &Netdev::new("e", 1),
            &Pod::default(),
        )
        .expect_err("not made");
        assert_eq!(e.code, ErrorCode::Unsupported);
    }
}
