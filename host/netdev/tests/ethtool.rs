//! ethtool (netlink channels, ioctl driver info and ntuple) on veth and lo in a fresh namespace (root).

mod common;

use afxdp_netdev::ethtool::{self, ChannelCounts};
use afxdp_netdev::{in_netns, NetdevError};
use common::Lab;

#[test]
fn veth_channels_read_and_set_within_queue_count() {
    let lab = Lab::new(4);
    let a = lab.pair.a().to_owned();
    in_netns(&lab.handle, move || {
        let ch = ethtool::channels(&a).unwrap();
        assert_eq!((ch.max_rx, ch.max_tx, ch.max_combined), (4, 4, 0));
        assert_eq!((ch.rx, ch.tx, ch.combined), (4, 4, 0));

        let ch = ethtool::set_channels(&a, 2).unwrap();
        assert_eq!((ch.rx, ch.tx), (2, 2));
        let dev = afxdp_netdev::get(&a).unwrap().unwrap();
        assert_eq!(dev.rx_queues, 2, "discovery reports the channels in use");

        let ch = ethtool::set_channel_counts(
            &a,
            ChannelCounts {
                rx: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((ch.rx, ch.tx), (3, 2));

        let err = ethtool::set_channels(&a, 5).unwrap_err();
        assert!(
            matches!(
                err,
                NetdevError::Ethtool {
                    cmd: "ETHTOOL_MSG_CHANNELS_SET",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.errno(), Some(libc::EINVAL));
        assert!(!err.is_not_supported());
        // ethtool netlink says why (the ioctl could not).
        assert!(
            matches!(&err, NetdevError::Ethtool { message: Some(m), .. } if m.contains("exceeds maximum")),
            "{err}"
        );

        let ch = ethtool::set_channels(&a, 4).unwrap();
        assert_eq!((ch.rx, ch.tx), (4, 4));
    })
    .unwrap();
}

#[test]
fn driver_info_unsupported_and_missing() {
    let lab = Lab::new(1);
    let a = lab.pair.a().to_owned();
    in_netns(&lab.handle, move || {
        let d = ethtool::driver_info(&a).unwrap();
        assert_eq!(d.driver, "veth");
        assert_eq!(d.bus_info, "");

        let e = ethtool::channels("lo").unwrap_err();
        assert!(e.is_not_supported(), "{e}");
        assert!(e.to_string().contains("not supported"), "{e}");
        assert!(ethtool::set_channels("lo", 1)
            .unwrap_err()
            .is_not_supported());

        let e = ethtool::channels("nd-missing0").unwrap_err();
        assert!(e.is_no_such_link(), "{e}");
        let e = ethtool::driver_info("nd-missing0").unwrap_err();
        assert!(e.is_no_such_link(), "{e}");
    })
    .unwrap();
}

#[test]
fn ntuple_rules_are_refused_by_veth_with_not_supported() {
    use afxdp_netdev::ntuple::{self, FlowType, NtupleAction, NtupleRule};
    afxdp_testnet::require_root();
    let ns = afxdp_testnet::Netns::new("afxnt").expect("netns");
    let a = afxdp_testnet::unique_name("ntA");
    let b = afxdp_testnet::unique_name("ntB");
    let _pair = afxdp_testnet::VethPair::create(
        afxdp_testnet::VethOptions::new(&a, &b)
            .queues(4)
            .a_netns(&ns)
            .b_netns(&ns),
    )
    .expect("veth");
    let rule = NtupleRule {
        flow_type: FlowType::Udp4,
        src_ip: None,
        dst_ip: None,
        src_port: None,
        dst_port: Some((4789, 0xffff)),
        action: NtupleAction::Queue(1),
    };
    let name = a.clone();
    let err = ns
        .run(move || ntuple::insert(&name, &rule))
        .expect("in netns")
        .expect_err("veth has no ntuple");
    assert!(err.is_not_supported(), "{err}");
    let name = a.clone();
    let err = ns
        .run(move || ntuple::delete(&name, 0))
        .expect("in netns")
        .expect_err("veth has no ntuple");
    assert!(err.is_not_supported(), "{err}");
}
