//! The component glue (wasm32 only): wit-bindgen bindings for world
//! `pool-policy`, conversions to and from the SDK's plain types, and the
//! generic `Guest` implementation that [`export_policy!`](crate::export_policy)
//! exports.

use std::marker::PhantomData;

use crate::{runtime, Policy};

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "pool-policy",
        pub_export_macro: true,
        export_macro_name: "__afxdp_export_pool_policy",
        default_bindings_module: "afxdp_policy_sdk::__private::bindings",
        runtime_path: "afxdp_policy_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::afxdp::policy::types as w;
use bindings::exports::afxdp::policy::decisions::Guest;

/// The `decisions` export of policy `P`.
pub struct Export<P>(PhantomData<P>);

impl<P: Policy + 'static> Guest for Export<P> {
    fn metadata() -> w::PolicyMetadata {
        let m = runtime::metadata::<P>();
        w::PolicyMetadata {
            name: m.name,
            version: m.version,
            description: m.description,
            decisions: m.decisions,
        }
    }

    fn validate_config(config_json: String) -> Result<(), w::PolicyError> {
        runtime::validate_config::<P>(&config_json).map_err(error)
    }

    fn select_program(
        pool: w::Pool,
        device: w::Netdev,
        pod: w::Pod,
    ) -> Result<w::ProgramChoice, w::PolicyError> {
        runtime::select_program::<P>(&from_pool(pool), &from_netdev(device), &from_pod(pod))
            .map(program)
            .map_err(error)
    }

    fn assign_queues(
        pool: w::Pool,
        device: w::Netdev,
        pod: w::Pod,
    ) -> Result<w::QueuePlan, w::PolicyError> {
        runtime::assign_queues::<P>(&from_pool(pool), &from_netdev(device), &from_pod(pod))
            .map(|p| w::QueuePlan {
                channels: p.channels,
                queues: p.queues,
            })
            .map_err(error)
    }

    fn filter_rules(
        pool: w::Pool,
        device: w::Netdev,
        pod: w::Pod,
        addresses: Vec<String>,
    ) -> Result<Vec<w::FilterRule>, w::PolicyError> {
        runtime::filter_rules::<P>(
            &from_pool(pool),
            &from_netdev(device),
            &from_pod(pod),
            &addresses,
        )
        .map(|rules| rules.into_iter().map(rule).collect())
        .map_err(error)
    }

    fn preferred_allocation(
        pool: w::Pool,
        available: Vec<w::Netdev>,
        must_include: Vec<String>,
        size: u32,
    ) -> Result<Vec<String>, w::PolicyError> {
        let available: Vec<crate::Netdev> = available.into_iter().map(from_netdev).collect();
        runtime::preferred_allocation::<P>(&from_pool(pool), &available, &must_include, size)
            .map_err(error)
    }
}

/// `host.log`.
pub(crate) fn host_log(level: crate::LogLevel, message: &str) {
    use crate::LogLevel as L;
    let level = match level {
        L::Trace => w::LogLevel::Trace,
        L::Debug => w::LogLevel::Debug,
        L::Info => w::LogLevel::Info,
        L::Warn => w::LogLevel::Warn,
        L::Error => w::LogLevel::Error,
    };
    bindings::afxdp::policy::host::log(level, message);
}

fn error(e: crate::PolicyError) -> w::PolicyError {
    use crate::ErrorCode as C;
    w::PolicyError {
        code: match e.code {
            C::InvalidInput => w::ErrorCode::InvalidInput,
            C::Unsupported => w::ErrorCode::Unsupported,
            C::Denied => w::ErrorCode::Denied,
            C::Internal => w::ErrorCode::Internal,
        },
        message: e.message,
    }
}

fn from_pool(p: w::Pool) -> crate::Pool {
    crate::Pool {
        name: p.name,
        config_json: p.config_json,
    }
}

fn from_netdev(d: w::Netdev) -> crate::Netdev {
    crate::Netdev {
        name: d.name,
        driver: d.driver,
        pci: d.pci,
        mac: d.mac,
        numa_node: d.numa_node,
        rx_queues: d.rx_queues,
        tx_queues: d.tx_queues,
        speed_mbps: d.speed_mbps,
        addresses: d.addresses,
    }
}

fn from_pod(p: w::Pod) -> crate::Pod {
    crate::Pod {
        namespace: p.namespace,
        name: p.name,
        annotations: p.annotations,
        labels: p.labels,
        requested: p.requested,
    }
}

fn program(c: crate::ProgramChoice) -> w::ProgramChoice {
    use crate::{ProgramSource as S, XdpMode as M};
    w::ProgramChoice {
        source: match c.source {
            S::Builtin => w::ProgramSource::Builtin,
            S::File(f) => w::ProgramSource::File(f),
            S::Image(i) => w::ProgramSource::Image(i),
        },
        function: c.function,
        mode: match c.mode {
            M::Native => w::XdpMode::Native,
            M::Generic => w::XdpMode::Generic,
            M::Auto => w::XdpMode::Auto,
        },
        priority: c.priority,
    }
}

fn rule(r: crate::FilterRule) -> w::FilterRule {
    use crate::{FlowType as F, RuleAction as A};
    let text = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string());
    w::FilterRule {
        flow_type: match r.flow_type {
            F::Tcp4 => w::FlowType::Tcp4,
            F::Udp4 => w::FlowType::Udp4,
            F::Sctp4 => w::FlowType::Sctp4,
            F::Tcp6 => w::FlowType::Tcp6,
            F::Udp6 => w::FlowType::Udp6,
            F::Sctp6 => w::FlowType::Sctp6,
        },
        src_ip: text(r.src_ip),
        src_ip_mask: text(r.src_ip_mask),
        dst_ip: text(r.dst_ip),
        dst_ip_mask: text(r.dst_ip_mask),
        src_port: r.src_port,
        src_port_mask: r.src_port_mask,
        dst_port: r.dst_port,
        dst_port_mask: r.dst_port_mask,
        action: match r.action {
            A::Queue(q) => w::RuleAction::Queue(q),
            A::Drop => w::RuleAction::Drop,
        },
    }
}
