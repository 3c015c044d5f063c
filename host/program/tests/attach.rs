//! Privileged tests of `NativeManager` on a real kernel: veth pairs created
//! in the host netns with unique names, netns of our own, everything removed
//! by RAII guards. They fail (never skip) without root.

use std::ffi::CString;
use std::path::Path;

use afxdp_program::{AttachRequest, NativeManager, ProgramError, ProgramManager, XdpMode};
use afxdp_testnet::{ip as try_ip, unique_name, Netns, PinRoot, VethPair};

fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

/// A 4-queue veth pair in the host netns whose end `a` the tests move
/// around; the testnet guard deletes it wherever it is.
struct Veth {
    a: String,
    netns: Option<String>,
    pair: VethPair,
}

impl Veth {
    fn new() -> Self {
        let pair = VethPair::new(&unique_name("pa"), &unique_name("pb"), 4).expect("veth");
        Veth {
            a: pair.a().to_string(),
            netns: None,
            pair,
        }
    }

    fn move_a(&mut self, netns: Option<&Netns>) {
        match (self.netns.as_deref(), netns) {
            (None, Some(ns)) => {
                ip(&["link", "set", &self.a, "netns", ns.name()]);
                self.pair.also_look_in(ns);
            }
            (Some(from), None) => {
                ip(&["-n", from, "link", "set", &self.a, "netns", "1"]);
            }
            _ => panic!("bad move"),
        }
        self.netns = netns.map(|n| n.name().to_string());
    }

    /// `ip -d link show` of `a` wherever it is.
    fn show_a(&self) -> String {
        match &self.netns {
            Some(ns) => ip(&["-n", ns, "-d", "link", "show", "dev", &self.a]),
            None => ip(&["-d", "link", "show", "dev", &self.a]),
        }
    }
}

fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(idx, 0, "no interface {name}");
    idx
}

fn req(dev: &str, mode: XdpMode) -> AttachRequest<'_> {
    AttachRequest {
        device: dev,
        ifindex: ifindex(dev),
        mode,
        program: None,
        function: None,
    }
}

fn xdp_prog_id(show: &str) -> Option<u32> {
    let rest = &show[show.find("prog/xdp id ")? + "prog/xdp id ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_root() {
    afxdp_testnet::require_root();
}

#[test]
fn attach_survives_netns_moves_and_detaches_anywhere() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let mgr = NativeManager::new(root.path()).expect("manager");
    let mut veth = Veth::new();
    let ns = Netns::new("pns").expect("netns");

    // Auto on veth picks native.
    let att = mgr.attach(&req(&veth.a, XdpMode::Auto)).expect("attach");
    assert_eq!(att.mode, XdpMode::Native);
    assert_eq!(att.map_pin, att.map_dir.join("xsks_map"));
    assert_eq!(entries(&att.map_dir), vec!["xsks_map".to_string()]);
    assert_eq!(xdp_prog_id(&veth.show_a()), Some(att.program_id));
    mgr.xsk_map_fd(&veth.a).expect("map fd");

    // Into a netns and back: still attached.
    veth.move_a(Some(&ns));
    assert_eq!(
        xdp_prog_id(&veth.show_a()),
        Some(att.program_id),
        "after move in"
    );
    veth.move_a(None);
    assert_eq!(
        xdp_prog_id(&veth.show_a()),
        Some(att.program_id),
        "after move back"
    );
    assert!(mgr.detach(&veth.a).expect("detach after move back"));
    assert_eq!(xdp_prog_id(&veth.show_a()), None);
    assert!(!att.map_dir.exists());

    // Detach while the device sits in the other netns.
    let att = mgr
        .attach(&req(&veth.a, XdpMode::Generic))
        .expect("attach generic");
    assert_eq!(att.mode, XdpMode::Generic);
    assert!(veth.show_a().contains("xdpgeneric"), "{}", veth.show_a());
    veth.move_a(Some(&ns));
    assert_eq!(xdp_prog_id(&veth.show_a()), Some(att.program_id));
    assert!(mgr.detach(&veth.a).expect("detach in netns"));
    assert_eq!(xdp_prog_id(&veth.show_a()), None, "still attached in netns");
    assert!(mgr.attachments().is_empty());
    for d in ["maps", "links", "meta"] {
        assert!(entries(&root.path().join(d)).is_empty(), "{d} not empty");
    }
}

#[test]
fn adopts_after_restart() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let veth = Veth::new();
    let att = {
        let mgr = NativeManager::new(root.path()).expect("manager");
        mgr.attach(&req(&veth.a, XdpMode::Native)).expect("attach")
    };
    // The first manager is gone; the pinned link keeps the program attached.
    assert_eq!(xdp_prog_id(&veth.show_a()), Some(att.program_id));

    let mgr = NativeManager::new(root.path()).expect("second manager");
    assert_eq!(mgr.attachments(), vec![att.clone()]);
    // The same request is idempotent on an adopted attachment, another is refused.
    assert_eq!(mgr.attach(&req(&veth.a, XdpMode::Native)).unwrap(), att);
    assert!(matches!(
        mgr.attach(&req(&veth.a, XdpMode::Generic)),
        Err(ProgramError::AlreadyAttached { .. })
    ));
    mgr.xsk_map_fd(&veth.a)
        .expect("map fd of adopted attachment");
    mgr.share_map_with(&veth.a, 65534).expect("share");
    let meta = std::fs::metadata(&att.map_pin).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);

    assert!(mgr.detach(&veth.a).unwrap());
    assert_eq!(xdp_prog_id(&veth.show_a()), None);
    drop(mgr);
    let mgr = NativeManager::new(root.path()).expect("third manager");
    assert!(mgr.attachments().is_empty());
}

#[test]
fn detach_is_idempotent_and_attach_same_request_too() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let mgr = NativeManager::new(root.path()).expect("manager");
    let veth = Veth::new();
    assert!(!mgr.detach(&veth.a).unwrap(), "nothing attached yet");
    let a1 = mgr.attach(&req(&veth.a, XdpMode::Auto)).unwrap();
    let a2 = mgr.attach(&req(&veth.a, XdpMode::Auto)).unwrap();
    assert_eq!(a1, a2);
    // Asking for the mode Auto resolved to is the same request too.
    assert_eq!(mgr.attach(&req(&veth.a, XdpMode::Native)).unwrap(), a1);
    assert!(mgr.detach(&veth.a).unwrap());
    assert!(!mgr.detach(&veth.a).unwrap());
    assert!(matches!(
        mgr.xsk_map_fd(&veth.a),
        Err(ProgramError::NotAttached { .. })
    ));
}

#[test]
fn unknown_ifindex_leaves_no_pins() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let mgr = NativeManager::new(root.path()).expect("manager");
    let err = mgr
        .attach(&AttachRequest {
            device: "nosuchdev0",
            ifindex: 0x7fff_fff0,
            mode: XdpMode::Auto,
            program: None,
            function: None,
        })
        .expect_err("attach to a missing ifindex");
    assert!(matches!(err, ProgramError::Attach { .. }), "{err}");
    for d in ["maps", "links", "meta"] {
        assert!(entries(&root.path().join(d)).is_empty(), "{d} not empty");
    }
    assert!(mgr.attachments().is_empty());
}

#[test]
fn half_made_leftovers_are_cleaned() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    drop(NativeManager::new(root.path()).expect("manager"));
    // A map directory and metadata without a link: what a crash mid-attach leaves.
    std::fs::create_dir(root.path().join("maps/ghost0")).unwrap();
    std::fs::create_dir_all(root.path().join("meta/ghost0/mode=native")).unwrap();
    let mgr = NativeManager::new(root.path()).expect("manager");
    assert!(mgr.attachments().is_empty());
    for d in ["maps", "links", "meta"] {
        assert!(entries(&root.path().join(d)).is_empty(), "{d} not empty");
    }
}

#[test]
fn custom_object_without_xskmap_is_refused() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let mgr = NativeManager::new(root.path()).expect("manager");
    let veth = Veth::new();
    let bogus = root.dir().join("bogus.o");
    std::fs::write(&bogus, b"not an ELF").unwrap();
    let err = mgr
        .attach(&AttachRequest {
            program: Some(&bogus),
            ..req(&veth.a, XdpMode::Auto)
        })
        .expect_err("bogus object");
    assert!(matches!(err, ProgramError::Load { .. }), "{err}");
    assert_eq!(xdp_prog_id(&veth.show_a()), None);
    assert!(entries(&root.path().join("maps")).is_empty());
}

#[test]
fn attachment_of_a_destroyed_device_is_cleaned_on_adopt() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let veth = Veth::new();
    {
        let mgr = NativeManager::new(root.path()).expect("manager");
        mgr.attach(&req(&veth.a, XdpMode::Auto)).expect("attach");
    }
    // The device dies while no manager runs (e.g. its pod netns was deleted).
    ip(&["link", "del", &veth.a]);
    let mgr = NativeManager::new(root.path()).expect("manager");
    assert!(mgr.attachments().is_empty());
    for d in ["maps", "links", "meta"] {
        assert!(entries(&root.path().join(d)).is_empty(), "{d} not empty");
    }
}

#[test]
fn a_named_function_is_attached_and_an_unknown_one_refused() {
    assert_root();
    let root = PinRoot::new().expect("pin root");
    let mgr = NativeManager::new(root.path()).expect("manager");
    let veth = Veth::new();
    let object = root.dir().join("redirect.bpf.o");
    std::fs::write(&object, afxdp_program::builtin_object()).unwrap();
    let err = mgr
        .attach(&AttachRequest {
            program: Some(&object),
            function: Some("no_such_fn"),
            ..req(&veth.a, XdpMode::Generic)
        })
        .expect_err("unknown function");
    assert!(
        matches!(&err, ProgramError::BadObject { reason, .. } if reason.contains("no_such_fn") && reason.contains("xsk_redirect")),
        "{err}"
    );
    assert_eq!(xdp_prog_id(&veth.show_a()), None);
    let named = AttachRequest {
        program: Some(&object),
        function: Some(afxdp_program::BUILTIN_PROGRAM_NAME),
        ..req(&veth.a, XdpMode::Generic)
    };
    let a = mgr.attach(&named).expect("named function");
    assert_eq!(xdp_prog_id(&veth.show_a()), Some(a.program_id));
    // The same request again is the same attachment; another function is not.
    assert_eq!(mgr.attach(&named).expect("idempotent"), a);
    assert!(matches!(
        mgr.attach(&AttachRequest {
            function: None,
            ..named
        }),
        Err(ProgramError::AlreadyAttached { .. })
    ));
    assert!(mgr.detach(&veth.a).expect("detach"));
    assert_eq!(xdp_prog_id(&veth.show_a()), None);
}
