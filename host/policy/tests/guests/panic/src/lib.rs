//! Every decision writes a line to stderr, then panics (a trap on wasm32):
//! the host must report the trap with the captured stderr.
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

fn fail(pool: &Pool) -> ! {
    eprintln!("panic-guest: about to fail for pool {}", pool.name);
    panic!("panic-guest: deliberate panic");
}

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        metadata("panic")
    }
    fn validate_config(_: String) -> Result<(), PolicyError> {
        Ok(())
    }
    fn select_program(pool: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        fail(&pool)
    }
    fn assign_queues(pool: Pool, _: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        fail(&pool)
    }
    fn filter_rules(
        pool: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        fail(&pool)
    }
    fn preferred_allocation(
        pool: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        fail(&pool)
    }
}

export!(Policy);
