//! afxdp-policy: the wasmtime host for pool policies.
//!
//! A pool policy is a WebAssembly component implementing the
//! `afxdp:policy@0.1.0` world `pool-policy` (`wit/policy.wit`): it decides
//! which XDP program a pool's devices get, which queues a pod binds, which NIC
//! filter rules are set, and which devices kubelet should prefer. This crate
//! loads such components and calls them; it does no network I/O (fetching is
//! the `oci` module's job) and knows nothing of kubelet.
//!
//! ```no_run
//! use afxdp_policy::{defaults, Blocking, CallCtx, EngineConfig, FailurePolicy, Netdev, Pod, PolicyEngine};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (wasm, digest) = (Vec::<u8>::new(), String::new());
//! let engine = PolicyEngine::new(EngineConfig::default())?;
//! let b = Blocking::here()?; // not on an async runtime's thread
//! let policy = engine.load(&b, &wasm, &digest)?; // bytes of the OCI layer, its sha256 digest
//! let ctx = CallCtx::new("fast", r#"{"queues": 2}"#);
//! policy.validate_config(&b, &ctx)?;
//! let dev = Netdev::new("eth1", 4);
//! let plan = defaults::decide(
//!     &ctx.pool,
//!     policy.digest(),
//!     FailurePolicy::Ignore,
//!     policy.assign_queues(&b, &ctx, &dev, &Pod::default()),
//!     || defaults::queue_plan(&dev),
//! )?;
//! # Ok(()) }
//! ```
//!
//! # Invariants
//! - **One engine**, built once ([`PolicyEngine::new`]); each policy compiled
//!   once per digest (and cached on disk as a precompiled artifact, checked
//!   before use), linked once ([`PolicyEngine::load`]).
//! - **A fresh `Store` per call**, with an epoch deadline, a memory limit and
//!   deny-all WASI; a trap, a timeout or a memory failure ends that call
//!   only. The same [`LoadedPolicy`] and engine keep serving. The instance
//!   lives in a pooled slot whose memory is reset to the component's image
//!   between calls (the `slots` module): fresh in content, without mapping
//!   and faulting in new pages each time. At most
//!   [`EngineConfig::concurrent_calls`] calls run at once.
//! - **Failures are answers**: every way a call can fail is a
//!   [`DecisionError`] variant, told apart by wasmtime trap codes and the
//!   limiter's flag, never by message text. The pool's [`FailurePolicy`]
//!   turns it into an error or the [`defaults`] ([`decide`]).
//! - **Every decision is validated** ([`validate`]) before it leaves the
//!   crate; WIT-generated types never do (conversions live in one module).
//! - **Blocking**: loading and calls run on the calling thread and take a
//!   [`Blocking`] proof that it may block: [`Blocking::here`] where no async
//!   runtime is entered, [`Blocking::spawn`] from async code (WASI's sync
//!   bindings panic on an async runtime's thread, so a policy cannot be
//!   called there at all).
#![deny(missing_docs)]

mod bindings;
mod blocking;
mod cache;
mod convert;
pub mod defaults;
mod engine;
mod error;
pub mod examples;
mod gate;
pub mod metrics;
mod policy;
mod slots;
mod store;
mod types;
pub mod validate;

pub use blocking::{Blocking, Cancelled, OnAsyncThread};
pub use convert::MAX_STRING;
pub use defaults::{decide, Decided, DecidedBy, FailurePolicy};
pub use engine::{EngineConfig, PolicyEngine, EPOCH_TICK};
pub use error::{DecisionError, PolicyError};
pub use gate::CallGate;
pub use policy::{CallCtx, LoadedPolicy};
pub use slots::{CONCURRENT_CALLS, MAX_MEMORY_LIMIT};
pub use store::{LOG_PER_SECOND, STDERR_CAPACITY};
pub use types::{
    Decision, FilterRule, FlowType, GuestErrorCode, Metadata, Netdev, Pod, ProgramChoice,
    ProgramSource, QueuePlan, RuleAction, XdpMode,
};

/// The `sha256:<hex>` digest of `bytes`, as [`PolicyEngine::load`] expects.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", cache::hex(&sha2::Sha256::digest(bytes)))
}
