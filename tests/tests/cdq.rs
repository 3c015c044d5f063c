//! A `cdq` (subfunction) pool on a device without devlink: the pool
//! advertises its subfunction slots (`<parent>sf<n>`), and an Allocate of one
//! fails with an error naming the device and why (no devlink instance: a
//! veth is no PCI device), leaving nothing behind: no allocation, no XDP
//! program, no UDS directory; the slots stay listed and healthy. No device
//! on this machine supports subfunctions, so the success path is covered by
//! unit tests with a fake devlink (`afxdp-dp`'s `subfunction` module) and the
//! kernel's own refusal by `afxdp-netdev`'s devlink tests (also run in
//! Debian's kernel by `tests/qemu/devlink.sh`). Real kernel, afxdp-dp,
//! kubelet stand-in.

use std::time::Duration;

use afxdp_kubelet_standin::Health;
use afxdp_lab::{POOL, RESOURCE};

const WAIT: Duration = Duration::from_secs(10);

/// The lab pool in `cdq` mode: `secondary` slots on the first NIC, the
/// default (one) on the others.
fn cdq_config(nics: &[String], secondary: u32) -> serde_json::Value {
    let uid = afxdp_lab::unprivileged::PodUser::nobody_net_raw().uid;
    let devices: Vec<_> = nics
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            0 => serde_json::json!({ "name": n, "secondary": secondary }),
            _ => serde_json::json!({ "name": n }),
        })
        .collect();
    serde_json::json!({
        "apiVersion": "afxdp.io/v1alpha1",
        "includeVirtualDevices": true,
        "pools": [{
            "name": POOL,
            "mode": "cdq",
            "selectors": { "devices": devices },
            "sharing": "uds",
            "uid": uid,
            "xdpMode": "native",
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdq_allocate_on_a_device_without_devlink_fails_clearly_and_leaves_nothing() {
    let mut lab = afxdp_e2e::default_lab(2).await;
    let nics: Vec<String> = lab.nics.iter().map(|n| n.name.clone()).collect();
    let outcome = lab
        .reload_config(&cdq_config(&nics, 2))
        .await
        .expect("reload");
    eprintln!("reload: {outcome:?}");

    let mut slots = vec![
        format!("{}sf1", nics[0]),
        format!("{}sf2", nics[0]),
        format!("{}sf1", nics[1]),
    ];
    slots.sort();
    let listed = lab
        .kubelet()
        .wait_devices(RESOURCE, WAIT, |d| {
            let mut ids: Vec<String> = d.iter().map(|d| d.id.clone()).collect();
            ids.sort();
            ids == slots && d.iter().all(|d| d.health == Health::Healthy)
        })
        .await;
    assert!(
        listed.is_ok(),
        "slots not listed: {listed:?}, want {slots:?}"
    );

    let failure = match lab.try_add_pod("sf").await {
        Ok(pod) => panic!("a cdq pod was admitted on a veth: {:?}", pod.device),
        Err(f) => f,
    };
    let msg = failure.error.to_string();
    eprintln!("Allocate refused: {msg}");
    assert!(msg.contains("has no devlink instance"), "{msg}");
    assert!(msg.contains("not a PCI device"), "{msg}");
    assert!(
        nics.iter().any(|n| msg.contains(&format!("device {n} "))),
        "the parent device is not named: {msg}"
    );
    assert!(msg.contains("sf"), "the slot is not named: {msg}");

    // Nothing left: no allocation, no program, no UDS directory.
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();
    assert!(agent.allocations().is_empty(), "{:?}", agent.allocations());
    for nic in &nics {
        assert!(!afxdp_e2e::xdp_attached(nic), "{nic} carries a program");
    }
    let uds = afxdp_e2e::entries_under(&lab.paths.state_dir.join("uds"));
    assert!(uds.is_empty(), "UDS directories left: {uds:?}");
    // The slots are still there for the next try, healthy.
    let still = lab
        .kubelet()
        .wait_devices(RESOURCE, WAIT, |d| {
            d.len() == slots.len() && d.iter().all(|d| d.health == Health::Healthy)
        })
        .await;
    assert!(still.is_ok(), "{still:?}");

    lab.teardown().await.expect("teardown");
}

/// A devlink stand-in for fault injection: its "subfunction" netdev is a
/// veth the test made, so everything after devlink (XDP attach, UDS
/// sharing, state, release) runs for real.
#[derive(Default)]
struct VethDevlink {
    /// The veth standing for the subfunction's netdev.
    netdev: String,
    fail: std::sync::Mutex<Option<(&'static str, i32)>>,
    calls: std::sync::Mutex<Vec<String>>,
    live: std::sync::Mutex<std::collections::BTreeSet<u32>>,
}

impl VethDevlink {
    fn call(&self, op: &'static str, what: String) -> Result<(), afxdp_netdev::NetdevError> {
        self.calls.lock().unwrap().push(what);
        match *self.fail.lock().unwrap() {
            Some((f, errno)) if f == op => Err(afxdp_netdev::NetdevError::Devlink {
                op,
                device: "pci/0000:81:00.0".into(),
                source: std::io::Error::from_raw_os_error(errno),
                message: None,
            }),
            _ => Ok(()),
        }
    }
    fn fail(&self, op: &'static str, errno: i32) {
        *self.fail.lock().unwrap() = Some((op, errno));
    }
    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn live_ports(&self) -> usize {
        self.live.lock().unwrap().len()
    }
}

impl afxdp_dp::subfunction::Devlink for VethDevlink {
    fn port_new(
        &self,
        bus: &str,
        dev: &str,
        pfnum: u16,
        sfnum: u32,
    ) -> Result<afxdp_netdev::devlink::PortHandle, afxdp_netdev::NetdevError> {
        self.call("new", format!("new {bus}/{dev} pf {pfnum} sf {sfnum}"))?;
        self.live.lock().unwrap().insert(100 + sfnum);
        Ok(afxdp_netdev::devlink::PortHandle {
            bus: bus.into(),
            dev: dev.into(),
            port_index: 100 + sfnum,
            netdev: None,
        })
    }
    fn port_activate(
        &self,
        port: &afxdp_netdev::devlink::PortHandle,
    ) -> Result<(), afxdp_netdev::NetdevError> {
        self.call("activate", format!("activate {}", port.port_index))
    }
    fn subfunction_netdev(
        &self,
        _dev: &str,
        _sfnum: u32,
    ) -> Result<Option<afxdp_netdev::NetDev>, afxdp_netdev::NetdevError> {
        let name = self.netdev.clone();
        Ok(afxdp_netdev::get(&name)?.or_else(|| {
            // The "netdev" of a subfunction that names a missing link: the
            // attach after it fails.
            let mut nd = afxdp_netdev::get("lo").ok().flatten()?;
            nd.name = name;
            nd.ifindex = u32::MAX;
            Some(nd)
        }))
    }
    fn port_del(
        &self,
        port: &afxdp_netdev::devlink::PortHandle,
    ) -> Result<(), afxdp_netdev::NetdevError> {
        self.call("del", format!("del {}", port.port_index))?;
        self.live.lock().unwrap().remove(&port.port_index);
        Ok(())
    }
}

/// A handshake backend that refuses everyone (no pod connects here).
struct NoPods;

impl afxdp_handshake::Backend for NoPods {
    fn authorize(
        &self,
        _: &str,
        _: &afxdp_handshake::PodRef,
        _: &afxdp_handshake::PeerCred,
    ) -> Result<(), afxdp_handshake::Refusal> {
        Err(afxdp_handshake::Refusal::UnknownDevice)
    }
    fn xsk_map_fd(&self, _: &str) -> Result<std::os::fd::OwnedFd, afxdp_handshake::Refusal> {
        Err(afxdp_handshake::Refusal::UnknownDevice)
    }
}

/// Unmounts the test's bpffs and removes its directory, even on panic.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        afxdp_lab::unmount_pins(&self.0.path().join("pins"));
        afxdp_lab::unmount_pins(&self.0.path().join("other/pins"));
    }
}

/// afxdp-dp's agent allocating a `cdq` slot: devlink PORT_NEW, activate,
/// the subfunction's netdev found, XDP attached and a UDS server started on
/// that netdev, the subfunction persisted with the allocation; release
/// detaches and deletes the port. Each devlink step refused (and an attach
/// that fails after the subfunction exists) fails Allocate naming the slot,
/// the device and the kernel's errno, with no port, program, UDS directory
/// or allocation left; a refused PORT_DEL keeps the allocation releasing
/// until a later start finishes it. devlink is a stand-in (no device here
/// has subfunctions); the rest is the real kernel.
#[test]
fn cdq_agent_allocates_on_the_subfunction_netdev_and_undoes_every_step() {
    use afxdp_dp::agent::{Agent, ReleaseBy, Released};
    afxdp_testnet::require_root();
    let scratch = Scratch(tempfile::tempdir().expect("tempdir"));
    let root = scratch.0.path();
    let sf_name = afxdp_testnet::unique_name("afsf");
    let _sf = afxdp_testnet::VethPair::new(&sf_name, &format!("{sf_name}p"), 1).expect("veth");
    afxdp_testnet::ip(&["link", "set", &sf_name, "up"]).expect("up");

    // The parent: a PCI device as discovery would report it (no such NIC here).
    let mut parent = afxdp_netdev::get(&sf_name).expect("get").expect("veth");
    parent.name = "pf0".into();
    parent.pci = Some("0000:81:00.0".into());
    parent.state = afxdp_netdev::LinkState::Up;
    let config = afxdp_config::parse(
        &serde_json::json!({
            "apiVersion": "afxdp.io/v1alpha1",
            "includeVirtualDevices": true,
            "pools": [{ "name": "sf", "mode": "cdq", "xdpMode": "generic",
                "selectors": { "devices": [{ "name": "pf0", "secondary": 2 }] } }],
        })
        .to_string(),
    )
    .expect("config");
    let inventory = afxdp_dp::pool::Inventory::build(&config, "node", &[parent], &[], &[]);
    let native = afxdp_program::NativeManager::new(root.join("pins")).expect("native manager");
    let programs = std::sync::Arc::new(
        afxdp_dp::programs::Programs::new(native, "node", Default::default(), root)
            .expect("programs"),
    );
    let store = afxdp_dp::state::StateStore::new(root);
    let uds = afxdp_dp::sharing::UdsServers::new(root.join("uds"), std::sync::Arc::new(NoPods));
    let devlink = std::sync::Arc::new(VethDevlink {
        netdev: sf_name.clone(),
        ..Default::default()
    });
    let agent = Agent::with_devlink(
        devlink.clone(),
        Agent::new(
            inventory,
            store.load().expect("empty state"),
            store.clone(),
            programs,
            uds,
            None,
        ),
    );
    let b = afxdp_policy::Blocking::here().expect("no runtime on this thread");
    let slot = "pf0sf2".to_string();
    let pod = afxdp_policy::Pod::default;
    let nothing_left = |devlink: &VethDevlink, why: &str| {
        assert_eq!(devlink.live_ports(), 0, "{why}: a port was left");
        assert!(
            agent.allocations().is_empty(),
            "{why}: {:?}",
            agent.allocations()
        );
        assert!(
            !afxdp_e2e::xdp_attached(&sf_name),
            "{why}: a program was left"
        );
        let uds = afxdp_e2e::entries_under(&root.join("uds"));
        assert!(uds.is_empty(), "{why}: UDS directories left: {uds:?}");
    };

    // Allocate: the devlink steps, then attach and share on the subfunction's netdev.
    let grant = agent
        .allocate(&b, "sf", std::slice::from_ref(&slot), pod())
        .expect("allocate");
    assert_eq!(
        devlink.calls(),
        ["new pci/0000:81:00.0 pf 0 sf 2", "activate 102"]
    );
    assert!(
        afxdp_e2e::xdp_attached(&sf_name),
        "no program on the subfunction netdev"
    );
    assert_eq!(grant.envs.get("AFXDP_DEVICES_SF"), Some(&sf_name));
    assert_eq!(
        grant.mounts[0].0,
        std::path::PathBuf::from(format!("/tmp/afxdp_dp/{sf_name}"))
    );
    assert!(grant.mounts[0].1.join("afxdp.sock").exists(), "{grant:?}");
    let persisted = store.load().expect("state");
    let sf = persisted.allocations[&slot]
        .subfunction
        .clone()
        .expect("subfunction persisted");
    assert_eq!(
        (sf.port_index, sf.sfnum, sf.netdev.as_str()),
        (102, 2, sf_name.as_str())
    );
    assert_eq!(sf.devlink_device(), "pci/0000:81:00.0");

    // Release: detach, stop the UDS server, delete the port.
    assert_eq!(
        agent.release(&slot, ReleaseBy::Operator).expect("release"),
        Released::Freed
    );
    assert_eq!(devlink.calls(), ["del 102"]);
    nothing_left(&devlink, "after release");
    assert!(store.load().expect("state").allocations.is_empty());

    // Each devlink step refused: a clear error, nothing left.
    for (op, errno, calls) in [
        (
            "new",
            libc::EOPNOTSUPP,
            vec!["new pci/0000:81:00.0 pf 0 sf 2"],
        ),
        (
            "activate",
            libc::ENODEV,
            vec!["new pci/0000:81:00.0 pf 0 sf 2", "activate 102", "del 102"],
        ),
    ] {
        devlink.fail(op, errno);
        let err = agent
            .allocate(&b, "sf", std::slice::from_ref(&slot), pod())
            .expect_err("refused");
        let msg = err.to_string();
        eprintln!("{op} refused: {msg}");
        let kernel = std::io::Error::from_raw_os_error(errno).to_string();
        assert!(msg.contains(&slot) && msg.contains("device pf0"), "{msg}");
        assert!(msg.contains(&kernel), "{op}: no errno in {msg}");
        assert_eq!(devlink.calls(), calls, "{op}");
        nothing_left(&devlink, op);
    }
    *devlink.fail.lock().unwrap() = None;

    // The XDP attach fails after the subfunction exists: the port goes too.
    let missing = VethDevlink {
        netdev: afxdp_testnet::unique_name("afnone"),
        ..Default::default()
    };
    let missing = std::sync::Arc::new(missing);
    let agent_missing = Agent::with_devlink(
        missing.clone(),
        Agent::new(
            afxdp_dp::pool::Inventory::build(
                &config,
                "node",
                &[{
                    let mut p = afxdp_netdev::get(&sf_name).expect("get").expect("veth");
                    p.name = "pf0".into();
                    p.pci = Some("0000:81:00.0".into());
                    p.state = afxdp_netdev::LinkState::Up;
                    p
                }],
                &[],
                &[],
            ),
            afxdp_dp::state::StateStore::new(&root.join("other"))
                .load()
                .expect("empty state"),
            afxdp_dp::state::StateStore::new(&root.join("other")),
            std::sync::Arc::new(
                afxdp_dp::programs::Programs::new(
                    afxdp_program::NativeManager::new(root.join("other/pins")).expect("native"),
                    "node",
                    Default::default(),
                    &root.join("other"),
                )
                .expect("programs"),
            ),
            afxdp_dp::sharing::UdsServers::new(root.join("uds"), std::sync::Arc::new(NoPods)),
            None,
        ),
    );
    let err = agent_missing
        .allocate(&b, "sf", std::slice::from_ref(&slot), pod())
        .expect_err("attach to a missing netdev");
    eprintln!("attach refused: {err}");
    assert!(err.to_string().contains("attaching"), "{err}");
    assert_eq!(
        missing.calls(),
        ["new pci/0000:81:00.0 pf 0 sf 2", "activate 102", "del 102"]
    );
    assert_eq!(missing.live_ports(), 0);
    assert!(agent_missing.allocations().is_empty());

    // PORT_DEL refused at release: the error names the slot and errno, the
    // allocation stays (releasing) and a later start finishes it.
    agent
        .allocate(&b, "sf", std::slice::from_ref(&slot), pod())
        .expect("allocate again");
    devlink.calls();
    devlink.fail("del", libc::EBUSY);
    let err = agent
        .release(&slot, ReleaseBy::Operator)
        .expect_err("PORT_DEL refused");
    let msg = err.to_string();
    eprintln!("release refused: {msg}");
    assert!(msg.contains(&slot), "{msg}");
    assert!(
        msg.contains(&std::io::Error::from_raw_os_error(libc::EBUSY).to_string()),
        "{msg}"
    );
    assert_eq!(devlink.live_ports(), 1);
    let kept = store.load().expect("state").allocations;
    assert!(kept[&slot].releasing, "{kept:?}");
    *devlink.fail.lock().unwrap() = None;
    assert_eq!(agent.finish_pending_releases(), [slot]);
    nothing_left(&devlink, "after the pending release");
}
