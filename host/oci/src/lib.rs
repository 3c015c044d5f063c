//! Pull and push of Wasm policy artifacts and eBPF bytecode images from OCI
//! registries, with digest verification and a content-addressed disk cache.
//! This crate never runs (nor loads) the code it fetches.
//!
//! A policy artifact is an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose single layer is
//! `application/wasm` (the layout of oci-wasm / wasm-pkg-tools).
//!
//! A bytecode image is bpfman's: one tar+gzip layer holding the eBPF ELF
//! object, `io.ebpf.programs` / `io.ebpf.maps` labels in the image config
//! ([`Fetcher::fetch_bytecode`], [`Fetcher::push_bytecode_file`]; see the
//! [`bytecode`] module for the accepted layout).
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
//! mutable, so it is accepted only with an explicit [`PullPolicy`]. A
//! bytecode image's config is verified the same way, and its object must be
//! an ELF with `e_machine` EM_BPF.
#![deny(missing_docs)]

mod artifact;
mod auth;
pub mod bytecode;
mod cache;
mod error;
mod fetcher;
mod reference;

pub use artifact::{
    sha256_digest, MAX_CONFIG_BYTES, MAX_LAYER_BYTES, MAX_MANIFEST_BYTES, WASM_MAGIC,
};
pub use auth::{registry_credentials, Auth};
pub use error::OciError;
pub use fetcher::{Fetched, FetchedBytecode, Fetcher, FetcherConfig, DEFAULT_BYTECODE_FILE_NAME};
pub use reference::{PolicyRef, PullPolicy, Scheme};

/// Media types of a policy artifact (re-exported from oci-wasm) and of a
/// bytecode image (from oci-client).
pub mod media_types {
    pub use oci_client::manifest::{
        IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
        IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
        IMAGE_MANIFEST_MEDIA_TYPE as DOCKER_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
    };
    pub use oci_wasm::{
        WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WASM_MANIFEST_MEDIA_TYPE,
    };
}
