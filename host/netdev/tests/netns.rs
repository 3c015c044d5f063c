//! Namespace handles, in_netns, link moves and link settings (root).

mod common;

use afxdp_netdev::netns::{link_exists, set_link_down, set_link_up, set_mtu};
use afxdp_netdev::{in_netns, move_link, NetdevError, NetnsHandle};
use afxdp_testnet::Netns;
use common::{open, Lab};

#[test]
fn in_netns_runs_inside_and_leaves_the_caller_alone() {
    let lab = Lab::new(1);
    let before = NetnsHandle::current().unwrap();
    let inside = in_netns(&lab.handle, || {
        NetnsHandle::current()
            .unwrap()
            .same_as(&lab.handle)
            .unwrap()
    })
    .unwrap();
    assert!(inside);
    let after = NetnsHandle::current().unwrap();
    assert!(before.same_as(&after).unwrap());
    assert!(!after.same_as(&lab.handle).unwrap());
    // Borrowed data and results cross the thread.
    let name = lab.pair.a();
    let seen = in_netns(&lab.handle, || {
        afxdp_netdev::get(name).unwrap().map(|d| d.name)
    })
    .unwrap();
    assert_eq!(seen.as_deref(), Some(name));
}

#[test]
#[should_panic(expected = "boom inside netns")]
fn in_netns_propagates_panics() {
    let lab = Lab::new(1);
    let _ = in_netns(&lab.handle, || panic!("boom inside netns"));
}

#[test]
fn open_rejects_files_that_are_not_network_namespaces() {
    for path in ["/proc/self/ns/mnt", "/etc/hostname", "/nonexistent/netns"] {
        let e = NetnsHandle::open(path).unwrap_err();
        assert!(matches!(e, NetdevError::OpenNetns { .. }), "{path}: {e}");
    }
}

#[test]
fn move_into_netns_and_back_keeps_the_name() {
    let mut lab = Lab::new(2);
    let pod = Netns::new("pod").unwrap();
    lab.pair.also_look_in(&pod);
    let pod_h = open(&pod);
    let a = lab.pair.a().to_owned();
    lab.ns
        .ip(&["addr", "add", "198.18.9.1/24", "dev", &a])
        .unwrap();

    move_link(&a, &lab.handle, &pod_h).unwrap();
    assert!(link_exists(&pod_h, &a).unwrap());
    assert!(!link_exists(&lab.handle, &a).unwrap());
    assert!(pod.has_link(&a), "ip sees it under the same name");
    let moved = in_netns(&pod_h, || afxdp_netdev::get(&a))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(moved.driver.as_deref(), Some("veth"));
    assert_eq!(moved.rx_queues, 2);
    assert!(!moved.admin_up, "a move brings the link down");

    set_link_up(&pod_h, &a).unwrap();
    set_mtu(&pod_h, &a, 9000).unwrap();
    let d = in_netns(&pod_h, || afxdp_netdev::get(&a))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(d.admin_up);
    assert_eq!(d.mtu, 9000);
    set_link_down(&pod_h, &a).unwrap();
    let d = in_netns(&pod_h, || afxdp_netdev::get(&a))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!d.admin_up);

    move_link(&a, &pod_h, &lab.handle).unwrap();
    assert!(link_exists(&lab.handle, &a).unwrap());
    assert!(!link_exists(&pod_h, &a).unwrap());
}

#[test]
fn name_clash_fails_with_eexist_and_never_renames() {
    let mut lab = Lab::new(1);
    let pod = Netns::new("pod").unwrap();
    lab.pair.also_look_in(&pod);
    let pod_h = open(&pod);
    let a = lab.pair.a().to_owned();
    // A link of the same name already in the target (veth: this kernel has no dummy driver).
    let _clash = afxdp_testnet::VethPair::create(
        afxdp_testnet::VethOptions::new(&a, afxdp_testnet::unique_name("cl"))
            .a_netns(&pod)
            .b_netns(&pod),
    )
    .unwrap();

    let e = move_link(&a, &lab.handle, &pod_h).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(!e.is_no_such_link());
    assert!(link_exists(&lab.handle, &a).unwrap(), "still where it was");
    let pod_links = pod.ip(&["-o", "link", "show"]).unwrap();
    assert_eq!(
        pod_links.lines().count(),
        3,
        "lo + the clashing pair only: {pod_links}"
    );
}

#[test]
fn missing_links_are_enodev_other_failures_are_not() {
    let lab = Lab::new(1);
    let other = Netns::new("oth").unwrap();
    let other_h = open(&other);
    let missing = "nd-missing0";

    let e = move_link(missing, &lab.handle, &other_h).unwrap_err();
    assert!(e.is_no_such_link(), "{e}");
    assert_eq!(e.errno(), Some(libc::ENODEV));
    assert!(set_link_up(&lab.handle, missing)
        .unwrap_err()
        .is_no_such_link());
    assert!(set_link_down(&lab.handle, missing)
        .unwrap_err()
        .is_no_such_link());
    assert!(set_mtu(&lab.handle, missing, 1500)
        .unwrap_err()
        .is_no_such_link());
    assert!(!link_exists(&lab.handle, missing).unwrap());

    // EINVAL: MTU above veth's maximum; lo cannot leave its namespace.
    let e = set_mtu(&lab.handle, lab.pair.a(), 70_000).unwrap_err();
    assert!(!e.is_no_such_link(), "{e}");
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    let e = move_link("lo", &lab.handle, &other_h).unwrap_err();
    assert!(!e.is_no_such_link(), "{e}");
    assert!(matches!(e, NetdevError::Netlink { .. }), "{e}");

    let e = link_exists(&lab.handle, "bad/name").unwrap_err();
    assert!(matches!(e, NetdevError::InvalidName { .. }));
}
