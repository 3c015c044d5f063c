//! Link events from the watcher to the agent, in batches: every event
//! already queued is taken at once, only the last per link is kept, and a
//! large batch re-reads the links with one dump instead of one lookup per
//! link.
//!
//! One lookup (`afxdp_netdev::get`) dumps the namespace's addresses, so it
//! grows with the node: about 3 ms at 1,024 netdevs. The burst of events
//! afxdp-dp's own bring-up of a large pool makes (a thousand links up)
//! took seconds one by one, and a link change behind it waited for all of
//! them (the bench's ListAndWatch rows: 0.8 s for the first change at 1,024
//! netdevs). One dump of everything costs about ten lookups.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;

use afxdp_netdev::{LinkEvent, LinkEventKind, NetDev};

use crate::agent::Agent;

/// Distinct links in a batch above which one dump of all links is cheaper
/// than a lookup per link.
const DUMP_ABOVE: usize = 8;

/// Applies `events` to `agent` until the watcher's sender is dropped.
/// Blocks (netlink, attach): run it on a blocking thread.
pub fn apply_all(agent: &Agent, events: &Receiver<LinkEvent>) {
    while let Ok(first) = events.recv() {
        let batch = coalesce(first, events.try_iter());
        if batch.len() > DUMP_ABOVE {
            apply_from_dump(agent, batch);
        } else {
            for ev in batch {
                apply_one(agent, ev);
            }
        }
    }
}

/// `first` and the events queued behind it, the last per link (by
/// ifindex), in the order each link last changed.
fn coalesce(first: LinkEvent, queued: impl Iterator<Item = LinkEvent>) -> Vec<LinkEvent> {
    let mut last: HashMap<u32, usize> = HashMap::new();
    let mut batch: Vec<Option<LinkEvent>> = Vec::new();
    for ev in std::iter::once(first).chain(queued) {
        if let Some(i) = last.insert(ev.ifindex, batch.len()) {
            batch[i] = None;
        }
        batch.push(Some(ev));
    }
    batch.into_iter().flatten().collect()
}

/// One event, the device looked up by name.
fn apply_one(agent: &Agent, ev: LinkEvent) {
    match ev.kind {
        LinkEventKind::Removed => agent.link_gone(ev.ifindex, Some(&ev.name)),
        LinkEventKind::Changed { .. } => match afxdp_netdev::get(&ev.name) {
            Ok(found) => apply_found(agent, &ev, found.as_ref()),
            Err(e) => tracing::warn!(device = %ev.name, error = %e, "refreshing device failed"),
        },
    }
}

/// A batch, the devices read with one dump (each event as [`apply_one`]
/// would apply it, if that fails).
fn apply_from_dump(agent: &Agent, batch: Vec<LinkEvent>) {
    let netdevs = match afxdp_netdev::list() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, links = batch.len(), "reading all links failed; one by one");
            batch.into_iter().for_each(|ev| apply_one(agent, ev));
            return;
        }
    };
    tracing::debug!(links = batch.len(), "link events applied from one dump");
    let by_name: HashMap<&str, &NetDev> = netdevs.iter().map(|n| (n.name.as_str(), n)).collect();
    for ev in batch {
        match ev.kind {
            LinkEventKind::Removed => agent.link_gone(ev.ifindex, Some(&ev.name)),
            LinkEventKind::Changed { .. } => {
                apply_found(agent, &ev, by_name.get(ev.name.as_str()).copied());
            }
        }
    }
}

/// A changed link as found now: seen, or gone when no longer here.
fn apply_found(agent: &Agent, ev: &LinkEvent, found: Option<&NetDev>) {
    match found {
        Some(nd) => agent.link_seen(nd),
        None => agent.link_gone(ev.ifindex, Some(&ev.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use afxdp_netdev::LinkState;

    fn changed(ifindex: u32, name: &str, admin_up: bool) -> LinkEvent {
        LinkEvent {
            ifindex,
            name: name.into(),
            kind: LinkEventKind::Changed {
                state: LinkState::Other,
                admin_up,
            },
        }
    }

    #[test]
    fn the_last_event_per_link_is_kept_in_the_order_links_last_changed() {
        let gone = LinkEvent {
            ifindex: 2,
            name: "b".into(),
            kind: LinkEventKind::Removed,
        };
        let batch = coalesce(
            changed(1, "a", false),
            [
                changed(2, "b", true),
                changed(3, "c", true),
                changed(1, "a", true),
                gone.clone(),
            ]
            .into_iter(),
        );
        assert_eq!(
            batch,
            vec![changed(3, "c", true), changed(1, "a", true), gone]
        );
    }

    #[test]
    fn a_renamed_link_keeps_its_current_name() {
        let batch = coalesce(
            changed(7, "old", true),
            [changed(7, "new", true)].into_iter(),
        );
        assert_eq!(batch, vec![changed(7, "new", true)]);
    }
}
