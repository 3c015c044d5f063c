//! Every decision grows a Vec 1 MiB at a time until allocation fails: the
//! host's memory limit must stop it.
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

fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        hoard.push(std::hint::black_box(chunk));
    }
}

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        metadata("memory-bomb")
    }
    fn validate_config(_: String) -> Result<(), PolicyError> {
        Ok(())
    }
    fn select_program(_: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        bomb()
    }
    fn assign_queues(_: Pool, _: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        bomb()
    }
    fn filter_rules(
        _: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        bomb()
    }
    fn preferred_allocation(
        _: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        bomb()
    }
}

export!(Policy);
