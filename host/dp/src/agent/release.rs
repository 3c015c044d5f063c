//! CNI ADD's settings (which claim the device for the asking container) and
//! release (CNI DEL, only from the claiming container; see `claim`).

use afxdp_policy::Blocking;

use super::claim::{self, AddVerdict, Claimant};
use super::decide::decide;
use super::{bring_up, Agent, AllocateError, DeviceSettings, ReleaseError};
use crate::policies;
use crate::state::Allocation;

/// A release persisted and not carried out yet (see [`Agent::begin_release`]).
#[derive(Debug)]
#[must_use = "a begun release is finished with Agent::finish_release"]
pub struct PendingRelease {
    alloc: Allocation,
}

/// Who asks for a release.
#[derive(Debug, Clone, Copy)]
pub enum ReleaseBy<'a> {
    /// A CNI DEL: releases only the container's own claim.
    Cni(&'a Claimant),
    /// The daemon's operator (tests, tools): releases whatever holds it.
    Operator,
}

/// What a release did. Every variant is a success for CNI DEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// Detached, unpinned, freed, persisted.
    Freed,
    /// Nothing was allocated (already released, or a state dir on tmpfs
    /// after a reboot).
    NotAllocated,
    /// Another container holds the device: nothing done.
    NotOwner { holder: String },
}

impl Agent {
    /// What CNI ADD applies to `device`: its allocation, the filter rules the
    /// pool's policy decides for this pod, whether a refused rule must fail
    /// the ADD, and who decided the rules. `Ok(None)`: not allocated. The
    /// first ADD claims the device for `who` (persisted before answering);
    /// an ADD from another pod's container is refused. Blocks (policy call).
    pub fn device_settings(
        &self,
        b: &Blocking,
        device: &str,
        who: &Claimant,
        pod: afxdp_policy::Pod,
        addresses: &[std::net::IpAddr],
    ) -> Result<Option<DeviceSettings>, AllocateError> {
        let Some((alloc, cfg, claimed)) = self.claim(device, who)? else {
            return Ok(None);
        };
        if claimed {
            self.persist()?;
        }
        if !alloc.pod.is_empty() && !who.pod().is_empty() && alloc.pod != who.pod() {
            tracing::warn!(device, decided_for = %alloc.pod, cni_pod = %who.pod(), "the device was allocated for another pod than the one plumbing it");
        }
        let snapshot = self.snapshot(&cfg);
        let view = policies::netdev_view(&alloc.netdev);
        let mut rules = decide(
            &snapshot,
            &cfg.name,
            afxdp_policy::Decision::FilterRules,
            |p| p.call(|l, ctx| l.filter_rules(b, ctx, &view, &pod, addresses)),
            afxdp_policy::defaults::filter_rules,
        )?;
        let (mut filters_required, policy_digest) = snapshot.filters_required();
        let by_default = matches!(rules.by, afxdp_policy::DecidedBy::Default { .. });
        if by_default && !cfg.ethtool_cmds.is_empty() {
            // The pool's translated ethtoolCmds stand in for the decision.
            rules.value = super::configured_rules::concrete(
                &cfg.name,
                &cfg.ethtool_cmds,
                addresses,
                &alloc.queues,
            )?;
            filters_required = true;
        }
        Ok(Some(DeviceSettings {
            allocation: alloc,
            filter_rules: rules.value,
            filters_required,
            policy_digest,
        }))
    }

    /// Check (and record) `who`'s claim on `device` under the lock: the
    /// allocation, its pool's config, and whether the claim changed.
    #[allow(clippy::type_complexity)]
    fn claim(
        &self,
        device: &str,
        who: &Claimant,
    ) -> Result<Option<(Allocation, afxdp_config::PoolConfig, bool)>, AllocateError> {
        let mut inner = self.lock();
        let Some(alloc) = inner.state.allocations.get(device) else {
            return Ok(None);
        };
        let claimed = match claim::on_add(alloc, who) {
            AddVerdict::Holds => false,
            AddVerdict::Claim => true,
            AddVerdict::Refuse { holder, claimant } => {
                tracing::warn!(device, %holder, %claimant, "CNI ADD for a device another container holds");
                return Err(AllocateError::NotOwner {
                    device: device.into(),
                    holder,
                    claimant,
                });
            }
        };
        let pool = alloc.pool.clone();
        let Some(cfg) = inner.inventory.pool(&pool).map(|p| p.config.clone()) else {
            return Err(AllocateError::UnknownPool(pool));
        };
        let alloc = inner.state.allocations.get_mut(device).map(|a| {
            if claimed {
                tracing::info!(device, container = %who.container_id, pod = %who.pod(), "device claimed");
                a.claim = Some(who.claim());
            }
            a.clone()
        });
        Ok(alloc.map(|a| (a, cfg, claimed)))
    }

    /// Every allocated device.
    pub fn allocated_devices(&self) -> Vec<String> {
        self.lock().state.allocations.keys().cloned().collect()
    }

    /// Every allocation.
    pub fn allocations(&self) -> Vec<Allocation> {
        self.lock().state.allocations.values().cloned().collect()
    }

    /// The allocation of `device`, if any (CNI ADD/CHECK ask for it).
    pub fn allocation(&self, device: &str) -> Option<Allocation> {
        self.lock().state.allocations.get(device).cloned()
    }

    /// Release `device`: stop its UDS server, detach its program, remove pins,
    /// forget the allocation (persisted before returning). Idempotent. A CNI
    /// DEL from a container that does not hold the device changes nothing.
    /// Blocks (detach, fsync); the lock is held only to check and to commit.
    pub fn release(&self, device: &str, by: ReleaseBy<'_>) -> Result<Released, ReleaseError> {
        match self.begin_release(device, by)? {
            Ok(pending) => self.finish_release(pending),
            Err(done) => Ok(done),
        }
    }

    /// The durable half of a release: check who asks, mark the device busy
    /// and its allocation releasing, persist. Once it returns a
    /// [`PendingRelease`] the release survives a crash (a start finishes
    /// it, [`Agent::finish_pending_releases`]); carry it out with
    /// [`Agent::finish_release`]. `Err(outcome)`: nothing to carry out.
    /// Blocks (fsync).
    pub fn begin_release(
        &self,
        device: &str,
        by: ReleaseBy<'_>,
    ) -> Result<Result<PendingRelease, Released>, ReleaseError> {
        let devices = [device.to_string()];
        let mut inner = self.lock_idle(&devices).map_err(ReleaseError::Busy)?;
        let Some(alloc) = inner.state.allocations.get(device).cloned() else {
            // Nothing to release; a pool device CNI DEL brought back (one
            // whose allocation was lost) is up and free again all the same.
            let pool = inner
                .inventory
                .pool_of(device)
                .map(|p| p.config.name.clone());
            drop(inner);
            if let Some(pool) = pool {
                self.return_to_pool(device, &pool);
            }
            return Ok(Err(Released::NotAllocated));
        };
        if let ReleaseBy::Cni(who) = by {
            if let Err(holder) = claim::releases(&alloc, who) {
                tracing::warn!(device, %holder, container = %who.container_id, pod = %who.pod(), "CNI DEL from a container that does not hold the device; nothing released");
                return Ok(Err(Released::NotOwner { holder }));
            }
        }
        let reserved = self.reserve(&mut inner, &devices);
        if let Some(a) = inner.state.allocations.get_mut(device) {
            a.releasing = true;
        }
        drop(inner);
        if let Err(e) = self.persist() {
            if let Some(a) = self.lock().state.allocations.get_mut(device) {
                a.releasing = alloc.releasing;
            }
            return Err(e.into());
        }
        reserved.keep();
        Ok(Ok(PendingRelease { alloc }))
    }

    /// The rest of a release begun by [`Agent::begin_release`]: stop the
    /// UDS server, detach, forget the allocation, persist, return the
    /// device to its pool; the device is idle again after. On an error the
    /// allocation stays releasing (the next start retries). Blocks.
    pub fn finish_release(&self, pending: PendingRelease) -> Result<Released, ReleaseError> {
        let alloc = pending.alloc;
        let device = alloc.device.as_str();
        let _reserved = super::transaction::Reservation::adopt(self, vec![device.to_string()]);
        let attached = alloc.attached_device();
        self.stop_uds(attached);
        self.programs
            .detach(attached)
            .map_err(|source| ReleaseError::Detach {
                device: attached.into(),
                source,
            })?;
        if let Some(sf) = &alloc.subfunction {
            crate::subfunction::delete(&*self.devlink, sf, device).map_err(|source| {
                ReleaseError::Subfunction {
                    device: device.into(),
                    source: Box::new(source),
                }
            })?;
        }
        {
            let mut inner = self.lock();
            inner.state.allocations.remove(device);
            self.converge_if_pending(&mut inner); // a leaving device moves now
        }
        self.persist()?;
        self.return_to_pool(device, &alloc.pool);
        self.metrics.released(&alloc.pool);
        tracing::info!(pool = %alloc.pool, device, "released");
        Ok(Released::Freed)
    }

    /// Wait (bounded) until no allocation or release of `device` is in
    /// flight: a CNI DEL is answered before its detach ends. Blocks.
    pub fn settle(&self, device: &str) {
        if let Err(busy) = self.lock_idle(&[device.to_string()]) {
            tracing::warn!(device = %busy, "still busy after the wait");
        }
    }

    /// [`Agent::settle`] for every device in flight (a clean shutdown lets
    /// begun releases end). Blocks.
    pub fn settle_all(&self) {
        let busy: Vec<String> = self.lock().busy.iter().cloned().collect();
        if let Err(device) = self.lock_idle(&busy) {
            tracing::warn!(device, "still busy at shutdown; the next start finishes it");
        }
    }

    /// Finish the releases a previous run persisted and did not carry out
    /// (a crash between answering a CNI DEL and detaching). Run at start.
    /// Blocks.
    pub fn finish_pending_releases(&self) -> Vec<String> {
        self.release_where("finishing a release a previous run began", |a| a.releasing)
    }

    /// Release the allocations kubelet does not hold: every device not among
    /// `held` (what kubelet's PodResources lists). Two crashes leave them: one
    /// between persisting an Allocate and answering it (kubelet saw the call
    /// fail and gave the pod nothing), and one while a CNI DEL ran (the DEL
    /// succeeds without afxdp-dp and kubelet forgets the pod). Run at start,
    /// before serving kubelet. Returns the released devices. Blocks.
    pub fn release_not_held(&self, held: &std::collections::BTreeSet<String>) -> Vec<String> {
        self.release_where("allocation kubelet no longer holds; releasing", |a| {
            !held.contains(&a.device)
        })
    }

    /// CNI GC of `network`: release every device CNI ADD plumbed through
    /// `network` whose (container, ifname) is not in `valid`; nothing else
    /// (other networks' attachments, devices allocated but not plumbed,
    /// claims from a CNI that named no network). Returns the released
    /// devices. Blocks.
    pub fn collect_garbage(
        &self,
        network: &str,
        valid: &std::collections::BTreeSet<(String, String)>,
    ) -> Vec<String> {
        self.release_where(
            "CNI GC: attachment not among the valid ones; releasing",
            |a| {
                a.claim.as_ref().is_some_and(|c| {
                    c.network == network
                        && !valid.contains(&(c.container_id.clone(), c.ifname.clone()))
                })
            },
        )
    }

    /// The device the CNI attachment (`container_id`, `network`, `ifname`)
    /// claimed at ADD, if it still holds one.
    pub fn claimed_device(
        &self,
        container_id: &str,
        network: &str,
        ifname: &str,
    ) -> Option<String> {
        self.lock()
            .state
            .allocations
            .values()
            .find(|a| {
                a.claim.as_ref().is_some_and(|c| {
                    c.container_id == container_id && c.network == network && c.ifname == ifname
                })
            })
            .map(|a| a.device.clone())
    }

    /// Release (as the operator) every allocation `stale` picks, logging
    /// `why` for each; the devices freed. Blocks.
    fn release_where(&self, why: &str, stale: impl Fn(&Allocation) -> bool) -> Vec<String> {
        let picked: Vec<(String, Option<String>)> = self
            .lock()
            .state
            .allocations
            .values()
            .filter(|a| stale(a))
            .map(|a| {
                let container = a.claim.as_ref().map(|c| c.container_id.clone());
                (a.device.clone(), container)
            })
            .collect();
        let mut released = Vec::new();
        for (device, container) in picked {
            tracing::warn!(device, ?container, "{why}");
            match self.release(&device, ReleaseBy::Operator) {
                Ok(Released::Freed) => released.push(device),
                Ok(_) => {}
                Err(e) => tracing::error!(device, error = %e, "{why}: release failed"),
            }
        }
        released
    }

    /// The device is back in the host netns (CNI DEL moved it): up again,
    /// prepared if the daemon prepares, published as free in the pool that
    /// holds it now (a reload may have moved it from `was_in`; then it may
    /// be in none).
    pub(super) fn return_to_pool(&self, device: &str, was_in: &str) {
        let pool_now = self
            .lock()
            .inventory
            .pool_of(device)
            .map(|p| p.config.clone());
        let Some(cfg) = pool_now else {
            self.publish(was_in);
            return;
        };
        if let Some(nd) = bring_up(device) {
            self.lock().inventory.device_seen(&nd);
            // A replayed DEL finds the device prepared already.
            let attached = || {
                self.programs
                    .attachments()
                    .iter()
                    .any(|a| a.device == device)
            };
            if self.prepare && !attached() {
                self.prepare(&cfg, &nd);
            }
        }
        self.publish(&cfg.name);
        if cfg.name != was_in {
            self.publish(was_in);
        }
    }
}
