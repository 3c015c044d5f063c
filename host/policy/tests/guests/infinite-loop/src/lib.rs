//! Every decision spins forever (and `validate-config` with config `"loop"`):
//! the host's epoch deadline must end it. With config `"sleep"`,
//! `validate-config` sleeps an hour.
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

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        metadata("infinite-loop")
    }
    fn validate_config(config_json: String) -> Result<(), PolicyError> {
        if config_json == "loop" {
            spin()
        }
        if config_json == "sleep" {
            // Blocks in the host, where epoch interruption cannot reach: the
            // host must refuse to sleep.
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        Ok(())
    }
    fn select_program(_: Pool, _: Netdev, _: Pod) -> Result<ProgramChoice, PolicyError> {
        spin()
    }
    fn assign_queues(_: Pool, _: Netdev, _: Pod) -> Result<QueuePlan, PolicyError> {
        spin()
    }
    fn filter_rules(
        _: Pool,
        _: Netdev,
        _: Pod,
        _: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        spin()
    }
    fn preferred_allocation(
        _: Pool,
        _: Vec<Netdev>,
        _: Vec<String>,
        _: u32,
    ) -> Result<Vec<String>, PolicyError> {
        spin()
    }
}

export!(Policy);
