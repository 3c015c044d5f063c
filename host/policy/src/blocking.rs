//! [`Blocking`]: the proof a policy call needs that its thread may block.
//!
//! A policy call runs Wasm to its deadline, and wasmtime-wasi's synchronous
//! bindings (a guest writing to stderr, as a panicking guest does) drive
//! their futures with `Handle::block_on`, which panics on an async runtime's
//! thread ("Cannot start a runtime from within a runtime"). Every call and
//! load therefore takes a `&Blocking`, and only two places make one:
//! [`Blocking::here`] on a thread with no runtime entered, and
//! [`Blocking::spawn`], which moves the work to tokio's blocking pool. Code on
//! an async thread cannot call a policy by mistake: it has no `Blocking` to
//! pass.

use std::marker::PhantomData;

/// Proof that the current thread may block (see the module doc). Neither
/// `Send` nor `Sync`: it stays on the thread it was made for.
#[derive(Debug)]
pub struct Blocking {
    _this_thread: PhantomData<*const ()>,
}

/// [`Blocking::here`] on a thread that has an async runtime entered.
#[derive(Debug, thiserror::Error)]
#[error("policy calls block: call them from a blocking thread (afxdp_policy::Blocking::spawn), not from an async runtime's thread")]
pub struct OnAsyncThread;

/// [`Blocking::spawn`]'s task ended without an answer (the runtime is
/// shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the blocking task was cancelled: {0}")]
pub struct Cancelled(String);

impl Blocking {
    fn new() -> Self {
        Self {
            _this_thread: PhantomData,
        }
    }

    /// The proof for this thread, when no tokio runtime is entered on it
    /// (a CLI's `main`, a test, a plain `std::thread`).
    ///
    /// # Errors
    /// [`OnAsyncThread`] inside a runtime (a worker, or within `block_on`).
    pub fn here() -> Result<Self, OnAsyncThread> {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => Err(OnAsyncThread),
            Err(_) => Ok(Self::new()),
        }
    }

    /// Run `f` on the runtime's blocking pool and await its result. A panic
    /// in `f` resumes in the caller.
    ///
    /// # Errors
    /// [`Cancelled`] when the runtime shuts down before `f` ran.
    pub async fn spawn<R, F>(f: F) -> Result<R, Cancelled>
    where
        F: FnOnce(&Blocking) -> R + Send + 'static,
        R: Send + 'static,
    {
        match tokio::task::spawn_blocking(move || f(&Blocking::new())).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Cancelled(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_thread_may_block() {
        assert!(Blocking::here().is_ok());
    }

    #[test]
    fn an_async_thread_gets_no_proof_and_spawn_gives_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            assert!(Blocking::here().is_err(), "inside block_on");
            let answer = Blocking::spawn(|_b| 7).await.expect("spawned");
            assert_eq!(answer, 7);
        });
    }
}
