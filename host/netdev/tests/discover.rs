//! Discovery against real veth devices in a fresh namespace (root).

mod common;

use std::net::IpAddr;

use afxdp_netdev::{default_route_interfaces, in_netns, LinkState, NetdevError};
use afxdp_testnet::{unique_name, VethOptions, VethPair};
use common::Lab;

#[test]
fn discovers_four_queue_veth_with_mac_and_addresses() {
    let lab = Lab::new(4);
    let a = lab.pair.a();
    lab.ns
        .ip(&["link", "set", a, "address", "02:af:d0:00:00:01"])
        .unwrap();
    lab.ns
        .ip(&["addr", "add", "198.18.5.1/24", "dev", a])
        .unwrap();
    lab.ns
        .ip(&["addr", "add", "2001:db8:5::1/64", "dev", a, "nodad"])
        .unwrap();

    let dev = in_netns(&lab.handle, || afxdp_netdev::get(a))
        .unwrap()
        .unwrap()
        .expect("veth end is found");
    assert_eq!(dev.name, a);
    assert_eq!(dev.driver.as_deref(), Some("veth"));
    assert_eq!((dev.rx_queues, dev.tx_queues), (4, 4));
    assert_eq!(dev.mac.as_deref(), Some("02:af:d0:00:00:01"));
    assert!(dev
        .addresses
        .contains(&"198.18.5.1".parse::<IpAddr>().unwrap()));
    assert!(dev
        .addresses
        .contains(&"2001:db8:5::1".parse::<IpAddr>().unwrap()));
    assert!(dev.admin_up);
    assert_eq!(dev.state, LinkState::Up);
    assert_eq!(dev.mtu, 1500);
    assert_eq!(dev.pci, None, "veth is not a PCI device");
    assert_eq!(dev.numa_node, None);
    assert_eq!(dev.speed_mbps, Some(10_000), "veth reports 10 Gb/s");

    let all = in_netns(&lab.handle, afxdp_netdev::list).unwrap().unwrap();
    let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"lo") && names.contains(&a) && names.contains(&lab.pair.b()));
    let listed = all.iter().find(|d| d.name == a).unwrap();
    assert_eq!(listed, &dev, "list() and get() agree");
    let lo = all.iter().find(|d| d.name == "lo").unwrap();
    assert_eq!(lo.driver, None, "lo has no ethtool driver info");
    assert_eq!(lo.mac, None);
}

#[test]
fn down_link_and_missing_link() {
    let lab = Lab::new(1);
    let a = lab.pair.a();
    lab.ns.ip(&["link", "set", a, "down"]).unwrap();
    let (a_dev, b_dev, missing) = in_netns(&lab.handle, || {
        (
            afxdp_netdev::get(a).unwrap().unwrap(),
            afxdp_netdev::get(lab.pair.b()).unwrap().unwrap(),
            afxdp_netdev::get("nd-missing0").unwrap(),
        )
    })
    .unwrap();
    assert!(!a_dev.admin_up);
    assert_eq!(a_dev.state, LinkState::Down);
    assert!(b_dev.admin_up);
    assert_eq!(b_dev.state, LinkState::Other, "peer down: lower layer down");
    assert_eq!(missing, None);
}

#[test]
fn invalid_names_are_rejected_before_the_kernel() {
    for bad in ["", "sixteen_chars_xx", "a/b"] {
        assert!(matches!(
            afxdp_netdev::get(bad),
            Err(NetdevError::InvalidName { .. })
        ));
    }
}

#[test]
fn default_route_interfaces_plain_and_nexthop_object() {
    let lab = Lab::new(1);
    let a = lab.pair.a();
    let none = in_netns(&lab.handle, default_route_interfaces)
        .unwrap()
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    lab.ns
        .ip(&["addr", "add", "198.18.7.1/24", "dev", a])
        .unwrap();
    lab.ns
        .ip(&["route", "add", "default", "via", "198.18.7.254", "dev", a])
        .unwrap();
    // A second pair whose default route (in another table) goes through a nexthop object.
    let c = unique_name("vc");
    let pair2 = VethPair::create(
        VethOptions::new(&c, unique_name("vd"))
            .a_netns(&lab.ns)
            .b_netns(&lab.ns),
    )
    .unwrap();
    lab.ns.ip(&["link", "set", &c, "up"]).unwrap();
    lab.ns.ip(&["link", "set", pair2.b(), "up"]).unwrap();
    lab.ns
        .ip(&["addr", "add", "198.18.8.1/24", "dev", &c])
        .unwrap();
    lab.ns
        .ip(&[
            "nexthop",
            "add",
            "id",
            "71",
            "via",
            "198.18.8.254",
            "dev",
            &c,
        ])
        .unwrap();
    lab.ns
        .ip(&["route", "add", "default", "nhid", "71", "table", "100"])
        .unwrap();

    let got = in_netns(&lab.handle, default_route_interfaces)
        .unwrap()
        .unwrap();
    let mut want = vec![a.to_owned(), c.clone()];
    want.sort();
    assert_eq!(got, want);
}
