//! Shared helpers for the privileged integration tests.
#![allow(dead_code)]

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use afxdp_netdev::{LinkEvent, NetnsHandle};
use afxdp_testnet::{require_root, unique_name, Netns, VethOptions, VethPair};

/// A fresh namespace with a veth pair of `queues` queues, both ends inside and up.
pub struct Lab {
    pub pair: VethPair,
    pub ns: Netns,
    pub handle: NetnsHandle,
}

impl Lab {
    pub fn new(queues: u32) -> Lab {
        require_root();
        let ns = Netns::new("nd").expect("create netns");
        let pair = VethPair::create(
            VethOptions::new(unique_name("va"), unique_name("vb"))
                .queues(queues)
                .a_netns(&ns)
                .b_netns(&ns),
        )
        .expect("create veth pair");
        ns.ip(&["link", "set", pair.a(), "up"]).unwrap();
        ns.ip(&["link", "set", pair.b(), "up"]).unwrap();
        let handle = NetnsHandle::open(ns.path()).expect("open netns");
        Lab { pair, ns, handle }
    }
}

pub fn open(ns: &Netns) -> NetnsHandle {
    NetnsHandle::open(ns.path()).expect("open netns")
}

/// Waits up to `timeout` for an event matching `pred`; returns it and how long it took.
pub fn wait_event(
    rx: &Receiver<LinkEvent>,
    timeout: Duration,
    pred: impl Fn(&LinkEvent) -> bool,
) -> Option<(LinkEvent, Duration)> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return Some((ev, start.elapsed())),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}
