//! The host's checks on every decision, whoever made it.
//!
//! A policy is code the operator chose, not code the host trusts: every answer
//! goes through these functions before afxdp-dp acts on it. Each returns
//! [`DecisionError::InvalidDecision`] naming the first problem found.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Component;

use crate::convert::MAX_STRING;
use crate::error::DecisionError;
use crate::types::{FilterRule, Netdev, ProgramChoice, ProgramSource, QueuePlan, RuleAction};

/// Most queue ids in a plan, and most channels.
pub const MAX_QUEUES: usize = 4096;
/// Most filter rules for one device.
pub const MAX_RULES: usize = 4096;
/// Most devices in a preferred allocation.
pub const MAX_DEVICES: usize = 4096;
/// Lowest and highest bpfman priority.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = 1..=1000;

type Result<T = (), E = DecisionError> = std::result::Result<T, E>;

fn invalid<T>(detail: String) -> Result<T> {
    Err(DecisionError::InvalidDecision { detail })
}

fn printable(what: &str, s: &str) -> Result {
    if s.is_empty() {
        return invalid(format!("{what} is empty"));
    }
    if s.len() > MAX_STRING {
        return invalid(format!("{what} is longer than {MAX_STRING} bytes"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return invalid(format!(
            "{what} {s:?} contains whitespace or control characters"
        ));
    }
    Ok(())
}

/// A program choice: priority in [`PRIORITY_RANGE`]; a file source is an
/// absolute path without `..`; an image reference and a function name are
/// non-empty, printable, without whitespace, at most 4 KiB.
pub fn program(choice: &ProgramChoice) -> Result {
    if !PRIORITY_RANGE.contains(&choice.priority) {
        return invalid(format!(
            "priority {} is outside {}..={}",
            choice.priority,
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        ));
    }
    match &choice.source {
        ProgramSource::Builtin => {}
        ProgramSource::File(path) => {
            let Some(text) = path.to_str() else {
                return invalid("program path is not UTF-8".into());
            };
            printable("program path", text)?;
            if !path.is_absolute() {
                return invalid(format!("program path {text:?} is not absolute"));
            }
            if path.components().any(|c| c == Component::ParentDir) {
                return invalid(format!("program path {text:?} contains `..`"));
            }
        }
        ProgramSource::Image(image) => printable("image reference", image)?,
    }
    if let Some(f) = &choice.function {
        printable("function name", f)?;
    }
    Ok(())
}

/// A queue plan for `device`: `channels`, when set, is `1..=` the device's
/// maximum (when known, else [`MAX_QUEUES`]); queue ids are unique, at least
/// one, at most [`MAX_QUEUES`], each below the channel count (or the device's
/// rx queues when `channels` is unset).
pub fn queue_plan(plan: &QueuePlan, device: &Netdev) -> Result {
    if let Some(c) = plan.channels {
        let max = device
            .max_channels
            .unwrap_or(MAX_QUEUES as u32)
            .min(MAX_QUEUES as u32);
        if c == 0 || c > max {
            return invalid(format!(
                "channels {c} for {} is outside 1..={max}",
                device.name
            ));
        }
    }
    if plan.queues.is_empty() {
        return invalid(format!("no queues for {}", device.name));
    }
    if plan.queues.len() > MAX_QUEUES {
        return invalid(format!(
            "{} queues for {}, more than {MAX_QUEUES}",
            plan.queues.len(),
            device.name
        ));
    }
    let limit = plan.channels.unwrap_or(device.rx_queues);
    let mut seen = HashSet::with_capacity(plan.queues.len());
    for &q in &plan.queues {
        if q >= limit {
            return invalid(format!(
                "queue {q} on {} is not below its {limit} queues",
                device.name
            ));
        }
        if !seen.insert(q) {
            return invalid(format!("queue {q} on {} listed twice", device.name));
        }
    }
    Ok(())
}

fn family(
    index: usize,
    what: &str,
    v6: bool,
    addr: Option<IpAddr>,
    mask: Option<IpAddr>,
) -> Result {
    for (name, a) in [(what.to_string(), addr), (format!("{what}-mask"), mask)] {
        if let Some(a) = a {
            if a.is_ipv6() != v6 {
                return invalid(format!(
                    "rule {index}: {name} {a} is not {}",
                    if v6 { "IPv6" } else { "IPv4" }
                ));
            }
        }
    }
    if addr.is_none() && mask.is_some() {
        return invalid(format!("rule {index}: {what}-mask without {what}"));
    }
    Ok(())
}

/// Filter rules for `device`: at most [`MAX_RULES`]; every address and mask
/// of the flow type's family; a mask only with its value; a `queue` action
/// below the device's rx queues.
///
/// Pass the device as it will be once the pod's queue plan is applied (its
/// `rx_queues` = the plan's channel count when the plan changes channels).
pub fn filter_rules(rules: &[FilterRule], device: &Netdev) -> Result {
    if rules.len() > MAX_RULES {
        return invalid(format!(
            "{} filter rules for {}, more than {MAX_RULES}",
            rules.len(),
            device.name
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        let v6 = r.flow_type.is_ipv6();
        family(i, "src-ip", v6, r.src_ip, r.src_ip_mask)?;
        family(i, "dst-ip", v6, r.dst_ip, r.dst_ip_mask)?;
        if r.src_port.is_none() && r.src_port_mask.is_some() {
            return invalid(format!("rule {i}: src-port-mask without src-port"));
        }
        if r.dst_port.is_none() && r.dst_port_mask.is_some() {
            return invalid(format!("rule {i}: dst-port-mask without dst-port"));
        }
        if let RuleAction::Queue(q) = r.action {
            if q >= device.rx_queues {
                return invalid(format!(
                    "rule {i}: queue {q} on {} is not below its {} queues",
                    device.name, device.rx_queues
                ));
            }
        }
    }
    Ok(())
}

/// The length a preferred allocation must have: `size`, or fewer when fewer
/// devices exist, but never fewer than `must_include`.
pub fn allocation_len(available: &[Netdev], must_include: &[String], size: usize) -> usize {
    let mut all: HashSet<&str> = available.iter().map(|d| d.name.as_str()).collect();
    all.extend(must_include.iter().map(String::as_str));
    let must: HashSet<&str> = must_include.iter().map(String::as_str).collect();
    size.min(all.len()).max(must.len())
}

/// A preferred allocation: no duplicates; every name available (or in
/// `must_include`); every `must_include` present; exactly
/// [`allocation_len`] names.
pub fn preferred_allocation(
    picked: &[String],
    available: &[Netdev],
    must_include: &[String],
    size: usize,
) -> Result {
    if picked.len() > MAX_DEVICES {
        return invalid(format!(
            "{} devices in the preferred allocation, more than {MAX_DEVICES}",
            picked.len()
        ));
    }
    let mut seen = HashSet::with_capacity(picked.len());
    for name in picked {
        if !seen.insert(name.as_str()) {
            return invalid(format!("device {name:?} listed twice"));
        }
        if !available.iter().any(|d| &d.name == name) && !must_include.contains(name) {
            return invalid(format!("device {name:?} is not available"));
        }
    }
    if let Some(missing) = must_include.iter().find(|m| !seen.contains(m.as_str())) {
        return invalid(format!("must-include device {missing:?} is missing"));
    }
    let want = allocation_len(available, must_include, size);
    if picked.len() != want {
        return invalid(format!(
            "{} devices in the preferred allocation, expected {want}",
            picked.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FlowType, XdpMode};
    use std::path::PathBuf;

    fn choice(source: ProgramSource, priority: i32) -> ProgramChoice {
        ProgramChoice {
            source,
            function: None,
            mode: XdpMode::Native,
            priority,
        }
    }

    #[test]
    fn programs() {
        assert!(program(&choice(ProgramSource::Builtin, 50)).is_ok());
        assert!(program(&choice(ProgramSource::Builtin, 0)).is_err());
        assert!(program(&choice(ProgramSource::Builtin, 1001)).is_err());
        assert!(program(&choice(ProgramSource::File(PathBuf::from("/opt/x.o")), 1)).is_ok());
        assert!(program(&choice(ProgramSource::File(PathBuf::from("x.o")), 1)).is_err());
        assert!(program(&choice(ProgramSource::File(PathBuf::from("/a/../x.o")), 1)).is_err());
        assert!(program(&choice(
            ProgramSource::Image("quay.io/x@sha256:ab".into()),
            1
        ))
        .is_ok());
        assert!(program(&choice(ProgramSource::Image("a b".into()), 1)).is_err());
        assert!(program(&choice(ProgramSource::Image(String::new()), 1)).is_err());
        let mut c = choice(ProgramSource::Builtin, 5);
        c.function = Some(String::new());
        assert!(program(&c).is_err());
    }

    #[test]
    fn queue_plans() {
        let mut dev = Netdev::new("eth0", 4);
        let plan = |channels, queues: &[u32]| QueuePlan {
            channels,
            queues: queues.to_vec(),
        };
        assert!(queue_plan(&plan(None, &[0, 3]), &dev).is_ok());
        assert!(queue_plan(&plan(None, &[4]), &dev).is_err());
        assert!(queue_plan(&plan(None, &[1, 1]), &dev).is_err());
        assert!(queue_plan(&plan(None, &[]), &dev).is_err());
        assert!(queue_plan(&plan(Some(8), &[7]), &dev).is_ok());
        assert!(queue_plan(&plan(Some(0), &[0]), &dev).is_err());
        dev.max_channels = Some(6);
        assert!(queue_plan(&plan(Some(8), &[7]), &dev).is_err());
        assert!(queue_plan(&plan(Some(6), &[5]), &dev).is_ok());
    }

    fn rule(flow_type: FlowType, dst: Option<&str>, mask: Option<&str>) -> FilterRule {
        FilterRule {
            flow_type,
            src_ip: None,
            src_ip_mask: None,
            dst_ip: dst.map(|s| s.parse().unwrap()),
            dst_ip_mask: mask.map(|s| s.parse().unwrap()),
            src_port: None,
            src_port_mask: None,
            dst_port: Some(4791),
            dst_port_mask: None,
            action: RuleAction::Queue(1),
        }
    }

    #[test]
    fn rules() {
        let dev = Netdev::new("eth0", 2);
        let ok = rule(FlowType::Udp4, Some("10.0.0.1"), Some("255.255.255.0"));
        assert!(filter_rules(std::slice::from_ref(&ok), &dev).is_ok());
        assert!(filter_rules(&[rule(FlowType::Udp6, Some("10.0.0.1"), None)], &dev).is_err());
        assert!(filter_rules(&[rule(FlowType::Udp4, Some("10.0.0.1"), Some("::"))], &dev).is_err());
        assert!(filter_rules(&[rule(FlowType::Tcp6, None, Some("ffff::"))], &dev).is_err());
        assert!(filter_rules(&[rule(FlowType::Tcp6, Some("fd00::1"), None)], &dev).is_ok());
        let mut far = ok.clone();
        far.action = RuleAction::Queue(2);
        assert!(filter_rules(&[far], &dev).is_err());
        let mut port_mask = ok.clone();
        port_mask.src_port_mask = Some(0xff00);
        assert!(filter_rules(&[port_mask], &dev).is_err());
        assert!(filter_rules(&vec![ok; MAX_RULES + 1], &dev).is_err());
    }

    #[test]
    fn allocations() {
        let avail = vec![
            Netdev::new("a", 1),
            Netdev::new("b", 1),
            Netdev::new("c", 1),
        ];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(preferred_allocation(&s(&["a", "b"]), &avail, &s(&["b"]), 2).is_ok());
        assert!(preferred_allocation(&s(&["a", "c"]), &avail, &s(&["b"]), 2).is_err());
        assert!(preferred_allocation(&s(&["a", "a"]), &avail, &[], 2).is_err());
        assert!(preferred_allocation(&s(&["a", "x"]), &avail, &[], 2).is_err());
        assert!(preferred_allocation(&s(&["a"]), &avail, &[], 2).is_err());
        assert!(preferred_allocation(&s(&["a", "b", "c"]), &avail, &[], 5).is_ok());
        assert!(preferred_allocation(&s(&["a", "b"]), &avail, &s(&["a", "b"]), 1).is_ok());
    }
}
