//! A pool's configured filter rules (upstream `ethtoolCmds`' `-N` rules,
//! translated by `afxdp_config::ethtool_cmd`), made concrete for one pod at
//! CNI ADD: `-ip-` becomes the pod's IPAM address of the rule's family and a
//! bare `action` the first queue of the device's plan. They are the
//! FilterRules decision of a pool whose policy does not decide it, and they
//! are required (a device refusing them fails the ADD), as upstream's
//! ethtool run was.

use std::net::IpAddr;

use afxdp_config::ethtool_cmd::{AddrSpec, NtupleFlow, NtupleTarget, NtupleTemplate};
use afxdp_policy::{FilterRule, FlowType, RuleAction};

use super::AllocateError;

/// `templates` for a pod with `addresses` on a device whose plan is
/// `queues`.
///
/// # Errors
/// [`AllocateError::FilterTemplate`] naming the command: `-ip-` without a
/// pod address of the rule's family, or a bare `action` with no queue.
pub(super) fn concrete(
    pool: &str,
    templates: &[NtupleTemplate],
    addresses: &[IpAddr],
    queues: &[u32],
) -> Result<Vec<FilterRule>, AllocateError> {
    templates
        .iter()
        .map(|t| {
            rule(t, addresses, queues).map_err(|why| AllocateError::FilterTemplate {
                pool: pool.into(),
                command: t.text.clone(),
                why,
            })
        })
        .collect()
}

fn rule(t: &NtupleTemplate, addresses: &[IpAddr], queues: &[u32]) -> Result<FilterRule, String> {
    let v6 = t.flow_type.is_ipv6();
    let addr = |spec: Option<AddrSpec>| -> Result<Option<IpAddr>, String> {
        match spec {
            None => Ok(None),
            Some(AddrSpec::Literal(ip)) => Ok(Some(ip)),
            Some(AddrSpec::PodAddress) => addresses
                .iter()
                .find(|a| a.is_ipv6() == v6)
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "-ip- needs the pod's IPv{} address; IPAM gave none",
                        if v6 { 6 } else { 4 }
                    )
                }),
        }
    };
    let action = match t.action {
        NtupleTarget::Queue(q) => RuleAction::Queue(q),
        NtupleTarget::Drop => RuleAction::Drop,
        NtupleTarget::FirstQueue => RuleAction::Queue(
            *queues
                .first()
                .ok_or("a bare action steers to the first planned queue; the plan has none")?,
        ),
    };
    Ok(FilterRule {
        flow_type: flow(t.flow_type),
        src_ip: addr(t.src_ip)?,
        src_ip_mask: t.src_ip_mask,
        dst_ip: addr(t.dst_ip)?,
        dst_ip_mask: t.dst_ip_mask,
        src_port: t.src_port,
        src_port_mask: t.src_port_mask,
        dst_port: t.dst_port,
        dst_port_mask: t.dst_port_mask,
        action,
    })
}

fn flow(f: NtupleFlow) -> FlowType {
    match f {
        NtupleFlow::Tcp4 => FlowType::Tcp4,
        NtupleFlow::Udp4 => FlowType::Udp4,
        NtupleFlow::Sctp4 => FlowType::Sctp4,
        NtupleFlow::Tcp6 => FlowType::Tcp6,
        NtupleFlow::Udp6 => FlowType::Udp6,
        NtupleFlow::Sctp6 => FlowType::Sctp6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_config::ethtool_cmd::{translate, EthtoolOp};

    fn template(cmd: &str) -> NtupleTemplate {
        match translate(cmd) {
            Ok(EthtoolOp::Ntuple(t)) => t,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    #[test]
    fn pod_address_and_first_queue_substituted() {
        let t = template("-N -device- flow-type udp4 dst-ip -ip- dst-port 4242 action");
        let addrs: Vec<IpAddr> = vec!["fd00::5".parse().unwrap(), "10.1.0.7".parse().unwrap()];
        let rules = concrete("p", &[t], &addrs, &[2, 3]).unwrap();
        assert_eq!(rules[0].dst_ip, Some("10.1.0.7".parse().unwrap()));
        assert_eq!(rules[0].dst_port, Some(4242));
        assert_eq!(rules[0].action, RuleAction::Queue(2));
    }

    #[test]
    fn missing_family_names_the_command() {
        let t = template("-N -device- flow-type tcp6 dst-ip -ip- action 1");
        let err = concrete("p", &[t], &["10.1.0.7".parse().unwrap()], &[0]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("flow-type tcp6") && msg.contains("IPv6"),
            "{msg}"
        );
    }
}
