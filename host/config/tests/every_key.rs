//! Every key either form accepts takes effect or is refused: nothing is
//! accepted and then silently ignored.
//!
//! The keys of each object are read from the parser itself (the "expected
//! one of" list of an unknown-key error), and [`ROWS`] must cover exactly
//! those: a key added to the parser without a row here fails
//! `rows_cover_every_key_the_parser_knows`. Each row sets one key (plus the
//! keys it needs, minus the ones it excludes) on a valid base document and
//! checks the outcome: the model field it sets, the error refusing it, or the
//! warning of a legacy upstream key kept for compatibility.

use std::collections::BTreeSet;

use afxdp_config::ethtool_cmd::AddrSpec;
use afxdp_config::{
    parse, BpfmanPool, Config, ConfigError, DeviceMatch, FailurePolicy, ImagePullPolicy, LogFormat,
    LogLevel, PolicySource, PoolMode, ProceedOn, ProgramManagerKind, ProgramSource, PullPolicy,
    SharingMode, XdpMode,
};
use serde_json::{json, Value};

/// What setting the key does.
enum Expect {
    /// Parses, the model differs from the base's, and this holds.
    Effect(fn(&Config) -> bool),
    /// Refused: an error containing this text.
    Refused(&'static str),
    /// Accepted for upstream compatibility, with a warning containing this
    /// text; the model is the base's.
    Warned(&'static str),
}
use Expect::{Effect, Refused, Warned};

/// One object of a form, as a JSON pointer into that form's base document.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
enum At {
    UpRoot,
    UpPool,
    UpDriver,
    UpDevice,
    UpExclude,
    UpNode,
    V1Root,
    V1Pool,
    V1Selectors,
    V1Driver,
    V1Device,
    V1Exclude,
    V1Node,
    V1Program,
    V1Policy,
    V1Bpfman,
}

const ALL: &[At] = &[
    At::UpRoot,
    At::UpPool,
    At::UpDriver,
    At::UpDevice,
    At::UpExclude,
    At::UpNode,
    At::V1Root,
    At::V1Pool,
    At::V1Selectors,
    At::V1Driver,
    At::V1Device,
    At::V1Exclude,
    At::V1Node,
    At::V1Program,
    At::V1Policy,
    At::V1Bpfman,
];

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

impl At {
    fn base(self) -> Value {
        if self == At::V1Bpfman {
            let mut doc = At::V1Root.base();
            let pool = &mut doc["pools"][0];
            pool["programManager"] = json!("bpfman");
            pool["bpfman"] = json!({});
            pool.as_object_mut().map(|o| o.remove("program"));
            return doc;
        }
        if self < At::V1Root {
            json!({"pools": [{
                "name": "p", "mode": "primary",
                "drivers": [{"name": "ice", "excludeDevices": [{"name": "x1"}]}],
                "devices": [{"name": "d1"}],
                "nodes": [{"hostname": "n1", "drivers": [{"name": "i40e"}]}]
            }]})
        } else {
            json!({"apiVersion": "afxdp.io/v1alpha1", "pools": [{
                "name": "p",
                "selectors": {
                    "drivers": [{"name": "ice", "exclude": [{"name": "x1"}]}],
                    "devices": [{"name": "d1"}],
                    "nodes": [{"hostname": "n1", "drivers": [{"name": "i40e"}]}]
                },
                "program": {"path": "/opt/x.o"},
                "policy": {"ref": format!("r.example/p@{DIGEST}")}
            }]})
        }
    }

    fn pointer(self) -> &'static str {
        match self {
            At::UpRoot | At::V1Root => "",
            At::UpPool | At::V1Pool => "/pools/0",
            At::UpDriver => "/pools/0/drivers/0",
            At::UpDevice => "/pools/0/devices/0",
            At::UpExclude => "/pools/0/drivers/0/excludeDevices/0",
            At::UpNode => "/pools/0/nodes/0",
            At::V1Selectors => "/pools/0/selectors",
            At::V1Driver => "/pools/0/selectors/drivers/0",
            At::V1Device => "/pools/0/selectors/devices/0",
            At::V1Exclude => "/pools/0/selectors/drivers/0/exclude/0",
            At::V1Node => "/pools/0/selectors/nodes/0",
            At::V1Program => "/pools/0/program",
            At::V1Policy => "/pools/0/policy",
            At::V1Bpfman => "/pools/0/bpfman",
        }
    }

    /// The base document with `set` applied to this object (after removing
    /// `without`).
    fn doc(self, without: &[&str], set: &[(&str, Value)]) -> String {
        let mut doc = self.base();
        let obj = doc
            .pointer_mut(self.pointer())
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{self:?}: no object at {}", self.pointer()));
        for k in without {
            obj.remove(*k);
        }
        for (k, v) in set {
            obj.insert((*k).to_owned(), v.clone());
        }
        doc.to_string()
    }

    /// The keys the parser knows in this object.
    fn parser_keys(self) -> BTreeSet<&'static str> {
        let text = self.doc(&[], &[("zzUnknownKey", json!(1))]);
        let errors = parse(&text).expect_err("unknown key refused");
        errors
            .errors()
            .iter()
            .find_map(|e| match e {
                ConfigError::UnknownKey { path, expected }
                    if path.to_string().ends_with("zzUnknownKey") =>
                {
                    Some(expected.iter().copied().collect())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{self:?}: no unknown-key error in {errors}"))
    }
}

/// A key's sample value (a function: `json!` is not const).
type Sample = fn() -> Value;

struct Row {
    at: At,
    key: &'static str,
    value: Sample,
    /// Other keys this setting needs.
    with: &'static [(&'static str, Sample)],
    /// Keys of the base that conflict with it.
    without: &'static [&'static str],
    expect: Expect,
}

const fn row(at: At, key: &'static str, value: Sample, expect: Expect) -> Row {
    Row {
        at,
        key,
        value,
        with: &[],
        without: &[],
        expect,
    }
}

fn pool(c: &Config) -> &afxdp_config::PoolConfig {
    &c.pools[0]
}

fn bpfman(c: &Config) -> &BpfmanPool {
    c.pools[0].bpfman.as_ref().expect("bpfman pool")
}

fn policy(c: &Config) -> &afxdp_config::PolicyConfig {
    c.pools[0].policy.as_ref().expect("policy")
}

const NOT_YET: &str = "is not supported yet";

/// The one list of keys and what each does.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // ---- upstream config.json, top level
    row(At::UpRoot, "logLevel", || json!("debug"), Effect(|c| c.log_level == LogLevel::Debug)),
    row(At::UpRoot, "logFile", || json!("dp.log"), Effect(|c| c.log_file.as_deref() == Some("/var/log/afxdp-k8s-plugins/dp.log".as_ref()))),
    row(At::UpRoot, "kindCluster", || json!(true), Effect(|c| c.include_virtual_devices)),
    row(At::UpRoot, "clusterType", || json!("kind"), Effect(|c| c.include_virtual_devices)),
    row(At::UpRoot, "clusterType", || json!("physical"), Warned("only \"kind\" has an effect")),
    row(At::UpRoot, "bpfdClientEnable", || json!(true), Effect(|c| c.program_manager == ProgramManagerKind::Bpfman && pool(c).bpfman.is_some())),
    // The base pool sets its own mode, so the legacy one only warns (`legacy_cdq_mode_applies_to_pools_without_one`).
    row(At::UpRoot, "mode", || json!("cdq"), Warned("legacy top-level mode")),
    row(At::UpRoot, "mode", || json!("cndp"), Warned("legacy top-level mode")),
    row(At::UpRoot, "timeout", || json!(60), Effect(|c| pool(c).uds_timeout.as_secs() == 60)),
    row(At::UpRoot, "requireUnprivilegedBpf", || json!(true), Refused(NOT_YET)),
    row(At::UpRoot, "udsFuzz", || json!(true), Warned("test-only upstream switch")),
    row(At::UpRoot, "cndpFuzz", || json!(true), Warned("test-only upstream switch")),
    row(At::UpRoot, "pools", || json!([]), Effect(|c| c.pools.is_empty())),
    // ---- upstream pool
    row(At::UpPool, "name", || json!("q"), Effect(|c| pool(c).name == "q")),
    row(At::UpPool, "mode", || json!("cdq"), Effect(|c| pool(c).mode == PoolMode::Cdq)),
    row(At::UpPool, "drivers", || json!([{"name": "mlx5_core"}]), Effect(|c| pool(c).selector.drivers[0].name == "mlx5_core")),
    row(At::UpPool, "devices", || json!([{"name": "d2"}]), Effect(|c| pool(c).selector.devices[0].matcher == DeviceMatch::Name("d2".into()))),
    row(At::UpPool, "nodes", || json!([{"hostname": "n2"}]), Effect(|c| pool(c).selector.nodes[0].hostname == "n2")),
    row(At::UpPool, "uid", || json!(1500), Effect(|c| pool(c).uid == 1500)),
    row(At::UpPool, "udsTimeout", || json!(-1), Effect(|c| pool(c).uds_timeout.is_zero())),
    row(At::UpPool, "UdsServerDisable", || json!(true), Refused("pools[0].UdsServerDisable: true without BpfMapPinningEnable")),
    Row { with: &[("UdsServerDisable", || json!(true))], ..row(At::UpPool, "BpfMapPinningEnable", || json!(true), Effect(|c| pool(c).sharing == SharingMode::PinnedMap)) },
    row(At::UpPool, "BpfdClientEnable", || json!(true), Effect(|c| pool(c).bpfman.is_some() && c.program_manager == ProgramManagerKind::Native)),
    row(At::UpPool, "UdsFuzz", || json!(true), Warned("test-only upstream switch")),
    row(At::UpPool, "RequiresUnprivilegedBpf", || json!(true), Refused("pools[0].RequiresUnprivilegedBpf: true (taking devices only where kernel.unprivileged_bpf_disabled is 0) is not supported yet")),
    row(At::UpPool, "ethtoolCmds", || json!(["-N -device- flow-type udp4 dst-ip -ip- action 1"]), Effect(|c| pool(c).ethtool_cmds.len() == 1 && pool(c).ethtool_cmds[0].dst_ip == Some(AddrSpec::PodAddress))),
    row(At::UpPool, "ethtoolCmds", || json!(["-L -device- combined 2"]), Effect(|c| pool(c).channels == Some(2))),
    row(At::UpPool, "ethtoolCmds", || json!(["-X -device- equal 1 start 3"]), Refused("pools[0].ethtoolCmds[0]: ethtool command \"-X -device- equal 1 start 3\": RSS indirection (-X) is not supported yet")),
    row(At::UpPool, "bpfByteCodeImage", || json!(format!("quay.io/x@{DIGEST}")), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::Image { function: None, .. })))),
    Row { with: &[("bpfByteCodeImage", || json!("quay.io/x:v1"))], ..row(At::UpPool, "bpfByteCodeSection", || json!("xsk_def_prog"), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::Image { function: Some(f), .. }) if f == "xsk_def_prog"))) },
    // ---- upstream driver, device, exclusion, node
    row(At::UpDriver, "name", || json!("i40e"), Effect(|c| pool(c).selector.drivers[0].name == "i40e")),
    row(At::UpDriver, "primary", || json!(2), Effect(|c| pool(c).selector.drivers[0].max_devices == Some(2))),
    row(At::UpDriver, "secondary", || json!(5), Warned("secondary counts have no effect in primary mode")),
    row(At::UpDriver, "excludeDevices", || json!([{"name": "x2"}]), Effect(|c| pool(c).selector.drivers[0].exclude == [DeviceMatch::Name("x2".into())])),
    row(At::UpDriver, "excludeAddressed", || json!(true), Effect(|c| pool(c).selector.drivers[0].exclude_addressed)),
    row(At::UpDevice, "name", || json!("d2"), Effect(|c| pool(c).selector.devices[0].matcher == DeviceMatch::Name("d2".into()))),
    Row { without: &["name"], ..row(At::UpDevice, "pci", || json!("0000:81:00.1"), Effect(|c| matches!(pool(c).selector.devices[0].matcher, DeviceMatch::Pci(_)))) },
    Row { without: &["name"], ..row(At::UpDevice, "mac", || json!("68:05:CA:2D:E9:1B"), Effect(|c| matches!(pool(c).selector.devices[0].matcher, DeviceMatch::Mac(_)))) },
    row(At::UpDevice, "secondary", || json!(5), Warned("secondary counts have no effect in primary mode")),
    row(At::UpExclude, "name", || json!("x2"), Effect(|c| pool(c).selector.drivers[0].exclude == [DeviceMatch::Name("x2".into())])),
    Row { without: &["name"], ..row(At::UpExclude, "pci", || json!("0000:81:00.1"), Effect(|c| matches!(pool(c).selector.drivers[0].exclude[0], DeviceMatch::Pci(_)))) },
    Row { without: &["name"], ..row(At::UpExclude, "mac", || json!("68:05:ca:2d:e9:1b"), Effect(|c| matches!(pool(c).selector.drivers[0].exclude[0], DeviceMatch::Mac(_)))) },
    row(At::UpExclude, "secondary", || json!(5), Warned("secondary has no meaning on an excluded device")),
    row(At::UpNode, "hostname", || json!("n2.example.com"), Effect(|c| pool(c).selector.nodes[0].hostname == "n2.example.com")),
    row(At::UpNode, "drivers", || json!([{"name": "ice"}]), Effect(|c| pool(c).selector.nodes[0].drivers[0].name == "ice")),
    row(At::UpNode, "devices", || json!([{"name": "d3"}]), Effect(|c| pool(c).selector.nodes[0].devices.len() == 1)),
    // ---- afxdp.io/v1alpha1, top level
    row(At::V1Root, "apiVersion", || json!("afxdp.io/v1alpha2"), Refused("unsupported apiVersion")),
    row(At::V1Root, "logLevel", || json!("trace"), Effect(|c| c.log_level == LogLevel::Trace)),
    row(At::V1Root, "logFile", || json!("/var/log/afxdp/dp.log"), Effect(|c| c.log_file.is_some())),
    row(At::V1Root, "logFormat", || json!("json"), Effect(|c| c.log_format == LogFormat::Json)),
    row(At::V1Root, "programManager", || json!("bpfman"), Effect(|c| c.program_manager == ProgramManagerKind::Bpfman && pool(c).bpfman.is_some())),
    row(At::V1Root, "includeVirtualDevices", || json!(true), Effect(|c| c.include_virtual_devices)),
    row(At::V1Root, "pools", || json!([]), Effect(|c| c.pools.is_empty())),
    // ---- v1alpha1 pool
    row(At::V1Pool, "name", || json!("fast-net"), Effect(|c| pool(c).name == "fast-net")),
    row(At::V1Pool, "mode", || json!("cdq"), Effect(|c| pool(c).mode == PoolMode::Cdq)),
    row(At::V1Pool, "selectors", || json!({"devices": [{"name": "d9"}]}), Effect(|c| pool(c).selector.drivers.is_empty())),
    row(At::V1Pool, "sharing", || json!("pinned"), Effect(|c| pool(c).sharing == SharingMode::PinnedMap)),
    row(At::V1Pool, "sharing", || json!("csi"), Effect(|c| pool(c).sharing == SharingMode::Csi)),
    Row { without: &["program"], ..row(At::V1Pool, "sharing", || json!("none"), Refused("pools[0].sharing: \"none\" (the raw netdev, no program) is not supported yet")) },
    row(At::V1Pool, "uid", || json!(1500), Effect(|c| pool(c).uid == 1500)),
    row(At::V1Pool, "udsTimeoutSeconds", || json!(0), Effect(|c| pool(c).uds_timeout.is_zero())),
    row(At::V1Pool, "xdpMode", || json!("generic"), Effect(|c| pool(c).xdp_mode == XdpMode::Generic)),
    row(At::V1Pool, "program", || json!("/opt/y.o"), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::File { path, .. }) if path.ends_with("y.o")))),
    row(At::V1Pool, "queues", || json!(4), Effect(|c| pool(c).channels == Some(4))),
    row(At::V1Pool, "requiresUnprivilegedBpf", || json!(true), Refused("pools[0].requiresUnprivilegedBpf: true (taking devices only where kernel.unprivileged_bpf_disabled is 0) is not supported yet")),
    row(At::V1Pool, "policy", || json!({"file": "/opt/p.wasm"}), Effect(|c| policy(c).source == PolicySource::File("/opt/p.wasm".into()))),
    // ---- v1alpha1 selectors, driver, device, exclusion, node
    row(At::V1Selectors, "drivers", || json!([{"name": "i40e"}]), Effect(|c| pool(c).selector.drivers[0].name == "i40e")),
    row(At::V1Selectors, "devices", || json!([{"name": "d2"}]), Effect(|c| pool(c).selector.devices[0].matcher == DeviceMatch::Name("d2".into()))),
    row(At::V1Selectors, "nodes", || json!([]), Effect(|c| pool(c).selector.nodes.is_empty())),
    row(At::V1Driver, "name", || json!("i40e"), Effect(|c| pool(c).selector.drivers[0].name == "i40e")),
    row(At::V1Driver, "maxDevices", || json!(2), Effect(|c| pool(c).selector.drivers[0].max_devices == Some(2))),
    row(At::V1Driver, "secondary", || json!(5), Refused("secondary counts are only valid with mode \"cdq\"")),
    row(At::V1Driver, "exclude", || json!([{"mac": "68:05:ca:2d:e9:1b"}]), Effect(|c| matches!(pool(c).selector.drivers[0].exclude[0], DeviceMatch::Mac(_)))),
    row(At::V1Driver, "excludeAddressed", || json!(false), Effect(|c| !pool(c).selector.drivers[0].exclude_addressed)),
    row(At::V1Device, "name", || json!("d2"), Effect(|c| pool(c).selector.devices[0].matcher == DeviceMatch::Name("d2".into()))),
    Row { without: &["name"], ..row(At::V1Device, "pci", || json!("0000:81:00.1"), Effect(|c| matches!(pool(c).selector.devices[0].matcher, DeviceMatch::Pci(_)))) },
    Row { without: &["name"], ..row(At::V1Device, "mac", || json!("68:05:ca:2d:e9:1b"), Effect(|c| matches!(pool(c).selector.devices[0].matcher, DeviceMatch::Mac(_)))) },
    row(At::V1Device, "secondary", || json!(5), Refused("secondary counts are only valid with mode \"cdq\"")),
    row(At::V1Exclude, "name", || json!("x2"), Effect(|c| pool(c).selector.drivers[0].exclude == [DeviceMatch::Name("x2".into())])),
    Row { without: &["name"], ..row(At::V1Exclude, "pci", || json!("0000:81:00.1"), Effect(|c| matches!(pool(c).selector.drivers[0].exclude[0], DeviceMatch::Pci(_)))) },
    Row { without: &["name"], ..row(At::V1Exclude, "mac", || json!("68:05:ca:2d:e9:1b"), Effect(|c| matches!(pool(c).selector.drivers[0].exclude[0], DeviceMatch::Mac(_)))) },
    row(At::V1Node, "hostname", || json!("n2"), Effect(|c| pool(c).selector.nodes[0].hostname == "n2")),
    row(At::V1Node, "drivers", || json!([]), Effect(|c| pool(c).selector.nodes[0].drivers.is_empty())),
    row(At::V1Node, "devices", || json!([{"name": "d3"}]), Effect(|c| pool(c).selector.nodes[0].devices.len() == 1)),
    // ---- v1alpha1 program and policy
    row(At::V1Pool, "programManager", || json!("bpfman"), Effect(|c| pool(c).bpfman == Some(BpfmanPool::default()))),
    Row { with: &[("programManager", || json!("bpfman"))], ..row(At::V1Pool, "bpfman", || json!({"priority": 7}), Effect(|c| pool(c).bpfman.as_ref().is_some_and(|b| b.priority == 7))) },
    row(At::V1Bpfman, "image", || json!(format!("quay.io/x@{DIGEST}")), Effect(|c| bpfman(c).image.as_deref() == Some(&*format!("quay.io/x@{DIGEST}")))),
    row(At::V1Bpfman, "pullPolicy", || json!("Always"), Effect(|c| bpfman(c).pull_policy == ImagePullPolicy::Always)),
    row(At::V1Bpfman, "credentialsFile", || json!("/etc/afxdp/registry.json"), Effect(|c| bpfman(c).credentials_file.as_deref() == Some("/etc/afxdp/registry.json".as_ref()))),
    row(At::V1Bpfman, "function", || json!("xsk_def_prog"), Effect(|c| bpfman(c).function.as_deref() == Some("xsk_def_prog"))),
    row(At::V1Bpfman, "priority", || json!(1000), Effect(|c| bpfman(c).priority == 1000)),
    row(At::V1Bpfman, "proceedOn", || json!(["drop", "redirect"]), Effect(|c| bpfman(c).proceed_on == [ProceedOn::Drop, ProceedOn::Redirect])),
    row(At::V1Program, "path", || json!("/opt/z.o"), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::File { path, .. }) if path.ends_with("z.o")))),
    Row { without: &["path"], ..row(At::V1Program, "image", || json!(format!("quay.io/x@{DIGEST}")), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::Image { .. })))) },
    row(At::V1Program, "function", || json!("xsk_redirect"), Effect(|c| matches!(&pool(c).program, Some(ProgramSource::File { function: Some(f), .. }) if f == "xsk_redirect"))),
    row(At::V1Policy, "ref", || json!(format!("r.example/q@{DIGEST}")), Effect(|c| matches!(&policy(c).source, PolicySource::Oci { reference, .. } if reference.contains("/q@")))),
    Row { without: &["ref"], ..row(At::V1Policy, "file", || json!("/opt/p.wasm"), Effect(|c| policy(c).source == PolicySource::File("/opt/p.wasm".into()))) },
    Row { with: &[("ref", || json!("r.example/p:v1"))], ..row(At::V1Policy, "pullPolicy", || json!("Always"), Effect(|c| matches!(&policy(c).source, PolicySource::Oci { pull_policy: Some(PullPolicy::Always), .. }))) },
    row(At::V1Policy, "pullPolicy", || json!("Always"), Warned("pullPolicy has no effect on a digest reference")),
    row(At::V1Policy, "insecure", || json!(true), Refused("pools[0].policy.insecure: true (plain HTTP to a non-loopback registry) is not supported yet")),
    row(At::V1Policy, "failurePolicy", || json!("Ignore"), Effect(|c| policy(c).failure_policy == FailurePolicy::Ignore)),
    row(At::V1Policy, "timeoutMs", || json!(50), Effect(|c| policy(c).timeout.is_some_and(|t| t.as_millis() == 50))),
    row(At::V1Policy, "memoryMiB", || json!(64), Effect(|c| policy(c).memory_limit == Some(64 << 20))),
    row(At::V1Policy, "maxConcurrentCalls", || json!(2), Effect(|c| policy(c).max_concurrent_calls == Some(2))),
    row(At::V1Policy, "config", || json!({"queuesPerPod": 2}), Effect(|c| policy(c).config_json.contains("queuesPerPod"))),
];

#[test]
fn rows_cover_every_key_the_parser_knows() {
    for &at in ALL {
        let known = at.parser_keys();
        let rows: BTreeSet<&str> = ROWS.iter().filter(|r| r.at == at).map(|r| r.key).collect();
        let untested: Vec<_> = known.difference(&rows).collect();
        let stale: Vec<_> = rows.difference(&known).collect();
        assert!(
            untested.is_empty() && stale.is_empty(),
            "{at:?}: keys without a row: {untested:?}; rows for keys the parser does not know: {stale:?}"
        );
    }
}

fn without_warnings(mut c: Config) -> Config {
    c.warnings.clear();
    c
}

#[test]
fn every_key_takes_effect_or_is_refused() {
    for &at in ALL {
        let base = parse(&at.doc(&[], &[])).unwrap_or_else(|e| panic!("{at:?} base: {e}"));
        assert!(base.warnings.is_empty(), "{at:?} base: {:?}", base.warnings);
    }
    for r in ROWS {
        let mut set: Vec<(&str, Value)> = r.with.iter().map(|(k, v)| (*k, v())).collect();
        set.push((r.key, (r.value)()));
        let text = r.at.doc(r.without, &set);
        let base = without_warnings(parse(&r.at.doc(&[], &[])).expect("base"));
        let what = format!("{:?} {} = {}", r.at, r.key, (r.value)());
        match (&r.expect, parse(&text)) {
            (Effect(holds), Ok(c)) => {
                let c = without_warnings(c);
                assert_ne!(c, base, "{what}: the model did not change");
                assert!(holds(&c), "{what}: not the expected effect: {c:#?}");
            }
            (Refused(part), Err(e)) => assert!(
                e.messages().iter().any(|m| m.contains(part)),
                "{what}: expected an error containing {part:?}, got:\n{e}"
            ),
            (Warned(part), Ok(c)) => {
                assert!(
                    c.warnings.iter().any(|w| w.to_string().contains(part)),
                    "{what}: expected a warning containing {part:?}, got {:?}",
                    c.warnings
                );
                if r.with.is_empty() && r.without.is_empty() {
                    assert_eq!(
                        without_warnings(c),
                        base,
                        "{what}: warned but changed the model"
                    );
                }
            }
            (_, Ok(c)) => panic!("{what}: accepted, expected a refusal: {c:#?}"),
            (_, Err(e)) => panic!("{what}: refused:\n{e}"),
        }
    }
}

/// Secondary counts take effect in a `cdq` pool in both forms (the rows above
/// show them refused, or dropped, in the base's `primary` pool).
#[test]
fn secondary_counts_take_effect_in_cdq_pools() {
    let up = parse(
        r#"{"pools": [{"name": "p", "mode": "cdq",
            "drivers": [{"name": "ice", "secondary": 350}],
            "devices": [{"name": "d1", "secondary": 4}],
            "nodes": [{"hostname": "n1", "drivers": [{"name": "i40e", "secondary": 2}]}]}]}"#,
    )
    .expect("upstream cdq pool");
    assert!(up.warnings.is_empty(), "{:?}", up.warnings);
    let v1 = parse(
        r#"{"apiVersion": "afxdp.io/v1alpha1", "pools": [{"name": "p", "mode": "cdq",
            "selectors": {
                "drivers": [{"name": "ice", "secondary": 350}],
                "devices": [{"name": "d1", "secondary": 4}],
                "nodes": [{"hostname": "n1", "drivers": [{"name": "i40e", "secondary": 2}]}]}}]}"#,
    )
    .expect("v1alpha1 cdq pool");
    for c in [&up, &v1] {
        let p = pool(c);
        assert_eq!(p.mode, PoolMode::Cdq);
        assert_eq!(p.selector.drivers[0].secondary, Some(350));
        assert_eq!(p.selector.devices[0].secondary, Some(4));
        assert_eq!(p.selector.nodes[0].drivers[0].secondary, Some(2));
    }
    // The bound holds in cdq pools too.
    let e = parse(r#"{"pools": [{"name": "p", "mode": "cdq", "drivers": [{"name": "ice", "secondary": 351}]}]}"#)
        .expect_err("351 refused");
    assert!(
        e.messages()
            .iter()
            .any(|m| m.contains("secondary must be between 1 and 350, got 351")),
        "{e}"
    );
}

/// The first upstream versions' top-level `mode: "cdq"` applies to pools
/// without their own mode.
#[test]
fn legacy_cdq_mode_applies_to_pools_without_one() {
    let c = parse(
        r#"{"mode": "cdq", "pools": [
            {"name": "a", "drivers": [{"name": "ice", "secondary": 3}]},
            {"name": "b", "mode": "primary", "drivers": [{"name": "i40e"}]}]}"#,
    )
    .expect("legacy cdq");
    assert_eq!(c.pools[0].mode, PoolMode::Cdq);
    assert_eq!(c.pools[0].selector.drivers[0].secondary, Some(3));
    assert_eq!(c.pools[1].mode, PoolMode::Primary);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.to_string().contains("legacy top-level mode")));
}
