//! [`PolicyError`]: the `policy-error` a decision returns.

use std::fmt;

/// Why a decision could not be made (WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The inputs (pool config, pod annotations, ...) are not acceptable.
    InvalidInput,
    /// The policy does not make this decision; the host falls back to its default.
    Unsupported,
    /// The policy refuses this pod or device.
    Denied,
    /// A bug in the policy.
    Internal,
}

impl ErrorCode {
    /// The WIT name (`invalid-input`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Denied => "denied",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision's error (WIT `policy-error`): a code and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PolicyError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human-readable detail; name the offending input (annotation, config field).
    pub message: String,
}

impl PolicyError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PolicyError {
            code,
            message: message.into(),
        }
    }

    /// `invalid-input`: the config or the pod's annotations are not acceptable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// `unsupported`: this policy does not make the decision.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }

    /// `denied`: the policy refuses the pod or device.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Denied, message)
    }

    /// `internal`: a bug in the policy.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The same error with `context: ` put before its message.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}
