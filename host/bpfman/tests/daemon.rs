//! The bpfman backend against a real `bpfman-rpc` (see
//! `afxdp_testnet::bpfman`): root, and bpfman-rpc installed
//! (`cargo install --locked bpfman-api`); without them these tests fail in CI
//! (`CI=true`) and skip, saying so, elsewhere.
//!
//! This machine's kernel refuses freplace, which bpfman attaches every XDP
//! program with: the hook under test is TCX, with a tc function of an
//! object that also holds the built-in XDP program and its `xsks_map`
//! (`tests/bpf/xsk_tcx.bpf.c`). Traffic runs only on veths in network
//! namespaces the tests make.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use afxdp_bpfman::{
    BpfmanClient, BpfmanConfig, BpfmanError, BpfmanManager, Bytecode, Direction, Hook, HookKind,
    ListFilter, LoadSpec, ProgramType, META_DEVICE, META_NODE, META_POOL, META_PROGRAM_NAME,
};
use afxdp_program::{AttachRequest, ProgramManager, XdpMode, XSKS_MAP_NAME};
use afxdp_testnet::{
    bpfman::{host_path, Bpfmand},
    send_udp, unique_name, Netns, VethOptions, VethPair,
};

const TCX_FUNCTION: &str = "xsk_tcx_count";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Compiles the test object into `dir`.
fn test_object(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/xsk_tcx.bpf.c");
    let out = dir.join("xsk_tcx.bpf.o");
    afxdp_testnet::bpfman::compile_bpf(&src, &out);
    out
}

/// Two namespaces joined by a veth: `dev` (the device under test, 10.77.0.1)
/// in `ns`, its peer (10.77.0.2) in `peer_ns`.
struct Wire {
    peer: VethPair,
    ns: Netns,
    peer_ns: Netns,
}

impl Wire {
    fn new() -> Wire {
        let ns = Netns::new("afbm").expect("netns");
        let peer_ns = Netns::new("afbp").expect("peer netns");
        let peer = VethPair::create(
            VethOptions::new(unique_name("bmd"), unique_name("bmp"))
                .a_netns(&ns)
                .b_netns(&peer_ns),
        )
        .expect("veth");
        for (n, dev, addr) in [
            (&ns, peer.a(), "10.77.0.1/24"),
            (&peer_ns, peer.b(), "10.77.0.2/24"),
        ] {
            n.ip(&["addr", "add", addr, "dev", dev]).expect("addr");
            n.ip(&["link", "set", dev, "up"]).expect("up");
        }
        Wire { peer, ns, peer_ns }
    }

    fn dev(&self) -> &str {
        self.peer.a()
    }

    /// The device's netns file as bpfman (in its own mount namespace) reaches it.
    fn netns_for_bpfman(&self) -> PathBuf {
        host_path(self.ns.path())
    }

    fn send(&self, n: usize) {
        let dst = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
        send_udp(&self.peer_ns, self.peer.b(), dst, 9000..=9000, n).expect("send");
    }
}

fn owner_meta(node: &str, pool: &str, device: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (META_NODE.to_string(), node.to_string()),
        (META_POOL.to_string(), pool.to_string()),
        (META_DEVICE.to_string(), device.to_string()),
        (
            META_PROGRAM_NAME.to_string(),
            format!("afxdp-{pool}-{device}"),
        ),
    ])
}

fn ours(client: &BpfmanClient, pool: &str) -> Vec<afxdp_bpfman::Program> {
    client
        .list(&ListFilter::matching(META_POOL, pool))
        .expect("List")
}

fn read_seen(pin: &Path) -> u64 {
    let data = aya::maps::MapData::from_pin(pin).expect("open tcx_seen pin");
    let array: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("array map");
    array.get(&0, 0).expect("read tcx_seen[0]")
}

/// Attaches program `id` to the wire's device, TCX ingress, in its netns.
fn attach_tcx(c: &BpfmanClient, d: &Bpfmand, id: u32, wire: &Wire) -> u32 {
    let hook = Hook::Tcx {
        iface: wire.dev().into(),
        priority: 100,
        direction: Direction::Ingress,
        netns: Some(wire.netns_for_bpfman()),
    };
    c.attach(id, &hook)
        .unwrap_or_else(|e| panic!("Attach: {e}\n{}", d.log()))
}

/// Sends `n` frames to the device and waits until the program counted them.
fn send_and_count(wire: &Wire, maps: &Path, n: u64) {
    wire.send(n as usize);
    let seen = maps.join("tcx_seen");
    let counted =
        afxdp_testnet::wait_until(TIMEOUT, Duration::from_millis(20), || read_seen(&seen) >= n);
    assert!(counted, "tcx_seen {} < {n}", read_seen(&seen));
}

fn client(d: &Bpfmand) -> BpfmanClient {
    BpfmanClient::new(d.socket(), TIMEOUT).expect("client")
}

#[test]
fn tcx_from_file_attach_pins_list_detach_unload() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let c = client(&d);
    let meta = owner_meta("node-t", "tcxpool", wire.dev());

    let prog = c
        .load(&LoadSpec {
            bytecode: Bytecode::File(object.clone()),
            function: TCX_FUNCTION.into(),
            program_type: ProgramType::Tcx,
            metadata: meta.clone(),
        })
        .unwrap_or_else(|e| panic!("Load: {e}\n{}", d.log()));
    let managed = prog.managed.clone().expect("bpfman's record");
    assert_eq!(managed.name, TCX_FUNCTION);

    // bpfman pinned the object's maps, the built-in's xsks_map among them.
    let maps = d.path(&managed.map_pin_path);
    assert!(
        maps.join(XSKS_MAP_NAME).exists(),
        "no {XSKS_MAP_NAME} in {}",
        maps.display()
    );
    assert!(maps.join("tcx_seen").exists());

    let link = attach_tcx(&c, &d, prog.id, &wire);

    // The program runs: frames received on the device are counted.
    send_and_count(&wire, &maps, 20);

    // List and Get show it with our metadata and its link.
    let listed = ours(&c, "tcxpool");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let got = c.get(prog.id).expect("Get");
    for p in [&listed[0], &got] {
        let m = p.managed.as_ref().expect("bpfman's record");
        assert_eq!(p.id, prog.id);
        assert_eq!(m.links, vec![link]);
        for (k, v) in &meta {
            assert_eq!(m.metadata.get(k), Some(v), "metadata {k}");
        }
        assert_eq!(m.bytecode, Some(Bytecode::File(object.clone())));
    }

    c.detach(link).expect("Detach");
    let m = c.get(prog.id).expect("Get").managed.expect("record");
    assert!(m.links.is_empty(), "links after Detach: {:?}", m.links);
    c.unload(prog.id).expect("Unload");
    assert!(ours(&c, "tcxpool").is_empty());
    assert!(!maps.exists(), "{} left after Unload", maps.display());
    // bpfman forgot it; the kernel may still list it while it frees it.
    match c.get(prog.id) {
        Err(BpfmanError::Refused { call: "Get", .. }) => {}
        Ok(p) => assert_eq!(p.managed, None, "bpfman still has {p:?}"),
        Err(e) => panic!("Get after Unload: {e}"),
    }
}

fn tcx_manager(d: &Bpfmand, object: &Path, wire: &Wire, pool: &str) -> BpfmanManager {
    let hook = HookKind::Tcx {
        priority: 100,
        direction: Direction::Ingress,
    };
    manager(d, object, wire, pool, hook)
}

fn manager(d: &Bpfmand, object: &Path, wire: &Wire, pool: &str, hook: HookKind) -> BpfmanManager {
    let mut config = BpfmanConfig::new("node-t", pool, Bytecode::File(object.to_path_buf()));
    config.socket = d.socket();
    config.call_timeout = TIMEOUT;
    config.path_root = d.root();
    config.netns = Some(wire.netns_for_bpfman());
    config.hook = hook;
    BpfmanManager::new(config).unwrap_or_else(|e| panic!("manager: {e}\n{}", d.log()))
}

fn tcx_request(dev: &str) -> AttachRequest<'_> {
    AttachRequest {
        device: dev,
        ifindex: 0,
        mode: XdpMode::Auto,
        program: None,
        function: Some(TCX_FUNCTION),
    }
}

#[test]
fn manager_attaches_adopts_after_restarts_and_detaches() {
    let Some(mut d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let pool = "mgrpool";
    let mgr = tcx_manager(&d, &object, &wire, pool);
    assert!(mgr.attachments().is_empty());

    let att = mgr
        .attach(&tcx_request(wire.dev()))
        .unwrap_or_else(|e| panic!("attach: {e}\n{}", d.log()));
    assert!(att.map_pin.exists(), "{}", att.map_pin.display());
    let fd = mgr.xsk_map_fd(wire.dev()).expect("XSKMAP fd");
    drop(fd);
    let programs = ours(mgr.client(), pool);
    assert_eq!(programs.len(), 1);
    let meta = &programs[0].managed.as_ref().unwrap().metadata;
    assert_eq!(meta.get(META_DEVICE).map(String::as_str), Some(wire.dev()));
    assert_eq!(meta.get(META_NODE).map(String::as_str), Some("node-t"));
    assert!(meta.contains_key(afxdp_bpfman::META_ALLOCATION));
    assert_eq!(
        meta.get(META_PROGRAM_NAME).cloned(),
        Some(format!("afxdp-{pool}-{}", wire.dev()))
    );
    // The same request again is the same attachment.
    assert_eq!(mgr.attach(&tcx_request(wire.dev())).expect("again"), att);

    // bpfman crashes and comes back: the old manager reconnects, a new one
    // (afxdp-dp restarted) adopts the program; nothing is loaded twice.
    d.restart();
    assert_eq!(ours(mgr.client(), pool).len(), 1);
    drop(mgr);
    let mgr = tcx_manager(&d, &object, &wire, pool);
    assert_eq!(mgr.attachments().len(), 1);
    let adopted = &mgr.attachments()[0];
    assert_eq!(
        (adopted.program_id, &adopted.map_pin),
        (att.program_id, &att.map_pin)
    );
    send_and_count(&wire, &att.map_dir, 5);

    assert!(mgr.detach(wire.dev()).expect("detach"));
    assert!(!mgr.detach(wire.dev()).expect("detach again"));
    assert!(ours(mgr.client(), pool).is_empty());
    assert!(!att.map_dir.exists());
}

#[test]
fn detach_of_a_program_bpfman_no_longer_holds_forgets_it() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let pool = "lostpool";
    let mgr = tcx_manager(&d, &object, &wire, pool);
    let att = mgr
        .attach(&tcx_request(wire.dev()))
        .unwrap_or_else(|e| panic!("attach: {e}\n{}", d.log()));
    // Unloaded behind the manager's back (by hand, or bpfman lost it).
    mgr.client().unload(att.program_id).expect("Unload");
    assert!(mgr.detach(wire.dev()).expect("detach of a lost program"));
    assert!(mgr.attachments().is_empty());
    assert!(ours(mgr.client(), pool).is_empty());
}

#[test]
fn reconcile_unloads_a_program_left_without_link() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let pool = "orphanpool";
    // A crash between Load and Attach leaves a program with our metadata
    // and no link.
    let c = client(&d);
    c.load(&LoadSpec {
        bytecode: Bytecode::File(object.clone()),
        function: TCX_FUNCTION.into(),
        program_type: ProgramType::Tcx,
        metadata: owner_meta("node-t", pool, wire.dev()),
    })
    .expect("Load");
    let mgr = tcx_manager(&d, &object, &wire, pool);
    assert!(mgr.attachments().is_empty());
    assert!(ours(&c, pool).is_empty(), "the orphan is still loaded");
}

#[test]
fn failed_attach_unloads_what_was_loaded() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let pool = "failpool";
    let mgr = tcx_manager(&d, &object, &wire, pool);
    // Load succeeds, Attach cannot: no such interface in the netns.
    let err = mgr
        .attach(&tcx_request("afxnodev0"))
        .expect_err("attached to a missing device");
    let msg = err.to_string();
    assert!(msg.contains("bpfman Attach of program"), "{msg}");
    assert!(msg.contains("afxnodev0"), "{msg}");
    assert!(mgr.attachments().is_empty());
    assert!(ours(mgr.client(), pool).is_empty(), "left loaded in bpfman");
}

#[test]
fn xdp_through_bpfman_attaches_or_is_refused_with_nothing_left() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let object = test_object(tmp.path());
    let wire = Wire::new();
    let pool = "xdppool";
    let mgr = manager(&d, &object, &wire, pool, HookKind::default());
    let req = AttachRequest {
        function: None,
        ..tcx_request(wire.dev())
    };
    match mgr.attach(&req) {
        // A kernel with freplace: the built-in XDP program through bpfman.
        Ok(att) => {
            assert!(att.map_pin.exists());
            assert!(mgr.detach(wire.dev()).expect("detach"));
        }
        // This machine: the kernel refuses bpfman's freplace program
        // (BPF_PROG_LOAD of the extension: EPERM), at Load.
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("bpfman Load of xsk_redirect")
                    || msg.contains("bpfman Attach of program"),
                "{msg}"
            );
            eprintln!("XDP through bpfman refused here: {msg}");
            assert!(mgr.attachments().is_empty());
        }
    }
    assert!(ours(mgr.client(), pool).is_empty(), "left loaded in bpfman");
}

#[test]
fn bad_object_is_refused_and_nothing_stays_loaded() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.o");
    std::fs::write(&garbage, b"not an ELF object").unwrap();
    let c = client(&d);
    for bytecode in [
        Bytecode::File(garbage),
        Bytecode::File(tmp.path().join("missing.o")),
    ] {
        let err = c
            .load(&LoadSpec {
                bytecode: bytecode.clone(),
                function: TCX_FUNCTION.into(),
                program_type: ProgramType::Tcx,
                metadata: owner_meta("node-t", "badpool", "eth0"),
            })
            .expect_err("bad object loaded");
        let msg = err.to_string();
        assert!(
            matches!(err, BpfmanError::Refused { call: "Load", .. }),
            "{err:?}"
        );
        assert!(msg.contains(&bytecode.to_string()), "{msg}");
    }
    assert!(ours(&c, "badpool").is_empty());
}

#[test]
fn bpfman_down_is_a_clear_error() {
    let Some(mut d) = Bpfmand::start_or_skip() else {
        return;
    };
    let c = client(&d);
    c.list(&ListFilter::default()).expect("List while up");
    d.kill();
    let err = c.list(&ListFilter::default()).expect_err("List while down");
    assert!(matches!(err, BpfmanError::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bpfman is not reachable"), "{msg}");
    assert!(msg.contains(&d.socket().display().to_string()), "{msg}");
}

#[test]
fn unreachable_image_is_refused_and_nothing_stays_loaded() {
    let Some(d) = Bpfmand::start_or_skip() else {
        return;
    };
    let c = client(&d);
    // Nothing listens on port 1: bpfman's pull fails, it must say so.
    let image = afxdp_bpfman::Image {
        url: "127.0.0.1:1/afxdp/missing:v1".into(),
        pull_policy: afxdp_bpfman::PullPolicy::Always,
        credentials: None,
    };
    let err = c.pull_bytecode(&image).expect_err("pulled from nowhere");
    assert!(
        matches!(
            err,
            BpfmanError::Refused {
                call: "PullBytecode",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&image.url), "{err}");
    let err = c
        .load(&LoadSpec {
            bytecode: Bytecode::Image(image.clone()),
            function: TCX_FUNCTION.into(),
            program_type: ProgramType::Tcx,
            metadata: owner_meta("node-t", "imgpool", "eth0"),
        })
        .expect_err("loaded from nowhere");
    assert!(
        matches!(err, BpfmanError::Refused { call: "Load", .. }),
        "{err:?}"
    );
    eprintln!("bpfman on a missing image: {err}");
    assert!(ours(&c, "imgpool").is_empty());
}

/// Pushes `object` as a bytecode image to `registry` (plain HTTP) and
/// returns the pinned reference's `@sha256:...` part.
fn push_image(object: &Path, registry: &str, cache: &Path) -> String {
    let fetcher =
        afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig::anonymous(cache)).expect("fetcher");
    let bytes = std::fs::read(object).expect("read object");
    let programs = BTreeMap::from([
        (TCX_FUNCTION.to_string(), "tc".to_string()),
        ("xsk_redirect".to_string(), "xdp".to_string()),
    ]);
    let maps = BTreeMap::from([(XSKS_MAP_NAME.to_string(), "xskmap".to_string())]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pinned = rt
        .block_on(fetcher.push_bytecode(
            &format!("{registry}/afxdp/xsk-tcx:v1"),
            &bytes,
            &programs,
            &maps,
        ))
        .expect("push bytecode image");
    let at = pinned.find('@').expect("pinned reference");
    pinned[at..].to_string()
}

#[test]
fn tcx_from_image_pulled_over_https() {
    let Some(reg) = afxdp_testnet::registry::Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Pushed over plain HTTP, pulled by bpfman over HTTPS (all it speaks).
    let mirror = reg.https_mirror();
    let ca = mirror.ca().display().to_string();
    let Some(d) = Bpfmand::start_or_skip_with_env(&[("SSL_CERT_FILE", &ca)]) else {
        return;
    };
    let object = test_object(tmp.path());
    let digest = push_image(&object, reg.addr(), &tmp.path().join("cache"));
    let url = format!("{}/afxdp/xsk-tcx{digest}", mirror.addr());
    let image = afxdp_bpfman::Image {
        url: url.clone(),
        pull_policy: afxdp_bpfman::PullPolicy::Always,
        credentials: None,
    };
    let c = client(&d);
    c.pull_bytecode(&image)
        .unwrap_or_else(|e| panic!("PullBytecode: {e}\n{}", d.log()));

    let wire = Wire::new();
    let prog = c
        .load(&LoadSpec {
            bytecode: Bytecode::Image(afxdp_bpfman::Image {
                pull_policy: afxdp_bpfman::PullPolicy::IfNotPresent,
                ..image
            }),
            function: TCX_FUNCTION.into(),
            program_type: ProgramType::Tcx,
            metadata: owner_meta("node-t", "imagepool", wire.dev()),
        })
        .unwrap_or_else(|e| panic!("Load from image: {e}\n{}", d.log()));
    let managed = prog.managed.clone().expect("record");
    let Some(Bytecode::Image(recorded)) = &managed.bytecode else {
        panic!("bytecode recorded as {:?}", managed.bytecode)
    };
    assert_eq!(recorded.url, url);
    let maps = d.path(&managed.map_pin_path);
    assert!(maps.join(XSKS_MAP_NAME).exists());
    let link = attach_tcx(&c, &d, prog.id, &wire);
    send_and_count(&wire, &maps, 10);
    c.detach(link).expect("Detach");
    c.unload(prog.id).expect("Unload");
    assert!(ours(&c, "imagepool").is_empty());
}
