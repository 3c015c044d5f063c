//! The exported functions as plain Rust: what the component glue calls, and
//! what native tests call to exercise a policy end to end (config JSON in,
//! checked decision out).
//!
//! Each decision parses the pool config, validates it, calls the policy and
//! checks the answer. An answer that breaks the contract (priority out of
//! range, queue id beyond the channel count, an allocation missing a
//! `must-include`, an inconsistent rule) becomes an `internal` error.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::config::parse_config;
use crate::rules::parse_ip;
use crate::{
    Ctx, FilterRule, Metadata, Netdev, Pod, Policy, PolicyError, Pool, ProgramChoice,
    ProgramSource, QueuePlan,
};

/// `metadata`.
pub fn metadata<P: Policy>() -> Metadata {
    P::metadata()
}

/// `validate-config`: parse `config_json` as `P::Config`, then [`Policy::validate`].
pub fn validate_config<P: Policy>(config_json: &str) -> Result<(), PolicyError> {
    let config = parse_config::<P::Config>(config_json)?;
    P::validate(&config)
}

/// The parsed and validated context of `pool` for `P`.
pub fn context<P: Policy>(pool: &Pool) -> Result<Ctx<P::Config>, PolicyError> {
    let config = parse_config::<P::Config>(&pool.config_json)?;
    P::validate(&config)?;
    Ok(Ctx {
        pool: pool.name.clone(),
        config,
    })
}

/// `select-program`, checked by [`check_program`].
pub fn select_program<P: Policy>(
    pool: &Pool,
    device: &Netdev,
    pod: &Pod,
) -> Result<ProgramChoice, PolicyError> {
    let ctx = context::<P>(pool)?;
    let choice = P::select_program(&ctx, device, pod)?;
    check_program(&choice).map_err(|e| e.context("select-program"))?;
    Ok(choice)
}

/// `assign-queues`, checked by [`check_queue_plan`].
pub fn assign_queues<P: Policy>(
    pool: &Pool,
    device: &Netdev,
    pod: &Pod,
) -> Result<QueuePlan, PolicyError> {
    let ctx = context::<P>(pool)?;
    let plan = P::assign_queues(&ctx, device, pod)?;
    check_queue_plan(&plan, device).map_err(|e| e.context("assign-queues"))?;
    Ok(plan)
}

/// `filter-rules`: `addresses` are parsed first (a bad one is
/// `invalid-input`), every returned rule must pass [`FilterRule::check`].
pub fn filter_rules<P: Policy>(
    pool: &Pool,
    device: &Netdev,
    pod: &Pod,
    addresses: &[String],
) -> Result<Vec<FilterRule>, PolicyError> {
    let ctx = context::<P>(pool)?;
    let addrs = addresses
        .iter()
        .map(|a| parse_ip(a).map_err(|e| PolicyError::invalid_input(format!("addresses: {e}"))))
        .collect::<Result<Vec<IpAddr>, _>>()?;
    let rules = P::filter_rules(&ctx, device, pod, &addrs)?;
    for (i, r) in rules.iter().enumerate() {
        r.check()
            .map_err(|e| PolicyError::internal(format!("filter-rules: rule {i}: {e}")))?;
    }
    Ok(rules)
}

/// `preferred-allocation`, checked by [`check_allocation`].
pub fn preferred_allocation<P: Policy>(
    pool: &Pool,
    available: &[Netdev],
    must_include: &[String],
    size: u32,
) -> Result<Vec<String>, PolicyError> {
    let ctx = context::<P>(pool)?;
    let picked = P::preferred_allocation(&ctx, available, must_include, size)?;
    check_allocation(&picked, available, must_include, size)
        .map_err(|e| e.context("preferred-allocation"))?;
    Ok(picked)
}

/// A program choice must have a priority in 1..=1000, an absolute file path,
/// a non-empty image reference and function name.
pub fn check_program(choice: &ProgramChoice) -> Result<(), PolicyError> {
    if !ProgramChoice::PRIORITY_RANGE.contains(&choice.priority) {
        return Err(PolicyError::internal(format!(
            "priority {} outside 1..=1000",
            choice.priority
        )));
    }
    match &choice.source {
        ProgramSource::File(p) if !p.starts_with('/') => {
            return Err(PolicyError::internal(format!(
                "program file {p:?} is not an absolute path"
            )))
        }
        ProgramSource::Image(r) if r.trim().is_empty() => {
            return Err(PolicyError::internal("empty image reference"))
        }
        _ => {}
    }
    if choice.function.as_deref().is_some_and(|f| f.is_empty()) {
        return Err(PolicyError::internal("empty program function name"));
    }
    Ok(())
}

/// A queue plan must bind at least one queue, no queue twice, and only queue
/// ids below the channel count it sets (or the device's rx queues, at least 1).
pub fn check_queue_plan(plan: &QueuePlan, device: &Netdev) -> Result<(), PolicyError> {
    if plan.channels == Some(0) {
        return Err(PolicyError::internal("channels set to 0"));
    }
    let limit = plan.channels.unwrap_or(device.rx_queues.max(1));
    if plan.queues.is_empty() {
        return Err(PolicyError::internal("no queue assigned"));
    }
    let mut seen = BTreeSet::new();
    for &q in &plan.queues {
        if q >= limit {
            return Err(PolicyError::internal(format!(
                "queue {q} is not below {limit} ({})",
                if plan.channels.is_some() {
                    "the channel count set"
                } else {
                    "the device's rx queues"
                }
            )));
        }
        if !seen.insert(q) {
            return Err(PolicyError::internal(format!("queue {q} assigned twice")));
        }
    }
    Ok(())
}

/// An allocation names each device once, includes every `must_include`, names
/// only available or must-include devices, and has at most
/// `max(size, must_include.len())` of them.
pub fn check_allocation(
    picked: &[String],
    available: &[Netdev],
    must_include: &[String],
    size: u32,
) -> Result<(), PolicyError> {
    let mut seen = BTreeSet::new();
    for d in picked {
        if !seen.insert(d.as_str()) {
            return Err(PolicyError::internal(format!("device {d} picked twice")));
        }
        if !available.iter().any(|a| &a.name == d) && !must_include.contains(d) {
            return Err(PolicyError::internal(format!(
                "device {d} is not available"
            )));
        }
    }
    if let Some(m) = must_include.iter().find(|m| !seen.contains(m.as_str())) {
        return Err(PolicyError::internal(format!(
            "must-include device {m} left out"
        )));
    }
    let must: BTreeSet<&str> = must_include.iter().map(String::as_str).collect();
    let max = (size as usize).max(must.len());
    if picked.len() > max {
        return Err(PolicyError::internal(format!(
            "{} devices picked, {max} asked for",
            picked.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decision, ErrorCode};

    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        priority: i32,
        #[serde(default)]
        queue: u32,
    }

    /// A policy that returns what its config says, to probe the checks.
    struct Probe;

    impl Policy for Probe {
        type Config = Cfg;
        fn metadata() -> Metadata {
            Metadata::new("probe", "0.0.0", "test", &[decision::SELECT_PROGRAM])
        }
        fn validate(c: &Cfg) -> Result<(), PolicyError> {
            if c.priority < 0 {
                return Err(PolicyError::invalid_input("priority: negative"));
            }
            Ok(())
        }
        fn select_program(
            ctx: &Ctx<Cfg>,
            _: &Netdev,
            _: &Pod,
        ) -> Result<ProgramChoice, PolicyError> {
            Ok(ProgramChoice::builtin().with_priority(ctx.config.priority))
        }
        fn assign_queues(ctx: &Ctx<Cfg>, _: &Netdev, _: &Pod) -> Result<QueuePlan, PolicyError> {
            Ok(QueuePlan::queues(vec![ctx.config.queue]))
        }
        fn filter_rules(
            _: &Ctx<Cfg>,
            _: &Netdev,
            _: &Pod,
            addrs: &[IpAddr],
        ) -> Result<Vec<FilterRule>, PolicyError> {
            // Deliberately pin every address to a udp4 rule: v6 ones are inconsistent.
            Ok(addrs
                .iter()
                .map(|a| FilterRule::udp4_dst_port(1).dst_ip(*a).to_queue(0))
                .collect())
        }
    }

    fn pool(json: &str) -> Pool {
        Pool::new("p", json)
    }

    #[test]
    fn config_errors_are_invalid_input_before_the_decision() {
        let dev = Netdev::new("eth0", 4);
        let pod = Pod::new("ns", "a");
        let e =
            select_program::<Probe>(&pool(r#"{"priority": "x"}"#), &dev, &pod).expect_err("type");
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.contains("`priority`"), "{}", e.message);
        let e = select_program::<Probe>(&pool(r#"{"priority": -1}"#), &dev, &pod)
            .expect_err("validate");
        assert_eq!(e, PolicyError::invalid_input("priority: negative"));
        assert!(validate_config::<Probe>(r#"{"nope": 1}"#).is_err());
        assert!(validate_config::<Probe>("").is_ok());
    }

    #[test]
    fn program_checks() {
        let dev = Netdev::new("eth0", 4);
        let pod = Pod::new("ns", "a");
        for (prio, ok) in [
            (1, true),
            (1000, true),
            (50, true),
            (0, false),
            (1001, false),
        ] {
            let r =
                select_program::<Probe>(&pool(&format!(r#"{{"priority": {prio}}}"#)), &dev, &pod);
            assert_eq!(r.is_ok(), ok, "priority {prio}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code, ErrorCode::Internal);
            }
        }
        assert!(check_program(&ProgramChoice {
            source: ProgramSource::File("rel/x.o".into()),
            ..ProgramChoice::builtin()
        })
        .is_err());
        assert!(check_program(&ProgramChoice::image(" ")).is_err());
        assert!(check_program(&ProgramChoice::builtin().with_function("")).is_err());
        assert!(check_program(&ProgramChoice::image("r/x@sha256:00").with_function("f")).is_ok());
    }

    #[test]
    fn queue_plan_checks() {
        let dev = Netdev::new("eth0", 4);
        let cases: &[(QueuePlan, bool)] = &[
            (QueuePlan::queues(vec![0, 1, 2, 3]), true),
            (QueuePlan::queues(vec![4]), false),
            (QueuePlan::queues(vec![]), false),
            (QueuePlan::queues(vec![1, 1]), false),
            (QueuePlan::queues(vec![7]).with_channels(8), true),
            (QueuePlan::queues(vec![2]).with_channels(2), false),
            (QueuePlan::queues(vec![0]).with_channels(0), false),
        ];
        for (plan, ok) in cases {
            assert_eq!(check_queue_plan(plan, &dev).is_ok(), *ok, "{plan:?}");
        }
        // A device reporting 0 queues still has queue 0.
        assert!(check_queue_plan(&QueuePlan::queues(vec![0]), &Netdev::new("x", 0)).is_ok());
        let e =
            assign_queues::<Probe>(&pool(r#"{"queue": 9}"#), &dev, &Pod::default()).expect_err("9");
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.starts_with("assign-queues: "), "{}", e.message);
    }

    #[test]
    fn filter_rule_addresses_and_checks() {
        let dev = Netdev::new("eth0", 4);
        let pod = Pod::default();
        let ok = filter_rules::<Probe>(&pool(""), &dev, &pod, &["10.0.0.1".into()]).expect("v4");
        assert_eq!(ok.len(), 1);
        let e =
            filter_rules::<Probe>(&pool(""), &dev, &pod, &["10.0.0.1/24".into()]).expect_err("bad");
        assert_eq!(e.code, ErrorCode::InvalidInput);
        let e = filter_rules::<Probe>(&pool(""), &dev, &pod, &["fd00::1".into()]).expect_err("v6");
        assert_eq!(e.code, ErrorCode::Internal);
    }

    #[test]
    fn unimplemented_decisions_are_unsupported() {
        let e = preferred_allocation::<Probe>(&pool(""), &[], &[], 1).expect_err("unsupported");
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.message.contains("probe"), "{}", e.message);
    }

    /// (picked, must-include, size, accepted)
    type AllocCase<'a> = (&'a [&'a str], &'a [&'a str], u32, bool);

    #[test]
    fn allocation_checks() {
        let avail = [
            Netdev::new("a", 1),
            Netdev::new("b", 1),
            Netdev::new("c", 1),
        ];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[AllocCase] = &[
            (&["a", "b"], &[], 2, true),
            (&["a"], &[], 2, true), // fewer is allowed (not enough devices)
            (&["a", "a"], &[], 2, false),
            (&["a", "z"], &[], 2, false),
            (&["a", "b", "c"], &[], 2, false),
            (&["a"], &["b"], 2, false),
            (&["b", "a"], &["b"], 2, true),
            (&["z", "a"], &["z"], 2, true), // a must-include need not be available
            (&["a", "b"], &["a", "b"], 1, true),
        ];
        for (picked, must, size, ok) in cases {
            let r = check_allocation(&s(picked), &avail, &s(must), *size);
            assert_eq!(
                r.is_ok(),
                *ok,
                "{picked:?} must {must:?} size {size}: {r:?}"
            );
        }
    }
}
