//! Subfunctions for `cdq` pools: a PCI subfunction created on a pool's
//! device over devlink at Allocate and deleted at release.
//!
//! A `cdq` pool advertises `secondary` *slots* per selected device (see
//! [`slot_id`]); allocating a slot runs three steps, each undone if a later
//! one fails, so a refusal leaves no port behind:
//!
//! 1. `DEVLINK_CMD_PORT_NEW` on the device's devlink instance (`pci/<addr>`),
//!    flavour `pcisf`, `pfnum` the device's PCI function, `sfnum` the slot's
//!    number (what `devlink port add pci/0000:81:00.0 flavour pcisf pfnum 0
//!    sfnum 1` sends);
//! 2. the port function set `active`: the driver creates the subfunction's
//!    auxiliary device and netdev;
//! 3. the subfunction's netdev found under its auxiliary device in sysfs
//!    (`/sys/bus/auxiliary/devices/*/sfnum`, a child of the parent PCI
//!    device), waited for a bounded time.
//!
//! The XDP attach and the sharing then happen on that netdev, which the pod
//! gets. Release detaches and deletes the port (`DEVLINK_CMD_PORT_DEL`), which
//! removes the netdev wherever it is. The [`Devlink`] trait is the seam for
//! fault injection in unit tests; [`KernelDevlink`] is the real one.
//!
//! Every call blocks (netlink, sysfs polling): call from a blocking thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use afxdp_netdev::devlink::PortHandle;
use afxdp_netdev::{NetDev, NetdevError};

/// The device ID of slot `sfnum` of `parent` in a `cdq` pool:
/// `<parent>sf<sfnum>` (upstream's naming), stable across restarts while
/// the parent keeps its name.
pub fn slot_id(parent: &str, sfnum: u32) -> String {
    format!("{parent}sf{sfnum}")
}

/// A subfunction this daemon created, persisted with its allocation so that
/// a release (or a later start) deletes its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subfunction {
    /// devlink bus of the parent device (`pci`).
    pub bus: String,
    /// devlink device name of the parent device (`0000:81:00.0`).
    pub dev: String,
    /// The port index the kernel gave the subfunction's port.
    pub port_index: u32,
    /// The subfunction number (the slot's).
    pub sfnum: u32,
    /// The subfunction's netdev, the device the pod gets.
    pub netdev: String,
}

impl Subfunction {
    /// The devlink port as [`afxdp_netdev::devlink`] names it.
    pub fn port(&self) -> PortHandle {
        PortHandle {
            bus: self.bus.clone(),
            dev: self.dev.clone(),
            port_index: self.port_index,
            netdev: None,
        }
    }

    /// `pci/0000:81:00.0`.
    pub fn devlink_device(&self) -> String {
        self.port().device()
    }
}

/// Why a subfunction could not be created or deleted. Each names the device
/// and, where the kernel refused, carries its errno.
#[derive(Debug, thiserror::Error)]
pub enum SubfunctionError {
    /// The device has no devlink instance to create a subfunction on.
    #[error("device {device} has no devlink instance ({why}): cdq mode needs a PCI device whose driver supports devlink subfunctions")]
    NoDevlinkInstance { device: String, why: String },
    /// The kernel (or the device's driver) refused a step.
    #[error("{step} subfunction {sfnum} on device {device}: {source}")]
    Kernel {
        step: &'static str,
        device: String,
        sfnum: u32,
        #[source]
        source: NetdevError,
    },
    /// The subfunction was activated but no netdev of it appeared.
    #[error("subfunction {sfnum} on device {device} ({devlink}) is active but has no netdev after {waited:?}")]
    NoNetdev {
        device: String,
        devlink: String,
        sfnum: u32,
        waited: Duration,
    },
}

impl SubfunctionError {
    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SubfunctionError::Kernel { source, .. } => source.errno(),
            _ => None,
        }
    }
}

/// The devlink operations a subfunction's life needs. Blocking.
pub trait Devlink: Send + Sync {
    /// `DEVLINK_CMD_PORT_NEW`: a `pcisf` port `sfnum` on PF `pfnum` of `bus/dev`.
    fn port_new(
        &self,
        bus: &str,
        dev: &str,
        pfnum: u16,
        sfnum: u32,
    ) -> Result<PortHandle, NetdevError>;
    /// `DEVLINK_CMD_PORT_SET` of the port function's state to `active`.
    fn port_activate(&self, port: &PortHandle) -> Result<(), NetdevError>;
    /// The netdev of the active subfunction `sfnum` of PCI device `dev`;
    /// `Ok(None)` while it has none yet.
    fn subfunction_netdev(&self, dev: &str, sfnum: u32) -> Result<Option<NetDev>, NetdevError>;
    /// `DEVLINK_CMD_PORT_DEL`.
    fn port_del(&self, port: &PortHandle) -> Result<(), NetdevError>;
}

/// The kernel's devlink (generic netlink) and sysfs.
#[derive(Debug, Clone)]
pub struct KernelDevlink {
    /// `/sys` (a test may point elsewhere).
    sysfs: PathBuf,
}

impl Default for KernelDevlink {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
        }
    }
}

impl Devlink for KernelDevlink {
    fn port_new(
        &self,
        bus: &str,
        dev: &str,
        pfnum: u16,
        sfnum: u32,
    ) -> Result<PortHandle, NetdevError> {
        afxdp_netdev::devlink::port_new(bus, dev, pfnum, sfnum)
    }
    fn port_activate(&self, port: &PortHandle) -> Result<(), NetdevError> {
        afxdp_netdev::devlink::port_activate(port)
    }
    fn subfunction_netdev(&self, dev: &str, sfnum: u32) -> Result<Option<NetDev>, NetdevError> {
        match auxiliary_netdev_name(&self.sysfs, dev, sfnum) {
            Some(name) => afxdp_netdev::get(&name),
            None => Ok(None),
        }
    }
    fn port_del(&self, port: &PortHandle) -> Result<(), NetdevError> {
        afxdp_netdev::devlink::port_del(port)
    }
}

/// The netdev name of subfunction `sfnum` of PCI device `pci`: the auxiliary
/// device whose `sfnum` file says so and whose parent is `pci`, and the one
/// entry of its `net/` directory.
fn auxiliary_netdev_name(sysfs: &Path, pci: &str, sfnum: u32) -> Option<String> {
    let aux = sysfs.join("bus/auxiliary/devices");
    std::fs::read_dir(aux).ok()?.flatten().find_map(|e| {
        let path = e.path();
        let number = std::fs::read_to_string(path.join("sfnum")).ok()?;
        if number.trim().parse::<u32>().ok()? != sfnum {
            return None;
        }
        let real = std::fs::canonicalize(&path).ok()?;
        let parent = real.parent()?.file_name()?.to_str()?;
        if parent != pci {
            return None;
        }
        let mut net = std::fs::read_dir(real.join("net")).ok()?.flatten();
        net.next()?.file_name().into_string().ok()
    })
}

/// The PF number devlink expects for a PCI address: its function
/// (`0000:81:00.1` → 1).
fn pf_number(pci: &str) -> Option<u16> {
    let (_, function) = pci.rsplit_once('.')?;
    function.parse().ok()
}

/// How long an activated subfunction may take to show its netdev.
pub const NETDEV_WAIT: Duration = Duration::from_secs(10);

/// Creates and activates subfunction `sfnum` on `parent` and finds its
/// netdev (the module doc's steps); a failing step deletes the port the
/// first one made. Blocks.
///
/// # Errors
/// [`SubfunctionError`] naming `parent`, with the kernel's errno where it
/// refused (`ENODEV`, `EOPNOTSUPP`, `EEXIST`...).
pub fn create(
    devlink: &dyn Devlink,
    parent: &NetDev,
    sfnum: u32,
    wait: Duration,
) -> Result<(Subfunction, NetDev), SubfunctionError> {
    let device = parent.name.clone();
    let no_instance = |why: &str| SubfunctionError::NoDevlinkInstance {
        device: device.clone(),
        why: why.to_string(),
    };
    let pci = parent
        .pci
        .as_deref()
        .ok_or_else(|| no_instance("it is not a PCI device"))?;
    let pfnum =
        pf_number(pci).ok_or_else(|| no_instance("its PCI address has no function number"))?;
    let kernel = |step: &'static str| {
        let device = device.clone();
        move |source| SubfunctionError::Kernel {
            step,
            device,
            sfnum,
            source,
        }
    };
    let port = devlink
        .port_new("pci", pci, pfnum, sfnum)
        .map_err(kernel("creating"))?;
    let undo = PortGuard {
        devlink,
        port: Some(port.clone()),
    };
    devlink.port_activate(&port).map_err(kernel("activating"))?;
    let netdev = wait_for_netdev(devlink, pci, sfnum, wait)
        .map_err(kernel("finding the netdev of"))?
        .ok_or_else(|| SubfunctionError::NoNetdev {
            device: device.clone(),
            devlink: port.device(),
            sfnum,
            waited: wait,
        })?;
    undo.disarm();
    tracing::info!(device, devlink = %port.device(), port_index = port.port_index, sfnum, netdev = %netdev.name, "subfunction created and active");
    Ok((
        Subfunction {
            bus: port.bus,
            dev: port.dev,
            port_index: port.port_index,
            sfnum,
            netdev: netdev.name.clone(),
        },
        netdev,
    ))
}

fn wait_for_netdev(
    devlink: &dyn Devlink,
    pci: &str,
    sfnum: u32,
    wait: Duration,
) -> Result<Option<NetDev>, NetdevError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(nd) = devlink.subfunction_netdev(pci, sfnum)? {
            return Ok(Some(nd));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes `sf`'s port. A port already gone (`ENODEV`, `ENOENT`: the parent
/// device went away, or a previous run deleted it) counts as deleted. Blocks.
///
/// # Errors
/// [`SubfunctionError::Kernel`] when the kernel refuses otherwise.
pub fn delete(
    devlink: &dyn Devlink,
    sf: &Subfunction,
    device: &str,
) -> Result<(), SubfunctionError> {
    match devlink.port_del(&sf.port()) {
        Ok(()) => {
            tracing::info!(device, devlink = %sf.devlink_device(), port_index = sf.port_index, sfnum = sf.sfnum, "subfunction deleted");
            Ok(())
        }
        Err(e) if matches!(e.errno(), Some(libc::ENODEV) | Some(libc::ENOENT)) => {
            tracing::warn!(device, devlink = %sf.devlink_device(), port_index = sf.port_index, error = %e, "subfunction port already gone");
            Ok(())
        }
        Err(source) => Err(SubfunctionError::Kernel {
            step: "deleting",
            device: device.to_string(),
            sfnum: sf.sfnum,
            source,
        }),
    }
}

/// Deletes a created port on drop unless disarmed.
struct PortGuard<'a> {
    devlink: &'a dyn Devlink,
    port: Option<PortHandle>,
}

impl PortGuard<'_> {
    fn disarm(mut self) {
        self.port = None;
    }
}

impl Drop for PortGuard<'_> {
    fn drop(&mut self) {
        if let Some(port) = self.port.take() {
            match self.devlink.port_del(&port) {
                Ok(()) => {
                    tracing::info!(devlink = %port.device(), port_index = port.port_index, "undo: subfunction port deleted")
                }
                Err(e) => {
                    tracing::error!(devlink = %port.device(), port_index = port.port_index, error = %e, "undo: deleting the subfunction port failed")
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A devlink stand-in for fault injection: it records every call, keeps
    //! the ports it "created", and fails the step it is told to.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// Which call fails, and with which errno.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fail {
        PortNew(i32),
        Activate(i32),
        /// The netdev never appears.
        NoNetdev,
        PortDel(i32),
    }

    #[derive(Default)]
    pub struct FakeDevlink {
        pub fail: Mutex<Option<Fail>>,
        /// Every call, in order: `new pci/0000:81:00.0 pf 0 sf 1`, `activate 7`, ...
        pub calls: Mutex<Vec<String>>,
        /// Live ports: port index → (pci, sfnum).
        pub ports: Mutex<BTreeMap<u32, (String, u32)>>,
        /// What the subfunction netdevs look like (their name is set per sfnum).
        pub netdev: Mutex<Option<NetDev>>,
    }

    fn refused(op: &'static str, device: String, errno: i32) -> NetdevError {
        NetdevError::Devlink {
            op,
            device,
            source: std::io::Error::from_raw_os_error(errno),
            message: None,
        }
    }

    impl FakeDevlink {
        pub fn failing(fail: Fail) -> Self {
            let f = Self::default();
            *f.fail.lock().unwrap() = Some(fail);
            f
        }
        fn fails(&self, f: impl Fn(Fail) -> Option<i32>) -> Option<i32> {
            self.fail.lock().unwrap().and_then(f)
        }
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        pub fn live_ports(&self) -> usize {
            self.ports.lock().unwrap().len()
        }
        /// The netdev name the fake gives subfunction `sfnum`.
        pub fn netdev_name(sfnum: u32) -> String {
            format!("sfnd{sfnum}")
        }
    }

    impl Devlink for FakeDevlink {
        fn port_new(
            &self,
            bus: &str,
            dev: &str,
            pfnum: u16,
            sfnum: u32,
        ) -> Result<PortHandle, NetdevError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("new {bus}/{dev} pf {pfnum} sf {sfnum}"));
            if let Some(errno) = self.fails(|f| match f {
                Fail::PortNew(e) => Some(e),
                _ => None,
            }) {
                return Err(refused(
                    "DEVLINK_CMD_PORT_NEW",
                    format!("{bus}/{dev}"),
                    errno,
                ));
            }
            let mut ports = self.ports.lock().unwrap();
            let index = 0x8000 + sfnum;
            ports.insert(index, (dev.to_string(), sfnum));
            Ok(PortHandle {
                bus: bus.into(),
                dev: dev.into(),
                port_index: index,
                netdev: None,
            })
        }
        fn port_activate(&self, port: &PortHandle) -> Result<(), NetdevError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("activate {}", port.port_index));
            match self.fails(|f| match f {
                Fail::Activate(e) => Some(e),
                _ => None,
            }) {
                Some(errno) => Err(refused("DEVLINK_CMD_PORT_SET", port.device(), errno)),
                None => Ok(()),
            }
        }
        fn subfunction_netdev(&self, dev: &str, sfnum: u32) -> Result<Option<NetDev>, NetdevError> {
            if *self.fail.lock().unwrap() == Some(Fail::NoNetdev) {
                return Ok(None);
            }
            let live = self
                .ports
                .lock()
                .unwrap()
                .values()
                .any(|(d, s)| d == dev && *s == sfnum);
            Ok(live.then(|| {
                let mut nd = self
                    .netdev
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| crate::subfunction::tests::netdev("x", None));
                nd.name = Self::netdev_name(sfnum);
                nd
            }))
        }
        fn port_del(&self, port: &PortHandle) -> Result<(), NetdevError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("del {}", port.port_index));
            if let Some(errno) = self.fails(|f| match f {
                Fail::PortDel(e) => Some(e),
                _ => None,
            }) {
                return Err(refused("DEVLINK_CMD_PORT_DEL", port.device(), errno));
            }
            match self.ports.lock().unwrap().remove(&port.port_index) {
                Some(_) => Ok(()),
                None => Err(refused("DEVLINK_CMD_PORT_DEL", port.device(), libc::ENODEV)),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::fake::{Fail, FakeDevlink};
    use super::*;

    pub(crate) fn netdev(name: &str, pci: Option<&str>) -> NetDev {
        NetDev {
            driver: Some("mlx5_core".into()),
            pci: pci.map(Into::into),
            ..NetDev::for_test(name, 7)
        }
    }

    const NO_WAIT: Duration = Duration::from_millis(0);

    #[test]
    fn slot_ids_follow_upstream_naming() {
        assert_eq!(slot_id("ens801f0", 1), "ens801f0sf1");
        assert_eq!(pf_number("0000:81:00.1"), Some(1));
        assert_eq!(pf_number("0000:81:00"), None);
    }

    #[test]
    fn create_runs_new_activate_and_finds_the_netdev() {
        let d = FakeDevlink::default();
        let parent = netdev("ens801f1", Some("0000:81:00.1"));
        let (sf, nd) = create(&d, &parent, 3, NO_WAIT).unwrap();
        assert_eq!(
            d.calls(),
            ["new pci/0000:81:00.1 pf 1 sf 3", "activate 32771"]
        );
        assert_eq!(nd.name, "sfnd3");
        assert_eq!(
            sf,
            Subfunction {
                bus: "pci".into(),
                dev: "0000:81:00.1".into(),
                port_index: 32771,
                sfnum: 3,
                netdev: "sfnd3".into()
            }
        );
        assert_eq!(sf.devlink_device(), "pci/0000:81:00.1");
        delete(&d, &sf, "ens801f1sf3").unwrap();
        assert_eq!(d.live_ports(), 0);
        // Deleting a port already gone is not an error.
        delete(&d, &sf, "ens801f1sf3").unwrap();
    }

    #[test]
    fn a_device_without_devlink_is_refused_before_the_kernel_is_asked() {
        let d = FakeDevlink::default();
        let err = create(&d, &netdev("veth0", None), 1, NO_WAIT).unwrap_err();
        assert!(d.calls().is_empty());
        let msg = err.to_string();
        assert!(
            msg.contains("device veth0 has no devlink instance"),
            "{msg}"
        );
        assert!(msg.contains("not a PCI device"), "{msg}");
    }

    /// Every failing step leaves no port, and the error names the device,
    /// the step and the kernel's errno.
    #[test]
    fn every_failing_step_leaves_no_port() {
        let parent = netdev("ens801f0", Some("0000:81:00.0"));
        for (fail, step, errno, calls) in [
            (
                Fail::PortNew(libc::EOPNOTSUPP),
                "creating",
                Some(libc::EOPNOTSUPP),
                1,
            ),
            (
                Fail::Activate(libc::ENODEV),
                "activating",
                Some(libc::ENODEV),
                3,
            ),
            (Fail::NoNetdev, "has no netdev", None, 3),
        ] {
            let d = FakeDevlink::failing(fail);
            let err = create(&d, &parent, 1, NO_WAIT).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("ens801f0"), "{fail:?}: {msg}");
            assert!(msg.contains(step), "{fail:?}: {msg}");
            assert_eq!(err.errno(), errno, "{fail:?}: {err:?}");
            if let Some(e) = errno {
                let kernel = std::io::Error::from_raw_os_error(e).to_string();
                assert!(msg.contains(&kernel), "{fail:?}: {msg}");
            }
            assert_eq!(d.live_ports(), 0, "{fail:?}: a port was left");
            assert_eq!(d.calls().len(), calls, "{fail:?}: {:?}", d.calls());
        }
    }

    #[test]
    fn a_refused_delete_names_the_device_and_errno() {
        let d = FakeDevlink::default();
        let (sf, _) = create(&d, &netdev("p0", Some("0000:03:00.0")), 2, NO_WAIT).unwrap();
        *d.fail.lock().unwrap() = Some(Fail::PortDel(libc::EBUSY));
        let err = delete(&d, &sf, "p0sf2").unwrap_err();
        assert!(
            err.to_string()
                .contains("deleting subfunction 2 on device p0sf2"),
            "{err}"
        );
        assert_eq!(err.errno(), Some(libc::EBUSY));
    }

    /// The sysfs layout of an mlx5 subfunction: the auxiliary device, a child
    /// of its PCI parent, with `sfnum` and `net/<name>`.
    #[test]
    fn the_netdev_is_found_under_the_auxiliary_device() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let pci_dir = sys.join("devices/pci0000:00/0000:81:00.0");
        for (aux, sfnum, pci, net) in [
            ("mlx5_core.sf.2", "7", "0000:81:00.0", "enp129s0f0s7"),
            ("mlx5_core.sf.3", "8", "0000:81:00.0", "enp129s0f0s8"),
            ("mlx5_core.sf.4", "7", "0000:82:00.0", "other"),
        ] {
            let dir = sys.join("devices/pci0000:00").join(pci).join(aux);
            std::fs::create_dir_all(dir.join("net").join(net)).unwrap();
            std::fs::write(dir.join("sfnum"), format!("{sfnum}\n")).unwrap();
            let bus = sys.join("bus/auxiliary/devices");
            std::fs::create_dir_all(&bus).unwrap();
            std::os::unix::fs::symlink(&dir, bus.join(aux)).unwrap();
        }
        assert!(pci_dir.exists());
        assert_eq!(
            auxiliary_netdev_name(sys, "0000:81:00.0", 7).as_deref(),
            Some("enp129s0f0s7")
        );
        assert_eq!(
            auxiliary_netdev_name(sys, "0000:82:00.0", 7).as_deref(),
            Some("other")
        );
        assert_eq!(auxiliary_netdev_name(sys, "0000:81:00.0", 9), None);
        assert_eq!(
            auxiliary_netdev_name(&sys.join("none"), "0000:81:00.0", 7),
            None
        );
    }
}
