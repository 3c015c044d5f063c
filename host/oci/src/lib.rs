//! Pull and push of Wasm policy artifacts from OCI registries, with digest
//! verification and a content-addressed disk cache. This crate never runs
//! the code it fetches.
//!
//! A policy artifact is an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose single layer is
//! `application/wasm` (the layout of oci-wasm / wasm-pkg-tools).
//!
//! ```no_run
//! # async fn demo() -> Result<(), afxdp_oci::OciError> {
//! use afxdp_oci::{Auth, Fetcher, FetcherConfig, PolicyRef, PullPolicy};
//! let fetcher = Fetcher::new(FetcherConfig {
//!     cache_dir: "/var/lib/afxdp/oci".into(),
//!     auth: Auth::PullSecretFile("/etc/afxdp/pull-secret.json".into()),
//!     insecure_registries: vec![],
//!     timeout: std::time::Duration::from_secs(30),
//! })?;
//! let r = PolicyRef::parse(
//!     "ghcr.io/org/pool-policy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
//! )?;
//! let fetched = fetcher.fetch(&r, PullPolicy::IfNotPresent).await?;
//! assert!(fetched.wasm.starts_with(b"\0asm"));
//! # Ok(()) }
//! ```
//!
//! Trust model: a pinned reference is trusted only through its digest. The
//! manifest bytes must hash to it, the layer must hash to the digest the
//! manifest names, and the layer must start with the Wasm magic. A tag is
//! mutable, so it is accepted only with an explicit [`PullPolicy`].
#![deny(missing_docs)]

mod artifact;
mod auth;
mod cache;
mod error;
mod fetcher;
mod reference;

pub use artifact::{sha256_digest, MAX_LAYER_BYTES, MAX_MANIFEST_BYTES, WASM_MAGIC};
pub use auth::Auth;
pub use error::OciError;
pub use fetcher::{Fetched, Fetcher, FetcherConfig};
pub use reference::{PolicyRef, PullPolicy, Scheme};

/// Media types of a policy artifact, re-exported from oci-wasm.
pub mod media_types {
    pub use oci_wasm::{
        WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WASM_MANIFEST_MEDIA_TYPE,
    };
}
