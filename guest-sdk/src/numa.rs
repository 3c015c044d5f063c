//! NUMA-aware helpers for `preferred-allocation`.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use crate::Netdev;

/// Devices grouped by NUMA node (`None`: node unknown), each group in
/// [`by_queues_then_name`] order. Nodes iterate in ascending order, `None` first.
///
/// ```
/// use afxdp_policy_sdk::{numa::group_by_numa, Netdev};
/// let devs = [
///     Netdev::new("a", 4).with_numa(1),
///     Netdev::new("b", 8).with_numa(0),
///     Netdev::new("c", 8).with_numa(1),
/// ];
/// let groups = group_by_numa(&devs);
/// let node1: Vec<&str> = groups[&Some(1)].iter().map(|d| d.name.as_str()).collect();
/// assert_eq!(node1, ["c", "a"]);
/// ```
pub fn group_by_numa(devices: &[Netdev]) -> BTreeMap<Option<i64>, Vec<&Netdev>> {
    let mut groups: BTreeMap<Option<i64>, Vec<&Netdev>> = BTreeMap::new();
    for d in devices {
        groups.entry(d.numa_node).or_default().push(d);
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| by_queues_then_name(a, b));
    }
    groups
}

/// Preference order among devices: more rx queues first, then by name.
pub fn by_queues_then_name(a: &Netdev, b: &Netdev) -> Ordering {
    (Reverse(a.rx_queues), &a.name).cmp(&(Reverse(b.rx_queues), &b.name))
}

/// The names in `names` without repeats, first occurrence kept.
pub fn dedup_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_orders() {
        let devs = [
            Netdev::new("x", 2),
            Netdev::new("b", 4).with_numa(0),
            Netdev::new("a", 4).with_numa(0),
            Netdev::new("c", 16).with_numa(0),
        ];
        let g = group_by_numa(&devs);
        let keys: Vec<_> = g.keys().copied().collect();
        assert_eq!(keys, vec![None, Some(0)]);
        let n0: Vec<&str> = g[&Some(0)].iter().map(|d| d.name.as_str()).collect();
        assert_eq!(n0, ["c", "a", "b"]);
    }

    #[test]
    fn dedup_keeps_first() {
        let v: Vec<String> = ["a", "b", "a", "c", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dedup_names(&v), ["a", "b", "c"]);
    }
}
