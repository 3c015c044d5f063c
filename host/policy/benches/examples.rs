//! Latency of the example policies' decisions (`policies/`): as components,
//! and as the same Rust compiled natively.
//!
//! `cargo bench -p afxdp-policy --bench examples` prints one table. For each
//! example policy and each decision: p50/p99 through [`LoadedPolicy`] (fresh
//! Store + instantiate + call + host validation) and of the same logic
//! compiled natively (`afxdp_policy_sdk::runtime`: config parse + validate +
//! decide + check, what the component export runs), and their ratio. Per
//! policy also: cold load from the precompiled cache and first load with
//! compilation, and its instantiation floor (fresh Store + instantiate, no
//! call; `LoadedPolicy::instantiate_only`), which every decision row is
//! compared with. Targets: decision p50 ≤ 10 µs (or, where the floor of the
//! same run lies above that, "at the floor": ≤ 1.25× it;
//! `afxdp_policy::examples::verdict`) and ≤ 10× native, cache load ≤ 5 ms. Before timing, the wasm and native answers of every decision are
//! asserted equal. Decisions a policy does not make are shown, not timed: the
//! agent does not call them (`LoadedPolicy::makes`); both sides are checked
//! to answer `unsupported`.
//!
//! Where a call's time goes (release, `perf record --call-graph dwarf` of a
//! loop of calls, December 2026, 2-core VM): of the instantiation floor
//! (~9 µs), `PoolPolicyPre::instantiate` is ~58% (pool slot allocation and
//! vmctx init of the three core instances, import/export resolution and
//! funcref init, module registration, and ~10% typechecking all six
//! exports in the generated bindings), dropping the Store ~31% (the memory
//! slot's `PAGEMAP_SCAN` reset, ioctl and kernel page walk ~17%, the
//! decommit-queue flush, the table reset), `StoreState::new` (the WASI
//! builder seeds its default RNGs twice before ours replace them) ~5% and
//! `Store::new` ~4%. Above the floor a decision pays its argument lowering
//! (every string through the guest's `cabi_realloc`: 8 netdevs are ~17% of
//! `preferred-allocation`), the guest's config parse, decision and checks,
//! result lifting and host validation. The guest SDK's arena allocator
//! took `memory.grow` (limiter + `mprotect`, undone at the slot reset) out
//! of every call: 0.4-2.2 µs per decision.
//!
//! The components are read from `$AFXDP_POLICY_WASM_DIR`, else
//! `$CARGO_TARGET_DIR/wasm32-wasip2/release`, else
//! `policies/target/wasm32-wasip2/release`; build them with
//! `cargo build --manifest-path policies/Cargo.toml --target wasm32-wasip2 --release`.
//! Without them the bench says so and exits 0, unless
//! `AFXDP_REQUIRE_POLICY_WASM` is set (CI): then it fails.
//!
//! The native side compiles each policy's `src/lib.rs` into this bench (its
//! `export_policy!` expands to nothing off wasm32) instead of depending on
//! the policy crate: that would need `crate-type = ["cdylib", "rlib"]`, and a
//! policy crate that is also an rlib gets no LTO in its shipped cdylib.

use std::fmt::Debug;
use std::hint::black_box as bb;
use std::net::IpAddr;
use std::time::Duration;

use afxdp_policy::examples::{examples, verdict, wasm_dir, Example};
use afxdp_policy::{
    sha256_digest, Decision, DecisionError, EngineConfig, FilterRule, FlowType, GuestErrorCode,
    LoadedPolicy, Netdev, Pod, PolicyEngine, ProgramChoice, ProgramSource, QueuePlan, RuleAction,
    XdpMode,
};
use afxdp_policy_sdk as sdk;

#[allow(dead_code, unused_imports)]
#[path = "../../../policies/default/src/lib.rs"]
mod policy_default;
#[allow(dead_code, unused_imports)]
#[path = "../../../policies/flow-steering/src/lib.rs"]
mod policy_flow_steering;
#[allow(dead_code, unused_imports)]
#[path = "../../../policies/image-by-label/src/lib.rs"]
mod policy_image_by_label;
#[allow(dead_code, unused_imports)]
#[path = "../../../policies/numa-spread/src/lib.rs"]
mod policy_numa_spread;
mod stats;

use stats::{blk, load_times, percentiles, time, us};

/// Most wasm p50 / native p50.
const MAX_RATIO: f64 = 10.0;
/// Cache load p50 target, µs.
const CACHE_LOAD_US: f64 = 5000.0;

fn header() {
    println!(
        "{:<15} {:<31} {:>5} {:>10} {:>10} {:>10} {:>10} {:>7}   target",
        "policy", "decision", "n", "wasm p50", "wasm p99", "nat. p50", "nat. p99", "ratio"
    );
    println!(
        "{:<15} {:<31} {:>5} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "", "", "", "µs", "µs", "µs", "µs", "w/n"
    );
}

fn row(policy: &str, what: &str, n: usize, cells: [String; 5], target: &str) {
    let [wp50, wp99, np50, np99, ratio] = cells;
    println!(
        "{policy:<15} {what:<31} {n:>5} {wp50:>10} {wp99:>10} {np50:>10} {np99:>10} {ratio:>7}   {target}"
    );
}

/// Time `wasm` and `native` (after checking they agree) and print their row.
/// `floor`: the policy's instantiation floor p50, µs, when the decision
/// targets apply (not to `validate-config`).
#[allow(clippy::too_many_arguments)]
fn compare<W, N>(
    policy: &str,
    what: &str,
    n: usize,
    floor: Option<f64>,
    mut wasm: impl FnMut() -> Result<W, DecisionError>,
    mut native: impl FnMut() -> Result<N, sdk::PolicyError>,
    to_host: impl Fn(N) -> W,
) where
    W: PartialEq + Debug,
    N: Debug,
{
    let w = wasm().unwrap_or_else(|e| panic!("{policy} {what}: wasm: {e}"));
    let nat = native().unwrap_or_else(|e| panic!("{policy} {what}: native: {e:?}"));
    assert_eq!(
        w,
        to_host(nat),
        "{policy} {what}: the component and the native build disagree \
         (rebuild the components from this tree?)"
    );
    // Warm up (page in code, first-touch allocations).
    for _ in 0..20.min(n) {
        bb(wasm().ok());
        bb(native().ok());
    }
    let w = percentiles(time(n, &mut wasm));
    let nat = percentiles(time(n, &mut native));
    let (wp50, wp99, np50, np99) = (w.p50, w.p99, nat.p50, nat.p99);
    // Natively, `log!` collects into a per-thread buffer: keep it empty.
    drop(sdk::take_logs());
    let ratio = wp50.as_secs_f64() / np50.as_secs_f64().max(1e-9);
    let verdict = match floor {
        None => String::new(),
        Some(floor) => {
            let v = verdict(us(wp50), floor);
            let mut missed = Vec::new();
            if !v.met {
                missed.push("p50");
            }
            if ratio > MAX_RATIO {
                missed.push("ratio");
            }
            let status = if missed.is_empty() {
                "ok".to_string()
            } else {
                format!("MISSED: {}", missed.join(", "))
            };
            format!("{}, ≤ {MAX_RATIO}× native  {status}", v.text)
        }
    };
    row(
        policy,
        what,
        n,
        [
            format!("{:.1}", us(wp50)),
            format!("{:.1}", us(wp99)),
            format!("{:.2}", us(np50)),
            format!("{:.2}", us(np99)),
            format!("{ratio:.1}×"),
        ],
        &verdict,
    );
}

/// A decision the policy does not make: check both sides answer
/// `unsupported`, print a row without timings.
fn not_made<W: Debug, N: Debug>(
    policy: &str,
    decision: Decision,
    wasm: Result<W, DecisionError>,
    native: Result<N, sdk::PolicyError>,
) {
    assert!(
        matches!(
            wasm,
            Err(DecisionError::Guest {
                code: GuestErrorCode::Unsupported,
                ..
            })
        ),
        "{policy} {decision}: not in its metadata, yet the component answered {wasm:?}"
    );
    assert!(
        matches!(&native, Err(e) if e.code == sdk::ErrorCode::Unsupported),
        "{policy} {decision}: not in its metadata, yet natively {native:?}"
    );
    let dash = || "—".to_string();
    row(
        policy,
        &format!("{decision} (not made)"),
        0,
        [dash(), dash(), dash(), dash(), dash()],
        "unsupported: the agent uses its default, no call",
    );
}

fn load_row(policy: &str, what: &str, samples: Vec<Duration>, target_us: Option<f64>) {
    let n = samples.len();
    let stats::Percentiles { p50, p99, .. } = percentiles(samples);
    let target = match target_us {
        Some(t) if us(p50) <= t => format!("≤ {t}  ok"),
        Some(t) => format!("≤ {t}  MISSED"),
        None => String::new(),
    };
    let dash = || "—".to_string();
    row(
        policy,
        what,
        n,
        [
            format!("{:.1}", us(p50)),
            format!("{:.1}", us(p99)),
            dash(),
            dash(),
            dash(),
        ],
        &target,
    );
}

// ---- host types -> SDK types (what the component glue does) -------------

fn sdk_netdev(d: &Netdev) -> sdk::Netdev {
    sdk::Netdev {
        name: d.name.clone(),
        driver: d.driver.clone(),
        pci: d.pci.clone(),
        mac: d.mac.clone(),
        numa_node: d.numa_node,
        rx_queues: d.rx_queues,
        tx_queues: d.tx_queues,
        speed_mbps: d.speed_mbps,
        addresses: d.addresses.iter().map(IpAddr::to_string).collect(),
    }
}

fn sdk_pod(p: &Pod) -> sdk::Pod {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    sdk::Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        annotations: pairs(&p.annotations),
        labels: pairs(&p.labels),
        requested: p.requested,
    }
}

// ---- SDK answers -> host types (to compare with the component's) --------

fn host_mode(m: sdk::XdpMode) -> XdpMode {
    match m {
        sdk::XdpMode::Native => XdpMode::Native,
        sdk::XdpMode::Generic => XdpMode::Generic,
        sdk::XdpMode::Auto => XdpMode::Auto,
    }
}

fn host_program(c: sdk::ProgramChoice) -> ProgramChoice {
    ProgramChoice {
        source: match c.source {
            sdk::ProgramSource::Builtin => ProgramSource::Builtin,
            sdk::ProgramSource::File(p) => ProgramSource::File(p.into()),
            sdk::ProgramSource::Image(r) => ProgramSource::Image(r),
        },
        function: c.function,
        mode: host_mode(c.mode),
        priority: c.priority,
    }
}

fn host_plan(p: sdk::QueuePlan) -> QueuePlan {
    QueuePlan {
        channels: p.channels,
        queues: p.queues,
    }
}

fn host_rule(r: sdk::FilterRule) -> FilterRule {
    FilterRule {
        flow_type: match r.flow_type {
            sdk::FlowType::Tcp4 => FlowType::Tcp4,
            sdk::FlowType::Udp4 => FlowType::Udp4,
            sdk::FlowType::Sctp4 => FlowType::Sctp4,
            sdk::FlowType::Tcp6 => FlowType::Tcp6,
            sdk::FlowType::Udp6 => FlowType::Udp6,
            sdk::FlowType::Sctp6 => FlowType::Sctp6,
        },
        src_ip: r.src_ip,
        src_ip_mask: r.src_ip_mask,
        dst_ip: r.dst_ip,
        dst_ip_mask: r.dst_ip_mask,
        src_port: r.src_port,
        src_port_mask: r.src_port_mask,
        dst_port: r.dst_port,
        dst_port_mask: r.dst_port_mask,
        action: match r.action {
            sdk::RuleAction::Queue(q) => RuleAction::Queue(q),
            sdk::RuleAction::Drop => RuleAction::Drop,
        },
    }
}

// ---- the bench -----------------------------------------------------------

/// Everything for one policy: every decision (or its not-made row) and the
/// two loads.
fn bench<P: sdk::Policy>(ex: &Example, wasm: &[u8], n: usize, loads: usize) {
    let name = ex.name;
    let digest = sha256_digest(wasm);
    let engine = PolicyEngine::new(EngineConfig::default()).unwrap();
    let p: std::sync::Arc<LoadedPolicy> = engine
        .load(&blk(), wasm, &digest)
        .unwrap_or_else(|e| panic!("{name}: loading the component: {e}"));

    let meta = sdk::runtime::metadata::<P>();
    assert_eq!(p.metadata().name, meta.name, "{name}: metadata name");
    assert_eq!(meta.name, name);
    let mut wasm_makes: Vec<&str> = p.metadata().decisions.iter().map(|d| d.as_str()).collect();
    let mut native_makes: Vec<&str> = meta.decisions.iter().map(String::as_str).collect();
    wasm_makes.sort_unstable();
    native_makes.sort_unstable();
    assert_eq!(
        wasm_makes, native_makes,
        "{name}: decisions in the metadata"
    );

    let ctx = ex.ctx();
    let pool = sdk::Pool::new("fast", ex.config.as_str());
    let (dev, pod) = (&ex.device, &ex.pod);
    let (sdev, spod) = (sdk_netdev(dev), sdk_pod(pod));
    let addrs = &ex.addresses;
    let saddrs: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    let avail = &ex.available;
    let savail: Vec<sdk::Netdev> = avail.iter().map(sdk_netdev).collect();
    let must = &ex.must_include;
    let size = ex.size;

    let floor = time(n, || p.instantiate_only(&blk()).unwrap());
    let floor_p50 = us(percentiles(floor.clone()).p50);
    load_row(name, "instantiation floor (no call)", floor, None);
    let floor = floor_p50;
    compare(
        name,
        "validate-config",
        n,
        None,
        || p.validate_config(&blk(), bb(&ctx)),
        || sdk::runtime::validate_config::<P>(bb(&pool.config_json)),
        |()| (),
    );
    for decision in Decision::ALL {
        let what = decision.as_str();
        let made = p.makes(decision);
        match decision {
            Decision::SelectProgram if made => compare(
                name,
                what,
                n,
                Some(floor),
                || p.select_program(&blk(), bb(&ctx), bb(dev), bb(pod)),
                || sdk::runtime::select_program::<P>(bb(&pool), bb(&sdev), bb(&spod)),
                host_program,
            ),
            Decision::SelectProgram => not_made(
                name,
                decision,
                p.select_program(&blk(), &ctx, dev, pod),
                sdk::runtime::select_program::<P>(&pool, &sdev, &spod),
            ),
            Decision::AssignQueues if made => compare(
                name,
                what,
                n,
                Some(floor),
                || p.assign_queues(&blk(), bb(&ctx), bb(dev), bb(pod)),
                || sdk::runtime::assign_queues::<P>(bb(&pool), bb(&sdev), bb(&spod)),
                host_plan,
            ),
            Decision::AssignQueues => not_made(
                name,
                decision,
                p.assign_queues(&blk(), &ctx, dev, pod),
                sdk::runtime::assign_queues::<P>(&pool, &sdev, &spod),
            ),
            Decision::FilterRules if made => compare(
                name,
                &format!("{what} ({} addr)", addrs.len()),
                n,
                Some(floor),
                || p.filter_rules(&blk(), bb(&ctx), bb(dev), bb(pod), bb(addrs)),
                || sdk::runtime::filter_rules::<P>(bb(&pool), bb(&sdev), bb(&spod), bb(&saddrs)),
                |rules| rules.into_iter().map(host_rule).collect::<Vec<_>>(),
            ),
            Decision::FilterRules => not_made(
                name,
                decision,
                p.filter_rules(&blk(), &ctx, dev, pod, addrs),
                sdk::runtime::filter_rules::<P>(&pool, &sdev, &spod, &saddrs),
            ),
            Decision::PreferredAllocation if made => compare(
                name,
                &format!("{what} ({}→{size})", avail.len()),
                n,
                Some(floor),
                || p.preferred_allocation(&blk(), bb(&ctx), bb(avail), bb(must), size),
                || {
                    sdk::runtime::preferred_allocation::<P>(
                        bb(&pool),
                        bb(&savail),
                        bb(must),
                        size as u32,
                    )
                },
                |picked| picked,
            ),
            Decision::PreferredAllocation => not_made(
                name,
                decision,
                p.preferred_allocation(&blk(), &ctx, avail, must, size),
                sdk::runtime::preferred_allocation::<P>(&pool, &savail, must, size as u32),
            ),
        }
    }
    drop(p);
    drop(engine);

    let times = load_times(wasm, &digest, loads, loads.min(5));
    load_row(
        name,
        "load: cache (+metadata)",
        times.cached,
        Some(CACHE_LOAD_US),
    );
    load_row(name, "load: compile (+metadata)", times.compiled, None);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special: run a short version then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 50 } else { 5000 };
    let loads = if quick { 2 } else { 20 };

    let examples = examples();
    // The requests' annotation and label keys are still the policies' own.
    let own = [
        policy_flow_steering::UDP_PORTS,
        policy_flow_steering::TCP_PORTS,
        policy_image_by_label::DEFAULT_LABEL,
    ];
    for ((what, key), own) in afxdp_policy::examples::keys().into_iter().zip(own) {
        assert_eq!(key, own, "{what}");
    }
    let dir = match wasm_dir(&examples) {
        Ok(d) => d,
        Err(msg) if std::env::var_os("AFXDP_REQUIRE_POLICY_WASM").is_some() => {
            eprintln!("error: {msg}\n(AFXDP_REQUIRE_POLICY_WASM is set: failing)");
            std::process::exit(1);
        }
        Err(msg) => {
            println!("skipped: {msg}");
            return;
        }
    };
    println!("components: {}", dir.display());
    header();
    for ex in &examples {
        let path = dir.join(format!("{}.wasm", ex.file));
        let wasm =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        match ex.name {
            "default" => bench::<policy_default::DefaultPolicy>(ex, &wasm, n, loads),
            "numa-spread" => bench::<policy_numa_spread::NumaSpread>(ex, &wasm, n, loads),
            "flow-steering" => bench::<policy_flow_steering::FlowSteering>(ex, &wasm, n, loads),
            "image-by-label" => bench::<policy_image_by_label::ImageByLabel>(ex, &wasm, n, loads),
            other => unreachable!("no native build of {other}"),
        }
    }
    println!(
        "wasm: fresh Store + instantiate + call + host validation; native: the same policy \
         source through afxdp_policy_sdk::runtime (config parse + validate + decide + check)"
    );
}
