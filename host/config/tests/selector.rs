//! Pool selection tables.

use afxdp_config::selector::{assign_pools, assign_pools_detailed, AssignedDevice, DeviceFacts};
use afxdp_config::{parse, Config};

fn cfg(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A NIC on the node: (name, driver, pci, mac, has_addresses).
fn nic<'a>(
    name: &'a str,
    driver: &'a str,
    pci: &'a str,
    mac: &'a str,
    addressed: bool,
) -> DeviceFacts<'a> {
    DeviceFacts {
        name,
        driver: Some(driver),
        pci: Some(pci),
        mac: Some(mac),
        has_addresses: addressed,
        is_primary_host_interface: false,
    }
}

/// The node used by most cases.
fn node() -> Vec<DeviceFacts<'static>> {
    vec![
        DeviceFacts {
            is_primary_host_interface: true,
            ..nic("eno1", "ice", "0000:18:00.0", "00:00:00:00:00:01", true)
        },
        nic(
            "ens801f3",
            "ice",
            "0000:81:00.3",
            "68:05:CA:2D:E9:13",
            false,
        ),
        nic(
            "ens801f0",
            "ice",
            "0000:81:00.0",
            "68:05:CA:2D:E9:10",
            false,
        ),
        nic(
            "ens801f1",
            "ice",
            "0000:81:00.1",
            "68:05:CA:2D:E9:11",
            false,
        ),
        nic("ens801f2", "ice", "0000:81:00.2", "68-05-ca-2d-e9-12", true),
        nic(
            "ens785f0",
            "i40e",
            "0000:3B:00.0",
            "3c:fd:fe:00:00:00",
            false,
        ),
        nic(
            "ens785f1",
            "i40e",
            "0000:3b:00.1",
            "3c:fd:fe:00:00:01",
            false,
        ),
        DeviceFacts {
            name: "lo",
            ..Default::default()
        },
        DeviceFacts {
            name: "veth0",
            driver: Some("veth"),
            ..Default::default()
        },
    ]
}

/// Expected assignment: (pool, devices) in config order.
type Expected = &'static [(&'static str, &'static [&'static str])];

fn pools(r: Expected) -> Vec<(String, Vec<String>)> {
    r.iter()
        .map(|(p, d)| ((*p).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

#[test]
fn selection_table() {
    let cases: &[(&str, &str, &str, Expected)] = &[
        (
            "driver takes every device of its driver, never the default-route NIC",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice"}]}]}"#,
            &[("p", &["ens801f0", "ens801f1", "ens801f2", "ens801f3"])],
        ),
        (
            "pci and mac device selectors really match (upstream ignored them)",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"pci":"0000:3b:00.1"},{"mac":"68:05:ca:2d:e9:12"},{"mac":"68:05:CA:2D:E9:10"}]}]}"#,
            &[("p", &["ens785f1", "ens801f2", "ens801f0"])],
        ),
        (
            "explicitly naming the default-route NIC or lo takes nothing",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"name":"eno1"},{"pci":"0000:18:00.0"},{"name":"lo"}]}]}"#,
            &[("p", &[])],
        ),
        (
            "exclusions by name, pci and mac",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice","excludeDevices":[{"name":"ens801f0"},{"pci":"0000:81:00.1"},{"mac":"68:05:ca:2d:e9:13"}]}]}]}"#,
            &[("p", &["ens801f2"])],
        ),
        (
            "excludeAddressed skips addressed devices, except explicitly named ones",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"name":"ens785f0"}],"drivers":[{"name":"ice","excludeAddressed":true}]},
                        {"name":"q","mode":"primary","devices":[{"name":"ens801f2"}]}]}"#,
            &[("p", &["ens785f0", "ens801f0", "ens801f1", "ens801f3"]), ("q", &["ens801f2"])],
        ),
        (
            "first-version string drivers skip addressed devices",
            "any",
            r#"{"pools":[{"name":"p","drivers":["ice"]}]}"#,
            &[("p", &["ens801f0", "ens801f1", "ens801f3"])],
        ),
        (
            "primary limits per driver entry, in name order, whatever the discovery order",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice","primary":2},{"name":"i40e","primary":1}]}]}"#,
            &[("p", &["ens801f0", "ens801f1", "ens785f0"])],
        ),
        (
            "first pool wins; the next takes what is left",
            "any",
            r#"{"pools":[{"name":"a","mode":"primary","drivers":[{"name":"ice","primary":1}]},
                        {"name":"b","mode":"primary","drivers":[{"name":"ice"},{"name":"i40e"}]},
                        {"name":"c","mode":"primary","devices":[{"name":"ens785f0"}]}]}"#,
            &[
                ("a", &["ens801f0"]),
                ("b", &["ens801f1", "ens801f2", "ens801f3", "ens785f0", "ens785f1"]),
                ("c", &[]),
            ],
        ),
        (
            "explicit devices are taken before driver matches of the same pool",
            "any",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice","primary":1}],"devices":[{"name":"ens801f0"}]}]}"#,
            &[("p", &["ens801f0", "ens801f1"])],
        ),
        (
            "node-specific config replaces the pool's lists on that node (hostname case-insensitive)",
            "K8SNODE2",
            include_str!("fixtures/upstream-style/readme-nodes-primary.json"),
            &[("myPool", &["ens801f3", "ens801f1", "ens801f0"])],
        ),
        (
            "other nodes use the pool's own lists",
            "k8snode9",
            include_str!("fixtures/upstream-style/readme-nodes-primary.json"),
            &[("myPool", &["ens801f0", "ens801f1", "ens801f2"])],
        ),
        (
            "a node entry with neither drivers nor devices opts the node out",
            "k8snode3",
            include_str!("fixtures/upstream-style/readme-nodes-primary.json"),
            &[("myPool", &[])],
        ),
        (
            "v1alpha1 drivers skip addressed devices by default",
            "any",
            r#"{"apiVersion":"afxdp.io/v1alpha1","pools":[{"name":"p","selectors":{"drivers":[{"name":"ice","maxDevices":5,"exclude":[{"mac":"68:05:ca:2d:e9:10"}]}]}}]}"#,
            &[("p", &["ens801f1", "ens801f3"])],
        ),
    ];
    for (name, node_name, text, expected) in cases {
        let config = cfg(text);
        let mut devices = node();
        assert_eq!(
            assign_pools(&config, node_name, &devices),
            pools(expected),
            "case {name:?}"
        );
        devices.reverse();
        assert_eq!(
            assign_pools(&config, node_name, &devices),
            pools(expected),
            "case {name:?}, reversed discovery order"
        );
        // The per-device predicate agrees with the assignment for a single pool.
        if config.pools.len() == 1 {
            let sel = &config.pools[0].selector;
            let limited = text.contains("primary\":") || text.contains("maxDevices");
            for d in &devices {
                let taken = expected[0].1.contains(&d.name);
                if taken || !limited {
                    assert_eq!(
                        sel.matches(node_name, d),
                        taken,
                        "case {name:?}: {}",
                        d.name
                    );
                }
            }
        }
    }
}

#[test]
fn secondary_counts_follow_the_entry_that_selected_the_device() {
    let config = cfg(include_str!("fixtures/upstream/readme-nodes.json"));
    assert_eq!(config.pools[0].mode, afxdp_config::PoolMode::Cdq);
    let got = assign_pools_detailed(&config, "k8snode2", &node());
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].devices,
        [
            AssignedDevice {
                name: "ens801f3".into(),
                secondary: None
            },
            AssignedDevice {
                name: "ens801f1".into(),
                secondary: None
            },
            AssignedDevice {
                name: "ens801f0".into(),
                secondary: Some(20)
            },
        ]
    );
}

#[test]
fn unparsable_facts_never_match_addresses() {
    let config = cfg(
        r#"{"pools":[{"name":"p","mode":"primary","devices":[{"pci":"0000:81:00.1"},{"mac":"68:05:ca:2d:e9:11"}]}]}"#,
    );
    let weird = [DeviceFacts {
        name: "x",
        driver: None,
        pci: Some("81:00.1"),
        mac: Some("68:05:ca:2d:e9"),
        ..Default::default()
    }];
    assert_eq!(assign_pools(&config, "n", &weird), pools(&[("p", &[])]));
}

/// Driver entries take virtual netdevs only with includeVirtualDevices
/// (upstream kindCluster); a named device is taken either way, and a device
/// known by name only counts as physical.
#[test]
fn virtual_devices_by_driver_only_when_included() {
    for (include, expected) in [("false", &["veth0"][..]), ("true", &["veth0", "veth1"][..])] {
        let config = cfg(&format!(
            r#"{{"apiVersion":"afxdp.io/v1alpha1","includeVirtualDevices":{include},"pools":[
                {{"name":"named","selectors":{{"devices":[{{"name":"veth0"}}]}}}},
                {{"name":"bydriver","selectors":{{"drivers":[{{"name":"veth"}}]}}}}]}}"#
        ));
        let mut devices = node();
        devices.push(DeviceFacts {
            name: "veth1",
            driver: Some("veth"),
            ..Default::default()
        });
        let got: Vec<String> = assign_pools(&config, "n", &devices)
            .into_iter()
            .flat_map(|(_, d)| d)
            .collect();
        assert_eq!(got, expected, "includeVirtualDevices {include}");
    }
    let config = cfg(r#"{"pools":[{"name":"p","mode":"primary","devices":[{"name":"veth0"}]}]}"#);
    let by_name = [DeviceFacts {
        name: "veth0",
        ..Default::default()
    }];
    assert_eq!(
        assign_pools(&config, "n", &by_name),
        pools(&[("p", &["veth0"])])
    );
}

#[test]
fn veth_lab_pool() {
    let config = cfg(include_str!("fixtures/upstream/daemonset-kind.json"));
    assert_eq!(
        assign_pools(&config, "lab", &node()),
        pools(&[("myPool", &["veth0"])])
    );
}
