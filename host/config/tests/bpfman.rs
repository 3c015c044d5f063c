//! `programManager: bpfman` and a pool's bpfman settings, in both forms:
//! what they set, and each bad value refused with its path and why.

use afxdp_config::{
    parse, to_v1alpha1, BpfmanPool, ImagePullPolicy, ProceedOn, ProgramManagerKind,
};
use serde_json::{json, Value};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn v1(pool_extra: Value, root_extra: Value) -> String {
    let mut pool = json!({"name": "p", "selectors": {"devices": [{"name": "d1"}]}});
    merge(&mut pool, pool_extra);
    let mut root = json!({"apiVersion": "afxdp.io/v1alpha1", "pools": [pool]});
    merge(&mut root, root_extra);
    root.to_string()
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (into.as_object_mut(), extra) {
        o.extend(e);
    }
}

fn errors(text: &str) -> Vec<String> {
    parse(text).expect_err("refused").messages()
}

fn assert_refused(text: &str, expected: &str) {
    let msgs = errors(text);
    assert!(
        msgs.iter().any(|m| m.contains(expected)),
        "expected {expected:?} in {msgs:#?}"
    );
}

#[test]
fn every_setting_of_a_bpfman_pool() {
    let c = parse(&v1(
        json!({"programManager": "bpfman", "sharing": "pinned", "bpfman": {
            "image": format!("reg.example:5000/afxdp/xsk@{DIGEST}"),
            "pullPolicy": "Never",
            "credentialsFile": "/etc/afxdp/registry.json",
            "function": "xsk_def_prog",
            "priority": 12,
            "proceedOn": ["pass", "dispatcher_return", "redirect"]
        }}),
        json!({}),
    ))
    .expect("valid");
    let b = c.pools[0].bpfman.clone().expect("bpfman pool");
    assert_eq!(c.pools[0].program_manager(), ProgramManagerKind::Bpfman);
    assert_eq!(
        b,
        BpfmanPool {
            image: Some(format!("reg.example:5000/afxdp/xsk@{DIGEST}")),
            pull_policy: ImagePullPolicy::Never,
            credentials_file: Some("/etc/afxdp/registry.json".into()),
            function: Some("xsk_def_prog".into()),
            priority: 12,
            proceed_on: vec![
                ProceedOn::Pass,
                ProceedOn::DispatcherReturn,
                ProceedOn::Redirect
            ],
        }
    );
    // Written back in the v1alpha1 form, it reads the same.
    let again = parse(&to_v1alpha1(&c).expect("convert")).expect("reparse");
    assert_eq!(again.pools, c.pools);
}

#[test]
fn the_top_level_manager_is_the_default_of_pools() {
    let c = parse(&v1(json!({}), json!({"programManager": "bpfman"}))).expect("valid");
    assert_eq!(c.pools[0].bpfman, Some(BpfmanPool::default()));
    let c = parse(&v1(
        json!({"programManager": "native"}),
        json!({"programManager": "bpfman"}),
    ))
    .expect("valid");
    assert_eq!(c.pools[0].bpfman, None, "the pool's own wins");
}

#[test]
fn bad_bpfman_settings_are_refused_with_their_path() {
    let bpfman = |settings: Value| {
        v1(
            json!({"programManager": "bpfman", "bpfman": settings}),
            json!({}),
        )
    };
    let cases: &[(Value, &str)] = &[
        (
            json!({"image": "reg.example/afxdp/xsk:v1"}),
            "pools[0].bpfman.image: bytecode image \"reg.example/afxdp/xsk:v1\" is not pinned by digest",
        ),
        (
            json!({"image": "reg.example/afxdp/xsk@sha256:abc"}),
            "is not pinned by digest",
        ),
        (
            json!({"pullPolicy": "always"}),
            "pools[0].bpfman.pullPolicy: invalid pullPolicy \"always\": expected one of Always, IfNotPresent, Never",
        ),
        (json!({"priority": 0}), "pools[0].bpfman.priority: priority must be between 1 (first) and 1000 (last), got 0"),
        (json!({"priority": 1001}), "got 1001"),
        (
            json!({"proceedOn": ["pass", "bounce"]}),
            "pools[0].bpfman.proceedOn[1]: invalid XDP action \"bounce\"",
        ),
        (json!({"proceedOn": ["pass", "pass"]}), "pools[0].bpfman.proceedOn[1]: \"pass\" is listed twice"),
        (json!({"credentialsFile": "creds.json"}), "pools[0].bpfman.credentialsFile: invalid credentialsFile"),
        (json!({"function": "two words"}), "invalid function name"),
        (json!({"imagePullPolicy": "Always"}), "imagePullPolicy"),
    ];
    for (settings, expected) in cases {
        assert_refused(&bpfman(settings.clone()), expected);
    }
}

#[test]
fn bpfman_settings_need_a_bpfman_pool_and_one_program() {
    assert_refused(
        &v1(json!({"bpfman": {"priority": 3}}), json!({})),
        "pools[0].bpfman: bpfman settings need programManager \"bpfman\"",
    );
    assert_refused(
        &v1(
            json!({"programManager": "bpfman", "program": {"image": format!("r.example/x@{DIGEST}")}}),
            json!({}),
        ),
        "pools[0].program: a bpfman pool names its bytecode image in bpfman.image",
    );
    assert_refused(
        &v1(
            json!({"programManager": "bpfman", "program": "/opt/x.o",
                   "bpfman": {"image": format!("r.example/x@{DIGEST}")}}),
            json!({}),
        ),
        "not both",
    );
    assert_refused(
        &v1(json!({"programManager": "aya"}), json!({})),
        "pools[0].programManager: invalid programManager \"aya\": expected one of native, bpfman",
    );
    // A file program is what bpfman loads.
    let c = parse(&v1(
        json!({"programManager": "bpfman", "program": "/opt/x.o"}),
        json!({}),
    ))
    .expect("file program");
    assert!(c.pools[0].bpfman.is_some() && c.pools[0].program.is_some());
}

fn upstream(pool_extra: Value, root_extra: Value) -> String {
    let mut pool = json!({"name": "p", "mode": "primary", "devices": [{"name": "d1"}]});
    merge(&mut pool, pool_extra);
    let mut root = json!({"pools": [pool]});
    merge(&mut root, root_extra);
    root.to_string()
}

#[test]
fn upstream_bpfd_client_enable_maps_to_bpfman() {
    let image = format!("quay.io/afxdp/xsk@{DIGEST}");
    let c = parse(&upstream(
        json!({"BpfdClientEnable": true, "bpfByteCodeImage": image, "bpfByteCodeSection": "xsk_def_prog"}),
        json!({}),
    ))
    .expect("valid");
    let b = c.pools[0].bpfman.as_ref().expect("bpfman pool");
    assert_eq!(b.image.as_deref(), Some(image.as_str()));
    assert_eq!(b.function.as_deref(), Some("xsk_def_prog"));
    assert_eq!(c.pools[0].program, None, "the image is bpfman's to load");

    // The top-level switch makes every pool bpfman's.
    let c = parse(&upstream(json!({}), json!({"bpfdClientEnable": true}))).expect("valid");
    assert_eq!(c.program_manager, ProgramManagerKind::Bpfman);
    assert_eq!(c.pools[0].bpfman, Some(BpfmanPool::default()));

    // Without bpfman the image stays a natively attached program.
    let c = parse(&upstream(
        json!({"bpfByteCodeImage": "quay.io/afxdp/xsk:v1"}),
        json!({}),
    ))
    .expect("valid");
    assert!(c.pools[0].bpfman.is_none() && c.pools[0].program.is_some());

    assert_refused(
        &upstream(
            json!({"BpfdClientEnable": true, "bpfByteCodeImage": "quay.io/afxdp/xsk:v1"}),
            json!({}),
        ),
        "pools[0].bpfByteCodeImage: bytecode image \"quay.io/afxdp/xsk:v1\" is not pinned by digest",
    );
}
