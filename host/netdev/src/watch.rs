//! A link watcher: rtnetlink `RTNLGRP_LINK` notifications turned into [`LinkEvent`]s.
//!
//! The watcher runs on its own thread and sends events on a `std::sync::mpsc` channel. It
//! first sends one [`LinkEventKind::Changed`] per existing link (a snapshot taken *after*
//! subscribing, so nothing falls between a separate discovery and the watch), then one event
//! per change of name, operational state or admin state; repeated notifications that change
//! none of those are dropped. A link that is deleted or moved to another namespace yields
//! [`LinkEventKind::Removed`].
//!
//! When the kernel drops notifications because the socket buffer overflowed (`ENOBUFS`), the
//! watcher re-reads all links and sends the differences, removals included, so consumers
//! never need their own resync.

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use crate::discover::{self, parse_link};
use crate::netns::{in_netns, NetnsHandle};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::nl::{self, NlSocket};
use crate::{LinkState, NetdevError};

/// One change of a link in the watched namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface index in the watched namespace.
    pub ifindex: u32,
    /// Interface name (the current one for `Changed`, the last known one for `Removed`).
    pub name: String,
    /// What happened.
    pub kind: LinkEventKind,
}

/// What happened to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEventKind {
    /// The link exists (new, renamed, or its state changed).
    Changed {
        /// Operational state (`IFLA_OPERSTATE`).
        state: LinkState,
        /// Administratively up (`IFF_UP`).
        admin_up: bool,
    },
    /// The link was deleted or moved out of the watched namespace.
    Removed,
}

/// A running link watcher. Dropping it (or calling [`LinkWatcher::stop`]) stops and joins
/// its thread.
#[derive(Debug)]
pub struct LinkWatcher {
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl LinkWatcher {
    /// Stops the watcher and waits for its thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// False once the thread has ended: it was stopped, every receiver of the channel is
    /// gone, or it hit an unrecoverable socket error (logged).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn shutdown(&mut self) {
        // Closing the write end of the pipe wakes the thread's poll() with POLLHUP.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("link watcher thread panicked");
            }
        }
    }
}

impl Drop for LinkWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Watches the links of the calling thread's network namespace.
///
/// # Errors
/// The netlink sockets, the stop pipe or the thread cannot be created.
pub fn spawn_link_watcher(tx: Sender<LinkEvent>) -> Result<LinkWatcher, NetdevError> {
    let events = NlSocket::open(nl::RTMGRP_LINK)?;
    let requests = NlSocket::open(0)?;
    start(events, requests, tx)
}

/// Watches the links of namespace `ns` (the sockets are opened inside it; the thread itself
/// stays in the caller's namespace).
///
/// # Errors
/// As [`spawn_link_watcher`], plus entering `ns`.
pub fn spawn_link_watcher_in(
    ns: &NetnsHandle,
    tx: Sender<LinkEvent>,
) -> Result<LinkWatcher, NetdevError> {
    let (events, requests) = in_netns(ns, || {
        Ok::<_, NetdevError>((NlSocket::open(nl::RTMGRP_LINK)?, NlSocket::open(0)?))
    })??;
    start(events, requests, tx)
}

fn start(
    events: NlSocket,
    requests: NlSocket,
    tx: Sender<LinkEvent>,
) -> Result<LinkWatcher, NetdevError> {
    let (stop_r, stop_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetdevError::Syscall {
            call: "pipe2",
            source: io::Error::from(e),
        })?;
    let thread = std::thread::Builder::new()
        .name("afxdp-linkwatch".into())
        .spawn(move || run(events, requests, stop_r, tx))
        .map_err(|source| NetdevError::Syscall {
            call: "clone (spawn link watcher)",
            source,
        })?;
    Ok(LinkWatcher {
        stop: Some(stop_w),
        thread: Some(thread),
    })
}

type Known = HashMap<u32, (String, LinkState, bool)>;

/// Applies one link message to `known`; returns the event to send, if anything changed.
pub(crate) fn apply(known: &mut Known, msg: &RouteNetlinkMessage) -> Option<LinkEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(l) if is_link(l) => changed(known, l),
        RouteNetlinkMessage::DelLink(l) if is_link(l) => Some(removed(known, l)),
        _ => None,
    }
}

/// RTNLGRP_LINK also carries AF_BRIDGE port notifications; only AF_UNSPEC is about links.
fn is_link(l: &LinkMessage) -> bool {
    l.header.interface_family == AddressFamily::Unspec
}

fn changed(known: &mut Known, msg: &LinkMessage) -> Option<LinkEvent> {
    let l = match parse_link(msg) {
        Ok(l) => l,
        Err(detail) => {
            tracing::warn!(%detail, "ignoring malformed RTM_NEWLINK");
            return None;
        }
    };
    let admin_up = l.admin_up();
    let now = (l.name.clone(), l.state, admin_up);
    if known.get(&l.ifindex) == Some(&now) {
        return None;
    }
    known.insert(l.ifindex, now);
    Some(LinkEvent {
        ifindex: l.ifindex,
        name: l.name,
        kind: LinkEventKind::Changed {
            state: l.state,
            admin_up,
        },
    })
}

fn removed(known: &mut Known, msg: &LinkMessage) -> LinkEvent {
    let index = msg.header.index;
    let old = known.remove(&index);
    let name = parse_link(msg)
        .map(|l| l.name)
        .ok()
        .or(old.map(|o| o.0))
        .unwrap_or_default();
    LinkEvent {
        ifindex: index,
        name,
        kind: LinkEventKind::Removed,
    }
}

/// The link messages of one notification datagram; undecodable ones are logged and skipped.
fn notifications(data: &[u8]) -> Vec<RouteNetlinkMessage> {
    const OP: &str = "RTNLGRP_LINK notification";
    let parts = match nl::split_datagram(data) {
        Ok(p) => p,
        Err(detail) => {
            tracing::warn!(%detail, "link watcher: malformed datagram");
            return Vec::new();
        }
    };
    parts
        .into_iter()
        .filter_map(|bytes| match nl::decode::<RouteNetlinkMessage>(OP, bytes) {
            Ok(NetlinkMessage {
                payload: NetlinkPayload::InnerMessage(m),
                ..
            }) => Some(m),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "link watcher: ignoring a notification");
                None
            }
        })
        .collect()
}

fn send(tx: &Sender<LinkEvent>, ev: LinkEvent) -> ControlFlow<()> {
    tracing::debug!(?ev, "link event");
    match tx.send(ev) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    }
}

/// Re-reads every link and sends what differs from `known`.
fn resync(requests: &mut NlSocket, known: &mut Known, tx: &Sender<LinkEvent>) -> ControlFlow<()> {
    let links = match discover::dump_links(requests) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "link watcher cannot list links");
            return ControlFlow::Continue(());
        }
    };
    let mut seen = Known::new();
    for l in links {
        let now = (l.name.clone(), l.state, l.admin_up());
        if known.get(&l.ifindex) != Some(&now) {
            send(
                tx,
                LinkEvent {
                    ifindex: l.ifindex,
                    name: l.name,
                    kind: LinkEventKind::Changed {
                        state: now.1,
                        admin_up: now.2,
                    },
                },
            )?;
        }
        seen.insert(l.ifindex, now);
    }
    for (ifindex, (name, _, _)) in known.drain() {
        if !seen.contains_key(&ifindex) {
            send(
                tx,
                LinkEvent {
                    ifindex,
                    name,
                    kind: LinkEventKind::Removed,
                },
            )?;
        }
    }
    *known = seen;
    ControlFlow::Continue(())
}

fn run(mut events: NlSocket, mut requests: NlSocket, stop: OwnedFd, tx: Sender<LinkEvent>) {
    let mut known = Known::new();
    if resync(&mut requests, &mut known, &tx).is_break() {
        return;
    }
    loop {
        let mut fds = [
            libc::pollfd {
                fd: events.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd for the length passed.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "link watcher: poll failed; stopping");
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if drain(&mut events, &mut requests, &mut known, &tx).is_break() {
            return;
        }
    }
}

/// Handles every queued notification.
fn drain(
    events: &mut NlSocket,
    requests: &mut NlSocket,
    known: &mut Known,
    tx: &Sender<LinkEvent>,
) -> ControlFlow<()> {
    loop {
        let pending: Vec<LinkEvent> = match events.recv(true) {
            Ok(data) => notifications(data)
                .iter()
                .filter_map(|m| apply(known, m))
                .collect(),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return ControlFlow::Continue(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!("link watcher: notifications lost (ENOBUFS); re-reading links");
                resync(requests, known, tx)?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "link watcher: dropped datagram; re-reading links");
                resync(requests, known, tx)?;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "link watcher: recv failed; stopping");
                return ControlFlow::Break(());
            }
        };
        for ev in pending {
            send(tx, ev)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use netlink_packet_route::link::{LinkAttribute, LinkFlags, State};

    fn link(family: AddressFamily, index: u32, up: bool, name: &str, state: State) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.interface_family = family;
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::OperState(state));
        m
    }

    #[test]
    fn changes_are_deduplicated_and_removals_named() {
        let mut known = Known::new();
        let p = RouteNetlinkMessage::NewLink(link(AddressFamily::Unspec, 5, true, "v0", State::Up));
        let ev = apply(&mut known, &p).unwrap();
        assert_eq!(
            ev.kind,
            LinkEventKind::Changed {
                state: LinkState::Up,
                admin_up: true
            }
        );
        assert_eq!(apply(&mut known, &p), None);
        let down =
            RouteNetlinkMessage::NewLink(link(AddressFamily::Unspec, 5, false, "v0", State::Down));
        assert_eq!(
            apply(&mut known, &down).unwrap().kind,
            LinkEventKind::Changed {
                state: LinkState::Down,
                admin_up: false
            }
        );
        // DELLINK without a name attribute still gets the last known name
        let mut del = LinkMessage::default();
        del.header.index = 5;
        let ev = apply(&mut known, &RouteNetlinkMessage::DelLink(del)).unwrap();
        assert_eq!((ev.ifindex, ev.name.as_str()), (5, "v0"));
        assert_eq!(ev.kind, LinkEventKind::Removed);
        assert!(known.is_empty());
    }

    #[test]
    fn bridge_port_notifications_are_ignored() {
        let mut known = Known::new();
        let p = link(AddressFamily::Bridge, 5, false, "v0", State::Up);
        let del = RouteNetlinkMessage::DelLink(p.clone());
        assert_eq!(apply(&mut known, &del), None);
        assert_eq!(apply(&mut known, &RouteNetlinkMessage::NewLink(p)), None);
    }
}
