//! How the agent changes state without holding its lock across slow work.
//!
//! 1. **Reserve** (under the lock): check the request against the inventory
//!    and state, and mark its devices busy ([`Reservation`]). A request for a
//!    busy device waits, bounded by [`BUSY_WAIT`], for it to go idle.
//! 2. **Work** (no lock): policy calls, image pulls, XDP attach/detach, UDS
//!    servers; each undoable step registered with an [`Undo`], which reverts
//!    them on drop unless disarmed.
//! 3. **Commit** (under the lock): apply the change to the in-memory state,
//!    then [`Agent::persist`] it before anyone is answered.
//!
//! State writes are serialized by their own lock; each writes the newest
//! in-memory state, so a write that returns covers every change committed
//! before it started.

use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Agent, Inner};
use crate::state::StateError;

/// How long a request waits for a busy device (an allocation or release in
/// flight: at most an image pull plus an attach).
pub(super) const BUSY_WAIT: Duration = Duration::from_secs(30);

impl Agent {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: every change
        // is applied in one step under it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, once none of `devices` is busy; `Err(device)` names one that
    /// stayed busy for [`BUSY_WAIT`].
    pub(super) fn lock_idle(&self, devices: &[String]) -> Result<MutexGuard<'_, Inner>, String> {
        let deadline = Instant::now() + BUSY_WAIT;
        let mut inner = self.lock();
        while let Some(busy) = devices.iter().find(|d| inner.busy.contains(*d)) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(busy.clone());
            };
            inner = self
                .idle
                .wait_timeout(inner, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(inner)
    }

    /// Mark `devices` busy (the caller holds the lock and checked they are idle).
    pub(super) fn reserve(&self, inner: &mut Inner, devices: &[String]) -> Reservation<'_> {
        inner.busy.extend(devices.iter().cloned());
        Reservation {
            agent: self,
            devices: devices.to_vec(),
        }
    }

    /// Write the in-memory state (see the module doc).
    pub(super) fn persist(&self) -> Result<(), StateError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.lock().state.clone();
        self.store.save(&snapshot)
    }

    /// Stop `device`'s UDS server (and remove its directory).
    pub(super) fn stop_uds(&self, device: &str) -> bool {
        self.uds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop(device)
    }
}

impl<'a> Reservation<'a> {
    /// Take over `devices` marked busy earlier (a release begun by
    /// [`Agent::begin_release`] and finished later).
    pub(super) fn adopt(agent: &'a Agent, devices: Vec<String>) -> Self {
        Self { agent, devices }
    }

    /// Keep the devices busy past this guard (the release goes on later).
    pub(super) fn keep(mut self) {
        self.devices.clear();
    }
}

/// Devices marked busy; idle again (waiters woken) on drop. Must be dropped
/// without the agent's lock held.
pub(super) struct Reservation<'a> {
    agent: &'a Agent,
    devices: Vec<String>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut inner = self.agent.lock();
        for d in &self.devices {
            inner.busy.remove(d);
        }
        // A reload may have moved these devices while they were busy.
        self.agent.converge_if_pending(&mut inner);
        drop(inner);
        self.agent.idle.notify_all();
    }
}

/// Undo of a partly done allocation: stops the UDS servers it started,
/// detaches the programs it attached and deletes the subfunctions it
/// created (in that order), on drop, unless disarmed.
pub(super) struct Undo<'a> {
    agent: &'a Agent,
    attached: Vec<String>,
    uds: Vec<String>,
    /// (device ID, subfunction) of `cdq` slots.
    subfunctions: Vec<(String, crate::subfunction::Subfunction)>,
    armed: bool,
}

impl<'a> Undo<'a> {
    pub(super) fn new(agent: &'a Agent) -> Self {
        Self {
            agent,
            attached: Vec::new(),
            uds: Vec::new(),
            subfunctions: Vec::new(),
            armed: true,
        }
    }

    pub(super) fn attached(&mut self, device: &str) {
        self.attached.push(device.to_string());
    }

    pub(super) fn uds_started(&mut self, device: &str) {
        self.uds.push(device.to_string());
    }

    pub(super) fn subfunction_created(
        &mut self,
        device: &str,
        sf: &crate::subfunction::Subfunction,
    ) {
        self.subfunctions.push((device.to_string(), sf.clone()));
    }

    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for d in self.uds.drain(..) {
            self.agent.stop_uds(&d);
        }
        for d in self.attached.drain(..) {
            if let Err(e) = self.agent.programs.detach(&d) {
                tracing::error!(device = %d, error = %e, "undo attach failed");
            }
        }
        for (d, sf) in self.subfunctions.drain(..) {
            if let Err(e) = crate::subfunction::delete(&*self.agent.devlink, &sf, &d) {
                tracing::error!(device = %d, error = %e, "undo: deleting the subfunction failed");
            }
        }
    }
}
