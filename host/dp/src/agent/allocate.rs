//! Allocate: reserve the devices, decide, attach and share each one outside
//! the lock, then commit and persist (see `transaction`).

use std::path::PathBuf;
use std::sync::PoisonError;

use afxdp_policy::Blocking;
use afxdp_program::AttachRequest;

use super::decide::{decide, decided_by, PolicySnapshot};
use super::transaction::Undo;
use super::{attach_mode, queues_env_name, Agent, AllocateError, ContainerGrant};
use crate::policies;
use crate::pool::{self, Inventory};
use crate::programs::Decided;
use crate::sharing::{self, SharingKind};
use crate::state::Allocation;

/// What one allocation works from, taken under the lock.
struct Plan {
    cfg: afxdp_config::PoolConfig,
    /// The requested devices as the inventory saw them.
    devices: Vec<Requested>,
    /// Requested devices kubelet had given out before (no CNI DEL came).
    stale: Vec<String>,
    policy: PolicySnapshot,
}

/// One requested device: its ID, the netdev the inventory saw (a `cdq`
/// slot's parent) and, in a `cdq` pool, the slot's subfunction number.
struct Requested {
    id: String,
    netdev: afxdp_netdev::NetDev,
    slot: Option<u32>,
}

/// The netdev to attach to and hand out, and the subfunction it belongs to.
type Attached = (
    afxdp_netdev::NetDev,
    Option<crate::subfunction::Subfunction>,
);

/// The program a decision names, ready for the program manager.
struct Program {
    object: Option<PathBuf>,
    /// A bpfman pool's chosen image, given to bpfman as chosen.
    bpfman_image: Option<String>,
    function: Option<String>,
    /// `builtin`, `file <path>`, `image <pinned ref>`.
    desc: String,
}

impl Agent {
    /// Allocate `devices` of `pool` to one container of `pod` (as far as it
    /// is known; `requested` is set here): decide, attach, share, persist. On
    /// any error, every step done so far is undone. Blocks (policy calls,
    /// image pulls, attach, fsync); the agent's lock is held only to reserve
    /// the devices and to commit.
    pub fn allocate(
        &self,
        b: &Blocking,
        pool_name: &str,
        devices: &[String],
        pod: afxdp_policy::Pod,
    ) -> Result<ContainerGrant, AllocateError> {
        let result = self.allocate_counted(b, pool_name, devices, pod);
        match &result {
            Ok(_) => self.metrics.allocated(pool_name, devices.len()),
            Err(e) => self.metrics.allocation_failed(pool_name, e.cause()),
        }
        result
    }

    fn allocate_counted(
        &self,
        b: &Blocking,
        pool_name: &str,
        devices: &[String],
        mut pod: afxdp_policy::Pod,
    ) -> Result<ContainerGrant, AllocateError> {
        pod.requested = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        let mut inner = self.lock_idle(devices).map_err(AllocateError::Busy)?;
        let plan = self.plan(&inner, pool_name, devices)?;
        let _reserved = self.reserve(&mut inner, devices);
        drop(inner);

        self.clear_stale(&plan.stale)?;
        let mut undo = Undo::new(self);
        let mut made = Vec::with_capacity(plan.devices.len());
        for requested in &plan.devices {
            made.push(self.allocate_device(b, &plan, requested, &pod, &mut undo)?);
        }
        self.commit(&made)?;
        undo.disarm();
        self.publish(pool_name);
        for a in &made {
            tracing::info!(pool = pool_name, device = %a.device, program_id = a.program_id, sharing = a.sharing.as_str(), "allocated");
        }
        Ok(grant(pool_name, &made))
    }

    /// Check the request against the inventory (under the lock).
    fn plan(
        &self,
        inner: &super::Inner,
        pool_name: &str,
        devices: &[String],
    ) -> Result<Plan, AllocateError> {
        let pool = inner
            .inventory
            .pool(pool_name)
            .ok_or_else(|| AllocateError::UnknownPool(pool_name.into()))?;
        let mut seen = std::collections::BTreeSet::new();
        let mut plan = Plan {
            cfg: pool.config.clone(),
            devices: Vec::with_capacity(devices.len()),
            stale: Vec::new(),
            policy: self.snapshot(&pool.config),
        };
        for device in devices {
            if !seen.insert(device) {
                return Err(AllocateError::Duplicate(device.clone()));
            }
            let dev = pool
                .devices
                .get(device)
                .ok_or_else(|| AllocateError::NotInPool {
                    pool: pool_name.into(),
                    device: device.clone(),
                })?;
            if inner.state.allocations.contains_key(device) {
                plan.stale.push(device.clone());
            }
            if !dev.present {
                return Err(AllocateError::NotPresent(device.clone()));
            }
            if dev.leaving {
                return Err(AllocateError::Leaving {
                    device: device.clone(),
                    pool: pool_name.into(),
                });
            }
            if !Inventory::is_healthy(dev, false) {
                return Err(AllocateError::Unhealthy {
                    device: device.clone(),
                    state: dev.netdev.state,
                });
            }
            plan.devices.push(Requested {
                id: device.clone(),
                netdev: dev.netdev.clone(),
                slot: dev.slot,
            });
        }
        Ok(plan)
    }

    /// Kubelet allocates a device again (a new pod after an old one went
    /// without a CNI DEL): start from a clean slate for it.
    fn clear_stale(&self, stale: &[String]) -> Result<(), AllocateError> {
        if stale.is_empty() {
            return Ok(());
        }
        for device in stale {
            tracing::warn!(device, "device was still allocated; re-allocating");
            let old = self.lock().state.allocations.get(device).cloned();
            let attached = old
                .as_ref()
                .map_or(device.as_str(), |a| a.attached_device());
            self.stop_uds(attached);
            if let Err(e) = self.programs.detach(attached) {
                tracing::warn!(device, error = %e, "detach before re-allocation failed");
            }
            if let Some(sf) = old.as_ref().and_then(|a| a.subfunction.as_ref()) {
                crate::subfunction::delete(&*self.devlink, sf, device).map_err(|source| {
                    AllocateError::Subfunction {
                        device: device.clone(),
                        source: Box::new(source),
                    }
                })?;
            }
            self.lock().state.allocations.remove(device);
        }
        self.persist()?;
        Ok(())
    }

    /// In a `cdq` pool, create and activate the slot's subfunction (undone
    /// with the rest); the netdev to attach to and hand out: the
    /// subfunction's, or the device itself. Blocks (devlink, sysfs).
    fn subfunction(&self, req: &Requested, undo: &mut Undo<'_>) -> Result<Attached, AllocateError> {
        let Some(sfnum) = req.slot else {
            return Ok((req.netdev.clone(), None));
        };
        let (sf, nd) = crate::subfunction::create(
            &*self.devlink,
            &req.netdev,
            sfnum,
            crate::subfunction::NETDEV_WAIT,
        )
        .map_err(|source| AllocateError::Subfunction {
            device: req.id.clone(),
            source: Box::new(source),
        })?;
        undo.subfunction_created(&req.id, &sf);
        Ok((nd, Some(sf)))
    }

    /// Decide, attach and share one device (no lock held).
    fn allocate_device(
        &self,
        b: &Blocking,
        plan: &Plan,
        requested: &Requested,
        pod: &afxdp_policy::Pod,
        undo: &mut Undo<'_>,
    ) -> Result<Allocation, AllocateError> {
        let (nd, subfunction) = self.subfunction(requested, undo)?;
        let nd = &nd;
        let (cfg, device) = (&plan.cfg, &nd.name);
        let view = policies::netdev_view(nd);
        let choice = decide(
            &plan.policy,
            &cfg.name,
            afxdp_policy::Decision::SelectProgram,
            |p| p.call(|l, ctx| l.select_program(b, ctx, &view, pod)),
            || policies::configured_program(cfg),
        )?;
        let queues = decide(
            &plan.policy,
            &cfg.name,
            afxdp_policy::Decision::AssignQueues,
            |p| p.call(|l, ctx| l.assign_queues(b, ctx, &view, pod)),
            || policies::configured_queues(cfg, &view),
        )?;
        let program = self.program(cfg, &choice.value)?;
        let allocation_id = Allocation::new_id(device);
        let decided = Decided {
            image: program.bpfman_image.as_deref(),
            priority: choice.value.priority,
            allocation: &allocation_id,
        };
        let req = AttachRequest {
            device,
            ifindex: nd.ifindex,
            mode: attach_mode(choice.value.mode),
            program: program.object.as_deref(),
            function: program.function.as_deref(),
        };
        let att = self.attach(cfg, &req, &decided)?;
        undo.attached(device);
        let (sharing, host_dir) = self.share(cfg, device, &att, undo)?;
        Ok(Allocation {
            pool: cfg.name.clone(),
            device: requested.id.clone(),
            ifindex: att.ifindex,
            program_id: att.program_id,
            allocation_id,
            sharing,
            host_dir,
            queues: queues.value.queues.clone(),
            channels: queues.value.channels.unwrap_or(0),
            allocated_at: Allocation::now(),
            netdev: nd.clone(),
            decided_by: decided_by(&choice.by, &queues.by),
            pod: super::claim::pod_key(&pod.namespace, &pod.name),
            program: match &program.function {
                Some(f) => format!("{} ({f})", program.desc),
                None => program.desc,
            },
            claim: None,
            recovered: false,
            releasing: false,
            subfunction,
        })
    }

    /// Resolve the decided program (pulling a bytecode image if it names one;
    /// a bpfman pool's image is bpfman's to pull).
    fn program(
        &self,
        cfg: &afxdp_config::PoolConfig,
        choice: &afxdp_policy::ProgramChoice,
    ) -> Result<Program, AllocateError> {
        let pool = cfg.name.as_str();
        let function = choice.function.clone();
        Ok(match &choice.source {
            afxdp_policy::ProgramSource::Builtin => Program {
                object: None,
                bpfman_image: None,
                function,
                desc: match cfg.bpfman.as_ref().and_then(|b| b.image.as_ref()) {
                    Some(image) => format!("image {image}"),
                    None => "builtin".to_string(),
                },
            },
            afxdp_policy::ProgramSource::File(path) => Program {
                object: Some(path.clone()),
                bpfman_image: None,
                function,
                desc: format!("file {}", path.display()),
            },
            afxdp_policy::ProgramSource::Image(image) if cfg.bpfman.is_some() => Program {
                object: None,
                bpfman_image: Some(image.clone()),
                function,
                desc: format!("image {image}"),
            },
            afxdp_policy::ProgramSource::Image(image) => {
                let Some(images) = &self.images else {
                    return Err(AllocateError::Unsupported {
                        pool: pool.into(),
                        what: format!("bytecode image {image} (no image puller configured)"),
                    });
                };
                let r = images
                    .resolve(image, function.as_deref())
                    .map_err(|source| AllocateError::Image {
                        pool: pool.into(),
                        source,
                    })?;
                Program {
                    object: Some(r.object),
                    bpfman_image: None,
                    function: r.function,
                    desc: format!("image {}", r.pinned),
                }
            }
        })
    }

    /// Attach; a free device may carry a prepared attachment (see
    /// `prepare`): the same request returns it at once, another program or
    /// mode replaces it.
    fn attach(
        &self,
        cfg: &afxdp_config::PoolConfig,
        req: &AttachRequest<'_>,
        decided: &Decided<'_>,
    ) -> Result<afxdp_program::Attachment, AllocateError> {
        let attach_err = |source| AllocateError::Attach {
            device: req.device.to_string(),
            source,
        };
        match self.programs.attach_in(cfg, req, decided) {
            Err(afxdp_program::ProgramError::AlreadyAttached { .. }) => {
                self.programs.detach(req.device).map_err(attach_err)?;
                self.programs.attach_in(cfg, req, decided)
            }
            other => other,
        }
        .map_err(attach_err)
    }

    /// Hand the map to the pod the pool's way: a UDS server or a pinned map.
    fn share(
        &self,
        cfg: &afxdp_config::PoolConfig,
        device: &str,
        att: &afxdp_program::Attachment,
        undo: &mut Undo<'_>,
    ) -> Result<(SharingKind, PathBuf), AllocateError> {
        match cfg.sharing {
            afxdp_config::SharingMode::Uds => {
                let dir = self
                    .uds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .start(device, cfg.uid, cfg.uds_timeout)?;
                undo.uds_started(device);
                Ok((SharingKind::Uds, dir))
            }
            afxdp_config::SharingMode::PinnedMap => {
                self.programs
                    .share_map_with(device, cfg.uid)
                    .map_err(|source| AllocateError::SharePin {
                        device: device.to_string(),
                        source,
                    })?;
                Ok((SharingKind::Pinned, att.map_dir.clone()))
            }
            // The CSI node plugin pins the map into the pod's volume when
            // kubelet publishes it; the deviceplugin edge annotates the pod.
            afxdp_config::SharingMode::Csi => Ok((SharingKind::Csi, att.map_dir.clone())),
            other => Err(AllocateError::Unsupported {
                pool: cfg.name.clone(),
                what: format!("sharing mode {other:?}"),
            }),
        }
    }

    /// Record `made` and persist it; on failure the record is taken back
    /// (the caller's undo detaches).
    fn commit(&self, made: &[Allocation]) -> Result<(), AllocateError> {
        {
            let mut inner = self.lock();
            for a in made {
                inner.state.allocations.insert(a.device.clone(), a.clone());
                inner.lost.remove(&a.device);
            }
        }
        if let Err(e) = self.persist() {
            let mut inner = self.lock();
            for a in made {
                inner.state.allocations.remove(&a.device);
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// The Allocate answer for the devices just allocated.
fn grant(pool_name: &str, made: &[Allocation]) -> ContainerGrant {
    let mut grant = ContainerGrant::default();
    for a in made {
        if a.sharing != SharingKind::Csi {
            grant.mounts.push((
                sharing::container_dir(a.attached_device()),
                a.host_dir.clone(),
            ));
        }
        let queues: Vec<String> = a.queues.iter().map(u32::to_string).collect();
        grant
            .envs
            .insert(queues_env_name(a.attached_device()), queues.join(","));
    }
    // The pod sees the netdevs: a `cdq` slot's is its subfunction's.
    let names: Vec<&str> = made.iter().map(|a| a.attached_device()).collect();
    grant
        .envs
        .insert(pool::devices_env_name(pool_name), names.join(" "));
    grant
}
