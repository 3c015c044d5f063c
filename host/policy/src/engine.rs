//! The one wasmtime engine of the process, its epoch ticker, and loading.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, OptLevel};

use crate::bindings::{PoolPolicy, DECISIONS_EXPORT, DECISIONS_EXPORT_PREFIX};
use crate::blocking::Blocking;
use crate::cache::{self, ArtifactCache, CacheMiss};
use crate::error::PolicyError;
use crate::gate::CallGate;
use crate::policy::LoadedPolicy;
use crate::slots;
use crate::store::StoreState;

/// How often the ticker advances the engine's epoch. A deadline ends a call
/// between `deadline` and `deadline + 2 ticks` (plus scheduling delay).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The WASI version whose `monotonic-clock` this host defines (wasmtime-wasi
/// 48); the sleeping functions are replaced by traps under this name.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Engine-wide limits and the artifact cache.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Wall-clock budget of one call (instantiation + the export), unless the
    /// call's [`CallCtx`](crate::CallCtx) overrides it. Default 100 ms.
    pub deadline: Duration,
    /// Bytes of linear memory a call may use, all memories together, unless
    /// overridden per call. Default 32 MiB; at most
    /// [`MAX_MEMORY_LIMIT`](crate::MAX_MEMORY_LIMIT).
    pub memory_limit: usize,
    /// Calls alive at once, all policies and pools together: the engine's
    /// pooled instance slots. A call beyond waits for a slot (at most its
    /// deadline), then fails as [`DecisionError::Busy`](crate::DecisionError::Busy).
    /// Default [`CONCURRENT_CALLS`](crate::CONCURRENT_CALLS); 1 to 1024.
    pub concurrent_calls: usize,
    /// Where precompiled artifacts are kept; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory_limit: 32 << 20,
            concurrent_calls: slots::CONCURRENT_CALLS,
            cache_dir: None,
        }
    }
}

/// The policy engine: one `wasmtime::Engine` with epoch interruption, a
/// ticker thread advancing the epoch every [`EPOCH_TICK`], the linker (WASI
/// deny-all + `afxdp:policy/host`) and the artifact cache.
///
/// Cheap to clone (shared). The ticker runs as long as the engine or any
/// [`LoadedPolicy`] from it is alive, so a policy's deadline always fires;
/// it stops when the last of them is dropped.
///
/// Loading and calling are blocking (compilation takes up to seconds, a call
/// up to its deadline): from async code, use `spawn_blocking`.
#[derive(Clone)]
pub struct PolicyEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) config: EngineConfig,
    /// Calls in flight, bounded to the pool's slots.
    pub(crate) slots: CallGate,
    cache: Option<ArtifactCache>,
    compat: String,
    loaded: Mutex<HashMap<String, Weak<LoadedPolicy>>>,
    _ticker: Ticker,
}

impl EngineInner {
    /// Epoch ticks for a deadline: rounded up, plus one for the partial tick
    /// in progress, so a call always gets at least `deadline`.
    pub(crate) fn ticks(deadline: Duration) -> u64 {
        let n = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(n).unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("afxdp-policy-epoch".into())
            .spawn(move || {
                // Tick until the sender is dropped (or sends).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sha256:<hex>` → `<hex>` when well-formed.
fn digest_hex(digest: &str) -> Result<&str, PolicyError> {
    let bad = || PolicyError::BadDigest {
        digest: digest.chars().take(100).collect(),
    };
    let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    Ok(hex)
}

/// The Wasm header check: magic, then component (version 0x0d, layer 1).
fn check_header(wasm: &[u8]) -> Result<(), PolicyError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(PolicyError::NotWasm {
            found: cache::hex(&wasm[..wasm.len().min(8)]),
        });
    }
    match wasm[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(PolicyError::NotComponent {
            found: "a core module".into(),
        }),
        [a, b, c, d] => Err(PolicyError::NotComponent {
            found: format!(
                "version {} layer {}",
                u16::from_le_bytes([a, b]),
                u16::from_le_bytes([c, d])
            ),
        }),
        _ => unreachable!("slice of length 4"),
    }
}

impl PolicyEngine {
    /// Build the engine and start its ticker.
    ///
    /// # Errors
    /// [`PolicyError::Engine`] when wasmtime refuses the configuration or the
    /// ticker thread cannot start; [`PolicyError::CacheDir`] when the cache
    /// directory cannot be created.
    pub fn new(config: EngineConfig) -> Result<Self, PolicyError> {
        let engine_err = |what: &str, e: wasmtime::Error| PolicyError::Engine {
            detail: format!("{what}: {e}"),
        };
        let mut wc = wasmtime::Config::new();
        wc.epoch_interruption(true)
            .wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            // Traps are answers, not debugging sessions: no backtrace capture
            // (cheaper traps, and error messages stay one line; the guest's
            // stderr carries its panic message).
            .wasm_backtrace_max_frames(None);
        let calls = config
            .concurrent_calls
            .clamp(1, slots::MAX_CONCURRENT_CALLS);
        let (allocation, pagemap_scan) = slots::allocation(calls as u32);
        wc.allocation_strategy(allocation)
            // A memory slot is as large as the largest memory limit.
            .memory_reservation(slots::MAX_MEMORY_LIMIT as u64);
        let engine = Engine::new(&wc).map_err(|e| engine_err("wasmtime config", e))?;

        let mut linker: Linker<StoreState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| engine_err("linking WASI", e))?;
        PoolPolicy::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| engine_err("linking afxdp:policy/host", e))?;
        // A sleeping guest blocks inside the host, where epoch interruption
        // cannot reach it: the monotonic clock's subscriptions trap instead.
        linker.allow_shadowing(true);
        {
            let mut clock = linker
                .instance(MONOTONIC_CLOCK)
                .map_err(|e| engine_err("linking the clock", e))?;
            for name in ["subscribe-duration", "subscribe-instant"] {
                clock
                    .func_new(name, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(format!(
                            "policies may not sleep: {MONOTONIC_CLOCK}.{name} is disabled"
                        )))
                    })
                    .map_err(|e| engine_err("linking the clock", e))?;
            }
        }
        linker.allow_shadowing(false);

        let cache = config
            .cache_dir
            .as_deref()
            .map(ArtifactCache::open)
            .transpose()?;
        tracing::debug!(
            slots = calls,
            reset = if pagemap_scan {
                "pagemap-scan"
            } else {
                "madvise"
            },
            "policy engine: pooled instance slots"
        );
        let ticker = Ticker::start(engine.clone()).map_err(|e| PolicyError::Engine {
            detail: format!("starting the epoch ticker: {e}"),
        })?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                compat: cache::compat_hash(&engine),
                engine,
                linker,
                config,
                slots: CallGate::new(calls),
                cache,
                loaded: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Where the precompiled artifact of `digest` is (or would be) cached.
    pub fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest_hex(digest).ok()?;
        Some(self.inner.cache.as_ref()?.path(hex, &self.inner.compat))
    }

    /// Load a policy component: the bytes of the OCI layer and its digest.
    ///
    /// Checks, in order: the digest is `sha256:<hex>` and the bytes hash to
    /// it; the bytes are a Wasm component; the component (from the artifact
    /// cache, or compiled and cached) exports `afxdp:policy/decisions@0.1.0`
    /// and imports nothing this host lacks; `metadata()` answers within the
    /// engine's limits. Loading the same digest again while a previous
    /// [`LoadedPolicy`] is alive returns that one.
    ///
    /// An unusable cached artifact (corrupt, foreign, from another engine) is
    /// not an error: the component is recompiled and the artifact replaced.
    /// Cache write failures are logged, not returned.
    ///
    /// Loads are serialized per engine (one compile at a time, and never two
    /// compiles of one digest); calls on already loaded policies are not
    /// affected.
    ///
    /// # Errors
    /// See [`PolicyError`]; the previous policy of a pool should stay in
    /// place when this fails.
    pub fn load(
        &self,
        b: &Blocking,
        wasm: &[u8],
        digest: &str,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let hex = digest_hex(digest)?;
        let actual = cache::hex(&Sha256::digest(wasm));
        if actual != hex {
            return Err(PolicyError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let mut loaded = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loaded.retain(|_, w| w.strong_count() > 0);
        if let Some(p) = loaded.get(digest).and_then(Weak::upgrade) {
            return Ok(p);
        }
        check_header(wasm)?;
        let component = self.component(wasm, digest, hex)?;
        check_exports(&self.inner.engine, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Link(e.into_boxed_dyn_error()))?;
        let pre = crate::bindings::PoolPolicyPre::new(pre)
            .map_err(|e| PolicyError::Link(e.into_boxed_dyn_error()))?;
        let policy = Arc::new(LoadedPolicy::new(b, self.inner.clone(), pre, digest)?);
        loaded.insert(digest.to_string(), Arc::downgrade(&policy));
        tracing::info!(
            digest,
            name = policy.metadata().name,
            version = policy.metadata().version,
            "policy loaded"
        );
        Ok(policy)
    }

    fn component(&self, wasm: &[u8], digest: &str, hex: &str) -> Result<Component, PolicyError> {
        let engine = &self.inner.engine;
        let path = self
            .inner
            .cache
            .as_ref()
            .map(|c| (c, c.path(hex, &self.inner.compat)));
        if let Some((cache, path)) = &path {
            let start = Instant::now();
            match cache.load(engine, path) {
                Ok(c) => {
                    tracing::debug!(digest, path = %path.display(), elapsed = ?start.elapsed(), "policy artifact from cache");
                    return Ok(c);
                }
                Err(CacheMiss::Absent) => {}
                Err(e) => {
                    tracing::warn!(digest, path = %path.display(), error = %e, "recompiling the policy")
                }
            }
        }
        let start = Instant::now();
        let component = Component::new(engine, wasm)
            .map_err(|e| PolicyError::Compile(e.into_boxed_dyn_error()))?;
        tracing::info!(digest, elapsed = ?start.elapsed(), "policy compiled");
        if let Some((cache, path)) = &path {
            if let Err(e) = cache.store(path, &component) {
                tracing::warn!(digest, path = %path.display(), error = %e, "could not cache the compiled policy");
            }
        }
        Ok(component)
    }
}

fn check_exports(engine: &Engine, component: &Component) -> Result<(), PolicyError> {
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    if names.contains(&DECISIONS_EXPORT) {
        return Ok(());
    }
    if let Some(other) = names
        .iter()
        .find(|n| n.starts_with(DECISIONS_EXPORT_PREFIX))
    {
        return Err(PolicyError::WrongVersion {
            expected: DECISIONS_EXPORT,
            found: other.to_string(),
        });
    }
    Err(PolicyError::MissingExport {
        expected: DECISIONS_EXPORT,
        found: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert!(digest_hex(&ok).is_ok());
        assert!(digest_hex(&ok.to_uppercase()).is_err());
        assert!(digest_hex("sha256:abc").is_err());
        assert!(digest_hex(&format!("sha512:{}", "ab".repeat(32))).is_err());
    }

    #[test]
    fn headers() {
        assert!(matches!(
            check_header(b"hello wo"),
            Err(PolicyError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm"),
            Err(PolicyError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(PolicyError::NotComponent { .. })
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn ticks_cover_the_deadline() {
        assert_eq!(EngineInner::ticks(Duration::from_millis(100)), 51);
        assert_eq!(EngineInner::ticks(Duration::from_millis(1)), 2);
        assert_eq!(EngineInner::ticks(Duration::ZERO), 1);
    }
}
