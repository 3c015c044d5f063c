//! Every upstream example config parses, and maps to the model as intended.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_config::{
    check_file, load, parse, to_v1alpha1, Config, DeviceMatch, LogLevel, PoolMode, SharingMode,
    SourceFormat, XdpMode, DEFAULT_UDS_TIMEOUT,
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

/// Upstream examples that use settings afxdp-dp does not support yet, and
/// exactly what they are refused with (nothing else may be wrong in them).
const REFUSED: &[(&str, &[&str])] = &[
    (
        "readme-pool-options.json",
        &[
            "pools[0].RequiresUnprivilegedBpf: true (taking devices only where kernel.unprivileged_bpf_disabled is 0) is not supported yet",
            r#"pools[0].ethtoolCmds[0]: ethtool command "-X -device- equal 5 start 3": RSS indirection (-X) is not supported yet: steer with -N rules"#,
            "pools[1].UdsServerDisable: true without BpfMapPinningEnable (the pod would get the raw netdev, or bpfman's CSI map with bpfdClientEnable) is not supported yet",
        ],
    ),
    (
        "redhat-kind-bpfd.json",
        &[
            "pools[0].UdsServerDisable: true without BpfMapPinningEnable (the pod would get the raw netdev, or bpfman's CSI map with bpfdClientEnable) is not supported yet",
        ],
    ),
];

fn refused(f: &Path) -> Option<&'static [&'static str]> {
    let name = f.file_name()?.to_str()?;
    REFUSED.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
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
        match (check_file(f), refused(f)) {
            (Ok(c), None) => {
                assert_eq!(c.source_format, SourceFormat::Upstream, "{}", f.display())
            }
            (Err(e), Some(expected)) => assert_eq!(e.messages(), expected, "{}", f.display()),
            (Err(e), None) => panic!("{}:\n{e}", f.display()),
            (Ok(_), Some(_)) => panic!("{} is no longer refused", f.display()),
        }
    }
}

#[test]
fn upstream_examples_convert_to_v1alpha1_and_back() {
    for f in fixtures("upstream")
        .iter()
        .chain(fixtures("upstream-style").iter())
    {
        if refused(f).is_some() {
            continue;
        }
        let c = load(f).expect("parses");
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
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.pools[1].mode, PoolMode::Primary);
    assert_eq!(
        c.log_file.as_deref(),
        Some(Path::new("/var/log/afxdp-k8s-plugins/afxdp-dp-e2e.log"))
    );

    let c = fixture("upstream/readme-cdq-drivers.json");
    let d = &c.pools[0].selector.drivers[0];
    assert_eq!(d.max_devices, Some(2));
    assert_eq!(d.secondary, Some(50));
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
        .map(|d| d.matcher.to_string())
        .collect();
    assert_eq!(
        devs,
        ["name ens801f0", "mac 68:05:ca:2d:e9:1b", "pci 0000:81:00.1"]
    );
    let secondary: Vec<_> = c.pools[0]
        .selector
        .devices
        .iter()
        .map(|d| d.secondary)
        .collect();
    assert_eq!(secondary, [Some(10), Some(20), Some(30)]);
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
    assert_eq!(nodes[1].drivers[0].secondary, Some(20));
    assert_eq!(c.pools[0].mode, PoolMode::Cdq);
    // A node with nothing opts out of the pool.
    assert!(nodes[2].drivers.is_empty() && nodes[2].devices.is_empty());
}

#[test]
fn pool_options_and_sharing_modes() {
    // readme-pool-options.json and redhat-kind-bpfd.json: see REFUSED.
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
