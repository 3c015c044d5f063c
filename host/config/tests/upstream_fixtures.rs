//! Every upstream example config parses, and maps to the model as intended.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_config::{
    check_file, load, parse, to_v1alpha1, Config, DeviceMatch, LogLevel, PoolMode,
    ProgramManagerKind, SharingMode, SourceFormat, XdpMode, DEFAULT_UDS_TIMEOUT,
};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

fn fixture(name: &str) -> Config {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    load(&p).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

#[test]
fn every_upstream_example_parses() {
    let files = fixtures("upstream");
    assert!(
        files.len() >= 15,
        "expected the upstream examples, found {files:?}"
    );
    for f in files.iter().chain(fixtures("upstream-style").iter()) {
        let c = check_file(f).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
        assert_eq!(c.source_format, SourceFormat::Upstream, "{}", f.display());
    }
}

#[test]
fn upstream_examples_convert_to_v1alpha1_and_back() {
    for f in fixtures("upstream")
        .iter()
        .chain(fixtures("upstream-style").iter())
    {
        let c = load(f).expect("parses");
        if c.pools.iter().any(|p| !p.ethtool_cmds.is_empty()) {
            assert!(to_v1alpha1(&c).is_err(), "{}", f.display());
            continue;
        }
        let text = to_v1alpha1(&c).expect("convertible");
        let back = parse(&text).unwrap_or_else(|e| panic!("{}:\n{e}\n{text}", f.display()));
        assert_eq!(back.source_format, SourceFormat::V1Alpha1);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.pools, c.pools, "{}", f.display());
        assert_eq!(back.log_level, c.log_level);
        assert_eq!(back.log_file, c.log_file);
        assert_eq!(back.program_manager, c.program_manager);
        assert_eq!(back.include_virtual_devices, c.include_virtual_devices);
    }
}

#[test]
fn current_daemonset_config() {
    let c = fixture("upstream/daemonset.json");
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(
        c.log_file.as_deref(),
        Some(Path::new("/var/log/afxdp-k8s-plugins/afxdp-dp.log"))
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let p = &c.pools[0];
    assert_eq!(p.name, "myPool");
    assert_eq!(p.resource_name(), "afxdp/myPool");
    assert_eq!(p.env_var_name(), "AFXDP_DEVICES_MYPOOL");
    assert_eq!(p.mode, PoolMode::Primary);
    assert_eq!(p.sharing, SharingMode::Uds);
    assert_eq!(p.uds_timeout, DEFAULT_UDS_TIMEOUT);
    assert_eq!(p.xdp_mode, XdpMode::Auto);
    assert_eq!(p.uid, 0);
    let names: Vec<&str> = p.selector.drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["i40e", "ice"]);
    assert!(!p.selector.drivers[0].exclude_addressed);
}

#[test]
fn legacy_shapes_get_upstream_defaults() {
    // top-level mode "cndp" and timeout; drivers as strings; absolute log path.
    let c = fixture("upstream/test-e2e-legacy-mode-timeout.json");
    assert_eq!(
        c.log_file.as_deref(),
        Some(Path::new("/var/log/cndp/cndp-dp-e2e.log"))
    );
    let p = &c.pools[0];
    assert_eq!(p.mode, PoolMode::Primary);
    assert_eq!(p.uds_timeout, Duration::from_secs(30));
    // The first upstream versions always skipped addressed devices.
    assert!(p.selector.drivers[0].exclude_addressed);
    let msgs: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("mode: legacy top-level mode")),
        "{msgs:?}"
    );

    // No mode anywhere: primary, with a warning.
    let c = fixture("upstream/sample-config.json");
    assert_eq!(c.pools.len(), 2);
    assert!(c.pools.iter().all(|p| p.mode == PoolMode::Primary));
    assert!(c.warnings.iter().any(|w| w.to_string()
        == "pools[0].mode: no mode given: using primary (current upstream requires a mode)"));
    assert_eq!(
        c.pools[1].selector.devices[2].matcher,
        DeviceMatch::Name("dev_5".into())
    );

    let c = fixture("upstream/sample-config-empty.json");
    assert!(c.pools.is_empty());

    let c = fixture("upstream/fuzz-cndp.json");
    assert!(c
        .warnings
        .iter()
        .any(|w| w.to_string() == "cndpFuzz: ignored: UDS fuzzing is a test-only upstream switch"));
}

#[test]
fn cdq_and_uid() {
    let c = fixture("upstream/github-e2e-cdq-primary.json");
    assert_eq!(c.pools[0].mode, PoolMode::Cdq);
    assert_eq!(c.pools[0].uid, 1500);
    assert_eq!(c.pools[0].selector.drivers[0].secondary, Some(350));
    assert_eq!(c.pools[1].mode, PoolMode::Primary);
    assert_eq!(
        c.log_file.as_deref(),
        Some(Path::new("/var/log/afxdp-k8s-plugins/afxdp-dp-e2e.log"))
    );

    let c = fixture("upstream/readme-cdq-drivers.json");
    let d = &c.pools[0].selector.drivers[0];
    assert_eq!((d.max_devices, d.secondary), (Some(2), Some(50)));
    assert_eq!(
        d.exclude,
        [
            DeviceMatch::Name("ens802f1".into()),
            DeviceMatch::Name("ens802f2".into())
        ]
    );
}

#[test]
fn pci_and_mac_devices_are_parsed_and_normalised() {
    let c = fixture("upstream/readme-devices-name-mac-pci.json");
    let devs: Vec<String> = c.pools[0]
        .selector
        .devices
        .iter()
        .map(|d| format!("{} x{}", d.matcher, d.secondary.unwrap_or(0)))
        .collect();
    assert_eq!(
        devs,
        [
            "name ens801f0 x10",
            "mac 68:05:ca:2d:e9:1b x20",
            "pci 0000:81:00.1 x30"
        ]
    );
}

#[test]
fn node_specific_config() {
    let c = fixture("upstream/readme-nodes.json");
    let nodes = &c.pools[0].selector.nodes;
    assert_eq!(nodes.len(), 3);
    // "ExcludeDevices" (capitalised in upstream's README) is the same key.
    assert_eq!(
        nodes[1].drivers[0].exclude,
        [DeviceMatch::Name("ens801f2".into())]
    );
    assert_eq!(nodes[1].drivers[0].max_devices, Some(1));
    // A node with nothing opts out of the pool.
    assert!(nodes[2].drivers.is_empty() && nodes[2].devices.is_empty());
}

#[test]
fn pool_options_and_sharing_modes() {
    let c = fixture("upstream/readme-pool-options.json");
    let p = &c.pools[0];
    assert_eq!((p.uid, p.uds_timeout), (1500, Duration::from_secs(300)));
    assert!(p.requires_unprivileged_bpf);
    assert_eq!(p.ethtool_cmds.len(), 2);
    assert_eq!(c.pools[1].sharing, SharingMode::Unmanaged);

    let c = fixture("upstream/redhat-kind-bpfd.json");
    assert_eq!(c.program_manager, ProgramManagerKind::Bpfman);
    assert!(c.include_virtual_devices);
    assert_eq!(c.pools[0].sharing, SharingMode::Csi);

    let c = fixture("upstream/daemonset-kind.json");
    assert!(c.include_virtual_devices);
    assert_eq!(c.pools[0].selector.drivers[0].name, "veth");

    let c = fixture("upstream-style/pinned-map.json");
    let p = &c.pools[0];
    assert_eq!(p.sharing, SharingMode::PinnedMap);
    assert_eq!(
        p.selector.drivers[0]
            .exclude
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["pci 0000:81:00.3", "mac 68:05:ca:2d:e9:1b"]
    );

    let c = fixture("upstream-style/uds-case-insensitive.json");
    let p = &c.pools[0];
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(p.name, "udsPool");
    assert_eq!(p.uds_timeout, Duration::ZERO);
    assert!(p.selector.drivers[0].exclude_addressed);
}
