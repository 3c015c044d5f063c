//! The fetcher: online pulls with verification, cache fallback, push.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Client;
use oci_wasm::{ToConfig as _, WasmConfig, WASM_MANIFEST_MEDIA_TYPE};
use tokio::io::AsyncWrite;
use tracing::{debug, info, info_span, warn, Instrument as _};

use crate::artifact::{check_wasm, sha256_digest, validate_manifest};
use crate::auth::{Auth, Credentials};
use crate::cache::{Cache, CachedPolicy};
use crate::reference::{is_loopback_registry, PolicyRef, PullPolicy, Scheme};
use crate::OciError;

/// Manifest media types asked for; anything but an OCI image manifest is
/// then refused with [`OciError::WrongMediaType`] rather than a 404.
const ACCEPT_MANIFESTS: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Fetcher settings.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// Root of the content-addressed cache (created 0700 if missing).
    pub cache_dir: PathBuf,
    /// Credentials.
    pub auth: Auth,
    /// Registries (`host[:port]`, or `host` for every port) that may be
    /// reached over plain HTTP although they are not on loopback.
    pub insecure_registries: Vec<String>,
    /// Connect and read timeout of each request, and the deadline for the
    /// online part of one `fetch`/`push`. Expiry counts as "unreachable".
    pub timeout: Duration,
}

/// A verified policy artifact.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The Wasm bytes (digest and magic verified).
    pub wasm: Vec<u8>,
    /// Where the same bytes live in the cache (`blobs/sha256/<hex>`).
    pub path: PathBuf,
    /// `sha256:<hex>` of the Wasm layer.
    pub layer_digest: String,
    /// `sha256:<hex>` of the manifest (the pinned digest, or the tag's
    /// resolution).
    pub manifest_digest: String,
    /// True when the registry was not used: everything came from the cache.
    pub from_cache: bool,
}

/// Pulls and pushes Wasm policy artifacts.
///
/// Invariants:
/// - a manifest is accepted only if the sha256 of the exact bytes served
///   equals the pinned digest; a layer only if its sha256 equals the digest
///   in that manifest and it starts with `\0asm`;
/// - the cache holds only verified content and re-verifies on every read;
/// - no plain-HTTP traffic to a registry that is not loopback or marked
///   insecure;
/// - one `oci_client::Client` per (registry, scheme), carrying that
///   registry's credentials, because the client caches auth per registry.
pub struct Fetcher {
    cache: Cache,
    creds: Credentials,
    insecure: HashSet<String>,
    timeout: Duration,
    clients: Mutex<HashMap<(String, Scheme), Client>>,
}

/// Outcome of the online part of a fetch.
enum Online {
    /// Connection refused, DNS, timeout, 502/503/504: the cache may answer.
    Unreachable(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else is final.
    Failed(OciError),
}

impl From<OciError> for Online {
    fn from(e: OciError) -> Self {
        Online::Failed(e)
    }
}

/// Whether a client error means "the registry could not be reached".
fn is_unreachable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(re) => {
            re.is_connect()
                || re.is_timeout()
                || re.status().is_some_and(|s| matches!(s.as_u16(), 502..=504))
        }
        OciDistributionError::ServerError { code, .. } => matches!(code, 502..=504),
        _ => false,
    }
}

fn is_unauthorized(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RequestError(re) => {
            re.status().is_some_and(|s| matches!(s.as_u16(), 401 | 403))
        }
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// Maps a client error that is neither "unreachable" nor a digest mismatch.
fn registry_error(registry: &str, operation: &'static str, e: OciDistributionError) -> OciError {
    if is_unauthorized(&e) {
        OciError::Unauthorized {
            registry: registry.to_string(),
            operation,
            source: e,
        }
    } else {
        OciError::Registry {
            registry: registry.to_string(),
            operation,
            source: e,
        }
    }
}

/// An `AsyncWrite` into memory that refuses to grow past `limit` (the size
/// the verified manifest announces), so a registry cannot make us buffer
/// more than that.
struct CappedSink {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl AsyncWrite for CappedSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other(
                "blob is larger than its descriptor says",
            )));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs cache I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OciError> + Send + 'static,
) -> Result<T, OciError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OciError::io("cache task", PathBuf::new(), std::io::Error::other(e)))?
}

impl Fetcher {
    /// Opens (creates) the cache and loads the credentials. No network traffic.
    ///
    /// # Errors
    /// [`OciError::Io`] if the cache directory cannot be created,
    /// [`OciError::PullSecret`]/[`OciError::Io`] for an unusable pull secret.
    pub fn new(config: FetcherConfig) -> Result<Self, OciError> {
        let cache = Cache::open(&config.cache_dir)?;
        let creds = Credentials::load(&config.auth)?;
        Ok(Fetcher {
            cache,
            creds,
            insecure: config.insecure_registries.into_iter().collect(),
            timeout: config.timeout,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The transport `r` would use, decided without traffic: plain HTTP for
    /// loopback registries and registries listed as insecure, HTTPS
    /// otherwise; an explicit `https://` always wins.
    ///
    /// # Errors
    /// [`OciError::InsecureNotAllowed`] for an explicit `http://` to any other registry.
    pub fn scheme_for(&self, r: &PolicyRef) -> Result<Scheme, OciError> {
        let registry = r.registry();
        let host = registry
            .rsplit_once(':')
            .filter(|_| !registry.starts_with('['))
            .map_or(registry, |(h, _)| h);
        let http_ok = is_loopback_registry(registry)
            || self.insecure.contains(registry)
            || self.insecure.contains(host);
        match (r.explicit_scheme(), http_ok) {
            (Some(Scheme::Https), _) | (None, false) => Ok(Scheme::Https),
            (Some(Scheme::Http), true) | (None, true) => Ok(Scheme::Http),
            (Some(Scheme::Http), false) => Err(OciError::InsecureNotAllowed {
                registry: registry.to_string(),
            }),
        }
    }

    fn client(&self, registry: &str, scheme: Scheme) -> Result<Client, OciError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&(registry.to_string(), scheme)) {
            return Ok(c.clone());
        }
        let config = ClientConfig {
            protocol: match scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Registry {
            registry: registry.to_string(),
            operation: "create client",
            source: e,
        })?;
        clients.insert((registry.to_string(), scheme), client.clone());
        Ok(client)
    }

    /// Fetches a policy artifact, verified, through the cache.
    ///
    /// - Pinned reference, [`PullPolicy::IfNotPresent`]: served from the cache
    ///   when it holds it (no traffic); otherwise pulled.
    /// - Pinned reference, [`PullPolicy::Always`]: pulled; if the registry is
    ///   unreachable, served from the cache.
    /// - Tag, `IfNotPresent`: the cached tag → digest resolution is reused;
    ///   `Always`: resolved online, no fallback.
    ///
    /// A cached blob that fails verification is deleted and pulled again.
    ///
    /// # Errors
    /// [`OciError::InsecureNotAllowed`] (before any traffic),
    /// [`OciError::ManifestDigestMismatch`], [`OciError::LayerDigestMismatch`],
    /// [`OciError::WrongMediaType`], [`OciError::NotWasm`],
    /// [`OciError::Unauthorized`], [`OciError::NotCachedAndUnreachable`],
    /// [`OciError::Registry`], [`OciError::Io`], [`OciError::TooLarge`].
    pub async fn fetch(&self, r: &PolicyRef, pull: PullPolicy) -> Result<Fetched, OciError> {
        let scheme = self.scheme_for(r)?;
        let span = info_span!("oci_fetch", reference = %r, ?pull);
        self.fetch_inner(r, pull, scheme).instrument(span).await
    }

    async fn fetch_inner(
        &self,
        r: &PolicyRef,
        pull: PullPolicy,
        scheme: Scheme,
    ) -> Result<Fetched, OciError> {
        let unreachable = |source| OciError::NotCachedAndUnreachable {
            reference: r.to_string(),
            registry: r.registry().to_string(),
            source,
        };
        if let Some(md) = r.digest() {
            if pull == PullPolicy::IfNotPresent {
                if let Some(f) = self.load_cached(r, md).await? {
                    debug!("served from cache");
                    return Ok(f);
                }
            }
            return match self.fetch_online(r, scheme).await {
                Ok(f) => Ok(f),
                Err(Online::Failed(e)) => Err(e),
                Err(Online::Unreachable(source)) => match self.load_cached(r, md).await? {
                    Some(f) => {
                        warn!(error = %source, "registry unreachable; serving the pinned policy from the cache");
                        Ok(f)
                    }
                    None => Err(unreachable(source)),
                },
            };
        }
        // A tag.
        let tag_key = format!(
            "{}/{}:{}",
            r.registry(),
            r.repository(),
            r.tag().unwrap_or_default()
        );
        if pull == PullPolicy::IfNotPresent {
            let cache = self.cache.clone();
            let key = tag_key.clone();
            if let Some(md) = blocking(move || cache.get_tag(&key)).await? {
                if let Some(f) = self.load_cached(&r.with_digest(&md), &md).await? {
                    debug!(manifest_digest = %md, "tag resolved from cache");
                    return Ok(f);
                }
            }
        }
        match self.fetch_online(r, scheme).await {
            Ok(f) => {
                let cache = self.cache.clone();
                let md = f.manifest_digest.clone();
                blocking(move || cache.put_tag(&tag_key, &md)).await?;
                Ok(f)
            }
            Err(Online::Failed(e)) => Err(e),
            Err(Online::Unreachable(source)) => Err(unreachable(source)),
        }
    }

    async fn load_cached(&self, r: &PolicyRef, md: &str) -> Result<Option<Fetched>, OciError> {
        let cache = self.cache.clone();
        let (reference, digest) = (r.to_string(), md.to_string());
        let hit = blocking(move || cache.load(&reference, &digest)).await?;
        Ok(hit.map(
            |CachedPolicy {
                 wasm,
                 layer_digest,
                 path,
             }| Fetched {
                wasm,
                path,
                layer_digest,
                manifest_digest: md.to_string(),
                from_cache: true,
            },
        ))
    }

    async fn fetch_online(&self, r: &PolicyRef, scheme: Scheme) -> Result<Fetched, Online> {
        match tokio::time::timeout(self.timeout, self.fetch_online_inner(r, scheme)).await {
            Ok(res) => res,
            Err(elapsed) => Err(Online::Unreachable(Box::new(elapsed))),
        }
    }

    async fn fetch_online_inner(&self, r: &PolicyRef, scheme: Scheme) -> Result<Fetched, Online> {
        let registry = r.registry();
        let reference = r.to_string();
        let client = self.client(registry, scheme)?;
        let auth = self.creds.for_registry(registry);
        let oref = r.to_oci();
        debug!(
            ?scheme,
            auth = self.creds.describe(registry),
            "pulling manifest"
        );

        let (manifest, _) = match client
            .pull_manifest_raw(&oref, &auth, ACCEPT_MANIFESTS)
            .await
        {
            Ok(m) => m,
            Err(e) if is_unreachable(&e) => return Err(Online::Unreachable(Box::new(e))),
            // oci-client checks the pinned digest too; report it as ours.
            Err(OciDistributionError::DigestError(DigestError::VerificationError {
                actual,
                ..
            })) if r.digest().is_some() => {
                return Err(OciError::ManifestDigestMismatch {
                    reference,
                    expected: r.digest().unwrap_or_default().to_string(),
                    actual,
                }
                .into())
            }
            Err(e) => return Err(registry_error(registry, "pull manifest", e).into()),
        };
        let manifest_digest = sha256_digest(&manifest);
        if let Some(expected) = r.digest() {
            if manifest_digest != expected {
                return Err(OciError::ManifestDigestMismatch {
                    reference,
                    expected: expected.to_string(),
                    actual: manifest_digest,
                }
                .into());
            }
        }
        let layer = validate_manifest(&reference, &manifest)?;

        // Layers are content-addressed: one already cached (and re-verified)
        // need not be downloaded again.
        let cache = self.cache.clone();
        let ld = layer.digest.clone();
        let cached = blocking(move || cache.get_blob(&ld)).await?;
        let wasm = match cached {
            Some(w) => w,
            None => {
                let limit = usize::try_from(layer.size).unwrap_or(0);
                let mut sink = CappedSink {
                    // The announced size is only trusted as an upper bound.
                    buf: Vec::with_capacity(limit.min(1 << 20)),
                    limit,
                    overflowed: false,
                };
                match client.pull_blob(&oref, &layer, &mut sink).await {
                    Ok(()) => {}
                    Err(_) if sink.overflowed => {
                        return Err(OciError::LayerDigestMismatch {
                            reference,
                            expected: layer.digest.clone(),
                            actual: format!(
                                "more than the {} bytes the manifest announces",
                                layer.size
                            ),
                        }
                        .into())
                    }
                    Err(e) if is_unreachable(&e) => return Err(Online::Unreachable(Box::new(e))),
                    Err(OciDistributionError::DigestError(DigestError::VerificationError {
                        actual,
                        ..
                    })) => {
                        return Err(OciError::LayerDigestMismatch {
                            reference,
                            expected: layer.digest.clone(),
                            actual,
                        }
                        .into())
                    }
                    Err(e) => return Err(registry_error(registry, "pull layer", e).into()),
                }
                sink.buf
            }
        };
        let actual = sha256_digest(&wasm);
        if actual != layer.digest {
            return Err(OciError::LayerDigestMismatch {
                reference,
                expected: layer.digest.clone(),
                actual,
            }
            .into());
        }
        check_wasm(&reference, &wasm)?;

        let cache = self.cache.clone();
        let (ld, md) = (layer.digest.clone(), manifest_digest.clone());
        let (wasm, path) = blocking(move || {
            // Layer first, manifest next, index last: a crash in between
            // leaves only unreferenced, verified blobs.
            let path = cache.put_blob(&ld, &wasm)?;
            cache.put_blob(&md, &manifest)?;
            cache.put_ref(&md, &ld)?;
            Ok((wasm, path))
        })
        .await?;
        info!(manifest_digest = %manifest_digest, layer_digest = %layer.digest, "policy pulled and verified");
        Ok(Fetched {
            wasm,
            path,
            layer_digest: layer.digest,
            manifest_digest,
            from_cache: false,
        })
    }

    /// Pushes `wasm` as a policy artifact (config
    /// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer,
    /// described by oci-wasm's `WasmConfig`) to `registry/repo:tag` and
    /// returns the pinned reference `registry/repo@sha256:<manifest>`.
    ///
    /// The manifest digest is computed here over the exact bytes uploaded.
    ///
    /// # Errors
    /// [`OciError::InvalidReference`] (no tag), [`OciError::InsecureNotAllowed`],
    /// [`OciError::NotWasm`] (no magic, or a component oci-wasm cannot decode),
    /// [`OciError::Unauthorized`], [`OciError::Registry`].
    pub async fn push(&self, registry_repo_tag: &str, wasm: &[u8]) -> Result<String, OciError> {
        let r = PolicyRef::parse_with_pull_policy(registry_repo_tag, Some(PullPolicy::Always))?;
        if r.tag().is_none() {
            return Err(OciError::InvalidReference {
                reference: registry_repo_tag.to_string(),
                reason: "push needs registry/repo:tag".into(),
            });
        }
        let scheme = self.scheme_for(&r)?;
        check_wasm(registry_repo_tag, wasm)?;
        let is_component = wasm.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00][..]);
        let described = if is_component {
            WasmConfig::from_raw_component(wasm.to_vec(), None)
        } else {
            WasmConfig::from_raw_module(wasm.to_vec(), None)
        };
        // oci-wasm reports its errors as `anyhow::Error`.
        let not_wasm = |e: anyhow::Error| OciError::NotWasm {
            subject: registry_repo_tag.to_string(),
            reason: format!("{e:#}"),
        };
        let (wasm_config, layer) = described.map_err(not_wasm)?;
        let config = wasm_config.to_config().map_err(not_wasm)?;
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.media_type = Some(WASM_MANIFEST_MEDIA_TYPE.to_string());
        let body = serde_json::to_vec(&manifest).map_err(|source| OciError::InvalidManifest {
            reference: registry_repo_tag.to_string(),
            source,
        })?;
        let manifest_digest = sha256_digest(&body);

        let registry = r.registry();
        let client = self.client(registry, scheme)?;
        let auth = self.creds.for_registry(registry);
        let oref = r.to_oci();
        let work = async {
            client
                .store_auth_if_needed(oref.resolve_registry(), &auth)
                .await;
            client
                .push_blob(&oref, layer.data.clone(), &manifest.layers[0].digest)
                .await
                .map_err(|e| registry_error(registry, "push layer", e))?;
            client
                .push_blob(&oref, config.data.clone(), &manifest.config.digest)
                .await
                .map_err(|e| registry_error(registry, "push config", e))?;
            let content_type =
                WASM_MANIFEST_MEDIA_TYPE
                    .parse()
                    .map_err(|_| OciError::InvalidReference {
                        reference: registry_repo_tag.to_string(),
                        reason: "manifest media type is not a header value".into(),
                    })?;
            client
                .push_manifest_raw(&oref, body, content_type)
                .await
                .map_err(|e| registry_error(registry, "push manifest", e))?;
            Ok::<_, OciError>(())
        };
        tokio::time::timeout(self.timeout, work)
            .instrument(info_span!("oci_push", reference = %r))
            .await
            .map_err(|_| OciError::Timeout {
                registry: registry.to_string(),
                operation: "push",
                after: self.timeout,
            })??;
        let pinned = r.with_digest(&manifest_digest).to_string();
        info!(%pinned, "policy pushed");
        Ok(pinned)
    }
}
