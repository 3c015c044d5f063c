//! Answers far larger than any sane decision: the host must refuse them.
//!
//! - `filter-rules`: as many rules as the pool config says (default 100000).
//! - `select-program`: a 1 MiB file path.
//! - `assign-queues`: a million queue ids.
//! - `preferred-allocation`: 100000 device names.
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
        metadata("huge-output")
    }
    fn validate_config(_: String) -> Result<(), PolicyError> {
        Ok(())
    }
    fn select_program(_: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        Ok(ProgramChoice {
            source: ProgramSource::File(format!("/{}", "x".repeat(1 << 20))),
            function: None,
            mode: XdpMode::Native,
            priority: 50,
        })
    }
    fn assign_queues(_: Pool, _: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        Ok(QueuePlan {
            channels: None,
            queues: (0..1_000_000).collect(),
        })
    }
    fn filter_rules(
        pool: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        let n: u32 = pool.config_json.trim().parse().unwrap_or(100_000);
        Ok((0..n)
            .map(|i| FilterRule {
                flow_type: FlowType::Udp4,
                src_ip: None,
                src_ip_mask: None,
                dst_ip: None,
                dst_ip_mask: None,
                src_port: None,
                src_port_mask: None,
                dst_port: Some(i as u16),
                dst_port_mask: None,
                action: RuleAction::Drop,
            })
            .collect())
    }
    fn preferred_allocation(
        _: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        Ok((0..100_000).map(|i| format!("dev{i}")).collect())
    }
}

export!(Policy);
