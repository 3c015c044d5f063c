//! Pooled instance slots: memory reused call after call must hold exactly
//! the component's initial image each time (no state crosses calls, not even
//! after a trap), and the engine never runs more calls than it has slots.

mod common;
use common::blk;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use afxdp_policy::{CallCtx, DecisionError, EngineConfig, LoadedPolicy, PolicyEngine};

/// Generous: the point is what the call sees, not how fast it is.
const DEADLINE: Duration = Duration::from_secs(10);

fn ctx(config: &str) -> CallCtx {
    CallCtx {
        deadline: Some(DEADLINE),
        ..CallCtx::new("slots", config)
    }
}

fn check(p: &LoadedPolicy) {
    p.validate_config(&blk(), &ctx("check"))
        .expect("a call starts from the initial image");
}

/// The memory size the guest sees at entry, in pages.
fn pages(p: &LoadedPolicy) -> String {
    match p.validate_config(&blk(), &ctx("size")) {
        Err(DecisionError::Guest { message, .. }) => message,
        other => panic!("expected the size answer, got {other:?}"),
    }
}

#[test]
fn nothing_survives_a_call() {
    let p = common::load("leftovers");
    let initial = pages(&p);
    for _ in 0..50 {
        // Each call dirties its statics, a 3 MiB buffer and 4 MiB of grown
        // memory; the next one must see none of it.
        check(&p);
        assert_eq!(pages(&p), initial, "memory grown by an earlier call");
    }
}

#[test]
fn nothing_survives_a_trap() {
    let p = common::load("leftovers");
    let initial = pages(&p);
    for _ in 0..10 {
        let err = p
            .validate_config(&blk(), &ctx("trap"))
            .expect_err("the guest traps");
        assert!(matches!(err, DecisionError::Trap { .. }), "{err:?}");
        check(&p);
        assert_eq!(pages(&p), initial);
    }
}

#[test]
fn nothing_crosses_concurrent_calls() {
    let p = common::load("leftovers");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (p, barrier) = (p.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..25 {
                    check(&p);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a checking thread panicked");
    }
}

/// With every slot held by a call that runs to its deadline, one more call
/// waits for a slot (at most its own deadline) and is refused as busy: the
/// engine never instantiates beyond its pool.
#[test]
fn calls_beyond_the_slots_wait_then_are_busy() {
    let slots = 2;
    let engine = PolicyEngine::new(EngineConfig {
        concurrent_calls: slots,
        ..EngineConfig::default()
    })
    .expect("engine");
    let load = |name: &str| {
        let wasm = common::guest(name);
        engine
            .load(&blk(), &wasm, &afxdp_policy::sha256_digest(&wasm))
            .expect("load")
    };
    let (looping, good) = (load("infinite-loop"), load("well-behaved"));
    let holding = Duration::from_secs(3);
    let barrier = Arc::new(Barrier::new(slots + 1));
    let holders: Vec<_> = (0..slots)
        .map(|_| {
            let (p, barrier) = (looping.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let ctx = CallCtx {
                    deadline: Some(holding),
                    ..CallCtx::new("hold", "loop")
                };
                p.validate_config(&blk(), &ctx)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let extra = CallCtx {
        deadline: Some(Duration::from_millis(50)),
        ..CallCtx::new("extra", "{}")
    };
    // Until every holder has its slot, the extra call may still get one;
    // once they all do, it must wait 50 ms and be refused. Give the holders
    // half their hold to get going (a busy machine may be slow to run them).
    let err = loop {
        match good.validate_config(&blk(), &extra) {
            Err(e) => break e,
            Ok(()) if started.elapsed() < holding / 2 => thread::sleep(Duration::from_millis(20)),
            Ok(()) => panic!("a call found a free slot while {slots} calls held them all"),
        }
    };
    assert!(
        matches!(err, DecisionError::Busy { limit, .. } if limit == slots),
        "{err:?}"
    );
    for h in holders {
        let r = h.join().expect("a holding thread panicked");
        assert!(matches!(r, Err(DecisionError::Timeout { .. })), "{r:?}");
    }
    good.validate_config(&blk(), &ctx("{}"))
        .expect("the engine serves once slots are free");
}
