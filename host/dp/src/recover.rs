//! Start-up reconciliation of the state file with what the kernel holds
//! (DESIGN.md flow 1).
//!
//! - **Readable state**: adopt allocations whose pinned attachment is still
//!   there, forget those whose program is gone (reported: their device is
//!   listed Unhealthy with that reason while it stays away), detach attachments nobody
//!   remembers (a crash between attach and persist, prepared attachments),
//!   remove UDS directories nobody remembers.
//! - **Unreadable or other-version state**: never destructive. The file is
//!   kept aside (`allocations.json.unreadable-<unix secs>`), every pinned
//!   attachment is adopted as a *recovered* allocation (its pool found by
//!   the device's name, its sharing by the UDS directory the previous run
//!   left), so live pods keep their programs and a later CNI DEL still
//!   releases them; attachments no pool claims stay attached and are
//!   reported.

use std::path::{Path, PathBuf};

use afxdp_program::{Attachment, ProgramManager};

use crate::sharing::SharingKind;
use crate::state::{Allocation, StateError, StateFile, StateStore, STATE_VERSION};

/// What start-up reconciliation found.
#[derive(Debug)]
pub struct Reconciled {
    pub state: StateFile,
    /// Where an unreadable state file was kept, and why it was unreadable.
    pub set_aside: Option<(PathBuf, String)>,
    /// Attachments kept without an allocation: no pool claims their device.
    pub unmatched: Vec<String>,
    /// Allocations that could not be recovered, with why.
    pub lost: Vec<(Allocation, String)>,
}

/// Reconcile `store` with `programs`' attachments. `pool_of` names the pool
/// a device belongs to by its name (for recovered allocations);
/// `allocation_of` the allocation id a device's program was loaded for,
/// when its manager records one (bpfman's metadata): an allocation adopts
/// only the program loaded for it. `unreachable_pool` says which pools'
/// program manager cannot be asked now (bpfman down): their allocations
/// are kept as persisted. `uds_root` is where UDS servers keep
/// their per-device directories. Blocks (file and bpffs I/O, detach).
///
/// # Errors
/// Writing the reconciled state, or setting the unreadable file aside.
pub fn reconcile(
    store: &StateStore,
    programs: &dyn ProgramManager,
    pool_of: &dyn Fn(&str) -> Option<String>,
    allocation_of: &dyn Fn(&str) -> Option<String>,
    unreachable_pool: &dyn Fn(&str) -> bool,
    uds_root: &Path,
) -> Result<Reconciled, StateError> {
    let attached = programs.attachments();
    let mut lost = Vec::new();
    let (state, set_aside, unmatched) = match store.load() {
        Ok(state) => {
            let owners = Owners {
                allocation_of,
                unreachable_pool,
            };
            let (state, dropped) = adopt(state, &attached, programs, &owners);
            lost = dropped;
            remove_orphan_uds_dirs(uds_root, &state);
            (state, None, Vec::new())
        }
        Err(e) => {
            let aside = store.set_aside()?;
            tracing::error!(error = %e, kept = %aside.display(), "state file unreadable; kept aside, recovering allocations from the kernel");
            let (state, unmatched) = recover(&attached, pool_of, uds_root);
            (state, Some((aside, e.to_string())), unmatched)
        }
    };
    store.save(&state)?;
    if !unmatched.is_empty() {
        tracing::error!(devices = ?unmatched, "attachments no pool claims: left attached, not allocated; detach them by hand once their pods are gone");
    }
    tracing::info!(adopted = state.allocations.len(), "state reconciled");
    Ok(Reconciled {
        state,
        set_aside,
        unmatched,
        lost,
    })
}

/// What a recovered device lost: its program.
pub const PROGRAM_GONE: &str = "its XDP program was gone when afxdp-dp started (detached while afxdp-dp was down): the pod that held it gets no packets; it returns to the pool when the pod's CNI DEL brings it back";

/// What the program managers say about who owns a device's program.
struct Owners<'a> {
    /// The allocation id a device's program was loaded for, if recorded.
    allocation_of: &'a dyn Fn(&str) -> Option<String>,
    /// Pools whose manager cannot be asked now.
    unreachable_pool: &'a dyn Fn(&str) -> bool,
}

/// A readable state against the kernel; the allocations dropped, with why.
fn adopt(
    mut state: StateFile,
    attached: &[Attachment],
    programs: &dyn ProgramManager,
    owners: &Owners<'_>,
) -> (StateFile, Vec<(Allocation, String)>) {
    let mut lost = Vec::new();
    state.allocations.retain(|dev, alloc| {
        if (owners.unreachable_pool)(&alloc.pool) {
            tracing::warn!(device = %dev, pool = %alloc.pool, "the pool's program manager is unreachable: allocation kept as persisted");
            return true;
        }
        let loaded_for = (owners.allocation_of)(dev);
        if let Some(other) = loaded_for.as_ref().filter(|id| **id != alloc.allocation_id) {
            tracing::error!(device = %dev, allocation = %alloc.allocation_id, program_allocation = %other, "the device's program was loaded for another allocation: detaching it, {PROGRAM_GONE}");
            if let Err(e) = programs.detach(dev) {
                tracing::error!(device = %dev, error = %e, "detaching another allocation's program failed");
            }
            lost.push((alloc.clone(), PROGRAM_GONE.to_string()));
            return false;
        }
        let keep = attached.iter().any(|a| &a.device == dev);
        if !keep {
            tracing::error!(device = %dev, "allocation without attachment dropped: {PROGRAM_GONE}");
            lost.push((alloc.clone(), PROGRAM_GONE.to_string()));
        }
        keep
    });
    for a in attached {
        if !state.allocations.contains_key(&a.device) {
            tracing::warn!(device = %a.device, "attachment without allocation; detaching");
            if let Err(e) = programs.detach(&a.device) {
                tracing::error!(device = %a.device, error = %e, "detaching leftover failed");
            }
        }
    }
    (state, lost)
}

/// Remove the UDS directories of devices without an allocation (a crash
/// between starting a server and persisting its Allocate): no container
/// was given them.
fn remove_orphan_uds_dirs(uds_root: &Path, state: &StateFile) {
    for entry in std::fs::read_dir(uds_root).into_iter().flatten().flatten() {
        let device = entry.file_name().to_string_lossy().into_owned();
        if !state.allocations.contains_key(&device) {
            tracing::warn!(device, "UDS directory without allocation; removing");
            crate::sharing::remove_host_dir(&entry.path());
        }
    }
}

/// Allocations rebuilt from the kernel's attachments alone; the devices no
/// pool claims.
fn recover(
    attached: &[Attachment],
    pool_of: &dyn Fn(&str) -> Option<String>,
    uds_root: &Path,
) -> (StateFile, Vec<String>) {
    let mut state = StateFile {
        version: STATE_VERSION,
        ..Default::default()
    };
    let mut unmatched = Vec::new();
    for a in attached {
        let Some(pool) = pool_of(&a.device) else {
            unmatched.push(a.device.clone());
            continue;
        };
        let alloc = recovered_allocation(a, pool, uds_root);
        tracing::warn!(device = %a.device, pool = %alloc.pool, sharing = alloc.sharing.as_str(), program_id = a.program_id, "allocation recovered from the kernel");
        state.allocations.insert(a.device.clone(), alloc);
    }
    (state, unmatched)
}

fn recovered_allocation(a: &Attachment, pool: String, uds_root: &Path) -> Allocation {
    let uds_dir = uds_root.join(&a.device);
    let (sharing, host_dir) = if uds_dir.is_dir() {
        (SharingKind::Uds, uds_dir)
    } else {
        (SharingKind::Pinned, a.map_dir.clone())
    };
    Allocation {
        pool,
        device: a.device.clone(),
        ifindex: a.ifindex,
        program_id: a.program_id,
        allocation_id: String::new(),
        sharing,
        host_dir,
        queues: Vec::new(),
        channels: 0,
        allocated_at: Allocation::now(),
        netdev: afxdp_netdev::NetDev::named(a.device.clone(), a.ifindex),
        decided_by: "recovered (state file unreadable)".to_string(),
        program: format!("recovered (program id {})", a.program_id),
        pod: String::new(),
        claim: None,
        recovered: true,
        releasing: false,
        subfunction: None,
    }
}
