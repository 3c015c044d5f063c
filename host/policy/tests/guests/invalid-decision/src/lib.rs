//! Well-formed but wrong answers: the host must refuse each.
//!
//! - `select-program`: a relative object path and priority 0.
//! - `assign-queues`: a queue id past the device's queues.
//! - `filter-rules`: a rule whose source address is not an IP.
//! - `preferred-allocation`: a device that is not available.
wit_bindgen::generate!({
    path: "../../../../../wit",
    world: "pool-policy",
});

use afxdp::policy::types::{
    FilterRule, Netdev, Pod, PolicyError, PolicyMetadata, Pool, ProgramChoice, QueuePlan,
};
use exports::afxdp::policy::decisions::Guest;

fn metadata(name: &str) -> PolicyMetadata {
    PolicyMetadata {
        name: name.into(),
        version: "0.1.0".into(),
        description: "hostile test policy".into(),
        decisions: vec![
            "select-program".into(),
            "assign-queues".into(),
            "filter-rules".into(),
            "preferred-allocation".into(),
        ],
    }
}

use afxdp::policy::types::{FlowType, ProgramSource, RuleAction, XdpMode};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        metadata("invalid-decision")
    }
    fn validate_config(_: String) -> Result<(), PolicyError> {
        Ok(())
    }
    fn select_program(_: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        Ok(ProgramChoice {
            source: ProgramSource::File("relative/prog.o".into()),
            function: None,
            mode: XdpMode::Native,
            priority: 0,
        })
    }
    fn assign_queues(_: Pool, device: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        Ok(QueuePlan {
            channels: None,
            queues: vec![0, device.rx_queues + 5],
        })
    }
    fn filter_rules(
        _: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        Ok(vec![FilterRule {
            flow_type: FlowType::Tcp4,
            src_ip: Some("999.1.1.1".into()),
            src_ip_mask: None,
            dst_ip: None,
            dst_ip_mask: None,
            src_port: None,
            src_port_mask: None,
            dst_port: Some(80),
            dst_port_mask: None,
            action: RuleAction::Queue(0),
        }])
    }
    fn preferred_allocation(
        _: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        Ok(vec!["no-such-dev".into()])
    }
}

export!(Policy);
