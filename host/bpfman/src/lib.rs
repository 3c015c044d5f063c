//! The bpfman backend of afxdp-rs's [`ProgramManager`](afxdp_program::ProgramManager).
//!
//! bpfman (`bpfman-rpc`, from `cargo install bpfman-api`) loads and attaches
//! eBPF programs for the whole node and pins their maps. This crate speaks
//! its `bpfman.v1` gRPC API (the `.proto` is kept in `proto/`, written from
//! the published API) over bpfman-rpc's unix socket:
//!
//! - [`BpfmanClient`]: the calls (`Load`, `Attach`, `Detach`, `Unload`,
//!   `List`, `Get`, `PullBytecode`) in domain types, blocking;
//! - [`BpfmanManager`]: the [`ProgramManager`](afxdp_program::ProgramManager)
//!   on top: one program per device, owner metadata on every load, adoption
//!   of what bpfman already holds, rollback of a failed attach.
//!
//! It is its own crate so that `afxdp-cni` (and users of the native manager
//! only) never link a gRPC client for bpfman.
//!
//! # Kernel
//!
//! bpfman attaches XDP programs as freplace (`BPF_PROG_TYPE_EXT`)
//! extensions of its dispatcher: a kernel that refuses freplace refuses
//! every XDP attach through bpfman ([`BpfmanError::Refused`] from `Attach`).
//! TCX ([`HookKind::Tcx`]) needs Linux 6.6.
#![deny(missing_docs)]

mod client;
mod manager;
mod types;

use std::{path::PathBuf, time::Duration};

pub use client::{BpfmanClient, DEFAULT_CALL_TIMEOUT, DEFAULT_SOCKET};
pub use manager::{
    BpfmanConfig, BpfmanManager, HookKind, LoadChoice, META_ALLOCATION, META_DEVICE, META_NODE,
    META_POOL, META_PROGRAM_NAME, META_XDP_MODE,
};
pub use types::{
    Bytecode, Credentials, Direction, Hook, Image, ListFilter, LoadSpec, Managed, ProceedOn,
    Program, ProgramType, PullPolicy,
};

/// The generated `bpfman.v1` code, fenced: only `types` converts to and
/// from it.
#[allow(clippy::all, missing_docs)]
pub(crate) mod wire {
    tonic::include_proto!("bpfman.v1");
}

/// What can go wrong talking to bpfman. Each message says which call failed
/// on what, with bpfman's own words.
#[derive(Debug, thiserror::Error)]
pub enum BpfmanError {
    /// Nothing answers on the socket (bpfman-rpc not running, or restarting).
    #[error("bpfman is not reachable on {}: {message} (is bpfman-rpc running?)", socket.display())]
    Unavailable {
        /// The socket tried.
        socket: PathBuf,
        /// The transport's error.
        message: String,
    },
    /// bpfman refused the call: a missing file or image, a failed pull, the
    /// verifier's rejection, an attach the kernel refused.
    #[error("bpfman {call} of {target} failed: {message}")]
    Refused {
        /// `Load`, `Attach`, ...
        call: &'static str,
        /// What the call was about (`xsk_redirect of image r/x@sha256:...`).
        target: String,
        /// The gRPC status code (bpfman answers `Aborted` for everything).
        code: tonic::Code,
        /// bpfman's message.
        message: String,
    },
    /// bpfman did not answer in time.
    #[error("bpfman {call} of {target} did not answer within {timeout:?}")]
    Timeout {
        /// The call.
        call: &'static str,
        /// What it was about.
        target: String,
        /// The bound.
        timeout: Duration,
    },
    /// An answer without a field it must carry.
    #[error("bpfman answered {call} without {missing}")]
    Malformed {
        /// The call.
        call: &'static str,
        /// The missing field.
        missing: &'static str,
    },
    /// The loaded object has no XSKMAP named `xsks_map`.
    #[error("{object} has no map xsks_map: bpfman pinned none at {}", pin.display())]
    NoXskMap {
        /// The object loaded.
        object: String,
        /// Where the pin was looked for.
        pin: PathBuf,
    },
    /// The client's runtime could not be made.
    #[error("creating the bpfman client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
