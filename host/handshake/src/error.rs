//! Errors of this crate.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::protocol::Response;

/// The handshake step an error belongs to (what the client was asking for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Opening the socket connection.
    Dial,
    /// `/connect`.
    Connect,
    /// `/version`.
    Version,
    /// `/xsk_map_fd`.
    XskMapFd,
    /// `/config_busy_poll`.
    ConfigBusyPoll,
    /// `/fin`.
    Fin,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Dial => "dial",
            Step::Connect => "/connect",
            Step::Version => "/version",
            Step::XskMapFd => "/xsk_map_fd",
            Step::ConfigBusyPoll => "/config_busy_poll",
            Step::Fin => "/fin",
        })
    }
}

/// Why a [`Backend`](crate::server::Backend) refused a request. The peer only
/// ever sees the protocol's nak; this is for the daemon's logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pod is not the one that holds the device (or is not on this node).
    #[error("pod is not the holder of the device: {0}")]
    NotHolder(String),
    /// The device is not known to the daemon (or has no XSKMAP).
    #[error("unknown device")]
    UnknownDevice,
    /// The backend could not decide (e.g. kubelet's PodResources is down).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

/// Errors of the handshake client, server and FD transport.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A system call failed.
    #[error("{call} failed: {errno}")]
    Syscall {
        /// The failing call.
        call: &'static str,
        /// The error it returned.
        #[source]
        errno: Errno,
    },
    /// A filesystem operation on the socket path failed.
    #[error("{op} {path}: {source}")]
    Fs {
        /// What was being done (e.g. "create directory").
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Something that is not a socket sits at the socket path; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket path does not fit in `sun_path` (108 bytes).
    #[error("socket path {0} is too long for a unix socket")]
    PathTooLong(PathBuf),
    /// The received datagram or its ancillary data did not fit the buffer.
    #[error("received message truncated ({what})")]
    Truncated {
        /// "data" or "control".
        what: &'static str,
    },
    /// More than one FD came with a message (all were closed).
    #[error("received {0} file descriptors, expected at most one")]
    TooManyFds(usize),
    /// The message to send is longer than [`MAX_MESSAGE_LEN`](crate::protocol::MAX_MESSAGE_LEN).
    #[error("message of {0} bytes is too long to send")]
    MessageTooLong(usize),
    /// The server refused the step (answered a nak).
    #[error("server refused {step}: answered {response}")]
    Refused {
        /// The step that was refused.
        step: Step,
        /// What the server answered.
        response: Response,
    },
    /// The server answered something the step does not expect.
    #[error("unexpected answer to {step}: {response:?}")]
    UnexpectedResponse {
        /// The step.
        step: Step,
        /// The answer.
        response: Response,
    },
    /// `/fd_ack` came without an FD.
    #[error("{step} acknowledged without a file descriptor")]
    MissingFd {
        /// The step.
        step: Step,
    },
    /// No answer within the read timeout.
    #[error("timed out waiting for the answer to {step}")]
    Timeout {
        /// The step.
        step: Step,
    },
    /// The server closed the connection instead of answering.
    #[error("server closed the connection during {step}")]
    Closed {
        /// The step.
        step: Step,
    },
    /// The server thread could not be started.
    #[error("spawning the handshake server thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl HandshakeError {
    pub(crate) fn sys(call: &'static str) -> impl FnOnce(Errno) -> HandshakeError {
        move |errno| HandshakeError::Syscall { call, errno }
    }
}
