//! afxdp-cni driven through libcni (`github.com/containernetworking/cni`,
//! pinned in `tests/libcni/go.mod`), the library Multus, containerd and
//! CRI-O call plugins with, on real netns and veths through the real
//! afxdp-dp: a conflist chaining Debian's `tuning` after ours with
//! host-local IPAM (ADD, CHECK, DEL, DEL), the ADD result parsed and
//! converted by libcni for every spec version, STATUS both ways, GC, and an
//! upstream NetworkAttachmentDefinition's config verbatim.
//!
//! Needs root and Go (`tests/libcni/build.sh` builds the harness once);
//! without Go the tests skip, except in CI (`CI=true`), where they fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afxdp_e2e::libcni::{self, Attachment, Libcni, Outcome};
use afxdp_lab::{Lab, RESOURCE};
use afxdp_testnet::Netns;
use serde_json::{json, Value};

const NET: &str = "afxdp-libcni";

/// Root, Go and the harness, or `None` (skip: Go missing outside CI).
fn harness() -> Option<PathBuf> {
    afxdp_testnet::require_root();
    libcni::harness()
}

fn host_local(data: &Path) -> Value {
    json!({
        "type": "host-local",
        "ranges": [[{ "subnet": "10.77.0.0/24", "gateway": "10.77.0.1" }]],
        "routes": [{ "dst": "10.78.0.0/16" }],
        "dataDir": data,
    })
}

/// Our plugin's entry for `device` (as Multus injects `deviceID`), with
/// host-local leasing under `data`.
fn ours(lab: &Lab, device: &str, data: &Path) -> Value {
    let mut conf = lab.net_conf(device);
    conf["ipam"] = host_local(data);
    conf
}

/// A conflist of `plugins` at `version`.
fn conflist(version: &str, plugins: Vec<Value>) -> Value {
    json!({ "cniVersion": version, "name": NET, "plugins": plugins })
}

/// Kubelet's Allocate of one device for pod `lab/<pod>`.
async fn allocate(lab: &Lab, pod: &str) -> String {
    lab.kubelet()
        .admit_pod("lab", pod, "app", RESOURCE, 1)
        .await
        .expect("allocate")
        .device_ids[0]
        .clone()
}

fn leases(data: &Path) -> Vec<String> {
    afxdp_e2e::host_local_leases(data, NET)
}

/// The ADD result's first address, converted to the current version.
fn address(add: &Outcome) -> String {
    add.json["current"]["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address: {add:?}"))
        .to_string()
}

/// `ip -o addr show dev <device>` inside `netns`.
fn addresses_in(netns: &Netns, device: &str) -> String {
    netns
        .exec(&["ip", "-o", "addr", "show", "dev", device])
        .expect("ip addr")
}

fn ip_of(address: &str) -> String {
    address.split('/').next().unwrap_or(address).to_string()
}

/// `device` is back in the host netns, with no program, released.
async fn assert_returned(lab: &Lab, device: &str) {
    lab.settle(device).await; // DEL is answered before the detach ends
    assert!(
        afxdp_netdev::get(device).expect("lookup").is_some(),
        "{device} not back in the host netns"
    );
    assert!(
        !afxdp_e2e::xdp_attached(device),
        "{device} kept its program"
    );
    let agent = &lab.daemon.as_ref().expect("daemon").agent;
    assert!(
        agent.allocation(device).is_none(),
        "{device} still allocated"
    );
}

/// Tear down in order: the runtime (DELs what is still added), the pod
/// netns, then the lab.
async fn teardown<N>(lab: Lab, cni: Libcni, netns: N) {
    drop(cni);
    drop(netns);
    lab.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_conflist_adds_checks_and_deletes_twice_through_libcni() {
    let Some(harness) = harness() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let lab = afxdp_e2e::default_lab(1).await;
    let device = allocate(&lab, "chain").await;
    let host_mtu = afxdp_netdev::get(&device)
        .expect("lookup")
        .expect("NIC")
        .mtu;
    let netns = Netns::new("afxlc").expect("netns");
    let cni = Libcni::new(&harness, &lab.cni);
    // tuning after ours: an MTU (restored on DEL) and a sysctl of the device.
    let arp_ignore = format!("net.ipv4.conf.{device}.arp_ignore");
    let tuning = json!({
        "type": "tuning",
        "mtu": 1400,
        "sysctl": { arp_ignore.clone(): "1" },
        "dataDir": data.path().join("tuning"),
    });
    // Debian's tuning (plugins 1.1.1) speaks up to 1.0.0.
    let list = conflist("1.0.0", vec![ours(&lab, &device, data.path()), tuning]);
    // tuning finds the link by CNI_IFNAME, and afxdp-cni keeps the device's
    // own name (the XDP program is bound to it): the runtime names it.
    let pod = Attachment::new("chain", netns.path(), &device);

    let add = cni.add(&list, &pod);
    assert!(add.success, "{add:?}");
    assert_eq!(add.json["rawVersion"], "1.0.0", "{add:?}");
    let result = &add.json["current"];
    assert_eq!(result["interfaces"][0]["name"], device.as_str(), "{result}");
    assert_eq!(
        result["interfaces"][0]["sandbox"],
        netns.path().display().to_string(),
        "{result}"
    );
    let address = address(&add);
    assert!(address.starts_with("10.77.0."), "{result}");
    let link = addresses_in(&netns, &device);
    assert!(link.contains(&address), "{link}");
    let link = netns
        .exec(&["ip", "-o", "link", "show", "dev", &device])
        .expect("ip link");
    assert!(link.contains("mtu 1400"), "tuning's MTU: {link}");
    let sysctl = netns.exec(&["sysctl", "-n", &arp_ignore]).expect("sysctl");
    assert_eq!(sysctl.trim(), "1", "tuning's sysctl");
    assert_eq!(leases(data.path()), vec![ip_of(&address)]);

    // CHECK: both plugins hold the pod to libcni's cached result.
    let check = cni.check(&list, &pod);
    assert!(check.success, "{check:?}");
    netns
        .exec(&["ip", "addr", "del", &address, "dev", &device])
        .expect("drop the address");
    let check = cni.check(&list, &pod);
    assert!(!check.success && check.code() == 103, "{check:?}");
    assert!(check.error().contains(&address), "{check:?}");

    // DEL: tuning restores the MTU, then afxdp-cni returns the device and
    // releases the lease; nothing is left in the pod netns.
    let del = cni.del(&list, &pod);
    assert!(del.success, "{del:?}");
    assert_returned(&lab, &device).await;
    let mtu = afxdp_netdev::get(&device).expect("lookup").map(|d| d.mtu);
    assert_eq!(mtu, Some(host_mtu), "MTU not restored");
    assert!(leases(data.path()).is_empty(), "{:?}", leases(data.path()));
    let left = netns.exec(&["ip", "-o", "link", "show"]).expect("ip link");
    assert_eq!(left.lines().count(), 1, "only lo is left: {left}");
    // DEL again (runtimes retry): nothing to do, still success.
    let again = cni.del(&list, &pod);
    assert!(again.success, "second DEL: {again:?}");

    lab.kubelet().remove_pod("lab", "chain");
    teardown(lab, cni, netns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcni_parses_the_add_result_of_every_spec_version() {
    let Some(harness) = harness() else { return };
    // (version, has CHECK)
    let versions = [
        ("0.3.0", false),
        ("0.3.1", false),
        ("0.4.0", true),
        ("1.0.0", true),
        ("1.1.0", true),
    ];
    let data = tempfile::tempdir().expect("data dir");
    let lab = afxdp_e2e::default_lab(versions.len()).await;
    let netns: Vec<Netns> = versions
        .iter()
        .map(|_| Netns::new("afxlv").expect("netns"))
        .collect();
    let cni = Libcni::new(&harness, &lab.cni);
    for ((version, has_check), netns) in versions.into_iter().zip(&netns) {
        let name = format!("v{}", version.replace('.', ""));
        let device = allocate(&lab, &name).await;
        // A single config, as Multus runs a NetworkAttachmentDefinition's.
        let mut conf = ours(&lab, &device, data.path());
        conf["cniVersion"] = version.into();
        conf["name"] = NET.into();
        let pod = Attachment::new(&name, netns.path(), "net1");
        let add = cni.add(&conf, &pod);
        assert!(add.success, "{version}: {add:?}");
        assert_eq!(add.json["rawVersion"], version, "{add:?}");
        assert_eq!(add.json["current"]["cniVersion"], "1.1.0", "{add:?}");
        assert_eq!(
            add.json["current"]["interfaces"][0]["name"],
            device.as_str(),
            "{add:?}"
        );
        let ip_version = add.json["raw"]["ips"][0]["version"].as_str();
        let want = (version < "1.0.0").then_some("4");
        assert_eq!(ip_version, want, "{version}: {add:?}");
        let address = address(&add);
        let link = addresses_in(netns, &device);
        assert!(link.contains(&address), "{version}: {link}");

        let check = cni.check(&conf, &pod);
        if has_check {
            assert!(check.success, "{version}: {check:?}");
        } else {
            // libcni itself refuses: CHECK came with 0.4.0.
            assert!(
                !check.success && check.error().contains("does not support the CHECK command"),
                "{version}: {check:?}"
            );
        }
        let del = cni.del(&conf, &pod);
        assert!(del.success, "{version}: {del:?}");
        assert_returned(&lab, &device).await;
        assert!(leases(data.path()).is_empty(), "{version}: lease kept");
        lab.kubelet().remove_pod("lab", &name);
    }
    teardown(lab, cni, netns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_through_libcni_is_ok_when_ready_and_code_50_when_not_or_down() {
    let Some(harness) = harness() else { return };
    let mut lab = afxdp_e2e::default_lab(1).await;
    let cni = Libcni::new(&harness, &lab.cni);
    let mut plugin = lab.net_conf("");
    plugin.as_object_mut().expect("object").remove("deviceID");
    let list = conflist("1.1.0", vec![plugin]);
    let status_within = |want_ok: bool| {
        let cni = &cni;
        let list = &list;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let out = cni.status(list);
                if out.success == want_ok || tokio::time::Instant::now() >= deadline {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let ready = cni.status(&list);
    assert!(ready.success, "{ready:?}");

    // Not ready: the kubelet goes away, afxdp-dp's pool is unregistered.
    let kubelet_sock = lab.paths.device_plugin_dir.join("kubelet.sock");
    std::fs::remove_file(&kubelet_sock).expect("remove kubelet.sock");
    let not_ready = status_within(false).await;
    assert!(
        !not_ready.success && not_ready.code() == 50,
        "{not_ready:?}"
    );
    let details = not_ready.json["details"].as_str().unwrap_or("");
    assert!(details.contains("not ready"), "{not_ready:?}");
    lab.kubelet_mut().restart().await.expect("kubelet back");
    let ready = status_within(true).await;
    assert!(ready.success, "ready again: {ready:?}");

    // Down.
    if let Some(d) = lab.daemon.take() {
        d.stop().await;
    }
    let down = cni.status(&list);
    assert!(!down.success && down.code() == 50, "{down:?}");
    assert!(
        down.json["msg"]
            .as_str()
            .is_some_and(|m| m.contains("afxdp-dp")),
        "{down:?}"
    );
    teardown(lab, cni, ()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_through_libcni_releases_the_stale_attachment_only() {
    let Some(harness) = harness() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let lab = afxdp_e2e::default_lab(2).await;
    let (kept_ns, stale_ns) = (
        Netns::new("afxlg").expect("netns"),
        Netns::new("afxlg").expect("netns"),
    );
    let cni = Libcni::new(&harness, &lab.cni);
    let mut attached = Vec::new();
    for (name, netns) in [("kept", &kept_ns), ("stale", &stale_ns)] {
        let device = allocate(&lab, name).await;
        let list = conflist("1.1.0", vec![ours(&lab, &device, data.path())]);
        let pod = Attachment::new(name, netns.path(), "net1");
        let add = cni.add(&list, &pod);
        assert!(add.success, "{name}: {add:?}");
        attached.push((device, list, pod, address(&add)));
    }
    let [(kept, kept_list, kept_pod, kept_address), (stale, stale_list, stale_pod, _)] =
        &attached[..]
    else {
        unreachable!("two attachments")
    };
    let agent = lab.daemon.as_ref().expect("daemon").agent.clone();

    // The runtime's GC: the network's config (no pod's device in it), its
    // cache (libcni DELs the cached attachments not listed), then GC.
    let network = conflist("1.1.0", vec![ours(&lab, "", data.path())]);
    let gc = cni.gc(&network, &[kept_pod], None);
    assert!(gc.success, "{gc:?}");
    lab.settle(stale).await;
    assert!(agent.allocation(stale).is_none(), "the stale one was kept");
    assert!(
        !afxdp_e2e::xdp_attached_in(&stale_ns, stale),
        "the stale one's program is still attached"
    );
    assert!(
        agent.allocation(kept).is_some(),
        "the valid one was released"
    );
    assert!(
        afxdp_e2e::xdp_attached_in(&kept_ns, kept),
        "the valid one lost its program"
    );
    let link = addresses_in(&kept_ns, kept);
    assert!(link.contains(kept_address.as_str()), "{link}");
    assert!(
        cni.check(kept_list, kept_pod).success,
        "the valid one changed"
    );
    assert!(leases(data.path()).contains(&ip_of(kept_address)));
    // libcni's DEL of the stale attachment named no device: afxdp-dp said
    // which one it claimed, so it is back in the host netns and its lease
    // released, by the GC alone.
    assert_returned(&lab, stale).await;
    assert_eq!(leases(data.path()), vec![ip_of(kept_address)]);

    // The stale pod's own DEL later finds nothing to do; the valid one's
    // returns its device and lease.
    for (device, list, pod) in [(stale, stale_list, stale_pod), (kept, kept_list, kept_pod)] {
        let del = cni.del(list, pod);
        assert!(del.success, "{del:?}");
        assert_returned(&lab, device).await;
    }
    assert!(leases(data.path()).is_empty(), "{:?}", leases(data.path()));
    teardown(lab, cni, (kept_ns, stale_ns)).await;
}

/// An upstream NetworkAttachmentDefinition's `spec.config`, verbatim: the
/// sample `nad.yaml` of the AF_XDP plugins for Kubernetes as DPDK's af_xdp
/// guide gives it. `ethtoolCmds` included: afxdp-cni accepts the key and
/// does nothing with it (afxdp-dp applies a pool's `ethtoolCmds` from its
/// own config).
const UPSTREAM_NAD_CONFIG: &str = r#"{
    "cniVersion": "0.3.0",
    "type": "afxdp",
    "mode": "primary",
    "logFile": "afxdp-cni.log",
    "logLevel": "debug",
    "ethtoolCmds" : ["-N -device- rx-flow-hash udp4 fn",
                     "-N -device- flow-type udp4 dst-port 2152 action 22"
                  ],
    "ipam": {
      "type": "host-local",
      "subnet": "192.168.1.0/24",
      "rangeStart": "192.168.1.200",
      "rangeEnd": "192.168.1.220",
      "routes": [
        { "dst": "0.0.0.0/0" }
      ],
      "gateway": "192.168.1.1"
    }
  }"#;

/// host-local's default data dir for `network` (the NAD names none),
/// removed on drop with the parents this test created.
struct DefaultLeaseDir {
    dir: PathBuf,
    created: Vec<PathBuf>,
}

impl DefaultLeaseDir {
    fn new(network: &str) -> Self {
        let parents = [
            Path::new("/var/lib/cni"),
            Path::new("/var/lib/cni/networks"),
        ];
        Self {
            dir: parents[1].join(network),
            created: parents
                .iter()
                .filter(|p| !p.exists())
                .map(|p| p.to_path_buf())
                .collect(),
        }
    }
}

impl Drop for DefaultLeaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in self.created.iter().rev() {
            let _ = std::fs::remove_dir(p); // only when empty
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_nad_config_works_verbatim_through_libcni() {
    let Some(harness) = harness() else { return };
    let lab = afxdp_e2e::default_lab(1).await;
    let device = allocate(&lab, "upstream").await;
    let network = format!("afxdp-network-{}", std::process::id());
    let leases_dir = DefaultLeaseDir::new(&network);
    let netns = Netns::new("afxlu").expect("netns");
    let cni = Libcni::new(&harness, &lab.cni);
    let mut conf: Value = serde_json::from_str(UPSTREAM_NAD_CONFIG).expect("NAD config");
    // What Multus adds: the NAD's name when the config has none, and the
    // device kubelet allocated. And what this node differs in: the lab's
    // afxdp-dp listens on its own socket, not /run/afxdp/node.sock.
    conf["name"] = network.as_str().into();
    conf["deviceID"] = device.as_str().into();
    conf["nodeApiSocket"] = lab.paths.node_api.display().to_string().into();
    let pod = Attachment::new("upstream", netns.path(), "net1");

    let add = cni.add(&conf, &pod);
    assert!(add.success, "{add:?}");
    assert_eq!(add.json["rawVersion"], "0.3.0", "{add:?}");
    assert_eq!(add.json["raw"]["ips"][0]["version"], "4", "{add:?}");
    assert_eq!(address(&add), "192.168.1.200/24", "{add:?}");
    let link = addresses_in(&netns, &device);
    assert!(link.contains("192.168.1.200/24"), "{link}");
    let routes = netns.exec(&["ip", "route", "show"]).expect("ip route");
    assert!(routes.contains("default via 192.168.1.1"), "{routes}");
    assert!(leases_dir.dir.join("192.168.1.200").exists(), "no lease");
    // logFile is relative: it lands in the runtime's working directory.
    let log = std::fs::read_to_string(cni.workdir().join("afxdp-cni.log")).unwrap_or_default();
    assert!(log.contains("device plumbed"), "log: {log}");

    for _ in 0..2 {
        let del = cni.del(&conf, &pod);
        assert!(del.success, "{del:?}");
    }
    assert_returned(&lab, &device).await;
    assert!(
        !leases_dir.dir.join("192.168.1.200").exists(),
        "lease kept after DEL"
    );
    lab.kubelet().remove_pod("lab", "upstream");
    teardown(lab, cni, (netns, leases_dir)).await;
}
