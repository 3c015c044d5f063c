//! The link watcher against real veth devices (root).

mod common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use afxdp_netdev::{in_netns, spawn_link_watcher, spawn_link_watcher_in, LinkEventKind, LinkState};
use afxdp_testnet::Netns;
use common::{wait_event, Lab};

const QUICK: Duration = Duration::from_millis(900);
const SNAPSHOT: Duration = Duration::from_secs(5);

#[test]
fn sees_down_up_move_away_and_removal() {
    let mut lab = Lab::new(2);
    let a = lab.pair.a().to_owned();
    let b = lab.pair.b().to_owned();
    let (tx, rx) = mpsc::channel();
    let watcher = spawn_link_watcher_in(&lab.handle, tx).unwrap();

    // The snapshot names every existing link, in whatever order the kernel lists them.
    let mut missing: HashSet<String> = ["lo", a.as_str(), b.as_str()]
        .into_iter()
        .map(String::from)
        .collect();
    let deadline = Instant::now() + SNAPSHOT;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if matches!(e.kind, LinkEventKind::Changed { .. }) => {
                missing.remove(&e.name);
            }
            Ok(_) => {}
            Err(_) => panic!("no snapshot event for {missing:?}"),
        }
    }

    lab.ns.ip(&["link", "set", &a, "down"]).unwrap();
    let (ev, took) = wait_event(&rx, QUICK, |e| {
        e.name == a
            && e.kind
                == LinkEventKind::Changed {
                    state: LinkState::Down,
                    admin_up: false,
                }
    })
    .expect("down event within 900 ms");
    assert!(took < QUICK, "{took:?}");
    let ifindex = ev.ifindex;
    // The peer loses its carrier.
    wait_event(&rx, QUICK, |e| {
        e.name == b
            && matches!(
                e.kind,
                LinkEventKind::Changed {
                    state: LinkState::Other,
                    admin_up: true
                }
            )
    })
    .expect("peer lower-layer-down event");

    lab.ns.ip(&["link", "set", &a, "up"]).unwrap();
    wait_event(&rx, QUICK, |e| {
        e.name == a && matches!(e.kind, LinkEventKind::Changed { admin_up: true, .. })
    })
    .expect("up event");

    let away = Netns::new("away").unwrap();
    lab.pair.also_look_in(&away);
    lab.ns
        .ip(&["link", "set", &a, "netns", away.name()])
        .unwrap();
    let (ev, _) = wait_event(&rx, QUICK, |e| {
        e.name == a && e.kind == LinkEventKind::Removed
    })
    .expect("moving away is a removal here");
    assert_eq!(ev.ifindex, ifindex);

    lab.ns.ip(&["link", "del", &b]).unwrap();
    wait_event(&rx, QUICK, |e| {
        e.name == b && e.kind == LinkEventKind::Removed
    })
    .expect("deletion is a removal");

    watcher.stop();
}

#[test]
fn sees_links_arriving_and_stops_on_drop_without_leaking_its_thread() {
    let lab = Lab::new(1);
    let (tx, rx) = mpsc::channel();
    // spawn_link_watcher watches the namespace of the thread that calls it.
    let watcher = in_netns(&lab.handle, || spawn_link_watcher(tx))
        .unwrap()
        .unwrap();
    assert!(watcher.is_running());
    let name = afxdp_testnet::unique_name("nw");
    let _new = afxdp_testnet::VethPair::create(
        afxdp_testnet::VethOptions::new(&name, afxdp_testnet::unique_name("nx"))
            .a_netns(&lab.ns)
            .b_netns(&lab.ns),
    )
    .unwrap();
    wait_event(&rx, SNAPSHOT, |e| {
        e.name == name && matches!(e.kind, LinkEventKind::Changed { .. })
    })
    .expect("new link seen");

    let t = Instant::now();
    drop(watcher);
    assert!(t.elapsed() < Duration::from_secs(2), "stop is prompt");
    // The thread owned the only sender: once it is gone the channel disconnects.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            _ if Instant::now() > deadline => panic!("watcher thread still holds the sender"),
            _ => {}
        }
    }
}

#[test]
fn watcher_ends_when_the_receiver_is_gone() {
    let lab = Lab::new(1);
    let (tx, rx) = mpsc::channel();
    let watcher = spawn_link_watcher_in(&lab.handle, tx).unwrap();
    drop(rx);
    // The next event it tries to send fails and the thread ends by itself.
    lab.ns.ip(&["link", "set", lab.pair.a(), "down"]).unwrap();
    assert!(afxdp_testnet::wait_until(
        Duration::from_secs(3),
        Duration::from_millis(20),
        || { !watcher.is_running() }
    ));
}
