//! The environment contract between afxdp-dp's Allocate and the pod: which
//! variables name the pod's devices and the queues its sockets should bind.

/// An env-var-safe suffix: upper case, every non-alphanumeric character as `_`.
fn suffix(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `AFXDP_DEVICES_<POOL>`: the space-separated devices of a pool.
pub fn devices_env_name(pool: &str) -> String {
    format!("AFXDP_DEVICES_{}", suffix(pool))
}

/// `AFXDP_QUEUES_<DEVICE>`: the comma-separated queue ids to bind on a device.
pub fn queues_env_name(device: &str) -> String {
    format!("AFXDP_QUEUES_{}", suffix(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_env_safe() {
        assert_eq!(devices_env_name("fast-net"), "AFXDP_DEVICES_FAST_NET");
        assert_eq!(queues_env_name("ens801f0.10"), "AFXDP_QUEUES_ENS801F0_10");
    }
}
