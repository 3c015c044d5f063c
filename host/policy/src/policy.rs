//! A loaded policy and its decision calls.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use crate::bindings::exports::afxdp::policy::decisions::Guest as Decisions;
use crate::bindings::PoolPolicyPre;
use crate::blocking::Blocking;
use crate::convert;
use crate::engine::EngineInner;
use crate::error::{DecisionError, PolicyError};
use crate::slots::MAX_MEMORY_LIMIT;
use crate::store::{GuestLog, LogBucket, StderrCapture, StoreState};
use crate::types::{Decision, FilterRule, Metadata, Netdev, Pod, ProgramChoice, QueuePlan};
use crate::validate;

/// What one call is for: the pool (for log tags and the policy's view), the
/// pool's policy config, and optional per-call limits that override the
/// engine's (a pool may give its policy more or less room).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCtx {
    /// Pool name.
    pub pool: String,
    /// The pool's policy config (JSON text).
    pub config_json: String,
    /// Deadline for this call; `None` = the engine's.
    pub deadline: Option<Duration>,
    /// Memory limit for this call, bytes; `None` = the engine's. At most
    /// [`MAX_MEMORY_LIMIT`](crate::MAX_MEMORY_LIMIT).
    pub memory_limit: Option<usize>,
}

impl CallCtx {
    /// A context with the engine's limits.
    pub fn new(pool: impl Into<String>, config_json: impl Into<String>) -> Self {
        Self {
            pool: pool.into(),
            config_json: config_json.into(),
            ..Self::default()
        }
    }
}

/// A compiled, linked, checked policy, ready to decide.
///
/// # Invariants
/// - Every call runs in a **fresh** `Store` and instance: no state survives
///   between calls, and a call that trapped leaves nothing behind. The same
///   `LoadedPolicy` keeps serving after any failure.
/// - Every call is bounded: by its deadline (epoch interruption; a guest that
///   tries to sleep traps), by its memory limit (all linear memories together;
///   growth past it traps), by [`STDERR_CAPACITY`](crate::STDERR_CAPACITY)
///   of captured stderr, and by the size checks on its answer.
/// - Every answer is validated ([`crate::validate`]) before it is returned;
///   what comes back is safe to act on.
/// - The guest sees no files, sockets, environment or arguments, a clock
///   stuck at the Unix epoch, and deterministic randomness.
///
/// `Send + Sync`: calls may come from many threads at once; each runs on the
/// calling thread and blocks it (each takes a [`Blocking`] proof: from async
/// code, [`Blocking::spawn`]). The
/// engine runs at most [`CONCURRENT_CALLS`](crate::CONCURRENT_CALLS) at once
/// (its instance slots; a call waits up to its deadline for one, then fails
/// with [`DecisionError::Busy`]); a caller that must bound CPU or memory more
/// tightly (at most `memory_limit` per call in flight) holds a [`CallGate`](crate::CallGate)
/// of its own around calls.
pub struct LoadedPolicy {
    engine: Arc<EngineInner>,
    pre: PoolPolicyPre<StoreState>,
    digest: Arc<str>,
    bucket: Arc<LogBucket>,
    metadata: Metadata,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("digest", &self.digest)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

enum Phase {
    Instantiate,
    Call,
}

impl LoadedPolicy {
    /// Wrap a linked component and ask it for its metadata.
    pub(crate) fn new(
        b: &Blocking,
        engine: Arc<EngineInner>,
        pre: PoolPolicyPre<StoreState>,
        digest: &str,
    ) -> Result<Self, PolicyError> {
        let mut policy = Self {
            engine,
            pre,
            digest: Arc::from(digest),
            bucket: Arc::new(LogBucket::new()),
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                decisions: Vec::new(),
            },
        };
        let raw = policy
            .call(b, &CallCtx::default(), "metadata", |g, s| {
                g.call_metadata(s)
            })
            .map_err(PolicyError::Metadata)?;
        let (metadata, unknown) = convert::metadata(raw).map_err(|e| match e {
            DecisionError::InvalidDecision { detail } => PolicyError::InvalidMetadata { detail },
            other => PolicyError::Metadata(other),
        })?;
        if !unknown.is_empty() {
            tracing::warn!(
                digest,
                ?unknown,
                "policy metadata names decisions this host does not know; ignored"
            );
        }
        policy.metadata = metadata;
        Ok(policy)
    }

    /// The policy's digest (`sha256:...`).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the policy said about itself at load.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Whether the policy's metadata lists `decision`. A caller may skip the
    /// call (and use the default) for a decision the policy does not make.
    pub fn makes(&self, decision: Decision) -> bool {
        self.metadata.decisions.contains(&decision)
    }

    /// Run `f` against a fresh instance under the call's limits.
    fn call<R>(
        &self,
        _proof: &Blocking,
        ctx: &CallCtx,
        decision: &'static str,
        f: impl FnOnce(&Decisions, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, DecisionError> {
        let config = &self.engine.config;
        let deadline = ctx.deadline.unwrap_or(config.deadline);
        let limit = ctx
            .memory_limit
            .unwrap_or(config.memory_limit)
            .min(MAX_MEMORY_LIMIT);
        self.engine.slots.run(deadline, || {
            self.call_in_slot(ctx, decision, deadline, limit, f)
        })
    }

    /// [`Self::call`], once a slot is held.
    fn call_in_slot<R>(
        &self,
        ctx: &CallCtx,
        decision: &'static str,
        deadline: Duration,
        limit: usize,
        f: impl FnOnce(&Decisions, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, DecisionError> {
        let stderr = StderrCapture::default();
        let log = GuestLog {
            pool: ctx.pool.clone(),
            digest: self.digest.clone(),
            bucket: self.bucket.clone(),
        };
        let start = Instant::now();
        let mut store = Store::new(
            &self.engine.engine,
            StoreState::new(limit, stderr.clone(), log),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(EngineInner::ticks(deadline));

        let result = match self.pre.instantiate(&mut store) {
            Ok(instance) => {
                f(instance.afxdp_policy_decisions(), &mut store).map_err(|e| (Phase::Call, e))
            }
            Err(e) => Err((Phase::Instantiate, e)),
        };
        let elapsed = start.elapsed();
        match result {
            Ok(r) => {
                tracing::trace!(
                    pool = ctx.pool,
                    digest = &*self.digest,
                    decision,
                    ?elapsed,
                    "policy call"
                );
                Ok(r)
            }
            Err((phase, e)) => {
                let err = classify(
                    phase,
                    &e,
                    store.data().limiter.exceeded,
                    deadline,
                    limit,
                    &stderr,
                );
                tracing::debug!(
                    pool = ctx.pool,
                    digest = &*self.digest,
                    decision,
                    ?elapsed,
                    stderr = stderr.text(),
                    error = %err,
                    "policy call failed"
                );
                Err(err)
            }
        }
    }

    /// A fresh `Store` and instance under the engine's limits, no export
    /// called: the floor under every decision (what the benches compare
    /// decisions with).
    ///
    /// # Errors
    /// See [`DecisionError`] (instantiation failed, or no slot in time).
    pub fn instantiate_only(&self, b: &Blocking) -> Result<(), DecisionError> {
        self.call(b, &CallCtx::default(), "instantiate", |_, _| Ok(()))
    }

    /// Ask the policy whether it accepts `ctx.config_json` (at config load or
    /// reload; the pool keeps its previous config when this fails).
    ///
    /// # Errors
    /// [`DecisionError::Guest`] (usually `invalid-input`) when the policy
    /// refuses the config; any other variant when the call failed.
    pub fn validate_config(&self, b: &Blocking, ctx: &CallCtx) -> Result<(), DecisionError> {
        self.call(b, ctx, "validate-config", |g, s| {
            g.call_validate_config(s, &ctx.config_json)
        })?
        .map_err(convert::guest_error)
    }

    /// Which program to attach to `device` for `pod`.
    ///
    /// # Errors
    /// See [`DecisionError`]; an answer failing [`validate::program`] is
    /// [`DecisionError::InvalidDecision`].
    pub fn select_program(
        &self,
        b: &Blocking,
        ctx: &CallCtx,
        device: &Netdev,
        pod: &Pod,
    ) -> Result<ProgramChoice, DecisionError> {
        let (pool, dev, pod) = (
            convert::pool(&ctx.pool, &ctx.config_json),
            convert::netdev(device),
            convert::pod(pod),
        );
        let raw = self
            .call(b, ctx, "select-program", |g, s| {
                g.call_select_program(s, &pool, &dev, &pod)
            })?
            .map_err(convert::guest_error)?;
        let choice = convert::program_choice(raw)?;
        validate::program(&choice)?;
        Ok(choice)
    }

    /// The channel count and queue ids for `device` and `pod`.
    ///
    /// # Errors
    /// See [`DecisionError`]; an answer failing [`validate::queue_plan`] is
    /// [`DecisionError::InvalidDecision`].
    pub fn assign_queues(
        &self,
        b: &Blocking,
        ctx: &CallCtx,
        device: &Netdev,
        pod: &Pod,
    ) -> Result<QueuePlan, DecisionError> {
        let (pool, dev, pod) = (
            convert::pool(&ctx.pool, &ctx.config_json),
            convert::netdev(device),
            convert::pod(pod),
        );
        let raw = self
            .call(b, ctx, "assign-queues", |g, s| {
                g.call_assign_queues(s, &pool, &dev, &pod)
            })?
            .map_err(convert::guest_error)?;
        let plan = convert::queue_plan(raw);
        validate::queue_plan(&plan, device)?;
        Ok(plan)
    }

    /// NIC filter rules for `device`, given the addresses the pod got.
    /// `device.rx_queues` should be the count after the pod's queue plan.
    ///
    /// # Errors
    /// See [`DecisionError`]; an answer failing [`validate::filter_rules`] is
    /// [`DecisionError::InvalidDecision`].
    pub fn filter_rules(
        &self,
        b: &Blocking,
        ctx: &CallCtx,
        device: &Netdev,
        pod: &Pod,
        addresses: &[IpAddr],
    ) -> Result<Vec<FilterRule>, DecisionError> {
        let (pool, dev, pod, addrs) = (
            convert::pool(&ctx.pool, &ctx.config_json),
            convert::netdev(device),
            convert::pod(pod),
            convert::addresses(addresses),
        );
        let raw = self
            .call(b, ctx, "filter-rules", |g, s| {
                g.call_filter_rules(s, &pool, &dev, &pod, &addrs)
            })?
            .map_err(convert::guest_error)?;
        if raw.len() > validate::MAX_RULES {
            return Err(DecisionError::invalid(format!(
                "{} filter rules for {}, more than {}",
                raw.len(),
                device.name,
                validate::MAX_RULES
            )));
        }
        let rules = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| convert::filter_rule(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        validate::filter_rules(&rules, device)?;
        Ok(rules)
    }

    /// Which `size` devices of `available` to allocate, including every
    /// `must_include` (kubelet's GetPreferredAllocation).
    ///
    /// # Errors
    /// See [`DecisionError`]; an answer failing
    /// [`validate::preferred_allocation`] is [`DecisionError::InvalidDecision`].
    pub fn preferred_allocation(
        &self,
        b: &Blocking,
        ctx: &CallCtx,
        available: &[Netdev],
        must_include: &[String],
        size: usize,
    ) -> Result<Vec<String>, DecisionError> {
        let pool = convert::pool(&ctx.pool, &ctx.config_json);
        let avail: Vec<_> = available.iter().map(convert::netdev).collect();
        let wire_size = u32::try_from(size).unwrap_or(u32::MAX);
        let raw = self
            .call(b, ctx, "preferred-allocation", |g, s| {
                g.call_preferred_allocation(s, &pool, &avail, must_include, wire_size)
            })?
            .map_err(convert::guest_error)?;
        if raw.len() > validate::MAX_DEVICES {
            return Err(DecisionError::invalid(format!(
                "{} devices in the preferred allocation, more than {}",
                raw.len(),
                validate::MAX_DEVICES
            )));
        }
        let picked = convert::device_names(raw)?;
        validate::preferred_allocation(&picked, available, must_include, size)?;
        Ok(picked)
    }
}

/// Tell a deadline, a memory limit, a trap and an instantiation failure
/// apart, by wasmtime's trap code and the limiter's flag (never by message).
fn classify(
    phase: Phase,
    e: &wasmtime::Error,
    memory_exceeded: bool,
    deadline: Duration,
    limit: usize,
    stderr: &StderrCapture,
) -> DecisionError {
    if memory_exceeded {
        return DecisionError::MemoryExceeded { limit };
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return DecisionError::Timeout { after: deadline };
    }
    let message = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    match phase {
        Phase::Instantiate => DecisionError::Instantiate {
            message: convert::truncated(message),
        },
        Phase::Call => DecisionError::Trap {
            message: convert::truncated(message),
            stderr: stderr.text(),
        },
    }
}
