//! Bytecode images a pool policy chooses (`select-program` → `image(ref)`):
//! pulled from their OCI registry (bpfman's image spec), verified and
//! extracted into the content-addressed cache by afxdp-oci, then attached by
//! the native program manager from the cached object, like a `file` program.
//!
//! Allocate runs on a blocking thread under the agent's lock; the pull is
//! async, so it runs on the daemon's runtime through its handle and is bounded
//! by the fetcher's timeout. A pinned image already in the cache costs a
//! cache read (digests re-verified), no network.

use std::path::PathBuf;
use std::sync::Arc;

use afxdp_oci::{Fetcher, PolicyRef, PullPolicy};

/// What an image resolves to for the attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The extracted object (0600, in the cache).
    pub object: PathBuf,
    /// The XDP function to attach: the policy's choice, else the image's only
    /// `xdp` program when its labels name one.
    pub function: Option<String>,
    /// `reference` with the manifest digest it resolved to, for the record.
    pub pinned: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("bytecode image {reference}: {source}")]
    Fetch {
        reference: String,
        #[source]
        source: Box<afxdp_oci::OciError>,
    },
    #[error("bytecode image {reference}: {detail}")]
    Program { reference: String, detail: String },
}

/// Pulls bytecode images for the agent.
pub struct ImageResolver {
    fetcher: Arc<Fetcher>,
    runtime: tokio::runtime::Handle,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ImageResolver {
    pub fn new(
        fetcher: Arc<Fetcher>,
        runtime: tokio::runtime::Handle,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            fetcher,
            runtime,
            metrics,
        }
    }

    /// Pull (or read from the cache) `reference` and pick the function.
    /// Call from a blocking thread (`spawn_blocking`) or a plain thread, never
    /// from async code: it blocks on the daemon's runtime.
    pub fn resolve(
        &self,
        reference: &str,
        function: Option<&str>,
    ) -> Result<ResolvedImage, ImageError> {
        let fetch_err = |source| ImageError::Fetch {
            reference: reference.into(),
            source: Box::new(source),
        };
        // A tag is re-used from the cache once resolved; pin by digest to
        // control rollouts (image-by-label requires it by default).
        let r = PolicyRef::parse_with_pull_policy(reference, Some(PullPolicy::IfNotPresent))
            .map_err(fetch_err)?;
        let fetched = self
            .runtime
            .block_on(self.fetcher.fetch_bytecode(&r, PullPolicy::IfNotPresent));
        self.metrics.pulled("image", fetched.is_ok());
        let fetched = fetched.map_err(fetch_err)?;
        let function =
            pick_function(&fetched.programs, function).map_err(|detail| ImageError::Program {
                reference: reference.into(),
                detail,
            })?;
        tracing::info!(
            reference,
            digest = %fetched.manifest_digest,
            object = %fetched.object_path.display(),
            from_cache = fetched.from_cache,
            ?function,
            "bytecode image ready"
        );
        Ok(ResolvedImage {
            object: fetched.object_path,
            function,
            pinned: format!(
                "{}/{}@{}",
                r.registry(),
                r.repository(),
                fetched.manifest_digest
            ),
        })
    }
}

/// The function to attach, checked against the image's `io.ebpf.programs`
/// label (function → program type) when it has one: a named function must be
/// listed as `xdp`; without a name, the image's only `xdp` program.
fn pick_function(
    programs: &std::collections::BTreeMap<String, String>,
    chosen: Option<&str>,
) -> Result<Option<String>, String> {
    let xdp: Vec<&str> = programs
        .iter()
        .filter(|(_, t)| t.eq_ignore_ascii_case("xdp"))
        .map(|(f, _)| f.as_str())
        .collect();
    match chosen {
        Some(f) if programs.is_empty() || xdp.contains(&f) => Ok(Some(f.to_string())),
        Some(f) => Err(format!(
            "the image's io.ebpf.programs label lists no xdp program {f:?} (xdp programs: {xdp:?})"
        )),
        None => match xdp.as_slice() {
            [only] => Ok(Some((*only).to_string())),
            // No label, or several: the program manager's own rule
            // (`xsk_redirect`, else the object's only XDP program).
            _ => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::pick_function;

    fn labels(entries: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        entries
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn function_follows_the_image_labels() {
        let one = labels(&[("xsk_redirect", "xdp"), ("tc_count", "tc")]);
        assert_eq!(
            pick_function(&one, None).unwrap().as_deref(),
            Some("xsk_redirect")
        );
        assert_eq!(
            pick_function(&one, Some("xsk_redirect"))
                .unwrap()
                .as_deref(),
            Some("xsk_redirect")
        );
        let err = pick_function(&one, Some("tc_count")).unwrap_err();
        assert!(
            err.contains("tc_count") && err.contains("xsk_redirect"),
            "{err}"
        );
        // No label: the caller's choice, or the manager's rule.
        let none = labels(&[]);
        assert_eq!(
            pick_function(&none, Some("f")).unwrap().as_deref(),
            Some("f")
        );
        assert_eq!(pick_function(&none, None).unwrap(), None);
        let two = labels(&[("a", "xdp"), ("b", "xdp")]);
        assert_eq!(pick_function(&two, None).unwrap(), None);
    }
}
