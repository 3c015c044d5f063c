//! The pool `policy` block of the richer form.

use std::time::Duration;

use afxdp_config::{parse, FailurePolicy, PolicySource, PullPolicy};

fn with_policy(policy: &str) -> String {
    format!(
        r#"{{"apiVersion":"afxdp.io/v1alpha1","pools":[{{"name":"p","selectors":{{"devices":[{{"name":"eth1"}}]}},"policy":{policy}}}]}}"#
    )
}

#[test]
fn digest_reference_with_settings() {
    let d = "0123456789abcdef".repeat(4);
    let cfg = parse(&with_policy(&format!(
        r#"{{"ref":"127.0.0.1:5000/afxdp/numa@sha256:{d}","failurePolicy":"Ignore","timeoutMs":50,"memoryMiB":16,"maxConcurrentCalls":3,"config":{{"queuesPerPod":2,"x":[1,"a"]}}}}"#
    )))
    .expect("valid");
    let p = cfg.pools[0].policy.as_ref().expect("policy");
    assert_eq!(
        p.source,
        PolicySource::Oci {
            reference: format!("127.0.0.1:5000/afxdp/numa@sha256:{d}"),
            pull_policy: None,
            insecure: false
        }
    );
    assert_eq!(p.failure_policy, FailurePolicy::Ignore);
    assert_eq!(p.timeout, Some(Duration::from_millis(50)));
    assert_eq!(p.memory_limit, Some(16 << 20));
    assert_eq!(p.max_concurrent_calls, Some(3));
    let c: serde_json::Value = serde_json::from_str(&p.config_json).expect("json");
    assert_eq!(c, serde_json::json!({"queuesPerPod": 2, "x": [1, "a"]}));
    // Round trip through the richer form.
    let again = parse(&afxdp_config::to_v1alpha1(&cfg).expect("convert")).expect("reparse");
    assert_eq!(again.pools[0].policy, cfg.pools[0].policy);
}

#[test]
fn tags_need_a_pull_policy_and_defaults_apply() {
    let err = parse(&with_policy(r#"{"ref":"reg/afxdp/numa:v1"}"#))
        .expect_err("tag")
        .to_string();
    assert!(
        err.contains("pools[0].policy.ref") && err.contains("pullPolicy"),
        "{err}"
    );
    let cfg = parse(&with_policy(
        r#"{"ref":"reg/afxdp/numa:v1","pullPolicy":"Always"}"#,
    ))
    .expect("tag ok");
    let p = cfg.pools[0].policy.as_ref().expect("policy");
    assert!(matches!(
        p.source,
        PolicySource::Oci {
            pull_policy: Some(PullPolicy::Always),
            ..
        }
    ));
    assert_eq!(p.failure_policy, FailurePolicy::Fail);
    assert_eq!(p.config_json, "{}");
    assert_eq!(p.max_concurrent_calls, None);
    let file = parse(&with_policy(r#"{"file":"/etc/afxdp/p.wasm"}"#)).expect("file");
    assert_eq!(
        file.pools[0].policy.as_ref().expect("policy").source,
        PolicySource::File("/etc/afxdp/p.wasm".into())
    );
}

#[test]
fn every_policy_error_is_reported_with_its_path() {
    let err = parse(&with_policy(
        r#"{"ref":"reg/x@sha256:abc","failurePolicy":"Sometimes","timeoutMs":0,"memoryMiB":4096,"maxConcurrentCalls":0,"config":[1],"extra":1}"#,
    ))
    .expect_err("invalid")
    .to_string();
    for needle in [
        "pools[0].policy.ref",
        "pools[0].policy.failurePolicy",
        "pools[0].policy.timeoutMs",
        "pools[0].policy.memoryMiB",
        "pools[0].policy.maxConcurrentCalls",
        "pools[0].policy.config",
        "pools[0].policy.extra",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    let both = parse(&with_policy(
        r#"{"ref":"reg/x:v","file":"/p.wasm","pullPolicy":"Always"}"#,
    ))
    .expect_err("both");
    assert!(both.to_string().contains("either ref or file"), "{both}");
    let relative = parse(&with_policy(r#"{"file":"p.wasm"}"#)).expect_err("relative");
    assert!(relative.to_string().contains("absolute"), "{relative}");
}
