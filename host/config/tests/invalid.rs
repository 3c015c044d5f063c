//! Invalid configurations: every problem is reported at once, each with its
//! JSON path and an exact message.

use afxdp_config::{parse, ConfigError};

/// Parses `text` and returns the error lines.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(c) => panic!("expected errors, parsed: {c:#?}"),
        Err(e) => {
            // Display prints one error per line, the same lines as messages().
            assert_eq!(e.to_string(), e.messages().join("\n"));
            e.messages()
        }
    }
}

#[test]
fn table_of_upstream_errors() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "device name characters",
            r#"{"pools":[{"name":"testPool","mode":"primary","devices":[{"name":"dev1"},{"name":"dev~2"}]}]}"#,
            &[r#"pools[0].devices[1].name: invalid interface name "dev~2": use letters, digits, '_', '-' and '.'"#],
        ),
        (
            "device name too long for Linux",
            r#"{"pools":[{"name":"testPool","mode":"primary","devices":[{"name":"abcdefghijklmnop"}]}]}"#,
            &[r#"pools[0].devices[0].name: interface name "abcdefghijklmnop" is longer than 15 bytes (Linux IFNAMSIZ)"#],
        ),
        (
            "bad MACs",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"mac":"dev2"},{"mac":"98:03:9b:6a:b4"},{"mac":"98:03:9b:6a:b4:ez"}]}]}"#,
            &[
                r#"pools[0].devices[0].mac: invalid MAC address "dev2" (expected six hex octets like 68:05:ca:2d:e9:1b)"#,
                r#"pools[0].devices[1].mac: invalid MAC address "98:03:9b:6a:b4" (expected six hex octets like 68:05:ca:2d:e9:1b)"#,
                r#"pools[0].devices[2].mac: invalid MAC address "98:03:9b:6a:b4:ez" (expected six hex octets like 68:05:ca:2d:e9:1b)"#,
            ],
        ),
        (
            "bad PCI addresses, including ones upstream's unanchored regex let through",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"pci":"0000:81:00"},{"pci":"0000:81:00.z"},{"pci":"x0000:81:00.1"},{"pci":"0000:81:20.1"},{"pci":"0000:81:00.8"}]}]}"#,
            &[
                r#"pools[0].devices[0].pci: invalid PCI address "0000:81:00": missing '.' before the function (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
                r#"pools[0].devices[1].pci: invalid PCI address "0000:81:00.z": function must be 1 digit (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
                r#"pools[0].devices[2].pci: invalid PCI address "x0000:81:00.1": domain must be 4 hex digits (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
                r#"pools[0].devices[3].pci: invalid PCI address "0000:81:20.1": device must be at most 1f (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
                r#"pools[0].devices[4].pci: invalid PCI address "0000:81:00.8": function must be 0-7 (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
            ],
        ),
        (
            "device identification",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{},{"name":""},{"name":"dev2","mac":"98:03:9b:6a:b4:ef"},{"pci":"0000:81:00.1","mac":"98:03:9b:6a:b4:ef","name":"x"}]}]}"#,
            &[
                "pools[0].devices[0]: a device must be identified by one of name, pci or mac",
                "pools[0].devices[1]: a device must be identified by one of name, pci or mac",
                "pools[0].devices[2]: a device must be identified by only one of name, pci or mac (found name and mac)",
                "pools[0].devices[3]: a device must be identified by only one of name, pci or mac (found name and pci and mac)",
            ],
        ),
        (
            "secondary range",
            r#"{"pools":[{"name":"p","mode":"primary","devices":[{"name":"d","secondary":-10},{"name":"e","secondary":9999}],"drivers":[{"name":"ice","secondary":351}]}]}"#,
            &[
                "pools[0].drivers[0].secondary: secondary must be between 1 and 350, got 351 (0 or absent: not set)",
                "pools[0].devices[0].secondary: secondary must be between 1 and 350, got -10 (0 or absent: not set)",
                "pools[0].devices[1].secondary: secondary must be between 1 and 350, got 9999 (0 or absent: not set)",
            ],
        ),
        (
            "driver names and primary",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice$"},{},{"name":""},{"name":"ice","primary":-5},{"name":"ice","primary":11}]}]}"#,
            &[
                r#"pools[0].drivers[0].name: invalid driver name "ice$": use letters, digits, '_' and '-'"#,
                "pools[0].drivers[1].name: a driver must have a name",
                "pools[0].drivers[2].name: a driver must have a name",
                "pools[0].drivers[3].primary: primary must be between 1 and 10, got -5 (0 or absent: not set)",
                "pools[0].drivers[4].primary: primary must be between 1 and 10, got 11 (0 or absent: not set)",
            ],
        ),
        (
            "exclusions",
            r#"{"pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice","excludeDevices":[{},{"name":"dev1"},{"pci":"0000:81:00.1","mac":"98:03:9b:6a:b4:ef"},{"pci":"xyz"}]}]}]}"#,
            &[
                "pools[0].drivers[0].excludeDevices[0]: a device must be identified by one of name, pci or mac",
                "pools[0].drivers[0].excludeDevices[2]: a device must be identified by only one of name, pci or mac (found pci and mac)",
                r#"pools[0].drivers[0].excludeDevices[3].pci: invalid PCI address "xyz": wrong number of ':'-separated parts (expected dddd:bb:dd.f, e.g. 0000:81:00.1)"#,
            ],
        ),
        (
            "nodes",
            r#"{"pools":[{"name":"p","mode":"primary","nodes":[{"hostname":"k8_node1"},{"hostname":"k8s node1"},{},{"hostname":""},{"hostname":"n1","devices":[{}]},{"hostname":"N1","drivers":[{"name":"ice"}]}]}]}"#,
            &[
                r#"pools[0].nodes[0].hostname: invalid node hostname "k8_node1": expected a DNS name (labels of letters, digits and '-', at most 63 characters each, joined by '.')"#,
                r#"pools[0].nodes[1].hostname: invalid node hostname "k8s node1": expected a DNS name (labels of letters, digits and '-', at most 63 characters each, joined by '.')"#,
                "pools[0].nodes[2].hostname: a node must have a hostname",
                "pools[0].nodes[3].hostname: a node must have a hostname",
                "pools[0].nodes[4].devices[0]: a device must be identified by one of name, pci or mac",
                r#"pools[0].nodes[5].hostname: node "N1" is already configured by pools[0].nodes[4]"#,
            ],
        ),
        (
            "pool name, mode, selection",
            r#"{"pools":[{"mode":"primary","drivers":[{"name":"ice"}]},{"name":"test-pool-1","mode":"primary","drivers":[{"name":"ice"}]},{"name":"abcdefghijklmnopqrstuvwxyz","mode":"primary","drivers":[{"name":"ice"}]},{"name":"p4","mode":"invalidMode","drivers":[{"name":"ice"}]},{"name":"p5","mode":"primary"},null]}"#,
            &[
                "pools[0].name: a pool must have a name",
                r#"pools[1].name: invalid pool name "test-pool-1": use only letters and digits"#,
                r#"pools[2].name: pool name "abcdefghijklmnopqrstuvwxyz" is longer than 20 characters"#,
                r#"pools[3].mode: invalid mode "invalidMode": expected one of primary, cdq"#,
                "pools[4]: a pool must select devices: give drivers, devices or nodes",
                "pools[5]: a pool entry cannot be null",
            ],
        ),
        (
            "uds timeout and uid",
            r#"{"pools":[{"name":"a","mode":"primary","udsTimeout":20,"uid":999,"drivers":[{"name":"ice"}]},{"name":"b","mode":"primary","udsTimeout":-40,"uid":-1,"drivers":[{"name":"ice"}]},{"name":"c","mode":"primary","udsTimeout":999,"uid":256001,"drivers":[{"name":"ice"}]}]}"#,
            &[
                "pools[0].uid: uid must be 0 or between 1000 and 256000, got 999",
                "pools[0].udsTimeout: udsTimeout must be -1 (no timeout), 0 (default, 30 s) or between 30 and 300 seconds, got 20",
                "pools[1].uid: uid must be 0 or between 1000 and 256000, got -1",
                "pools[1].udsTimeout: udsTimeout must be -1 (no timeout), 0 (default, 30 s) or between 30 and 300 seconds, got -40",
                "pools[2].uid: uid must be 0 or between 1000 and 256000, got 256001",
                "pools[2].udsTimeout: udsTimeout must be -1 (no timeout), 0 (default, 30 s) or between 30 and 300 seconds, got 999",
            ],
        ),
        (
            "pinning without disabling the UDS server",
            r#"{"pools":[{"name":"a","mode":"primary","BpfMapPinningEnable":true,"drivers":[{"name":"ice"}]}]}"#,
            &["pools[0].BpfMapPinningEnable: BpfMapPinningEnable needs UdsServerDisable: true (handing the map out over the UDS and as a pinned map at the same time is not supported)"],
        ),
        (
            "duplicate pools and env var collisions",
            r#"{"pools":[{"name":"a","mode":"primary","drivers":[{"name":"ice"}]},{"name":"a","mode":"primary","drivers":[{"name":"i40e"}]},{"name":"A","mode":"primary","drivers":[{"name":"i40e"}]}]}"#,
            &[
                r#"pools[1].name: duplicate pool name "a" (also pools[0])"#,
                r#"pools[2].name: pool name "A" maps to the same environment variable AFXDP_DEVICES_A as pool "a" (pools[0])"#,
            ],
        ),
        (
            "top level: log settings, types, unknown and duplicate keys",
            r#"{"logLevel":"verbose","logFile":"../x.log","kindCluster":"yes","pool":[],"Pools":[{"name":"a","Name":"b","mode":"primary","drivers":[{"name":"ice","excludeDevice":[]}],"uid":"1500"}]}"#,
            &[
                r#"logLevel: invalid log level "verbose": expected one of debug, info, warning, error"#,
                r#"logFile: invalid log file "../x.log": expected a file name of letters, digits, '_' and '-' ending in .log or .txt (placed in /var/log/afxdp-k8s-plugins), or an absolute path to such a file"#,
                r#"kindCluster: expected a boolean, found string "yes""#,
                r#"Pools[0].Name: duplicate key (also given as "name")"#,
                "Pools[0].drivers[0].excludeDevice: unknown key; expected one of: name, primary, secondary, excludeDevices, excludeAddressed",
                r#"Pools[0].uid: expected an integer, found string "1500""#,
                "pool: unknown key; expected one of: logLevel, logFile, kindCluster, clusterType, bpfdClientEnable, mode, timeout, requireUnprivilegedBpf, udsFuzz, cndpFuzz, pools",
            ],
        ),
        (
            "not an object, floats are not integers",
            r#"{"pools":[{"name":"a","mode":"primary","udsTimeout":30.0,"drivers":["ice",7]}], "timeout": 1e3}"#,
            &[
                "timeout: expected an integer, found number 1000.0",
                "pools[0].drivers[1]: expected an object, found number 7",
                "pools[0].udsTimeout: expected an integer, found number 30.0",
            ],
        ),
    ];
    for (name, text, expected) in cases {
        let got = errors(text);
        assert_eq!(&got, expected, "case {name:?}");
    }
}

#[test]
fn syntax_errors_have_line_and_column() {
    let e = parse("{\n  \"pools\": [\n    {\"name\": \"a\",}\n  ]\n}").expect_err("invalid JSON");
    assert_eq!(e.len(), 1);
    assert!(
        matches!(
            e.errors()[0],
            ConfigError::Syntax {
                line: 3,
                column: 18,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "line 3, column 18: trailing comma");
}

#[test]
fn root_must_be_an_object() {
    assert_eq!(errors("[]"), ["(root): expected an object, found an array"]);
}

#[test]
fn unreadable_file() {
    let e =
        afxdp_config::load(std::path::Path::new("/nonexistent/afxdp.json")).expect_err("no file");
    assert!(matches!(e.errors()[0], ConfigError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/afxdp.json: "),
        "{e}"
    );
}

#[test]
fn every_error_has_its_path() {
    let e = parse(r#"{"pools":[{"name":"x-y","mode":"bad","devices":[{"pci":"1"}]}]}"#)
        .expect_err("invalid");
    let paths: Vec<String> = e
        .errors()
        .iter()
        .map(|e| e.path().map(ToString::to_string).unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        ["pools[0].name", "pools[0].mode", "pools[0].devices[0].pci"]
    );
}

/// Duplicate pool names, env var collisions and repeated node hostnames are
/// found against the *first* entry that has them, however far apart they
/// are in a big file (the checks are one pass with a map, not pairwise).
#[test]
fn duplicates_far_apart_in_big_configs_name_the_first_entry() {
    for v1 in [false, true] {
        let mut pools: Vec<String> = (0..3000)
            .map(|i| {
                if v1 {
                    format!(r#"{{"name":"p{i}","selectors":{{"drivers":[{{"name":"ice"}}]}}}}"#)
                } else {
                    format!(r#"{{"name":"p{i}","mode":"primary","drivers":[{{"name":"ice"}}]}}"#)
                }
            })
            .collect();
        pools[2998] = pools[7].clone();
        pools[2999] = pools[7].replace("\"p7\"", "\"P7\"");
        let nodes: Vec<String> = (0..2000)
            .map(|i| format!(r#"{{"hostname":"n{i}","drivers":[{{"name":"ice"}}]}}"#))
            .chain([r#"{"hostname":"N3","drivers":[{"name":"ice"}]}"#.to_owned()])
            .collect();
        let nodes_pool = if v1 {
            format!(
                r#"{{"name":"nodes","selectors":{{"nodes":[{}]}}}}"#,
                nodes.join(",")
            )
        } else {
            format!(
                r#"{{"name":"nodes","mode":"primary","nodes":[{}]}}"#,
                nodes.join(",")
            )
        };
        pools.push(nodes_pool);
        let head = if v1 {
            r#""apiVersion":"afxdp.io/v1alpha1","#
        } else {
            ""
        };
        let text = format!(r#"{{{head}"pools":[{}]}}"#, pools.join(","));
        let form = if v1 { "v1alpha1" } else { "upstream" };
        let sel = if v1 { "selectors.nodes" } else { "nodes" };
        assert_eq!(
            errors(&text),
            [
                format!(r#"pools[3000].{sel}[2000].hostname: node "N3" is already configured by pools[3000].{sel}[3]"#),
                r#"pools[2998].name: duplicate pool name "p7" (also pools[7])"#.to_owned(),
                r#"pools[2999].name: pool name "P7" maps to the same environment variable AFXDP_DEVICES_P7 as pool "p7" (pools[7])"#.to_owned(),
            ],
            "{form}"
        );
    }
}
