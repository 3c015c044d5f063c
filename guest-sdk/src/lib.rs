//! # afxdp-policy-sdk
//!
//! Write an afxdp-rs **pool policy** — a WebAssembly component implementing
//! the `afxdp:policy@0.1.0` world `pool-policy` (see `wit/policy.wit`) — as
//! one trait impl and one macro call.
//!
//! The node agent (afxdp-dp) calls a policy for four per-pool decisions:
//! which XDP program to attach ([`Policy::select_program`]), which queues the
//! pod binds ([`Policy::assign_queues`]), which NIC ntuple rules to program
//! ([`Policy::filter_rules`]) and which devices to prefer when kubelet asks
//! ([`Policy::preferred_allocation`]). A decision the policy does not
//! implement answers `unsupported` and the host uses its built-in default.
//!
//! What the SDK does for you:
//! - parses the pool's `config-json` into your `Config` type (errors become
//!   `invalid-input` naming the JSON path) and runs [`Policy::validate`], both
//!   for `validate-config` and before every decision;
//! - converts between the WIT records and plain Rust types ([`Netdev`],
//!   [`Pod`], [`ProgramChoice`], [`QueuePlan`], [`rules::FilterRule`] with
//!   typed IP addresses, ...);
//! - checks what your policy returns (priority range, queue ids, rule
//!   consistency, allocation contains every `must-include`, ...) and turns a
//!   violation into an `internal` error instead of a confusing host refusal;
//! - [`log!`] through the host's `log` import;
//! - helpers: [`numa`] grouping, [`queues`] arithmetic, [`rules`] builders
//!   and IP/network parsing, [`annotations`] parsing.
//!
//! The component glue (wit-bindgen) is compiled only for `wasm32`; on the
//! host target the crate is plain Rust, so a policy's decision logic is unit
//! tested with an ordinary `cargo test`, through the same entry points the
//! component uses ([`runtime`]).
//!
//! ## A complete policy
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "my-policy"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! afxdp-policy-sdk = { path = "../guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//!
//! [profile.release]
//! opt-level = "z"
//! lto = true
//! strip = true
//! codegen-units = 1
//! panic = "abort"
//! ```
//!
//! `src/lib.rs`: steer the UDP ports a pod lists in an annotation to its
//! queues, in generic XDP mode.
//!
//! ```
//! use afxdp_policy_sdk::prelude::*;
//!
//! /// The pool's policy config, e.g. `{"queues": 2}`.
//! #[derive(serde::Deserialize, Default)]
//! #[serde(deny_unknown_fields, rename_all = "camelCase")]
//! pub struct Config {
//!     /// Queues each pod binds (0 = all of the device's).
//!     #[serde(default)]
//!     queues: u32,
//! }
//!
//! pub struct PortSteer;
//!
//! impl PortSteer {
//!     fn queues(config: &Config, device: &Netdev) -> Vec<u32> {
//!         let n = match config.queues {
//!             0 => device.rx_queues.max(1),
//!             n => n.min(device.rx_queues.max(1)),
//!         };
//!         all_queues(n)
//!     }
//! }
//!
//! impl Policy for PortSteer {
//!     type Config = Config;
//!
//!     fn metadata() -> Metadata {
//!         Metadata::new(
//!             "port-steer",
//!             "0.1.0",
//!             "steer the pod's UDP ports to its queues",
//!             &[decision::SELECT_PROGRAM, decision::ASSIGN_QUEUES, decision::FILTER_RULES],
//!         )
//!     }
//!
//!     fn validate(config: &Config) -> Result<(), PolicyError> {
//!         if config.queues > 64 {
//!             return Err(PolicyError::invalid_input("queues: at most 64"));
//!         }
//!         Ok(())
//!     }
//!
//!     fn select_program(_: &Ctx<Config>, _: &Netdev, _: &Pod) -> Result<ProgramChoice, PolicyError> {
//!         Ok(ProgramChoice::builtin().with_mode(XdpMode::Generic))
//!     }
//!
//!     fn assign_queues(ctx: &Ctx<Config>, device: &Netdev, _: &Pod) -> Result<QueuePlan, PolicyError> {
//!         Ok(QueuePlan::queues(Self::queues(&ctx.config, device)))
//!     }
//!
//!     fn filter_rules(
//!         ctx: &Ctx<Config>,
//!         device: &Netdev,
//!         pod: &Pod,
//!         _addresses: &[std::net::IpAddr],
//!     ) -> Result<Vec<FilterRule>, PolicyError> {
//!         let ports = annotation_ports(pod, "example.com/udp-ports", MAX_PORTS)?.unwrap_or_default();
//!         let queues = Self::queues(&ctx.config, device);
//!         log!(LogLevel::Debug, "{} ports for {}", ports.len(), pod.display_name());
//!         Ok(ports
//!             .iter()
//!             .enumerate()
//!             .filter_map(|(i, &port)| Some(FilterRule::udp4_dst_port(port).to_queue(round_robin(&queues, i)?)))
//!             .collect())
//!     }
//! }
//!
//! afxdp_policy_sdk::export_policy!(PortSteer);
//!
//! // Native unit test of the same entry points the component exports:
//! let pool = Pool::new("fast", r#"{"queues": 2}"#);
//! let dev = Netdev::new("eth1", 8);
//! let pod = Pod::new("ns", "app").with_annotation("example.com/udp-ports", "4789,9000,53");
//! let rules = runtime::filter_rules::<PortSteer>(&pool, &dev, &pod, &[]).unwrap();
//! assert_eq!(rules[2], FilterRule::udp4_dst_port(53).to_queue(0));
//! let bad = Pod::new("ns", "app").with_annotation("example.com/udp-ports", "0");
//! let err = runtime::filter_rules::<PortSteer>(&pool, &dev, &bad, &[]).unwrap_err();
//! assert_eq!(err.code, ErrorCode::InvalidInput);
//! assert!(runtime::validate_config::<PortSteer>(r#"{"queues": 65}"#).is_err());
//! // Not implemented: the host falls back to its default.
//! let err = runtime::preferred_allocation::<PortSteer>(&pool, &[dev], &[], 1).unwrap_err();
//! assert_eq!(err.code, ErrorCode::Unsupported);
//! ```
//!
//! Build it into a component and check it:
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --release
//! # target/wasm32-wasip2/release/my_policy.wasm
//! ```
//!
//! See the crate's README for testing and for `afxdpctl policy push`.

#![warn(missing_docs)]

// Lets the generated glue name this crate the same way from inside and from
// the policy crates that expand `export_policy!`.
extern crate self as afxdp_policy_sdk;

pub mod annotations;
pub mod config;
mod error;
mod log;
pub mod numa;
pub mod queues;
pub mod rules;
pub mod runtime;
pub mod testing;
mod types;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use error::{ErrorCode, PolicyError};
pub use log::log;
#[cfg(not(target_arch = "wasm32"))]
pub use log::take_logs;
pub use rules::{FilterRule, FlowType, Proto, RuleAction};
pub use types::{
    decision, LogLevel, Metadata, Netdev, Pod, Pool, ProgramChoice, ProgramSource, QueuePlan,
    XdpMode,
};

use std::net::IpAddr;

/// Everything a policy usually needs: `use afxdp_policy_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::annotations::{
        annotation_ports, parse_port_list, parse_port_list_max, MAX_PORTS,
    };
    pub use crate::log;
    pub use crate::numa::{by_queues_then_name, group_by_numa};
    pub use crate::queues::{all_queues, round_robin, spread_queues};
    pub use crate::rules::{parse_ip, FilterRule, FlowType, IpNet, Proto, RuleAction};
    pub use crate::runtime;
    pub use crate::{
        decision, Ctx, ErrorCode, LogLevel, Metadata, Netdev, Pod, Policy, PolicyError, Pool,
        ProgramChoice, ProgramSource, QueuePlan, XdpMode,
    };
}

/// What a decision knows about its pool: the name and the parsed, validated
/// policy config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ctx<C> {
    /// Pool name.
    pub pool: String,
    /// The policy config, parsed from the pool's `config-json` and accepted by
    /// [`Policy::validate`].
    pub config: C,
}

impl<C> Ctx<C> {
    /// A context for pool `pool` with `config` (handy in tests).
    pub fn new(pool: impl Into<String>, config: C) -> Self {
        Ctx {
            pool: pool.into(),
            config,
        }
    }
}

/// A pool policy. Implement [`Policy::metadata`] and the decisions you make;
/// the others answer `unsupported` (the host then uses its default). Export
/// the implementation with [`export_policy!`].
///
/// Every decision runs in a fresh instance with a deadline and a memory cap,
/// and sees no files, network, environment or real clock: a decision is a
/// function of its arguments and the config. Panicking aborts the instance
/// (the host reports a failure); return a [`PolicyError`] instead.
pub trait Policy {
    /// The policy's config, parsed from the pool's `config-json` (empty or
    /// `null` give `Default`). Prefer `#[serde(deny_unknown_fields)]`.
    type Config: serde::de::DeserializeOwned + Default;

    /// Name, version, description and the decisions made (see [`decision`]).
    fn metadata() -> Metadata;

    /// Check a parsed config beyond what its type says (ranges, references
    /// between fields). Runs at load time (`validate-config`) and before every
    /// decision.
    fn validate(config: &Self::Config) -> Result<(), PolicyError> {
        let _ = config;
        Ok(())
    }

    /// The XDP program for `device` allocated to `pod`.
    fn select_program(
        ctx: &Ctx<Self::Config>,
        device: &Netdev,
        pod: &Pod,
    ) -> Result<ProgramChoice, PolicyError> {
        let _ = (ctx, device, pod);
        Err(unsupported::<Self>(decision::SELECT_PROGRAM))
    }

    /// The channels to set and the queues the pod binds on `device`.
    fn assign_queues(
        ctx: &Ctx<Self::Config>,
        device: &Netdev,
        pod: &Pod,
    ) -> Result<QueuePlan, PolicyError> {
        let _ = (ctx, device, pod);
        Err(unsupported::<Self>(decision::ASSIGN_QUEUES))
    }

    /// The NIC ntuple rules for `device` in `pod`; `addresses` are the pod's
    /// addresses on it (from IPAM), already parsed.
    fn filter_rules(
        ctx: &Ctx<Self::Config>,
        device: &Netdev,
        pod: &Pod,
        addresses: &[IpAddr],
    ) -> Result<Vec<FilterRule>, PolicyError> {
        let _ = (ctx, device, pod, addresses);
        Err(unsupported::<Self>(decision::FILTER_RULES))
    }

    /// Device names to prefer, `size` of them, including every one of
    /// `must_include`, chosen from `available`.
    fn preferred_allocation(
        ctx: &Ctx<Self::Config>,
        available: &[Netdev],
        must_include: &[String],
        size: u32,
    ) -> Result<Vec<String>, PolicyError> {
        let _ = (ctx, available, must_include, size);
        Err(unsupported::<Self>(decision::PREFERRED_ALLOCATION))
    }
}

fn unsupported<P: Policy + ?Sized>(decision: &str) -> PolicyError {
    PolicyError::unsupported(format!(
        "policy {} does not make {decision}",
        P::metadata().name
    ))
}

/// Export a [`Policy`] implementation as the component's `decisions`
/// interface: `afxdp_policy_sdk::export_policy!(MyPolicy);` once, at the
/// crate root of a `cdylib`. Expands to nothing on non-wasm32 targets, so the
/// crate still builds and tests natively.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type AfxdpPolicyExport = $crate::__private::Export<$policy>;
            $crate::__private::bindings::__afxdp_export_pool_policy!(
                AfxdpPolicyExport with_types_in $crate::__private::bindings
            );
        };
    };
}

#[cfg(any(test, all(target_arch = "wasm32", feature = "arena")))]
pub mod arena;

/// Every policy component built with the SDK allocates from its arena first
/// (feature `arena`): see [`arena`].
#[cfg(all(target_arch = "wasm32", feature = "arena"))]
#[global_allocator]
static ALLOCATOR: arena::BumpThenSystem = arena::BumpThenSystem;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    pub use crate::glue::{bindings, Export};
    pub use wit_bindgen;
}

/// The README's Rust example is compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
