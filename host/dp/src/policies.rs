//! Pool policies in force: fetched (OCI, digest-verified, cached) or read from
//! a file, compiled once, checked with `validate-config`, and swapped
//! atomically when a pool's policy reference changes (DESIGN.md flow 5).
//!
//! An allocation takes one snapshot ([`PolicyStore::get`]) and makes all its
//! decisions with it, so every allocation is decided by exactly one digest
//! even while a rollout swaps the policy; calls already running finish on the
//! old one. A policy that fails to fetch, verify, compile or validate never
//! replaces the one in force.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use afxdp_config::{FailurePolicy, PolicyConfig, PolicySource, PoolConfig, PullPolicy};
use afxdp_policy::{CallCtx, CallGate, DecisionError, EngineConfig, LoadedPolicy, PolicyEngine};

/// One pool's policy, as loaded.
pub struct PoolPolicy {
    pub pool: String,
    /// `sha256:...` of the component (the OCI layer, or the file's bytes).
    pub digest: String,
    /// The configuration it was loaded from (to detect changes).
    pub config: PolicyConfig,
    pub loaded: Arc<LoadedPolicy>,
    pub failure: afxdp_policy::FailurePolicy,
    pub ctx: CallCtx,
    /// The pool's concurrency bound (shared by the policies it rolls through).
    pub gate: Arc<CallGate>,
    /// How long a call waits for a slot: as long as it may run.
    pub wait: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl PoolPolicy {
    /// Call the policy through the pool's gate.
    ///
    /// # Errors
    /// [`DecisionError::Busy`] when no slot freed up within [`Self::wait`];
    /// otherwise the call's own result.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&LoadedPolicy, &CallCtx) -> Result<R, DecisionError>,
    ) -> Result<R, DecisionError> {
        let start = std::time::Instant::now();
        let r = self.gate.run(self.wait, || f(&self.loaded, &self.ctx));
        let outcome = r.as_ref().map_or_else(DecisionError::kind, |_| "ok");
        self.metrics
            .policy_call(&self.pool, &self.digest, outcome, start.elapsed());
        r
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("pool {pool}: reading policy file {path}: {source}")]
    File {
        pool: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool {pool}: fetching {reference}: {source}")]
    Fetch {
        pool: String,
        reference: String,
        #[source]
        source: Box<afxdp_oci::OciError>,
    },
    #[error("pool {pool}: loading {digest}: {source}")]
    Load {
        pool: String,
        digest: String,
        #[source]
        source: afxdp_policy::PolicyError,
    },
    #[error("pool {pool}: policy {digest} refused its config: {source}")]
    Config {
        pool: String,
        digest: String,
        #[source]
        source: afxdp_policy::DecisionError,
    },
    #[error("policy engine: {0}")]
    Engine(String),
}

/// A pool's configured policy that failed to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub reason: String,
    /// Loads in a row that failed (at start, on reload, on retry).
    pub attempts: u32,
}

/// Every pool's policy in force.
pub struct PolicyStore {
    engine: PolicyEngine,
    fetcher: Arc<afxdp_oci::Fetcher>,
    current: RwLock<BTreeMap<String, Arc<PoolPolicy>>>,
    /// Pools whose configured policy failed to load (the latest error and
    /// how many loads in a row failed); the daemon retries them with backoff.
    failures: RwLock<BTreeMap<String, LoadFailure>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Per pool, the gate its policy calls pass through.
    gates: Mutex<BTreeMap<String, Arc<CallGate>>>,
}

/// Where policy artifacts and precompiled components are cached.
#[derive(Debug, Clone)]
pub struct PolicyPaths {
    /// Content-addressed OCI cache (`blobs/sha256/...`); survives node restarts.
    pub oci_cache: PathBuf,
    /// Precompiled components.
    pub compiled_cache: PathBuf,
    /// dockerconfigjson pull secret, if any.
    pub pull_secret: Option<PathBuf>,
}

fn failure(f: FailurePolicy) -> afxdp_policy::FailurePolicy {
    match f {
        FailurePolicy::Fail => afxdp_policy::FailurePolicy::Fail,
        FailurePolicy::Ignore => afxdp_policy::FailurePolicy::Ignore,
    }
}

impl PolicyStore {
    pub fn new(
        paths: &PolicyPaths,
        insecure_registries: Vec<String>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, PolicyLoadError> {
        let engine = PolicyEngine::new(EngineConfig {
            cache_dir: Some(paths.compiled_cache.clone()),
            ..EngineConfig::default()
        })
        .map_err(|e| PolicyLoadError::Engine(e.to_string()))?;
        let auth = match &paths.pull_secret {
            Some(p) => afxdp_oci::Auth::PullSecretFile(p.clone()),
            None => afxdp_oci::Auth::Anonymous,
        };
        let fetcher = afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig {
            auth,
            insecure_registries,
            ..afxdp_oci::FetcherConfig::anonymous(&paths.oci_cache)
        })
        .map_err(|e| PolicyLoadError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            fetcher: Arc::new(fetcher),
            current: RwLock::new(BTreeMap::new()),
            failures: RwLock::new(BTreeMap::new()),
            metrics,
            gates: Mutex::new(BTreeMap::new()),
        })
    }

    /// The OCI fetcher (registry credentials, insecure list, cache), shared
    /// with the bytecode images policies choose.
    pub fn fetcher(&self) -> Arc<afxdp_oci::Fetcher> {
        self.fetcher.clone()
    }

    /// The policy in force for `pool` (a snapshot: keep it for a whole allocation).
    pub fn get(&self, pool: &str) -> Option<Arc<PoolPolicy>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
            .cloned()
    }

    /// Why `pool` has no policy in force although its config names one.
    pub fn unavailable(&self, pool: &str) -> Option<String> {
        if self.get(pool).is_some() {
            return None;
        }
        self.failure(pool).map(|f| f.reason)
    }

    /// The last failed load of `pool`'s configured policy, while it is not
    /// the one in force (cleared by a successful load).
    pub fn failure(&self, pool: &str) -> Option<LoadFailure> {
        self.failures
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
            .cloned()
    }

    fn record(&self, pool: &str, outcome: Result<(), &PolicyLoadError>) {
        let mut f = self.failures.write().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                f.remove(pool);
            }
            Err(e) => {
                let attempts = f.get(pool).map_or(0, |old| old.attempts) + 1;
                f.insert(
                    pool.to_string(),
                    LoadFailure {
                        reason: e.to_string(),
                        attempts,
                    },
                );
            }
        }
    }

    /// The pools of `pools` whose configured policy is not the one in force
    /// (its load failed): what the daemon retries.
    pub fn pending<'a>(&self, pools: &'a [PoolConfig]) -> Vec<&'a PoolConfig> {
        pools
            .iter()
            .filter(|p| match (&p.policy, self.get(&p.name)) {
                (Some(cfg), Some(cur)) => cur.config != *cfg,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .collect()
    }

    /// Fetch, verify, compile and validate `cfg` for `pool` (does not install it).
    pub async fn load(
        &self,
        pool: &str,
        cfg: &PolicyConfig,
    ) -> Result<Arc<PoolPolicy>, PolicyLoadError> {
        let (wasm, digest) = match &cfg.source {
            PolicySource::File(path) => {
                let bytes =
                    tokio::fs::read(path)
                        .await
                        .map_err(|source| PolicyLoadError::File {
                            pool: pool.into(),
                            path: path.clone(),
                            source,
                        })?;
                let digest = afxdp_oci::sha256_digest(&bytes);
                (bytes, digest)
            }
            PolicySource::Oci {
                reference,
                pull_policy,
                ..
            } => {
                let fetch_err = |source: afxdp_oci::OciError| PolicyLoadError::Fetch {
                    pool: pool.into(),
                    reference: reference.clone(),
                    source: Box::new(source),
                };
                let pull = match pull_policy {
                    Some(PullPolicy::Always) => afxdp_oci::PullPolicy::Always,
                    _ => afxdp_oci::PullPolicy::IfNotPresent,
                };
                let r = afxdp_oci::PolicyRef::parse_with_pull_policy(reference, Some(pull))
                    .map_err(fetch_err)?;
                let fetched = self.fetcher.fetch(&r, pull).await;
                self.metrics.pulled("policy", fetched.is_ok());
                let fetched = fetched.map_err(fetch_err)?;
                if fetched.from_cache {
                    tracing::info!(pool, reference, digest = %fetched.layer_digest, "policy served from the cache");
                }
                (fetched.wasm, fetched.layer_digest)
            }
        };
        let ctx = CallCtx {
            pool: pool.to_string(),
            config_json: cfg.config_json.clone(),
            deadline: cfg.timeout,
            memory_limit: cfg.memory_limit,
        };
        let engine = self.engine.clone();
        let d = digest.clone();
        let c = ctx.clone();
        let p = pool.to_string();
        let loaded = afxdp_policy::Blocking::spawn(move |b| {
            let loaded = engine
                .load(b, &wasm, &d)
                .map_err(|source| PolicyLoadError::Load {
                    pool: p.clone(),
                    digest: d.clone(),
                    source,
                })?;
            loaded
                .validate_config(b, &c)
                .map_err(|source| PolicyLoadError::Config {
                    pool: p,
                    digest: d,
                    source,
                })?;
            Ok::<_, PolicyLoadError>(loaded)
        })
        .await
        .map_err(|e| PolicyLoadError::Engine(format!("load task: {e}")))??;
        Ok(Arc::new(PoolPolicy {
            pool: pool.to_string(),
            digest,
            config: cfg.clone(),
            loaded,
            failure: failure(cfg.failure_policy),
            wait: cfg.timeout.unwrap_or(self.engine.config().deadline),
            gate: self.gate(pool, cfg.max_concurrent_calls),
            metrics: self.metrics.clone(),
            ctx,
        }))
    }

    /// The gate of `pool`: the same one across policy versions, so a rollout
    /// does not double the bound; a new one when the limit changes.
    fn gate(&self, pool: &str, limit: Option<usize>) -> Arc<CallGate> {
        let wanted = limit.map_or_else(CallGate::per_cpu, CallGate::new);
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        match gates.get(pool) {
            Some(g) if g.limit() == wanted.limit() => g.clone(),
            _ => {
                let g = Arc::new(wanted);
                gates.insert(pool.to_string(), g.clone());
                g
            }
        }
    }

    /// Make `policy` the one in force for its pool; returns the digest it replaced.
    pub fn install(&self, policy: Arc<PoolPolicy>) -> Option<String> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = cur
            .insert(policy.pool.clone(), policy.clone())
            .map(|o| o.digest.clone());
        tracing::info!(pool = %policy.pool, digest = %policy.digest, replaced = ?old, name = %policy.loaded.metadata().name, "policy in force");
        old
    }

    /// The pool no longer has a policy: back to the built-in decisions.
    pub fn remove(&self, pool: &str) -> Option<String> {
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(pool)
            .map(|o| o.digest.clone());
        if let Some(d) = &old {
            tracing::info!(pool, digest = %d, "policy removed; built-in decisions");
        }
        old
    }

    /// Bring `pool` to its configured policy: load and install when the config
    /// changed; on failure the previous policy stays in force and the error is
    /// returned (and logged).
    pub async fn reconcile(&self, pool: &PoolConfig) -> Result<(), PolicyLoadError> {
        let current = self.get(&pool.name);
        match (&pool.policy, current) {
            (None, Some(_)) => {
                self.remove(&pool.name);
                self.record(&pool.name, Ok(()));
                Ok(())
            }
            (None, None) => {
                self.record(&pool.name, Ok(()));
                Ok(())
            }
            (Some(cfg), Some(cur)) if cur.config == *cfg => Ok(()),
            (Some(cfg), _) => match self.load(&pool.name, cfg).await {
                Ok(p) => {
                    self.install(p);
                    self.record(&pool.name, Ok(()));
                    Ok(())
                }
                Err(e) => {
                    self.record(&pool.name, Err(&e));
                    let attempts = self.failure(&pool.name).map_or(1, |f| f.attempts);
                    tracing::error!(pool = %pool.name, error = %e, attempts, "policy not loaded; the previous one stays in force, retried with backoff");
                    Err(e)
                }
            },
        }
    }
}

/// The policy's view of a device (one conversion, used for every decision).
pub fn netdev_view(nd: &afxdp_netdev::NetDev) -> afxdp_policy::Netdev {
    afxdp_policy::Netdev {
        name: nd.name.clone(),
        driver: nd.driver.clone(),
        pci: nd.pci.clone(),
        mac: nd.mac.clone(),
        numa_node: nd.numa_node,
        rx_queues: nd.rx_queues,
        tx_queues: nd.tx_queues,
        speed_mbps: nd.speed_mbps,
        addresses: nd.addresses.clone(),
        max_channels: None,
    }
}

/// The decision a pool makes without a policy for its program: what its
/// config says.
pub fn configured_program(cfg: &PoolConfig) -> afxdp_policy::ProgramChoice {
    let mut choice = afxdp_policy::defaults::program();
    choice.mode = match cfg.xdp_mode {
        afxdp_config::XdpMode::Native => afxdp_policy::XdpMode::Native,
        afxdp_config::XdpMode::Generic => afxdp_policy::XdpMode::Generic,
        afxdp_config::XdpMode::Auto => afxdp_policy::XdpMode::Auto,
    };
    match &cfg.program {
        None => {}
        Some(afxdp_config::ProgramSource::File { path, function }) => {
            choice.source = afxdp_policy::ProgramSource::File(path.clone());
            choice.function = function.clone();
        }
        Some(afxdp_config::ProgramSource::Image { image, function }) => {
            choice.source = afxdp_policy::ProgramSource::Image(image.clone());
            choice.function = function.clone();
        }
    }
    if let Some(b) = &cfg.bpfman {
        choice.priority = b.priority;
    }
    choice
}

/// The decision a pool makes without a policy for its queues: every rx queue,
/// and the channel count its config requests.
pub fn configured_queues(cfg: &PoolConfig, nd: &afxdp_policy::Netdev) -> afxdp_policy::QueuePlan {
    let mut plan = afxdp_policy::defaults::queue_plan(nd);
    if let Some(c) = cfg.channels {
        plan.channels = Some(c);
        plan.queues = (0..c.max(1)).collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    /// Every memory cap the config accepts fits the policy runtime's slots
    /// (a larger one would be cut to the slot size at call time).
    #[test]
    fn config_memory_cap_fits_the_runtime() {
        let most = usize::try_from(afxdp_config::policy::MEMORY_MIB_MAX).expect("positive") << 20;
        assert!(most <= afxdp_policy::MAX_MEMORY_LIMIT, "{most}");
    }
}
