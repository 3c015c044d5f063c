//! The guards create real kernel objects and remove them on drop, also on panic (root).

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use afxdp_testnet::{
    ip, link_exists, require_root, send_udp, unique_name, wait_until, Netns, VethOptions, VethPair,
};

fn netns_listed(name: &str) -> bool {
    ip(&["netns", "list"])
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn netns_exists_until_dropped() {
    require_root();
    let ns = Netns::new("tn").unwrap();
    let (name, path) = (ns.name().to_owned(), ns.path().to_owned());
    assert!(name.len() <= 15);
    assert!(path.exists());
    assert!(netns_listed(&name));
    assert!(ns.has_link("lo"));
    let lo = ns.ip(&["-o", "link", "show", "lo"]).unwrap();
    assert!(lo.contains("UP"), "lo is up: {lo}");
    assert!(ns.exec(&["true"]).is_ok());
    let e = ns.exec(&["false"]).unwrap_err();
    assert!(e.to_string().contains("ip netns exec"), "{e}");
    drop(ns);
    assert!(!path.exists());
    assert!(!netns_listed(&name));
}

#[test]
fn veth_with_queues_in_host_and_netns_is_removed_on_drop() {
    require_root();
    let ns = Netns::new("tn").unwrap();
    let (a, b) = (unique_name("ta"), unique_name("tb"));
    let pair = VethPair::create(VethOptions::new(&a, &b).queues(3).b_netns(&ns)).unwrap();
    assert!(link_exists(&a), "first end in the current namespace");
    assert!(ns.has_link(&b), "peer in the netns");
    let detail = ip(&["-d", "link", "show", "dev", &a]).unwrap();
    assert!(detail.contains("numtxqueues 3 numrxqueues 3"), "{detail}");
    let detail = ns.ip(&["-d", "link", "show", "dev", &b]).unwrap();
    assert!(detail.contains("numtxqueues 3 numrxqueues 3"), "{detail}");
    drop(pair);
    assert!(!link_exists(&a));
    assert!(!ns.has_link(&b));
}

#[test]
fn veth_moved_elsewhere_is_found_on_drop() {
    require_root();
    let ns = Netns::new("tn").unwrap();
    let other = Netns::new("to").unwrap();
    let (a, b) = (unique_name("ta"), unique_name("tb"));
    let mut pair = VethPair::create(VethOptions::new(&a, &b).a_netns(&ns).b_netns(&ns)).unwrap();
    ns.ip(&["link", "set", &a, "netns", other.name()]).unwrap();
    ns.ip(&["link", "set", &b, "netns", other.name()]).unwrap();
    pair.also_look_in(&other);
    drop(pair);
    assert!(!other.has_link(&a) && !other.has_link(&b));
}

#[test]
fn guards_clean_up_when_the_test_panics() {
    require_root();
    let made: Mutex<Option<(String, PathBuf, String)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let ns = Netns::new("tp").unwrap();
        let (a, b) = (unique_name("pa"), unique_name("pb"));
        let _pair = VethPair::create(VethOptions::new(&a, &b).b_netns(&ns)).unwrap();
        *made.lock().unwrap() = Some((ns.name().to_owned(), ns.path().to_owned(), a));
        panic!("deliberate panic with live guards");
    });
    assert!(result.is_err());
    let (name, path, a) = made.lock().unwrap().take().expect("guards were created");
    assert!(!path.exists(), "netns {name} removed during unwinding");
    assert!(!netns_listed(&name));
    assert!(!link_exists(&a), "veth {a} removed during unwinding");
}

#[test]
fn send_udp_delivers_the_promised_count_inside_netns() {
    require_root();
    let tx_ns = Netns::new("ts").unwrap();
    let rx_ns = Netns::new("tr").unwrap();
    let (a, b) = (unique_name("ua"), unique_name("ub"));
    let _pair = VethPair::create(
        VethOptions::new(&a, &b)
            .queues(4)
            .a_netns(&tx_ns)
            .b_netns(&rx_ns),
    )
    .unwrap();
    tx_ns
        .ip(&["addr", "add", "198.18.20.1/24", "dev", &a])
        .unwrap();
    rx_ns
        .ip(&["addr", "add", "198.18.20.2/24", "dev", &b])
        .unwrap();
    tx_ns.ip(&["link", "set", &a, "up"]).unwrap();
    rx_ns.ip(&["link", "set", &b, "up"]).unwrap();

    const PORTS: std::ops::RangeInclusive<u16> = 40000..=40007;
    const PER_PORT: usize = 5;
    // Receivers are bound (inside rx_ns) before anything is sent.
    let sockets: Vec<UdpSocket> = rx_ns
        .run(|| {
            PORTS
                .map(|p| {
                    let s = UdpSocket::bind(("0.0.0.0", p)).unwrap();
                    s.set_nonblocking(true).unwrap();
                    s
                })
                .collect()
        })
        .unwrap();

    let sent = send_udp(&tx_ns, &a, "198.18.20.2".parse().unwrap(), PORTS, PER_PORT).unwrap();
    assert_eq!(sent, PORTS.count() * PER_PORT);

    let mut got = vec![0usize; sockets.len()];
    let mut buf = [0u8; 128];
    let done = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        for (i, s) in sockets.iter().enumerate() {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                let text = std::str::from_utf8(&buf[..n]).unwrap();
                assert!(
                    text.starts_with(&format!("afxdp-testnet {} ", 40000 + i)),
                    "{text}"
                );
                got[i] += 1;
            }
        }
        got.iter().all(|&n| n == PER_PORT)
    });
    assert!(done, "received per port: {got:?}");
}

#[test]
fn wait_until_respects_its_timeout_with_real_polling() {
    let t = Instant::now();
    assert!(!wait_until(
        Duration::from_millis(50),
        Duration::from_millis(200),
        || false
    ));
    assert!(t.elapsed() < Duration::from_millis(500));
}
