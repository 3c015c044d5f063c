//! The well-behaved policy built against a copy of the WIT at version 0.2.0.
//!
//! A policy that makes simple, valid decisions driven by its config:
//!
//! ```json
//! {"mode": "native|generic|auto", "priority": 50, "queues": 2,
//!  "port": 4791, "deny": false, "log": false}
//! ```
//!
//! - `select-program`: the pod annotation `afxdp.io/program` (an absolute
//!   path) or the builtin program, in `mode` with `priority`.
//! - `assign-queues`: the first `queues` rx queues (all when unset).
//! - `filter-rules`: one UDP rule per address steering `port` to queue 0.
//! - `preferred-allocation`: `must-include`, then the rest by name.
//! - `deny: true` refuses every pod (`denied`).

use serde::Deserialize;

wit_bindgen::generate!({
    path: "wit",
    world: "pool-policy",
});

use afxdp::policy::host::log;
use afxdp::policy::types::{
    ErrorCode, FilterRule, FlowType, LogLevel, Netdev, Pod, PolicyError, PolicyMetadata, Pool,
    ProgramChoice, ProgramSource, QueuePlan, RuleAction, XdpMode,
};
use exports::afxdp::policy::decisions::Guest;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Option<String>,
    priority: Option<i32>,
    queues: Option<u32>,
    port: Option<u16>,
    #[serde(default)]
    deny: bool,
    #[serde(default)]
    log: bool,
}

fn invalid(message: String) -> PolicyError {
    PolicyError {
        code: ErrorCode::InvalidInput,
        message,
    }
}

fn config(json: &str) -> Result<Config, PolicyError> {
    if json.trim().is_empty() {
        return Ok(Config::default());
    }
    let c: Config = serde_json::from_str(json).map_err(|e| invalid(format!("config: {e}")))?;
    if let Some(m) = &c.mode {
        if !matches!(m.as_str(), "native" | "generic" | "auto") {
            return Err(invalid(format!("config: unknown mode {m:?}")));
        }
    }
    Ok(c)
}

fn pool_config(pool: &Pool) -> Result<Config, PolicyError> {
    let c = config(&pool.config_json)?;
    if c.deny {
        return Err(PolicyError {
            code: ErrorCode::Denied,
            message: format!("pool {} denies every pod", pool.name),
        });
    }
    if c.log {
        log(LogLevel::Info, &format!("deciding for pool {}", pool.name));
    }
    Ok(c)
}

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "wrong-version".into(),
            version: "0.1.0".into(),
            description: "test policy with simple config-driven decisions".into(),
            decisions: vec![
                "select-program".into(),
                "assign-queues".into(),
                "filter-rules".into(),
                "preferred-allocation".into(),
            ],
        }
    }

    fn validate_config(config_json: String) -> Result<(), PolicyError> {
        config(&config_json).map(|_| ())
    }

    fn select_program(pool: Pool, _device: Netdev, pod: Pod) -> Result<ProgramChoice, PolicyError> {
        let c = pool_config(&pool)?;
        let source = pod
            .annotations
            .iter()
            .find(|(k, _)| k == "afxdp.io/program")
            .map(|(_, v)| ProgramSource::File(v.clone()))
            .unwrap_or(ProgramSource::Builtin);
        let mode = match c.mode.as_deref() {
            Some("generic") => XdpMode::Generic,
            Some("auto") => XdpMode::Auto,
            _ => XdpMode::Native,
        };
        Ok(ProgramChoice {
            source,
            function: None,
            mode,
            priority: c.priority.unwrap_or(50),
        })
    }

    fn assign_queues(pool: Pool, device: Netdev, _pod: Pod) -> Result<QueuePlan, PolicyError> {
        let c = pool_config(&pool)?;
        let n = c
            .queues
            .unwrap_or(device.rx_queues)
            .min(device.rx_queues)
            .max(1);
        Ok(QueuePlan {
            channels: None,
            queues: (0..n).collect(),
        })
    }

    fn filter_rules(
        pool: Pool,
        _device: Netdev,
        _pod: Pod,
        addresses: Vec<String>,
    ) -> Result<Vec<FilterRule>, PolicyError> {
        let c = pool_config(&pool)?;
        let Some(port) = c.port else {
            return Ok(Vec::new());
        };
        Ok(addresses
            .into_iter()
            .map(|a| FilterRule {
                flow_type: if a.contains(':') {
                    FlowType::Udp6
                } else {
                    FlowType::Udp4
                },
                src_ip: None,
                src_ip_mask: None,
                dst_ip: Some(a),
                dst_ip_mask: None,
                src_port: None,
                src_port_mask: None,
                dst_port: Some(port),
                dst_port_mask: None,
                action: RuleAction::Queue(0),
            })
            .collect())
    }

    fn preferred_allocation(
        pool: Pool,
        available: Vec<Netdev>,
        must_include: Vec<String>,
        size: u32,
    ) -> Result<Vec<String>, PolicyError> {
        pool_config(&pool)?;
        let mut picked = must_include;
        let mut rest: Vec<String> = available
            .into_iter()
            .map(|d| d.name)
            .filter(|n| !picked.contains(n))
            .collect();
        rest.sort();
        for n in rest {
            if picked.len() >= size as usize {
                break;
            }
            picked.push(n);
        }
        Ok(picked)
    }
}

export!(Policy);
