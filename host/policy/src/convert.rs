//! Domain ↔ WIT conversion, in one place.
//!
//! Inputs (host → guest) cannot fail. Outputs (guest → host) are parsed here:
//! text addresses become [`IpAddr`]s, paths become [`PathBuf`]s, and every
//! string the guest returns is bounded by [`MAX_STRING`]. Semantic checks
//! (queue ranges, families, priorities) are in [`crate::validate`].

use std::net::IpAddr;
use std::path::PathBuf;

use crate::bindings::afxdp::policy::types as wit;
use crate::error::DecisionError;
use crate::types::{
    Decision, FilterRule, FlowType, GuestErrorCode, Metadata, Netdev, Pod, ProgramChoice,
    ProgramSource, QueuePlan, RuleAction, XdpMode,
};

/// Longest string accepted from a guest, bytes.
pub const MAX_STRING: usize = 4096;

type Invalid = DecisionError;

pub(crate) fn pool(name: &str, config_json: &str) -> wit::Pool {
    wit::Pool {
        name: name.to_string(),
        config_json: config_json.to_string(),
    }
}

pub(crate) fn netdev(d: &Netdev) -> wit::Netdev {
    wit::Netdev {
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

pub(crate) fn pod(p: &Pod) -> wit::Pod {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    wit::Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        annotations: pairs(&p.annotations),
        labels: pairs(&p.labels),
        requested: p.requested,
    }
}

pub(crate) fn addresses(a: &[IpAddr]) -> Vec<String> {
    a.iter().map(IpAddr::to_string).collect()
}

/// `s` if it is at most [`MAX_STRING`] bytes.
pub(crate) fn bounded(what: &str, s: String) -> Result<String, Invalid> {
    if s.len() > MAX_STRING {
        return Err(DecisionError::invalid(format!(
            "{what} is {} bytes, more than {MAX_STRING}",
            s.len()
        )));
    }
    Ok(s)
}

/// `s` cut to [`MAX_STRING`] bytes at a character boundary (for messages,
/// which are shown rather than refused).
pub(crate) fn truncated(mut s: String) -> String {
    if s.len() > MAX_STRING {
        let mut end = MAX_STRING;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

pub(crate) fn guest_error(e: wit::PolicyError) -> DecisionError {
    DecisionError::Guest {
        code: match e.code {
            wit::ErrorCode::InvalidInput => GuestErrorCode::InvalidInput,
            wit::ErrorCode::Unsupported => GuestErrorCode::Unsupported,
            wit::ErrorCode::Denied => GuestErrorCode::Denied,
            wit::ErrorCode::Internal => GuestErrorCode::Internal,
        },
        message: truncated(e.message),
    }
}

pub(crate) fn program_choice(c: wit::ProgramChoice) -> Result<ProgramChoice, Invalid> {
    let source = match c.source {
        wit::ProgramSource::Builtin => ProgramSource::Builtin,
        wit::ProgramSource::File(p) => ProgramSource::File(PathBuf::from(bounded("file path", p)?)),
        wit::ProgramSource::Image(i) => ProgramSource::Image(bounded("image reference", i)?),
    };
    Ok(ProgramChoice {
        source,
        function: c
            .function
            .map(|f| bounded("function name", f))
            .transpose()?,
        mode: match c.mode {
            wit::XdpMode::Native => XdpMode::Native,
            wit::XdpMode::Generic => XdpMode::Generic,
            wit::XdpMode::Auto => XdpMode::Auto,
        },
        priority: c.priority,
    })
}

pub(crate) fn queue_plan(p: wit::QueuePlan) -> QueuePlan {
    QueuePlan {
        channels: p.channels,
        queues: p.queues,
    }
}

fn ip(what: &str, index: usize, s: Option<String>) -> Result<Option<IpAddr>, Invalid> {
    let Some(s) = s else { return Ok(None) };
    let s = bounded(what, s)?;
    s.parse::<IpAddr>().map(Some).map_err(|_| {
        DecisionError::invalid(format!(
            "rule {index}: {what} {:?} is not an IP address",
            truncated(s.clone())
        ))
    })
}

pub(crate) fn filter_rule(index: usize, r: wit::FilterRule) -> Result<FilterRule, Invalid> {
    Ok(FilterRule {
        flow_type: match r.flow_type {
            wit::FlowType::Tcp4 => FlowType::Tcp4,
            wit::FlowType::Udp4 => FlowType::Udp4,
            wit::FlowType::Sctp4 => FlowType::Sctp4,
            wit::FlowType::Tcp6 => FlowType::Tcp6,
            wit::FlowType::Udp6 => FlowType::Udp6,
            wit::FlowType::Sctp6 => FlowType::Sctp6,
        },
        src_ip: ip("src-ip", index, r.src_ip)?,
        src_ip_mask: ip("src-ip-mask", index, r.src_ip_mask)?,
        dst_ip: ip("dst-ip", index, r.dst_ip)?,
        dst_ip_mask: ip("dst-ip-mask", index, r.dst_ip_mask)?,
        src_port: r.src_port,
        src_port_mask: r.src_port_mask,
        dst_port: r.dst_port,
        dst_port_mask: r.dst_port_mask,
        action: match r.action {
            wit::RuleAction::Queue(q) => RuleAction::Queue(q),
            wit::RuleAction::Drop => RuleAction::Drop,
        },
    })
}

pub(crate) fn device_names(names: Vec<String>) -> Result<Vec<String>, Invalid> {
    names
        .into_iter()
        .map(|n| bounded("device name", n))
        .collect()
}

/// Metadata with unknown decision names dropped (returned separately so the
/// caller can warn).
pub(crate) fn metadata(m: wit::PolicyMetadata) -> Result<(Metadata, Vec<String>), Invalid> {
    let mut decisions = Vec::new();
    let mut unknown = Vec::new();
    for d in m.decisions {
        let d = bounded("decision name", d)?;
        match d.parse::<Decision>() {
            Ok(d) if !decisions.contains(&d) => decisions.push(d),
            Ok(_) => {}
            Err(()) => unknown.push(d),
        }
    }
    Ok((
        Metadata {
            name: bounded("name", m.name)?,
            version: bounded("version", m.version)?,
            description: bounded("description", m.description)?,
            decisions,
        },
        unknown,
    ))
}
