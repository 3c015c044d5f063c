//! The one error type of this crate.

use std::path::PathBuf;

use oci_client::errors::OciDistributionError;

/// Everything that can go wrong while parsing a reference, talking to a
/// registry, verifying what it served or using the disk cache.
///
/// Each variant is a distinct, matchable outcome: callers (the policy
/// rollout, `afxdpctl`) decide per variant whether to keep the previous
/// policy, retry later, or tell the operator to fix the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The reference string is not `[http(s)://]registry[:port]/repo(@sha256:<64 hex>|:tag)`.
    #[error("invalid policy reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tag reference was given without an explicit pull policy. Tags are
    /// mutable; the operator must say whether a cached resolution may be
    /// reused (`IfNotPresent`) or the tag must be resolved online (`Always`),
    /// or pin the reference by digest.
    #[error(
        "reference {reference:?} names a tag, which is mutable: pin it by digest \
         (repo@sha256:<64 hex>) or give an explicit pull policy (IfNotPresent or Always)"
    )]
    TagWithoutPullPolicy {
        /// The reference as given.
        reference: String,
    },

    /// Plain HTTP was requested for a registry that is neither on loopback
    /// nor listed in `FetcherConfig::insecure_registries`. Checked before any
    /// traffic is sent.
    #[error(
        "registry {registry} would be reached over plain HTTP; only loopback registries \
         (127.0.0.0/8, ::1, localhost) or registries listed as insecure may use HTTP"
    )]
    InsecureNotAllowed {
        /// `host[:port]` of the registry.
        registry: String,
    },

    /// The registry answered with an error that is not covered by a more
    /// specific variant (404 manifest unknown, 5xx, protocol violations…).
    #[error("registry {registry}: {operation} failed")]
    Registry {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done (`"pull manifest"`, `"push blob"`, …).
        operation: &'static str,
        /// The client library's error.
        #[source]
        source: OciDistributionError,
    },

    /// The registry refused the credentials (or their absence).
    #[error(
        "registry {registry} refused access for {operation} (check the credentials or pull secret)"
    )]
    Unauthorized {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done.
        operation: &'static str,
        /// The client library's error.
        #[source]
        source: OciDistributionError,
    },

    /// The manifest served for a pinned digest does not hash to that digest:
    /// the registry (or something in between) served other content.
    #[error(
        "manifest digest mismatch for {reference}: expected {expected}, registry served {actual}"
    )]
    ManifestDigestMismatch {
        /// The reference being fetched.
        reference: String,
        /// The pinned digest.
        expected: String,
        /// The sha256 of the bytes actually served.
        actual: String,
    },

    /// The Wasm layer served does not hash to the digest in the manifest.
    #[error(
        "layer digest mismatch for {reference}: expected {expected}, registry served {actual}"
    )]
    LayerDigestMismatch {
        /// The reference being fetched.
        reference: String,
        /// The layer digest named by the (verified) manifest.
        expected: String,
        /// The sha256 of the bytes actually served, when known.
        actual: String,
    },

    /// The artifact is not of the kind asked for (a Wasm policy artifact, or
    /// a bytecode image): wrong manifest, config or layer media type, or not
    /// exactly one layer.
    #[error("{reference}: {what} has media type {found:?}, expected {expected:?}")]
    WrongMediaType {
        /// The reference being fetched.
        reference: String,
        /// Which part: `"manifest"`, `"config"`, `"layer"` or `"layer count"`.
        what: &'static str,
        /// What a policy artifact must have.
        expected: String,
        /// What was found.
        found: String,
    },

    /// The image config of a bytecode image does not hash to the digest in
    /// the manifest.
    #[error(
        "config digest mismatch for {reference}: expected {expected}, registry served {actual}"
    )]
    ConfigDigestMismatch {
        /// The reference being fetched.
        reference: String,
        /// The config digest named by the (verified) manifest.
        expected: String,
        /// The sha256 of the bytes actually served, when known.
        actual: String,
    },

    /// The manifest is not a parseable OCI image manifest.
    #[error("{reference}: manifest is not a valid OCI image manifest")]
    InvalidManifest {
        /// The reference being fetched.
        reference: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// The content is not Wasm (no `\0asm` magic) or, when pushing, not a
    /// component/module oci-wasm can describe.
    #[error("{subject} is not a Wasm policy: {reason}")]
    NotWasm {
        /// The reference or digest of the content.
        subject: String,
        /// Why.
        reason: String,
    },

    /// A verified bytecode image (or an object to push) is not a usable eBPF
    /// bytecode image: the layer is not a gzip'd tar, it holds no `.o` or
    /// several without an `io.ebpf.filename` label, an entry name is absolute
    /// or has `..`, the object is not an ELF64 with `e_machine` EM_BPF (247)
    /// of the host's byte order, or the `io.ebpf.*` labels are missing or
    /// malformed.
    #[error("{subject} is not a usable eBPF bytecode image: {reason}")]
    InvalidBytecode {
        /// The reference (and file) concerned.
        subject: String,
        /// Why.
        reason: String,
    },

    /// A blob is larger than this crate accepts (or than its descriptor says).
    #[error("{reference}: {what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The reference being fetched.
        reference: String,
        /// `"manifest"`, `"config"`, `"layer"`, `"uncompressed layer"` or `"object"`.
        what: &'static str,
        /// The size announced or seen.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// The registry cannot be reached (connection refused, DNS, timeout,
    /// 502/503/504) and the reference is not in the cache (or, for a tag with
    /// `PullPolicy::Always`, must be resolved online).
    #[error("{reference} is not in the cache and registry {registry} is unreachable")]
    NotCachedAndUnreachable {
        /// The reference being fetched.
        reference: String,
        /// `host[:port]` of the registry.
        registry: String,
        /// Why the registry was unreachable.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A push did not finish within `FetcherConfig::timeout`. (A fetch that
    /// times out counts as unreachable and may be served from the cache.)
    #[error("registry {registry}: {operation} did not finish within {after:?}")]
    Timeout {
        /// `host[:port]` of the registry.
        registry: String,
        /// What was being done.
        operation: &'static str,
        /// The deadline.
        after: std::time::Duration,
    },

    /// The pull secret file cannot be used.
    #[error("pull secret {path}: {reason}")]
    PullSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation on the cache (or on the pull secret) failed.
    #[error("{op} {path}")]
    Io {
        /// The operation (`"create dir"`, `"write"`, `"rename"`, …).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl OciError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
