//! Hostile guests: each failure is bounded, reported as the right
//! `DecisionError`, and leaves the same `LoadedPolicy` and the engine
//! serving.

mod common;
use common::blk;

use std::time::{Duration, Instant};

use afxdp_policy::{CallCtx, DecisionError, LoadedPolicy, Netdev, Pod};

/// Loose bound for "ended promptly" (the machine may be busy: no tight
/// timing assertions).
const SLACK: Duration = Duration::from_secs(10);

fn dev() -> Netdev {
    Netdev::new("eth0", 4)
}

type Call<'a> = dyn Fn() -> Result<(), DecisionError> + 'a;

/// Call every decision of `p` with `ctx`; each must fail. `check` sees the
/// error, then the same policy and the engine must still serve.
fn each_decision(p: &LoadedPolicy, ctx: &CallCtx, mut check: impl FnMut(&str, DecisionError)) {
    let d = dev();
    let pod = Pod::default();
    let addrs = ["10.0.0.1".parse().unwrap()];
    let avail = [d.clone(), Netdev::new("eth1", 1)];
    let calls: [(&str, &Call); 4] = [
        ("select-program", &|| {
            p.select_program(&blk(), ctx, &d, &pod).map(|_| ())
        }),
        ("assign-queues", &|| {
            p.assign_queues(&blk(), ctx, &d, &pod).map(|_| ())
        }),
        ("filter-rules", &|| {
            p.filter_rules(&blk(), ctx, &d, &pod, &addrs).map(|_| ())
        }),
        ("preferred-allocation", &|| {
            p.preferred_allocation(&blk(), ctx, &avail, &[], 1)
                .map(|_| ())
        }),
    ];
    for (decision, call) in calls {
        let err = call().expect_err(decision);
        check(decision, err);
        still_serving(p);
    }
}

/// The hostile policy still answers a harmless call, and the engine still
/// serves the well-behaved policy.
fn still_serving(hostile: &LoadedPolicy) {
    hostile
        .validate_config(&blk(), &CallCtx::new("p", "{}"))
        .expect("the same LoadedPolicy keeps serving");
    let good = common::load("well-behaved");
    let plan = good
        .assign_queues(
            &blk(),
            &CallCtx::new("good", r#"{"queues":2}"#),
            &dev(),
            &Pod::default(),
        )
        .expect("the engine keeps serving other pools");
    assert_eq!(plan.queues, vec![0, 1]);
}

#[test]
fn infinite_loop_times_out() {
    let p = common::load("infinite-loop");
    let deadline = Duration::from_millis(50);
    let ctx = CallCtx {
        deadline: Some(deadline),
        ..CallCtx::new("loop", "{}")
    };
    let mut start = Instant::now();
    each_decision(&p, &ctx, |decision, err| {
        assert!(
            start.elapsed() < deadline + SLACK,
            "{decision}: {:?}",
            start.elapsed()
        );
        assert_eq!(
            err,
            DecisionError::Timeout { after: deadline },
            "{decision}"
        );
        start = Instant::now();
    });
    // The engine default deadline (100 ms) applies without an override.
    let start = Instant::now();
    let err = p
        .validate_config(&blk(), &CallCtx::new("loop", "loop"))
        .unwrap_err();
    assert_eq!(
        err,
        DecisionError::Timeout {
            after: common::engine().config().deadline
        }
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(start.elapsed() < common::engine().config().deadline + SLACK);
    still_serving(&p);
}

#[test]
fn sleeping_is_refused_not_waited_for() {
    let p = common::load("infinite-loop");
    let start = Instant::now();
    let err = p
        .validate_config(&blk(), &CallCtx::new("sleep", "sleep"))
        .unwrap_err();
    assert!(start.elapsed() < SLACK, "{:?}", start.elapsed());
    assert!(
        matches!(err, DecisionError::Trap { ref message, .. } if message.contains("may not sleep")),
        "{err:?}"
    );
    still_serving(&p);
}

#[test]
fn memory_bomb_hits_the_limit() {
    let p = common::load("memory-bomb");
    let limit = common::engine().config().memory_limit;
    each_decision(&p, &CallCtx::new("bomb", "{}"), |decision, err| {
        assert_eq!(err, DecisionError::MemoryExceeded { limit }, "{decision}");
    });
    // A per-call override.
    let small = CallCtx {
        memory_limit: Some(8 << 20),
        ..CallCtx::new("bomb", "{}")
    };
    let err = p
        .assign_queues(&blk(), &small, &dev(), &Pod::default())
        .unwrap_err();
    assert_eq!(err, DecisionError::MemoryExceeded { limit: 8 << 20 });
    // Below the component's initial memory: instantiation itself fails, as a
    // memory error.
    let tiny = CallCtx {
        memory_limit: Some(64 * 1024),
        ..CallCtx::new("bomb", "{}")
    };
    let err = p.validate_config(&blk(), &tiny).unwrap_err();
    assert_eq!(err, DecisionError::MemoryExceeded { limit: 64 * 1024 });
    still_serving(&p);
}

#[test]
fn panic_is_a_trap_with_stderr() {
    let p = common::load("panic");
    each_decision(
        &p,
        &CallCtx::new("panicky-pool", "{}"),
        |decision, err| match err {
            DecisionError::Trap { message, stderr } => {
                assert!(message.contains("unreachable"), "{decision}: {message}");
                assert!(!message.contains('\n'), "one line: {message}");
                assert!(
                    stderr.contains("about to fail for pool panicky-pool"),
                    "{decision}: {stderr}"
                );
                assert!(stderr.contains("deliberate panic"), "{decision}: {stderr}");
                let shown = DecisionError::Trap { message, stderr }.to_string();
                assert!(shown.contains("guest stderr"), "{shown}");
            }
            other => panic!("{decision}: {other:?}"),
        },
    );
}

#[test]
fn huge_outputs_are_refused() {
    let p = common::load("huge-output");
    // A generous deadline: building and lifting 100k rules takes a while in
    // a debug build on a busy machine, and this test is about the size check
    // (a timeout would be a bounded failure too).
    let ctx = CallCtx {
        deadline: Some(Duration::from_secs(20)),
        ..CallCtx::new("huge", "")
    };
    each_decision(&p, &ctx, |decision, err| {
        assert!(
            matches!(err, DecisionError::InvalidDecision { .. }),
            "{decision}: {err:?}"
        );
    });
    // The same policy with a small answer is accepted: the refusal is about
    // size, not the policy.
    let rules = p
        .filter_rules(
            &blk(),
            &CallCtx::new("huge", "10"),
            &dev(),
            &Pod::default(),
            &[],
        )
        .unwrap();
    assert_eq!(rules.len(), 10);
}

#[test]
fn invalid_decisions_are_refused() {
    let p = common::load("invalid-decision");
    let expect = [
        ("select-program", "priority"),
        ("assign-queues", "queue 9"),
        ("filter-rules", "999.1.1.1"),
        ("preferred-allocation", "no-such-dev"),
    ];
    let mut n = 0;
    each_decision(&p, &CallCtx::new("invalid", "{}"), |decision, err| {
        let (want_decision, needle) = expect[n];
        n += 1;
        assert_eq!(decision, want_decision);
        assert!(
            matches!(err, DecisionError::InvalidDecision { ref detail } if detail.contains(needle)),
            "{decision}: {err:?}"
        );
    });
    assert_eq!(n, 4);
}
