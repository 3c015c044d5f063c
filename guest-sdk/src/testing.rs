//! Helpers for policies' native table tests: compact inventories and name
//! lists. Not for decision code (they panic on malformed specs).

use crate::Netdev;

/// Owned names from string literals.
pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Devices from `name:queues:numa` specs (numa `-` = unknown), e.g.
/// `devs(&["eth0:4:0", "eth1:8:-"])`.
///
/// # Panics
/// On a spec that is not `name:queues:numa` with numbers where numbers go.
pub fn devs(spec: &[&str]) -> Vec<Netdev> {
    spec.iter()
        .map(|s| {
            let f: Vec<&str> = s.split(':').collect();
            assert_eq!(f.len(), 3, "{s:?}: expected name:queues:numa");
            let d = Netdev::new(f[0], f[1].parse().expect("queues"));
            match f[2] {
                "-" => d,
                n => d.with_numa(n.parse().expect("numa")),
            }
        })
        .collect()
}
