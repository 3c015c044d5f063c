//! The fetcher: online pulls with verification, cache fallback, push.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Client;
use oci_wasm::{ToConfig as _, WasmConfig, WASM_MANIFEST_MEDIA_TYPE};
use tokio::io::AsyncWrite;
use tracing::{debug, info, info_span, warn, Instrument as _};

use crate::artifact::{check_wasm, sha256_digest, validate_manifest, Artifact, WasmLayer};
use crate::auth::{Auth, Credentials};
use crate::bytecode::{build_image, check_bpf_object, check_file_name, BytecodeImage};
use crate::cache::{Cache, CachedArtifact};
use crate::reference::{is_loopback_registry, PolicyRef, PullPolicy, Scheme};
use crate::OciError;

/// The object's name in the layer when [`Fetcher::push_bytecode`] is not
/// told one.
pub const DEFAULT_BYTECODE_FILE_NAME: &str = "bytecode.bpf.o";

/// Manifest media types asked for; anything but an image manifest of the
/// kind fetched is then refused with [`OciError::WrongMediaType`] rather than a 404.
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

impl FetcherConfig {
    /// Timeout of [`FetcherConfig::anonymous`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Anonymous pulls into `cache_dir`, plain HTTP for loopback registries
    /// only, [`Self::DEFAULT_TIMEOUT`]; change fields with struct update
    /// syntax (`FetcherConfig { auth, ..FetcherConfig::anonymous(dir) }`).
    pub fn anonymous(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            auth: Auth::Anonymous,
            insecure_registries: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
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

/// A verified eBPF bytecode image, its object extracted into the cache.
#[derive(Debug, Clone)]
pub struct FetchedBytecode {
    /// `sha256:<hex>` of the manifest (the pinned digest, or the tag's
    /// resolution).
    pub manifest_digest: String,
    /// `sha256:<hex>` of the tar+gzip layer.
    pub layer_digest: String,
    /// The ELF object in the cache (`objects/sha256/<layer hex>/<file_name>`,
    /// mode 0600), for a program manager to load by path.
    pub object_path: PathBuf,
    /// The object's name at the root of the layer.
    pub file_name: String,
    /// `sha256:<hex>` of the object.
    pub object_digest: String,
    /// The object's size in bytes.
    pub object_size: u64,
    /// `io.ebpf.programs`: function name → program type (`xdp`, …); from the
    /// older labels, `{io.ebpf.bpf_function_name: io.ebpf.program_type}`.
    pub programs: BTreeMap<String, String>,
    /// `io.ebpf.maps`: map name → map type (empty when absent).
    pub maps: BTreeMap<String, String>,
    /// True when the registry was not used: everything came from the cache.
    pub from_cache: bool,
}

/// What the shared fetch path returns for any kind.
struct Verified<A> {
    layer: Vec<u8>,
    path: PathBuf,
    layer_digest: String,
    manifest_digest: String,
    content: A,
    from_cache: bool,
}

/// Pulls and pushes Wasm policy artifacts and eBPF bytecode images.
///
/// Invariants:
/// - a manifest is accepted only if the sha256 of the exact bytes served
///   equals the pinned digest; a layer (and, for bytecode images, the
///   config) only if its sha256 equals the digest in that manifest and its
///   content decodes (`\0asm`; a tar+gzip with one BPF ELF `.o`);
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
        let v = self
            .fetch_artifact::<WasmLayer>(r, pull, "oci_fetch")
            .await?;
        Ok(Fetched {
            wasm: v.layer,
            path: v.path,
            layer_digest: v.layer_digest,
            manifest_digest: v.manifest_digest,
            from_cache: v.from_cache,
        })
    }

    /// Fetches an eBPF bytecode image (bpfman's layout: one tar+gzip layer
    /// holding the `.o`, `io.ebpf.*` labels in the image config), verified,
    /// through the cache, with the same rules as [`Fetcher::fetch`] for pinned
    /// references, tags and pull policies (a restarted node with the registry
    /// down is served a pinned image from the cache).
    ///
    /// The manifest must hash to the pinned digest, the config and the layer
    /// to the digests it names; the layer is gunzipped and read in memory
    /// (size-limited, no `..` or absolute entry names); it must hold exactly
    /// one `.o` at its root, or the one `io.ebpf.filename` names, and that
    /// must be an ELF64 with `e_machine` EM_BPF of the host's byte order.
    /// The object is then written (0600, atomically) to
    /// `<cache>/objects/sha256/<layer hex>/<name>.o`, which
    /// [`FetchedBytecode::object_path`] names.
    ///
    /// # Errors
    /// As [`Fetcher::fetch`], with [`OciError::InvalidBytecode`] instead of
    /// [`OciError::NotWasm`], and [`OciError::ConfigDigestMismatch`].
    pub async fn fetch_bytecode(
        &self,
        r: &PolicyRef,
        pull: PullPolicy,
    ) -> Result<FetchedBytecode, OciError> {
        let v = self
            .fetch_artifact::<BytecodeImage>(r, pull, "oci_fetch_bytecode")
            .await?;
        let cache = self.cache.clone();
        let image = v.content;
        let layer_digest = v.layer_digest.clone();
        let (object_path, image) = blocking(move || {
            let p = cache.put_object(&layer_digest, &image.file_name, &image.object)?;
            Ok((p, image))
        })
        .await?;
        Ok(FetchedBytecode {
            manifest_digest: v.manifest_digest,
            layer_digest: v.layer_digest,
            object_path,
            file_name: image.file_name,
            object_digest: sha256_digest(&image.object),
            object_size: image.object.len() as u64,
            programs: image.programs,
            maps: image.maps,
            from_cache: v.from_cache,
        })
    }

    /// The one path every fetch takes: cache, manifest pull and digest
    /// verification, blobs, decoding as `A`.
    async fn fetch_artifact<A: Artifact>(
        &self,
        r: &PolicyRef,
        pull: PullPolicy,
        span_name: &'static str,
    ) -> Result<Verified<A>, OciError> {
        let scheme = self.scheme_for(r)?;
        let span = info_span!("oci", op = span_name, reference = %r, ?pull);
        self.fetch_inner::<A>(r, pull, scheme)
            .instrument(span)
            .await
    }

    async fn fetch_inner<A: Artifact>(
        &self,
        r: &PolicyRef,
        pull: PullPolicy,
        scheme: Scheme,
    ) -> Result<Verified<A>, OciError> {
        let unreachable = |source| OciError::NotCachedAndUnreachable {
            reference: r.to_string(),
            registry: r.registry().to_string(),
            source,
        };
        if let Some(md) = r.digest() {
            if pull == PullPolicy::IfNotPresent {
                if let Some(f) = self.load_cached::<A>(r, md).await? {
                    debug!("served from cache");
                    return Ok(f);
                }
            }
            return match self.fetch_online::<A>(r, scheme).await {
                Ok(f) => Ok(f),
                Err(Online::Failed(e)) => Err(e),
                Err(Online::Unreachable(source)) => match self.load_cached::<A>(r, md).await? {
                    Some(f) => {
                        warn!(error = %source, "registry unreachable; serving the pinned artifact from the cache");
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
                if let Some(f) = self.load_cached::<A>(&r.with_digest(&md), &md).await? {
                    debug!(manifest_digest = %md, "tag resolved from cache");
                    return Ok(f);
                }
            }
        }
        match self.fetch_online::<A>(r, scheme).await {
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

    async fn load_cached<A: Artifact>(
        &self,
        r: &PolicyRef,
        md: &str,
    ) -> Result<Option<Verified<A>>, OciError> {
        let cache = self.cache.clone();
        let (reference, digest) = (r.to_string(), md.to_string());
        let hit = blocking(move || cache.load::<A>(&reference, &digest)).await?;
        Ok(hit.map(
            |CachedArtifact {
                 layer,
                 layer_digest,
                 path,
                 content,
             }| Verified {
                layer,
                path,
                layer_digest,
                manifest_digest: md.to_string(),
                content,
                from_cache: true,
            },
        ))
    }

    async fn fetch_online<A: Artifact>(
        &self,
        r: &PolicyRef,
        scheme: Scheme,
    ) -> Result<Verified<A>, Online> {
        match tokio::time::timeout(self.timeout, self.fetch_online_inner::<A>(r, scheme)).await {
            Ok(res) => res,
            Err(elapsed) => Err(Online::Unreachable(Box::new(elapsed))),
        }
    }

    async fn fetch_online_inner<A: Artifact>(
        &self,
        r: &PolicyRef,
        scheme: Scheme,
    ) -> Result<Verified<A>, Online> {
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
        let layout = validate_manifest(A::KIND, &reference, &manifest)?;
        let config = if A::KIND.needs_config() {
            Some(
                self.pull_verified(&client, &oref, &reference, &layout.config, Blob::Config)
                    .await?,
            )
        } else {
            None
        };
        let layer = self
            .pull_verified(&client, &oref, &reference, &layout.layer, Blob::Layer)
            .await?;
        // Decoding may gunzip megabytes: off the runtime.
        let (content, config, layer) = blocking(move || {
            let content = A::decode(&reference, config.as_deref(), &layer)?;
            Ok((content, config, layer))
        })
        .await?;

        let cache = self.cache.clone();
        let (ld, cd, md) = (
            layout.layer.digest.clone(),
            layout.config.digest.clone(),
            manifest_digest.clone(),
        );
        let (layer, path) = blocking(move || {
            // Blobs first, manifest next, index last: a crash in between
            // leaves only unreferenced, verified blobs.
            let path = cache.put_blob(&ld, &layer)?;
            if let Some(c) = &config {
                cache.put_blob(&cd, c)?;
            }
            cache.put_blob(&md, &manifest)?;
            cache.put_ref(&md, &ld)?;
            Ok((layer, path))
        })
        .await?;
        info!(manifest_digest = %manifest_digest, layer_digest = %layout.layer.digest, "artifact pulled and verified");
        Ok(Verified {
            layer,
            path,
            layer_digest: layout.layer.digest,
            manifest_digest,
            content,
            from_cache: false,
        })
    }

    /// A blob named by a verified manifest: from the cache (re-hashed) or the
    /// registry, never buffering more than its descriptor announces, and
    /// accepted only if it hashes to the descriptor's digest.
    async fn pull_verified(
        &self,
        client: &Client,
        oref: &oci_client::Reference,
        reference: &str,
        desc: &OciDescriptor,
        blob: Blob,
    ) -> Result<Vec<u8>, Online> {
        let mismatch = |actual: String| match blob {
            Blob::Layer => OciError::LayerDigestMismatch {
                reference: reference.to_string(),
                expected: desc.digest.clone(),
                actual,
            },
            Blob::Config => OciError::ConfigDigestMismatch {
                reference: reference.to_string(),
                expected: desc.digest.clone(),
                actual,
            },
        };
        // Blobs are content-addressed: one already cached (and re-verified)
        // need not be downloaded again.
        let cache = self.cache.clone();
        let d = desc.digest.clone();
        if let Some(b) = blocking(move || cache.get_blob(&d)).await? {
            return Ok(b);
        }
        let limit = usize::try_from(desc.size).unwrap_or(0);
        let mut sink = CappedSink {
            // The announced size is only trusted as an upper bound.
            buf: Vec::with_capacity(limit.min(1 << 20)),
            limit,
            overflowed: false,
        };
        match client.pull_blob(oref, desc, &mut sink).await {
            Ok(()) => {}
            Err(_) if sink.overflowed => {
                return Err(mismatch(format!(
                    "more than the {} bytes the manifest announces",
                    desc.size
                ))
                .into())
            }
            Err(e) if is_unreachable(&e) => return Err(Online::Unreachable(Box::new(e))),
            Err(OciDistributionError::DigestError(DigestError::VerificationError {
                actual,
                ..
            })) => return Err(mismatch(actual).into()),
            Err(e) => {
                let op = match blob {
                    Blob::Layer => "pull layer",
                    Blob::Config => "pull config",
                };
                return Err(registry_error(oref.registry(), op, e).into());
            }
        }
        let actual = sha256_digest(&sink.buf);
        if actual != desc.digest {
            return Err(mismatch(actual).into());
        }
        Ok(sink.buf)
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
        let (r, scheme) = self.push_target(registry_repo_tag)?;
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
        self.push_image(
            registry_repo_tag,
            &r,
            scheme,
            &manifest,
            layer.data.to_vec(),
            config.data.to_vec(),
            "policy pushed",
        )
        .await
    }

    /// Pushes `object` as a bytecode image (see [`Fetcher::push_bytecode_file`])
    /// with the object named [`DEFAULT_BYTECODE_FILE_NAME`] in the layer.
    ///
    /// # Errors
    /// As [`Fetcher::push_bytecode_file`].
    pub async fn push_bytecode(
        &self,
        registry_repo_tag: &str,
        object: &[u8],
        programs: &BTreeMap<String, String>,
        maps: &BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        self.push_bytecode_file(
            registry_repo_tag,
            DEFAULT_BYTECODE_FILE_NAME,
            object,
            programs,
            maps,
        )
        .await
    }

    /// Pushes `object` to `registry/repo:tag` as a bpfman bytecode image and
    /// returns the pinned reference `registry/repo@sha256:<manifest>`: an OCI
    /// image manifest, an `application/vnd.oci.image.config.v1+json` config
    /// whose `config.Labels` hold `io.ebpf.programs` and `io.ebpf.maps` (JSON
    /// objects of name → type) and `io.ebpf.filename`, and one
    /// `application/vnd.oci.image.layer.v1.tar+gzip` layer with the object at
    /// its root as `file_name`. The same inputs give the same digest.
    ///
    /// # Errors
    /// [`OciError::InvalidReference`] (no tag), [`OciError::InsecureNotAllowed`],
    /// [`OciError::InvalidBytecode`] (not an ELF64 EM_BPF object, no program,
    /// an empty name or type, a file name that is not one component ending in
    /// `.o`), [`OciError::Unauthorized`], [`OciError::Registry`],
    /// [`OciError::Timeout`].
    pub async fn push_bytecode_file(
        &self,
        registry_repo_tag: &str,
        file_name: &str,
        object: &[u8],
        programs: &BTreeMap<String, String>,
        maps: &BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        let (r, scheme) = self.push_target(registry_repo_tag)?;
        check_bpf_object(registry_repo_tag, object, false)?;
        check_file_name(registry_repo_tag, file_name)?;
        let bad_label = |reason: String| OciError::InvalidBytecode {
            subject: registry_repo_tag.to_string(),
            reason,
        };
        if programs.is_empty() {
            return Err(bad_label("no program given (function name → type)".into()));
        }
        for (what, m) in [("program", programs), ("map", maps)] {
            if let Some((k, v)) = m.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
                return Err(bad_label(format!(
                    "{what} {k:?} → {v:?}: empty name or type"
                )));
            }
        }
        let built = build_image(registry_repo_tag, file_name, object, programs, maps)?;
        self.push_image(
            registry_repo_tag,
            &r,
            scheme,
            &built.manifest,
            built.layer,
            built.config,
            "bytecode image pushed",
        )
        .await
    }

    /// Parses a push target (a tag is required) and decides its transport.
    fn push_target(&self, registry_repo_tag: &str) -> Result<(PolicyRef, Scheme), OciError> {
        let r = PolicyRef::parse_with_pull_policy(registry_repo_tag, Some(PullPolicy::Always))?;
        if r.tag().is_none() {
            return Err(OciError::InvalidReference {
                reference: registry_repo_tag.to_string(),
                reason: "push needs registry/repo:tag".into(),
            });
        }
        let scheme = self.scheme_for(&r)?;
        Ok((r, scheme))
    }

    /// Uploads the layer, the config and the manifest (whose media type it
    /// names); returns the pinned reference, the digest computed here over the
    /// exact manifest bytes uploaded.
    #[allow(clippy::too_many_arguments)]
    async fn push_image(
        &self,
        registry_repo_tag: &str,
        r: &PolicyRef,
        scheme: Scheme,
        manifest: &OciImageManifest,
        layer: Vec<u8>,
        config: Vec<u8>,
        done: &'static str,
    ) -> Result<String, OciError> {
        let body = serde_json::to_vec(manifest).map_err(|source| OciError::InvalidManifest {
            reference: registry_repo_tag.to_string(),
            source,
        })?;
        let manifest_digest = sha256_digest(&body);
        let media_type = manifest
            .media_type
            .as_deref()
            .unwrap_or(OCI_IMAGE_MEDIA_TYPE);

        let registry = r.registry();
        let client = self.client(registry, scheme)?;
        let auth = self.creds.for_registry(registry);
        let oref = r.to_oci();
        let work = async {
            client
                .store_auth_if_needed(oref.resolve_registry(), &auth)
                .await;
            client
                .push_blob(&oref, layer, &manifest.layers[0].digest)
                .await
                .map_err(|e| registry_error(registry, "push layer", e))?;
            client
                .push_blob(&oref, config, &manifest.config.digest)
                .await
                .map_err(|e| registry_error(registry, "push config", e))?;
            let content_type = media_type.parse().map_err(|_| OciError::InvalidReference {
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
        info!(%pinned, "{done}");
        Ok(pinned)
    }
}

/// Which blob of a manifest is being pulled (for errors).
#[derive(Clone, Copy)]
enum Blob {
    Config,
    Layer,
}
