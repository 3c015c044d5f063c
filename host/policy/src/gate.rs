//! A bound on how many decisions of one pool run at once.
//!
//! Each call holds a thread for up to its deadline and a `Store` of up to its
//! memory limit, so a burst of CNI ADDs against a slow policy could take every
//! core of the node agent and `n × memory limit` of RAM. A pool's calls pass
//! through its gate: at most `limit` run, the others wait in turn — but never
//! longer than the time the call itself may take; then they fail with
//! [`DecisionError::Busy`] and the pool's failure policy decides.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::DecisionError;

/// A counting semaphore for policy calls (blocking; calls are blocking too).
#[derive(Debug)]
pub struct CallGate {
    limit: usize,
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    running: usize,
    peak: usize,
}

impl CallGate {
    /// A gate letting `limit` calls run at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// A gate sized to the machine: one call per CPU.
    pub fn per_cpu() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The concurrency limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most calls that ever ran at once through this gate.
    pub fn peak(&self) -> usize {
        self.lock().peak
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `call` once a slot is free, waiting at most `wait` for one.
    ///
    /// # Errors
    /// [`DecisionError::Busy`] when no slot freed up in time (`call` did not
    /// run); otherwise what `call` returns.
    pub fn run<R>(
        &self,
        wait: Duration,
        call: impl FnOnce() -> Result<R, DecisionError>,
    ) -> Result<R, DecisionError> {
        let start = Instant::now();
        {
            let mut s = self.lock();
            while s.running >= self.limit {
                let left = wait.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(DecisionError::Busy {
                        limit: self.limit,
                        waited: start.elapsed(),
                    });
                }
                s = self
                    .freed
                    .wait_timeout(s, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            s.running += 1;
            s.peak = s.peak.max(s.running);
        }
        // Released on unwind too.
        struct Slot<'a>(&'a CallGate);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                self.0.lock().running -= 1;
                self.0.freed.notify_one();
            }
        }
        let _slot = Slot(self);
        call()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};

    #[test]
    fn at_most_limit_calls_run_at_once() {
        let gate = Arc::new(CallGate::new(2));
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (gate, barrier) = (gate.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    gate.run(Duration::from_secs(10), || {
                        std::thread::sleep(Duration::from_millis(5));
                        Ok(1)
                    })
                })
            })
            .collect();
        let done: usize = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("ran"))
            .sum();
        assert_eq!(done, threads);
        assert_eq!(gate.peak(), 2);
    }

    #[test]
    fn a_call_that_cannot_get_a_slot_in_time_is_busy_and_does_not_run() {
        let gate = Arc::new(CallGate::new(1));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.run(Duration::from_secs(10), || {
                    entered_tx.send(()).expect("send");
                    release_rx.recv().expect("release");
                    Ok(())
                })
            })
        };
        entered.recv().expect("holder runs");
        let mut ran = false;
        let err = gate
            .run(Duration::from_millis(30), || {
                ran = true;
                Ok(())
            })
            .expect_err("busy");
        assert!(!ran);
        match err {
            DecisionError::Busy { limit, waited } => {
                assert_eq!(limit, 1);
                assert!(waited >= Duration::from_millis(30), "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
        release.send(()).expect("release");
        holder.join().expect("thread").expect("holder ok");
        // The slot is free again, also after a failed call.
        let e = gate.run(Duration::ZERO, || -> Result<(), _> {
            Err(DecisionError::invalid("no"))
        });
        assert!(matches!(e, Err(DecisionError::InvalidDecision { .. })));
        assert_eq!(gate.run(Duration::ZERO, || Ok(7)).expect("free"), 7);
    }

    #[test]
    fn a_panicking_call_frees_its_slot() {
        let gate = Arc::new(CallGate::new(1));
        let g = gate.clone();
        let r = std::thread::spawn(move || {
            g.run(Duration::ZERO, || -> Result<(), DecisionError> {
                panic!("boom")
            })
        })
        .join();
        assert!(r.is_err());
        assert_eq!(gate.run(Duration::ZERO, || Ok(1)).expect("free"), 1);
    }
}
