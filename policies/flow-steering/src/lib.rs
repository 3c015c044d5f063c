//! `flow-steering`: NIC ntuple rules from pod annotations, steering the
//! ports a pod lists to its AF_XDP queues.
//!
//! - `filter-rules`: the pod's annotations [`UDP_PORTS`]
//!   (`afxdp.io/udp-ports: "4789,9000"`) and [`TCP_PORTS`] list destination
//!   ports (validated: 1..=65535, no duplicates, at most `maxPorts` per
//!   annotation; a bad value is `invalid-input` naming the annotation). The
//!   ports, UDP first then TCP, in annotation order, are steered to the
//!   pod's queues round-robin. With `matchAddress: true` every rule also
//!   matches one of the pod's addresses (the `addresses` argument; one rule
//!   per port and address, flow type from the address's IP version; no
//!   address is `invalid-input`); otherwise rules are IPv4 (and IPv6 too
//!   with `ipv6: true`). No annotation, no rules.
//! - `assign-queues`: queues `0..queues` (config, default 1; at most the
//!   channel count set, or the device's rx queues), channels set to
//!   `channels` when configured.
//! - `select-program`, `preferred-allocation`: not made (the host's defaults).
//!
//! Config (all optional):
//!
//! ```json
//! { "queues": 2, "channels": 4, "matchAddress": true, "ipv6": false,
//!   "maxPorts": 16, "maxRules": 128 }
//! ```

use std::net::IpAddr;

use afxdp_policy_sdk::prelude::*;

/// Annotation listing the UDP destination ports to steer.
pub const UDP_PORTS: &str = "afxdp.io/udp-ports";
/// Annotation listing the TCP destination ports to steer.
pub const TCP_PORTS: &str = "afxdp.io/tcp-ports";

/// The pool's config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// Queues a pod binds on each device (default 1).
    pub queues: u32,
    /// Channel count to set; `None` leaves the NIC as it is.
    pub channels: Option<u32>,
    /// Match the pod's addresses as destination in every rule.
    pub match_address: bool,
    /// Without `match_address`: add IPv6 rules beside the IPv4 ones.
    pub ipv6: bool,
    /// Most ports per annotation (default 16, at most 1024).
    pub max_ports: usize,
    /// Most rules per device (default 128, at most 4096).
    pub max_rules: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queues: 1,
            channels: None,
            match_address: false,
            ipv6: false,
            max_ports: 16,
            max_rules: 128,
        }
    }
}

/// The flow-steering policy.
pub struct FlowSteering;

/// Config checks beyond the types.
pub fn validate(c: &Config) -> Result<(), PolicyError> {
    let bad = |m: String| Err(PolicyError::invalid_input(m));
    if c.queues == 0 || c.queues > 1024 {
        return bad(format!("queues: {} is outside 1..=1024", c.queues));
    }
    if let Some(ch) = c.channels {
        if ch == 0 || ch > 1024 {
            return bad(format!("channels: {ch} is outside 1..=1024"));
        }
        if c.queues > ch {
            return bad(format!("queues: {} is more than channels ({ch})", c.queues));
        }
    }
    if c.max_ports == 0 || c.max_ports > 1024 {
        return bad(format!("maxPorts: {} is outside 1..=1024", c.max_ports));
    }
    if c.max_rules == 0 || c.max_rules > 4096 {
        return bad(format!("maxRules: {} is outside 1..=4096", c.max_rules));
    }
    if c.match_address && c.ipv6 {
        return bad(
            "ipv6: only meaningful without matchAddress (the addresses decide the IP version)"
                .into(),
        );
    }
    Ok(())
}

/// Queues `0..queues`, capped to the channel count set or the device's rx queues.
pub fn queue_plan(c: &Config, device: &Netdev) -> QueuePlan {
    let limit = c.channels.unwrap_or(device.rx_queues.max(1));
    if c.queues > limit {
        log!(
            LogLevel::Warn,
            "{}: {} queues configured, only {limit} available",
            device.name,
            c.queues
        );
    }
    let plan = QueuePlan::queues(all_queues(c.queues.min(limit).max(1)));
    match c.channels {
        Some(ch) => plan.with_channels(ch),
        None => plan,
    }
}

/// The rules for `pod` on `device`; see the crate docs.
pub fn rules(
    c: &Config,
    device: &Netdev,
    pod: &Pod,
    addresses: &[IpAddr],
) -> Result<Vec<FilterRule>, PolicyError> {
    let udp = annotation_ports(pod, UDP_PORTS, c.max_ports)?.unwrap_or_default();
    let tcp = annotation_ports(pod, TCP_PORTS, c.max_ports)?.unwrap_or_default();
    let ports: Vec<(Proto, u16)> = udp
        .into_iter()
        .map(|p| (Proto::Udp, p))
        .chain(tcp.into_iter().map(|p| (Proto::Tcp, p)))
        .collect();
    if ports.is_empty() {
        return Ok(Vec::new());
    }
    if c.match_address && addresses.is_empty() {
        return Err(PolicyError::invalid_input(format!(
            "pod {}: matchAddress is set but the pod has no address on {}",
            pod.display_name(),
            device.name
        )));
    }
    let queues = queue_plan(c, device).queues;
    let mut out = Vec::new();
    for (i, (proto, port)) in ports.iter().enumerate() {
        let Some(q) = round_robin(&queues, i) else {
            return Err(PolicyError::internal("no queue to steer to"));
        };
        if c.match_address {
            for addr in addresses {
                out.push(FilterRule::to_addr_port(*proto, *addr, *port).to_queue(q));
            }
        } else {
            out.push(FilterRule::dst_port(FlowType::new(*proto, false), *port).to_queue(q));
            if c.ipv6 {
                out.push(FilterRule::dst_port(FlowType::new(*proto, true), *port).to_queue(q));
            }
        }
    }
    if out.len() > c.max_rules {
        return Err(PolicyError::invalid_input(format!(
            "pod {}: {} rules needed on {} ({} ports), maxRules is {}",
            pod.display_name(),
            out.len(),
            device.name,
            ports.len(),
            c.max_rules
        )));
    }
    Ok(out)
}

impl Policy for FlowSteering {
    type Config = Config;

    fn metadata() -> Metadata {
        Metadata::new(
            "flow-steering",
            env!("CARGO_PKG_VERSION"),
            "steer the ports in afxdp.io/udp-ports and afxdp.io/tcp-ports to the pod's queues",
            &[decision::ASSIGN_QUEUES, decision::FILTER_RULES],
        )
    }

    fn validate(config: &Config) -> Result<(), PolicyError> {
        validate(config)
    }

    fn assign_queues(
        ctx: &Ctx<Config>,
        device: &Netdev,
        _: &Pod,
    ) -> Result<QueuePlan, PolicyError> {
        Ok(queue_plan(&ctx.config, device))
    }

    fn filter_rules(
        ctx: &Ctx<Config>,
        device: &Netdev,
        pod: &Pod,
        addresses: &[IpAddr],
    ) -> Result<Vec<FilterRule>, PolicyError> {
        rules(&ctx.config, device, pod, addresses)
    }
}

afxdp_policy_sdk::export_policy!(FlowSteering);

#[cfg(test)]
mod tests {
    use super::*;

    /// (config, udp annotation, tcp annotation, addresses, expected rules)
    type RuleCase<'a> = (
        Config,
        Option<&'a str>,
        Option<&'a str>,
        &'a [IpAddr],
        Vec<FilterRule>,
    );
    /// (config, udp, tcp, addresses, code, text the message must hold)
    type ErrorCase<'a> = (
        Config,
        Option<&'a str>,
        Option<&'a str>,
        &'a [IpAddr],
        ErrorCode,
        &'a str,
    );

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn pod(udp: Option<&str>, tcp: Option<&str>) -> Pod {
        let mut p = Pod::new("ns", "app");
        if let Some(v) = udp {
            p = p.with_annotation(UDP_PORTS, v);
        }
        if let Some(v) = tcp {
            p = p.with_annotation(TCP_PORTS, v);
        }
        p
    }

    fn cfg(queues: u32, match_address: bool) -> Config {
        Config {
            queues,
            match_address,
            ..Config::default()
        }
    }

    #[test]
    fn rules_table() {
        let dev = Netdev::new("eth1", 8);
        let v4 = [ip("10.0.0.5")];
        let dual = [ip("10.0.0.5"), ip("fd00::5")];
        // (config, udp annotation, tcp annotation, addresses, expected rules)
        let cases: Vec<RuleCase> = vec![
            (cfg(1, false), None, None, &[], vec![]),
            (cfg(1, false), Some(""), None, &[], vec![]),
            (
                cfg(2, false),
                Some("4789,9000"),
                None,
                &[],
                vec![
                    FilterRule::udp4_dst_port(4789).to_queue(0),
                    FilterRule::udp4_dst_port(9000).to_queue(1),
                ],
            ),
            // Round-robin wraps; UDP first, then TCP.
            (
                cfg(2, false),
                Some("53, 4789"),
                Some("80"),
                &[],
                vec![
                    FilterRule::udp4_dst_port(53).to_queue(0),
                    FilterRule::udp4_dst_port(4789).to_queue(1),
                    FilterRule::tcp4_dst_port(80).to_queue(0),
                ],
            ),
            // Addresses matched: one rule per address, family from the address.
            (
                cfg(1, true),
                Some("4789"),
                None,
                &dual,
                vec![
                    FilterRule::udp4_dst_port(4789)
                        .dst_ip(ip("10.0.0.5"))
                        .to_queue(0),
                    FilterRule::udp6_dst_port(4789)
                        .dst_ip(ip("fd00::5"))
                        .to_queue(0),
                ],
            ),
            (
                cfg(4, true),
                None,
                Some("443,8443"),
                &v4,
                vec![
                    FilterRule::tcp4_dst_port(443)
                        .dst_ip(ip("10.0.0.5"))
                        .to_queue(0),
                    FilterRule::tcp4_dst_port(8443)
                        .dst_ip(ip("10.0.0.5"))
                        .to_queue(1),
                ],
            ),
            // Addresses given but not matched: ignored.
            (
                cfg(1, false),
                Some("9000"),
                None,
                &v4,
                vec![FilterRule::udp4_dst_port(9000).to_queue(0)],
            ),
            (
                Config {
                    ipv6: true,
                    ..cfg(1, false)
                },
                Some("9000"),
                None,
                &[],
                vec![
                    FilterRule::udp4_dst_port(9000).to_queue(0),
                    FilterRule::udp6_dst_port(9000).to_queue(0),
                ],
            ),
        ];
        for (c, udp, tcp, addrs, want) in cases {
            let got = rules(&c, &dev, &pod(udp, tcp), addrs);
            assert_eq!(
                got,
                Ok(want),
                "{c:?} udp {udp:?} tcp {tcp:?} addrs {addrs:?}"
            );
        }
    }

    #[test]
    fn rule_errors_table() {
        let dev = Netdev::new("eth1", 8);
        // (config, udp, tcp, addresses, code, text the message must hold)
        let cases: &[ErrorCase] = &[
            (
                cfg(1, false),
                Some("0"),
                None,
                &[],
                ErrorCode::InvalidInput,
                UDP_PORTS,
            ),
            (
                cfg(1, false),
                None,
                Some("80,80"),
                &[],
                ErrorCode::InvalidInput,
                TCP_PORTS,
            ),
            (
                cfg(1, false),
                Some("http"),
                None,
                &[],
                ErrorCode::InvalidInput,
                UDP_PORTS,
            ),
            (
                cfg(1, false),
                Some("70000"),
                None,
                &[],
                ErrorCode::InvalidInput,
                UDP_PORTS,
            ),
            (
                Config {
                    max_ports: 2,
                    ..cfg(1, false)
                },
                Some("1,2,3"),
                None,
                &[],
                ErrorCode::InvalidInput,
                UDP_PORTS,
            ),
            (
                cfg(1, true),
                Some("9000"),
                None,
                &[],
                ErrorCode::InvalidInput,
                "no address on eth1",
            ),
            (
                Config {
                    max_rules: 3,
                    ..cfg(1, false)
                },
                Some("1,2"),
                Some("3,4"),
                &[],
                ErrorCode::InvalidInput,
                "maxRules",
            ),
        ];
        for (c, udp, tcp, addrs, code, text) in cases {
            let e = rules(c, &dev, &pod(*udp, *tcp), addrs).expect_err("should fail");
            assert_eq!(e.code, *code, "{udp:?} {tcp:?}: {e}");
            assert!(e.message.contains(text), "{udp:?} {tcp:?}: {e}");
        }
    }

    #[test]
    fn through_the_entry_points() {
        let pool = Pool::new("p", r#"{"queues": 2, "matchAddress": true}"#);
        let dev = Netdev::new("eth1", 4);
        let p = pod(Some("4789"), None);
        let got = runtime::filter_rules::<FlowSteering>(&pool, &dev, &p, &["10.1.1.1".into()]);
        assert_eq!(
            got,
            Ok(vec![FilterRule::udp4_dst_port(4789)
                .dst_ip(ip("10.1.1.1"))
                .to_queue(0)])
        );
        let bad = runtime::filter_rules::<FlowSteering>(&pool, &dev, &p, &["not-an-ip".into()]);
        assert_eq!(bad.map_err(|e| e.code), Err(ErrorCode::InvalidInput));
        let plan = runtime::assign_queues::<FlowSteering>(&pool, &dev, &p);
        assert_eq!(plan, Ok(QueuePlan::queues(vec![0, 1])));
    }

    #[test]
    fn queue_plans() {
        // (config queues, channels, device rx, expected)
        let cases: &[(u32, Option<u32>, u32, QueuePlan)] = &[
            (1, None, 8, QueuePlan::queues(vec![0])),
            (3, None, 8, QueuePlan::queues(vec![0, 1, 2])),
            (4, None, 2, QueuePlan::queues(vec![0, 1])),
            (
                2,
                Some(2),
                8,
                QueuePlan::queues(vec![0, 1]).with_channels(2),
            ),
            (
                4,
                Some(16),
                8,
                QueuePlan::queues(vec![0, 1, 2, 3]).with_channels(16),
            ),
            (1, None, 0, QueuePlan::queues(vec![0])),
        ];
        for (queues, channels, rx, want) in cases {
            let c = Config {
                queues: *queues,
                channels: *channels,
                ..Config::default()
            };
            let dev = Netdev::new("eth0", *rx);
            assert_eq!(&queue_plan(&c, &dev), want, "{c:?} rx {rx}");
            assert!(runtime::check_queue_plan(want, &dev).is_ok());
        }
    }

    #[test]
    fn config_table() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            (r#"{"queues": 2, "channels": 2}"#, true),
            (r#"{"matchAddress": true}"#, true),
            (r#"{"queues": 0}"#, false),
            (r#"{"queues": 4, "channels": 2}"#, false),
            (r#"{"channels": 0}"#, false),
            (r#"{"maxPorts": 0}"#, false),
            (r#"{"maxRules": 100000}"#, false),
            (r#"{"matchAddress": true, "ipv6": true}"#, false),
            (r#"{"matchAddress": "yes"}"#, false),
            (r#"{"udpPorts": "80"}"#, false),
        ];
        for (json, ok) in cases {
            let r = runtime::validate_config::<FlowSteering>(json);
            assert_eq!(r.is_ok(), *ok, "{json}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code, ErrorCode::InvalidInput);
            }
        }
    }
}
