//! The richer `afxdp.io/v1alpha1` form, and the key rules of both forms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_config::{
    load, parse, to_v1alpha1, Config, DeviceMatch, LogFormat, LogLevel, PoolMode,
    ProgramManagerKind, ProgramSource, SharingMode, SourceFormat, XdpMode, DEFAULT_UDS_TIMEOUT,
};

fn fixture(name: &str) -> Config {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1alpha1")
        .join(name);
    load(&p).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

fn errors(text: &str) -> Vec<String> {
    parse(text).expect_err("expected errors").messages()
}

#[test]
fn full_example() {
    let c = fixture("full.json");
    assert_eq!(c.source_format, SourceFormat::V1Alpha1);
    assert!(c.warnings.is_empty());
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(
        c.log_file,
        Some(PathBuf::from("/var/log/afxdp/afxdp-dp.log"))
    );
    assert_eq!(c.program_manager, ProgramManagerKind::Native);
    assert!(c.include_virtual_devices);

    let p = &c.pools[0];
    assert_eq!(p.name, "fast-net");
    assert_eq!(p.resource_name(), "afxdp/fast-net");
    assert_eq!(p.env_var_name(), "AFXDP_DEVICES_FAST_NET");
    assert_eq!(
        (p.mode, p.sharing, p.xdp_mode),
        (PoolMode::Primary, SharingMode::Uds, XdpMode::Native)
    );
    assert_eq!(
        (p.uid, p.uds_timeout, p.channels),
        (1500, Duration::from_secs(60), Some(4))
    );
    assert!(
        matches!(&p.program, Some(ProgramSource::Image { function: Some(f), .. }) if f == "xsk_redirect")
    );
    let d = &p.selector.drivers[0];
    assert_eq!((d.max_devices, d.exclude_addressed), (Some(2), true));
    assert_eq!(d.exclude[1].to_string(), "pci 0000:81:00.3");
    assert_eq!(
        p.selector.devices[0].matcher.to_string(),
        "mac 68:05:ca:2d:e9:1b"
    );
    assert_eq!(p.selector.nodes[0].hostname, "worker-1.example.com");

    let lab = &c.pools[1];
    assert_eq!(
        (lab.sharing, lab.xdp_mode),
        (SharingMode::PinnedMap, XdpMode::Generic)
    );
    assert!(!lab.selector.drivers[0].exclude_addressed);
    assert_eq!(lab.uds_timeout, DEFAULT_UDS_TIMEOUT);
    assert_eq!(
        lab.program,
        Some(ProgramSource::File {
            path: "/opt/afxdp/xdp_redirect.o".into(),
            function: None
        })
    );

    let auto = &c.pools[2];
    assert_eq!(
        (auto.mode, auto.sharing, auto.xdp_mode),
        (PoolMode::Primary, SharingMode::Uds, XdpMode::Auto)
    );
    assert_eq!(auto.selector.devices[0].secondary, None);
}

#[test]
fn defaults() {
    let c = fixture("minimal.json");
    assert_eq!(
        (c.log_level, c.log_format, c.log_file.clone()),
        (LogLevel::Info, LogFormat::Text, None)
    );
    let p = &c.pools[0];
    assert_eq!(
        (p.mode, p.sharing, p.xdp_mode, p.uid),
        (PoolMode::Primary, SharingMode::Uds, XdpMode::Native, 0)
    );
    assert_eq!(p.uds_timeout, DEFAULT_UDS_TIMEOUT);
    assert_eq!(
        (p.program.clone(), p.channels, p.requires_unprivileged_bpf),
        (None, None, false)
    );
    // Safer default than upstream: addressed devices are skipped unless asked.
    assert!(p.selector.drivers[0].exclude_addressed);
}

#[test]
fn round_trips() {
    for name in ["full.json", "minimal.json"] {
        let c = fixture(name);
        let text = to_v1alpha1(&c).expect("convertible");
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, c, "{name}");
        // And the output is stable.
        assert_eq!(to_v1alpha1(&back).expect("convertible"), text);
    }
}

#[test]
fn strict_keys_and_values() {
    let got = errors(
        r#"{"apiVersion":"afxdp.io/v1alpha1","LogLevel":"info","logFormat":"xml","pools":[
            {"name":"Pool_1","Mode":"primary","selectors":{"drivers":[{"name":"ice","primary":2}]},
             "sharing":"pinned","udsTimeoutSeconds":10,"uid":null,"queues":0,"xdpMode":"skb",
             "program":{"path":"relative.o","image":"x"}}]}"#,
    );
    assert_eq!(
        got,
        [
            r#"logFormat: invalid logFormat "xml": expected one of text, json"#,
            r#"pools[0].name: invalid pool name "Pool_1": use 1-63 letters, digits and '-', starting and ending with a letter or digit"#,
            "pools[0].selectors.drivers[0].primary: unknown key; expected one of: name, maxDevices, secondary, exclude, excludeAddressed",
            "pools[0].uid: expected an integer, found null",
            r#"pools[0].udsTimeoutSeconds: udsTimeoutSeconds is only valid with sharing "uds""#,
            r#"pools[0].xdpMode: invalid xdpMode "skb": expected one of native, generic, auto"#,
            "pools[0].program: give either path or image, not both",
            "pools[0].queues: queues must be between 1 and 1024, got 0",
            "pools[0].Mode: unknown key; expected one of: name, mode, selectors, sharing, uid, udsTimeoutSeconds, xdpMode, program, programManager, bpfman, queues, requiresUnprivilegedBpf, policy",
            "LogLevel: unknown key; expected one of: apiVersion, logLevel, logFile, logFormat, programManager, includeVirtualDevices, pools",
        ]
    );
}

#[test]
fn v1alpha1_semantic_errors() {
    let got = errors(
        r#"{"apiVersion":"afxdp.io/v1alpha2","logFile":"afxdp.log","pools":[
            {"name":"a","selectors":{}},
            {"name":"b","selectors":{"drivers":[{"name":"ice","secondary":4}]}},
            {"name":"c","sharing":"none","program":"/x.o","selectors":{"devices":[{"name":"eth1"}]}},
            {"name":"a-b","selectors":{"devices":[{"name":"eth2"}]}},
            {"name":"A-B","selectors":{"devices":[{"name":"eth3"}]}},
            {"name":"d","uid":4294967295,"udsTimeoutSeconds":3601,"selectors":{"devices":[{"name":"eth4"}]}}]}"#,
    );
    assert_eq!(
        got,
        [
            r#"apiVersion: unsupported apiVersion "afxdp.io/v1alpha2": expected "afxdp.io/v1alpha1""#,
            r#"logFile: invalid logFile "afxdp.log": expected an absolute file path without '..'"#,
            "pools[0].selectors: selectors must give drivers, devices or nodes",
            r#"pools[1]: secondary counts are only valid with mode "cdq""#,
            r#"pools[2].sharing: "none" (the raw netdev, no program) is not supported yet"#,
            r#"pools[2]: program has no effect with sharing "none" (nothing is loaded)"#,
            "pools[5].uid: uid must be between 0 and 4294967294, got 4294967295",
            "pools[5].udsTimeoutSeconds: udsTimeoutSeconds must be between 0 (never) and 3600, got 3601",
            r#"pools[4].name: pool name "A-B" maps to the same environment variable AFXDP_DEVICES_A_B as pool "a-b" (pools[3])"#,
        ]
    );
}

#[test]
fn upstream_keys_are_case_insensitive_like_go() {
    let a = parse(r#"{"logLevel":"info","pools":[{"name":"p","mode":"primary","drivers":[{"name":"ice","excludeDevices":[{"mac":"AA-BB-CC-DD-EE-FF"}],"primary":1}],"uid":1500,"udsTimeout":60}]}"#)
        .expect("canonical");
    let b = parse(r#"{"LOGLEVEL":"info","POOLS":[{"Name":"p","MODE":"primary","dRiVeRs":[{"NAME":"ice","ExcludeDevices":[{"MAC":"aa:bb:cc:dd:ee:ff"}],"Primary":1}],"UID":1500,"UDSTIMEOUT":60}]}"#)
        .expect("shouted");
    assert_eq!(a, b);
    assert_eq!(
        a.pools[0].selector.drivers[0].exclude,
        [DeviceMatch::Mac("aa:bb:cc:dd:ee:ff".parse().expect("mac"))]
    );
    // Go's folding: U+017F (long s) folds to 's', U+212A (Kelvin) to 'k'.
    let c = parse("{\"pool\u{17f}\":[{\"name\":\"p\",\"mode\":\"primary\",\"drivers\":[{\"name\":\"ice\"}],\"uid\":1500,\"ud\u{17f}timeout\":60}],\"logLevel\":\"info\"}")
        .expect("folded");
    assert_eq!(c.pools[0].uds_timeout, Duration::from_secs(60));
    let k = parse("{\"pools\":[{\"name\":\"p\",\"mode\":\"primary\",\"drivers\":[{\"name\":\"ice\",\"primary\":1}]}],\"\u{212a}indCluster\":true}")
        .expect("kelvin");
    assert!(k.include_virtual_devices);
    // Values stay case-sensitive, as in Go.
    assert_eq!(
        errors(r#"{"pools":[{"name":"p","mode":"PRIMARY","drivers":[{"name":"ice"}]}]}"#),
        [r#"pools[0].mode: invalid mode "PRIMARY": expected one of primary, cdq"#]
    );
    // null means "not set", as in Go.
    let n = parse(r#"{"logFile":null,"pools":[{"name":"p","mode":"primary","uid":null,"drivers":[{"name":"ice"}]}]}"#)
        .expect("nulls");
    assert_eq!((n.log_file, n.pools[0].uid), (None, 0));
}

#[test]
fn v1alpha1_keys_are_exact() {
    // A top-level "apiversion" is not the selector key: the document is read
    // as upstream and the key is unknown there.
    let got = errors(r#"{"apiversion":"afxdp.io/v1alpha1","pools":[]}"#);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("apiversion: unknown key; expected one of: logLevel"),
        "{got:?}"
    );
}

#[test]
fn duplicate_exact_keys_are_reported() {
    assert_eq!(
        errors(r#"{"apiVersion":"afxdp.io/v1alpha1","pools":[],"pools":[]}"#),
        [r#"pools: duplicate key (also given as "pools")"#]
    );
}
