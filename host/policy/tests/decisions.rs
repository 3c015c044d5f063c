//! The well-behaved guest: every decision, config validation, the log
//! import, the failure policy, and concurrent calls.

mod common;
use common::blk;

use std::collections::BTreeMap;
use std::net::IpAddr;

use afxdp_policy::{
    decide, defaults, CallCtx, Decided, DecidedBy, Decision, DecisionError, FailurePolicy,
    FilterRule, FlowType, GuestErrorCode, Netdev, Pod, ProgramChoice, ProgramSource, RuleAction,
    XdpMode,
};

fn dev(name: &str, queues: u32) -> Netdev {
    Netdev::new(name, queues)
}

#[test]
fn metadata_is_read_at_load() {
    let p = common::load("well-behaved");
    assert_eq!(p.metadata().name, "well-behaved");
    assert_eq!(p.metadata().decisions, Decision::ALL.to_vec());
    assert!(p.makes(Decision::FilterRules));
    assert!(p.digest().starts_with("sha256:"));
}

#[test]
fn same_digest_loads_once() {
    let a = common::load("well-behaved");
    let b = common::load("well-behaved");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn validate_config_accepts_and_refuses() {
    let p = common::load("well-behaved");
    p.validate_config(
        &blk(),
        &CallCtx::new("p", r#"{"mode":"generic","queues":2}"#),
    )
    .unwrap();
    p.validate_config(&blk(), &CallCtx::new("p", "")).unwrap();
    let err = p
        .validate_config(&blk(), &CallCtx::new("p", r#"{"bogus":1}"#))
        .unwrap_err();
    assert!(
        matches!(err, DecisionError::Guest { code: GuestErrorCode::InvalidInput, ref message } if message.contains("bogus")),
        "{err:?}"
    );
}

#[test]
fn select_program_follows_config_and_annotations() {
    let p = common::load("well-behaved");
    let ctx = CallCtx::new("p", r#"{"mode":"generic","priority":7}"#);
    let mut pod = Pod::default();
    let c = p
        .select_program(&blk(), &ctx, &dev("eth0", 2), &pod)
        .unwrap();
    assert_eq!(
        c,
        ProgramChoice {
            source: ProgramSource::Builtin,
            function: None,
            mode: XdpMode::Generic,
            priority: 7
        }
    );
    pod.annotations
        .insert("afxdp.io/program".into(), "/opt/xdp/prog.o".into());
    let c = p
        .select_program(&blk(), &ctx, &dev("eth0", 2), &pod)
        .unwrap();
    assert_eq!(c.source, ProgramSource::File("/opt/xdp/prog.o".into()));

    // The policy passes through whatever it is given: the host refuses it.
    pod.annotations
        .insert("afxdp.io/program".into(), "relative.o".into());
    let err = p
        .select_program(&blk(), &ctx, &dev("eth0", 2), &pod)
        .unwrap_err();
    assert!(
        matches!(err, DecisionError::InvalidDecision { .. }),
        "{err:?}"
    );
    let err = p
        .select_program(
            &blk(),
            &CallCtx::new("p", r#"{"priority":0}"#),
            &dev("eth0", 2),
            &Pod::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, DecisionError::InvalidDecision { ref detail } if detail.contains("priority")),
        "{err:?}"
    );
}

#[test]
fn assign_queues_and_filter_rules() {
    let p = common::load("well-behaved");
    let ctx = CallCtx::new("p", r#"{"queues":2,"port":4791}"#);
    let plan = p
        .assign_queues(&blk(), &ctx, &dev("eth0", 4), &Pod::default())
        .unwrap();
    assert_eq!(plan.queues, vec![0, 1]);
    assert_eq!(plan.channels, None);

    let addrs: Vec<IpAddr> = vec!["10.1.2.3".parse().unwrap(), "fd00::7".parse().unwrap()];
    let rules = p
        .filter_rules(&blk(), &ctx, &dev("eth0", 4), &Pod::default(), &addrs)
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0],
        FilterRule {
            flow_type: FlowType::Udp4,
            src_ip: None,
            src_ip_mask: None,
            dst_ip: Some(addrs[0]),
            dst_ip_mask: None,
            src_port: None,
            src_port_mask: None,
            dst_port: Some(4791),
            dst_port_mask: None,
            action: RuleAction::Queue(0),
        }
    );
    assert_eq!(rules[1].flow_type, FlowType::Udp6);
    // No port configured: no rules.
    assert!(p
        .filter_rules(
            &blk(),
            &CallCtx::new("p", "{}"),
            &dev("eth0", 4),
            &Pod::default(),
            &addrs
        )
        .unwrap()
        .is_empty());
}

#[test]
fn preferred_allocation_is_checked() {
    let p = common::load("well-behaved");
    let ctx = CallCtx::new("p", "{}");
    let avail = vec![dev("c", 1), dev("a", 1), dev("b", 1)];
    let got = p
        .preferred_allocation(&blk(), &ctx, &avail, &["c".to_string()], 2)
        .unwrap();
    assert_eq!(got, vec!["c", "a"]);
    assert!(p
        .preferred_allocation(&blk(), &ctx, &avail, &[], 0)
        .unwrap()
        .is_empty());
    // More than available: all of them.
    assert_eq!(
        p.preferred_allocation(&blk(), &ctx, &avail, &[], 5)
            .unwrap(),
        vec!["a", "b", "c"]
    );
}

#[test]
fn guest_refusal_is_a_guest_error() {
    let p = common::load("well-behaved");
    let err = p
        .assign_queues(
            &blk(),
            &CallCtx::new("deny-pool", r#"{"deny":true}"#),
            &dev("eth0", 1),
            &Pod::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, DecisionError::Guest { code: GuestErrorCode::Denied, ref message } if message.contains("deny-pool")),
        "{err:?}"
    );
}

#[test]
fn host_log_is_rate_limited_and_harmless() {
    let p = common::load("well-behaved");
    let ctx = CallCtx::new("log-pool", r#"{"log":true}"#);
    // 200 calls, each logging once: the bucket lets ~20 through, the calls
    // all succeed.
    for _ in 0..200 {
        p.assign_queues(&blk(), &ctx, &dev("eth0", 2), &Pod::default())
            .unwrap();
    }
}

#[test]
fn decide_ignore_falls_back_and_fail_returns_the_error() {
    let p = common::load("well-behaved");
    let ctx = CallCtx::new("decide-pool", r#"{"deny":true}"#);
    let d = dev("eth0", 3);
    let r = p.assign_queues(&blk(), &ctx, &d, &Pod::default());
    let got = decide(
        &ctx.pool,
        p.digest(),
        FailurePolicy::Ignore,
        r.clone(),
        || defaults::queue_plan(&d),
    )
    .unwrap();
    assert_eq!(got.value.queues, vec![0, 1, 2]);
    assert!(matches!(got.by, DecidedBy::Default { ref reason } if reason.contains("denies")));
    assert_eq!(afxdp_policy::metrics::fallbacks("decide-pool"), 1);

    let err = decide(&ctx.pool, p.digest(), FailurePolicy::Fail, r, || {
        defaults::queue_plan(&d)
    })
    .unwrap_err();
    assert!(matches!(err, DecisionError::Guest { .. }));
    assert_eq!(afxdp_policy::metrics::failures("decide-pool"), 1);

    let ok: Decided<_> = decide(
        "decide-pool",
        p.digest(),
        FailurePolicy::Fail,
        p.assign_queues(
            &blk(),
            &CallCtx::new("decide-pool", "{}"),
            &d,
            &Pod::default(),
        ),
        || defaults::queue_plan(&d),
    )
    .unwrap();
    assert_eq!(
        ok.by,
        DecidedBy::Policy {
            digest: p.digest().to_string()
        }
    );
}

#[test]
fn concurrent_calls_from_many_threads() {
    let p = common::load("well-behaved");
    std::thread::scope(|s| {
        for t in 0..8 {
            let p = &p;
            s.spawn(move || {
                let ctx = CallCtx::new(format!("pool-{t}"), r#"{"queues":1}"#);
                let mut pod = Pod {
                    annotations: BTreeMap::new(),
                    ..Pod::default()
                };
                pod.name = format!("pod-{t}");
                for _ in 0..50 {
                    let plan = p
                        .assign_queues(&blk(), &ctx, &dev("eth0", 4), &pod)
                        .unwrap();
                    assert_eq!(plan.queues, vec![0]);
                }
            });
        }
    });
}
