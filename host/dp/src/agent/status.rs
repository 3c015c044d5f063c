//! What `afxdpctl status` shows: every pool, its devices with their health
//! and allocation, and the policy deciding for it (served as JSON on
//! `/status`, see `crate::observe`).

use serde_json::{json, Value};

use super::Agent;

impl Agent {
    /// The daemon's pools, devices, allocations and deciding policies.
    pub fn status(&self) -> Value {
        let inner = self.lock();
        let pools: Vec<Value> = inner
            .inventory
            .pools()
            .map(|p| {
                let name = &p.config.name;
                let alloc = |d: &str| inner.state.allocations.contains_key(d);
                let health: std::collections::BTreeMap<String, String> = inner
                    .inventory
                    .device_list(name, &alloc)
                    .into_iter()
                    .map(|d| (d.id, d.health))
                    .collect();
                let devices: Vec<Value> = p
                    .devices
                    .iter()
                    .map(|(d, dev)| {
                        let a = inner.state.allocations.get(d);
                        json!({
                            "name": d,
                            "health": health.get(d),
                            "unhealthyReason": inner.unhealthy_reason(d),
                            "leaving": dev.leaving,
                            "allocation": a.map(|a| json!({
                                "pod": a.claim.as_ref().map_or(a.pod.as_str(), |c| c.pod.as_str()),
                                "container": a.claim.as_ref().map(|c| c.container_id.as_str()),
                                "program": a.program,
                                "programId": a.program_id,
                                "sharing": a.sharing.as_str(),
                                "decidedBy": a.decided_by,
                                "allocatedAt": a.allocated_at,
                                "recovered": a.recovered,
                            })),
                        })
                    })
                    .collect();
                let policy = self.policies.as_ref().map(|s| {
                    json!({
                        "inForce": s.get(name).map(|p| p.digest.clone()),
                        "failure": s.failure(name).map(|f| json!({"reason": f.reason, "attempts": f.attempts})),
                    })
                });
                // A pool the config dropped, served while it holds devices.
                let retiring = inner.target.pool(name).is_none();
                json!({ "name": name, "retiring": retiring, "devices": devices, "policy": policy })
            })
            .collect();
        json!({ "pools": pools })
    }
}
