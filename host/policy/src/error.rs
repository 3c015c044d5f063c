//! Errors: one enum for loading a policy, one for a decision call.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::GuestErrorCode;

/// Why a policy could not be loaded. A pool whose policy fails to load keeps
/// the previous one (or the defaults); the error tells the operator why.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The digest is not `sha256:` followed by 64 lower-case hex digits.
    #[error("malformed policy digest {digest:?}: expected sha256:<64 hex digits>")]
    BadDigest {
        /// The digest as given.
        digest: String,
    },
    /// The bytes do not hash to the digest they were loaded under.
    #[error("policy bytes hash to sha256:{actual}, not {expected}")]
    DigestMismatch {
        /// The digest as given.
        expected: String,
        /// Hex SHA-256 of the bytes.
        actual: String,
    },
    /// Not WebAssembly at all (no `\0asm` magic).
    #[error("not a WebAssembly binary (first bytes {found})")]
    NotWasm {
        /// The first bytes, hex.
        found: String,
    },
    /// A core module (or an unknown layer): policies must be components.
    #[error("not a WebAssembly component ({found}); build the policy for wasm32-wasip2 or wrap it with `wasm-tools component new`")]
    NotComponent {
        /// What the header says it is.
        found: String,
    },
    /// Wasmtime refused to compile the component.
    #[error("compiling the policy")]
    Compile(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The component does not export the decisions interface.
    #[error("the component does not export `{expected}` (its exports: {found})")]
    MissingExport {
        /// The export this host needs.
        expected: &'static str,
        /// The exports it has, comma-separated.
        found: String,
    },
    /// The component exports the decisions interface at another WIT version.
    #[error("the component exports `{found}`, this host needs `{expected}`: rebuild the policy against afxdp:policy@0.1.0")]
    WrongVersion {
        /// The export this host needs.
        expected: &'static str,
        /// The versioned export it has.
        found: String,
    },
    /// The component's imports or export types do not match what this host
    /// provides (an import other than WASI and `afxdp:policy/host`, or a
    /// changed signature).
    #[error("linking the policy")]
    Link(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `metadata()` failed.
    #[error("calling metadata()")]
    Metadata(#[source] DecisionError),
    /// `metadata()` answered something unusable.
    #[error("invalid metadata: {detail}")]
    InvalidMetadata {
        /// What is wrong.
        detail: String,
    },
    /// The engine could not be built (bad config, no thread for the ticker).
    #[error("creating the policy engine: {detail}")]
    Engine {
        /// What failed.
        detail: String,
    },
    /// The cache directory could not be created.
    #[error("creating the policy cache directory {path}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Why a decision call produced no decision. Every variant is a documented
/// answer (never a panic); what the host does with it is the pool's
/// [`FailurePolicy`](crate::defaults::FailurePolicy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The call ran past its deadline (epoch interruption). `after` is the
    /// configured deadline; the call ended within a few epoch ticks of it.
    #[error("policy ran past its {after:?} deadline")]
    Timeout {
        /// The deadline in force.
        after: Duration,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("policy exceeded its memory limit of {limit} bytes")]
    MemoryExceeded {
        /// The limit in force, bytes (all linear memories together).
        limit: usize,
    },
    /// The guest trapped (a panic, `unreachable`, out-of-bounds access, ...).
    #[error("policy trapped: {message}{}", stderr_suffix(stderr))]
    Trap {
        /// Wasmtime's description of the trap.
        message: String,
        /// What the guest wrote to stderr (bounded, lossy UTF-8).
        stderr: String,
    },
    /// The policy's own error answer.
    #[error("policy refused ({code}): {message}")]
    Guest {
        /// The policy's error code.
        code: GuestErrorCode,
        /// The policy's message (bounded).
        message: String,
    },
    /// The answer failed the host's validation.
    #[error("invalid policy decision: {detail}")]
    InvalidDecision {
        /// What is wrong.
        detail: String,
    },
    /// A fresh instance could not be created.
    #[error("instantiating the policy: {message}")]
    Instantiate {
        /// Wasmtime's error.
        message: String,
    },
    /// Every call slot (of the pool's [`CallGate`](crate::CallGate), or of
    /// the engine: [`CONCURRENT_CALLS`](crate::CONCURRENT_CALLS)) stayed
    /// taken for as long as the call may take; the call did not run.
    #[error("policy busy: {limit} calls were already running for {waited:?}")]
    Busy {
        /// The concurrency limit that was reached.
        limit: usize,
        /// How long the call waited for a slot.
        waited: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {}", stderr.trim_end())
    }
}

impl DecisionError {
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::InvalidDecision {
            detail: detail.into(),
        }
    }

    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::MemoryExceeded { .. } => "memory",
            Self::Trap { .. } => "trap",
            Self::Guest { .. } => "guest",
            Self::InvalidDecision { .. } => "invalid",
            Self::Instantiate { .. } => "instantiate",
            Self::Busy { .. } => "busy",
        }
    }
}
