//! The agent's errors: one enum for allocating (and the settings CNI ADD
//! asks for), one for releasing.

use crate::sharing;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("unknown pool {0}")]
    UnknownPool(String),
    #[error("device {device} is not in pool {pool}")]
    NotInPool { pool: String, device: String },
    #[error("device {0} is named twice in one request")]
    Duplicate(String),
    #[error("device {0} is not present in the host network namespace")]
    NotPresent(String),
    #[error("device {device} is unhealthy (link {state:?})")]
    Unhealthy {
        device: String,
        state: afxdp_netdev::LinkState,
    },
    #[error("device {device} is leaving pool {pool} (the config moved it); it is given to no one until released")]
    Leaving { device: String, pool: String },
    #[error("device {0} is still being allocated or released; try again")]
    Busy(String),
    #[error("device {device} is plumbed for {holder}, not for {claimant}")]
    NotOwner {
        device: String,
        holder: String,
        claimant: String,
    },
    #[error("attaching the XDP program to {device}: {source}")]
    Attach {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error(transparent)]
    Sharing(#[from] sharing::SharingError),
    #[error("sharing the pinned map of {device}: {source}")]
    SharePin {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error("pool {pool}: {what} is not supported by the native program manager")]
    Unsupported { pool: String, what: String },
    #[error("pool {pool}: policy {digest} failed {decision}: {source}")]
    Policy {
        pool: String,
        digest: String,
        decision: &'static str,
        #[source]
        source: afxdp_policy::DecisionError,
    },
    #[error("pool {pool}: its policy is not loaded: {reason}")]
    PolicyUnavailable { pool: String, reason: String },
    #[error("pool {pool}: ethtool command {command:?}: {why}")]
    FilterTemplate {
        pool: String,
        command: String,
        why: String,
    },
    #[error("pool {pool}: {source}")]
    Image {
        pool: String,
        #[source]
        source: crate::images::ImageError,
    },
    #[error("persisting state: {0}")]
    State(#[from] StateError),
    #[error("allocating {device}: {source}")]
    Subfunction {
        device: String,
        #[source]
        source: Box<crate::subfunction::SubfunctionError>,
    },
}

impl AllocateError {
    /// The failure's cause, for the `afxdp_allocation_failures_total` label.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::UnknownPool(_) => "unknown_pool",
            Self::NotInPool { .. } => "not_in_pool",
            Self::Duplicate(_) => "duplicate",
            Self::NotPresent(_) => "not_present",
            Self::Unhealthy { .. } => "unhealthy",
            Self::Leaving { .. } => "leaving",
            Self::Busy(_) => "busy",
            Self::NotOwner { .. } => "not_owner",
            Self::Attach { .. } => "attach",
            Self::Sharing(_) | Self::SharePin { .. } => "sharing",
            Self::Unsupported { .. } => "unsupported",
            Self::Policy { .. } => "policy",
            Self::PolicyUnavailable { .. } => "policy_unavailable",
            Self::FilterTemplate { .. } => "filter_template",
            Self::Image { .. } => "image",
            Self::State(_) => "state",
            Self::Subfunction { .. } => "subfunction",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("detaching the XDP program from {device}: {source}")]
    Detach {
        device: String,
        #[source]
        source: afxdp_program::ProgramError,
    },
    #[error("device {0} stayed busy (an allocation in flight); try again")]
    Busy(String),
    #[error("releasing {device}: {source}")]
    Subfunction {
        device: String,
        #[source]
        source: Box<crate::subfunction::SubfunctionError>,
    },
    #[error("persisting state: {0}")]
    State(#[from] StateError),
}
