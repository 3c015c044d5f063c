//! What one call's `Store` holds: the deny-all WASI context, the resource
//! limiter, the bounded stderr capture and the rate-limited `host.log`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::afxdp::policy::{host, types};
use crate::slots::MAX_TABLE_ELEMENTS;

/// Bytes of guest stderr kept per call; the rest is counted and dropped.
pub const STDERR_CAPACITY: usize = 8 * 1024;
/// Most bytes one `wasi:random` call may ask for.
const MAX_RANDOM: u64 = 64 * 1024;
/// `host.log` messages let through per second, per policy (and the burst).
pub const LOG_PER_SECOND: f64 = 20.0;
/// Longest `host.log` message logged, bytes.
const MAX_LOG_MESSAGE: usize = 1024;

/// State of one call's store. Built fresh per call; never reused.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    log: GuestLog,
}

impl StoreState {
    pub(crate) fn new(memory_limit: usize, stderr: StderrCapture, log: GuestLog) -> Self {
        let mut b = WasiCtx::builder();
        // Deny-all: no preopens, env, args or network (those are the
        // builder's defaults, set again here so a changed default cannot
        // widen the view); stdin closed; a fixed clock; deterministic
        // randomness.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr)
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![
                0x5a, 0xa5, 0x3c, 0xc3,
            ]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x42]))
            .insecure_random_seed(0x0afd_0afd)
            .max_random_size(MAX_RANDOM);
        Self {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_limit),
            log,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        self.log.log(level, &message);
    }
}

/// The clock a policy sees: always the Unix epoch, never advancing. A policy's
/// decision must not depend on time (and `subscribe-*` traps, see the engine).
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the guest's linear memories, all together, at `limit` bytes. Growing
/// past it traps at once (rather than returning -1 to the guest) and sets
/// `exceeded`, which is how the host tells a memory failure from any other
/// trap.
pub(crate) struct Limiter {
    limit: usize,
    total: usize,
    pub(crate) exceeded: bool,
}

/// The error a refused memory growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit: growing to {desired} more bytes would pass {limit}")]
struct MemoryLimit {
    desired: usize,
    limit: usize,
}

impl Limiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `maximum` is the memory's declared one; growing past it fails in
        // the guest, as the spec says.
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        // The limit is at most a pool slot's size (`MAX_MEMORY_LIMIT`, which
        // wasmtime checks after this), so running out is always reported as
        // the limit.
        let more = desired.saturating_sub(current);
        let total = self.total.saturating_add(more);
        if total > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimit {
                desired: more,
                limit: self.limit,
            }));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

/// The guest's stderr: the first [`STDERR_CAPACITY`] bytes are kept, the rest
/// counted and dropped. Writes never fail (a chatty policy is not an error).
#[derive(Clone, Default)]
pub(crate) struct StderrCapture(Arc<Mutex<Captured>>);

impl StderrCapture {
    fn push(&self, buf: &[u8]) {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = STDERR_CAPACITY.saturating_sub(c.bytes.len());
        let keep = room.min(buf.len());
        c.bytes.extend_from_slice(&buf[..keep]);
        c.dropped += buf.len() - keep;
    }

    /// What was captured, lossy UTF-8, with a note of what was dropped.
    pub(crate) fn text(&self) -> String {
        let c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut s = String::from_utf8_lossy(&c.bytes).into_owned();
        if c.dropped > 0 {
            s.push_str(&format!("… ({} more bytes dropped)", c.dropped));
        }
        s
    }
}

impl IsTerminal for StderrCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrCapture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrCapture {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrCapture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StderrCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Token bucket shared by every call of one policy.
#[derive(Debug)]
pub(crate) struct LogBucket(Mutex<Bucket>);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl LogBucket {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Bucket {
            tokens: LOG_PER_SECOND,
            last: Instant::now(),
            suppressed: 0,
        }))
    }

    /// `Some(messages suppressed since the last one let through)` when this
    /// message may be logged.
    fn take(&self) -> Option<u64> {
        let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * LOG_PER_SECOND;
        b.tokens = (b.tokens + refill).min(LOG_PER_SECOND);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
    }
}

/// `host.log` for one call: tagged with the pool and the policy digest,
/// rate-limited per policy, messages cut to 1 KiB with control characters
/// replaced (no log injection).
pub(crate) struct GuestLog {
    pub(crate) pool: String,
    pub(crate) digest: Arc<str>,
    pub(crate) bucket: Arc<LogBucket>,
}

impl GuestLog {
    fn log(&self, level: types::LogLevel, message: &str) {
        let Some(suppressed) = self.bucket.take() else {
            return;
        };
        let mut text: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let (pool, digest) = (self.pool.as_str(), &*self.digest);
        use types::LogLevel as L;
        match level {
            L::Trace => {
                tracing::trace!(target: "afxdp_policy::guest", pool, digest, suppressed, "{text}")
            }
            L::Debug => {
                tracing::debug!(target: "afxdp_policy::guest", pool, digest, suppressed, "{text}")
            }
            L::Info => {
                tracing::info!(target: "afxdp_policy::guest", pool, digest, suppressed, "{text}")
            }
            L::Warn => {
                tracing::warn!(target: "afxdp_policy::guest", pool, digest, suppressed, "{text}")
            }
            L::Error => {
                tracing::error!(target: "afxdp_policy::guest", pool, digest, suppressed, "{text}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_bounded() {
        let s = StderrCapture::default();
        s.push(b"hello ");
        s.push(&vec![b'x'; STDERR_CAPACITY * 2]);
        let t = s.text();
        assert!(t.starts_with("hello xxx"));
        assert!(t.contains("more bytes dropped"));
        assert!(t.len() < STDERR_CAPACITY + 64);
    }

    #[test]
    fn log_bucket_limits_bursts() {
        let b = LogBucket::new();
        let let_through = (0..100).filter(|_| b.take().is_some()).count();
        assert!((20..=22).contains(&let_through), "{let_through}");
    }

    #[test]
    fn limiter_counts_all_memories() {
        let mut l = Limiter::new(10 << 20);
        assert!(l.memory_growing(0, 6 << 20, None).unwrap());
        assert!(l.memory_growing(0, 6 << 20, None).is_err());
        assert!(l.exceeded);
    }
}
