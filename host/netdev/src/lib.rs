//! Host network devices for afxdp-rs: discovery (rtnetlink, ethtool, sysfs), a link watcher,
//! network-namespace moves and ethtool channel settings.
//!
//! Everything here is synchronous and blocking; the daemon calls it from `spawn_blocking`,
//! the CNI binary directly. Functions act on the network namespace of the calling thread
//! unless they take a [`NetnsHandle`]; use [`in_netns`] to run any of them elsewhere.
//!
//! Netlink goes through the rust-netlink crates (`netlink-packet-route`, `netlink-packet-generic`
//! and the `ethtool` crate's message types) over a blocking `netlink-sys` socket, with no async
//! runtime. The `SIOCETHTOOL` ioctl remains for driver info and speed (see [`ethtool`]) and for
//! ntuple rules, which ethtool netlink has no command for (see [`ntuple`]). devlink subfunction
//! ports (for `cdq` mode) go over the same generic-netlink plumbing (see [`devlink`]).
//!
//! Most operations need `CAP_NET_ADMIN`; entering a namespace needs `CAP_SYS_ADMIN`.
#![deny(missing_docs)]

pub mod addr;
pub mod devlink;
pub mod discover;
mod error;
pub mod ethtool;
mod netdev;
pub mod netns;
mod nl;
pub mod ntuple;
pub mod watch;

pub use addr::{add_address, add_route, routes, Route};
pub use discover::{default_route_interfaces, get, list};
pub use error::NetdevError;
pub use ethtool::{ChannelCounts, Channels, DriverInfo};
pub use netdev::{LinkState, NetDev};
pub use netns::{
    in_netns, link_exists, move_link, set_link_down, set_link_up, set_mtu, NetnsHandle,
};
pub use watch::{spawn_link_watcher, spawn_link_watcher_in, LinkEvent, LinkEventKind, LinkWatcher};
