//! Link events from the host netns: a pool device changed or left.

use super::Agent;

impl Agent {
    /// Apply a link event seen in the host netns.
    pub fn link_seen(&self, nd: &afxdp_netdev::NetDev) {
        let mut inner = self.lock();
        if let Some(c) = inner.inventory.device_seen(nd) {
            tracing::info!(pool = %c.pool, device = %c.device, state = ?nd.state, ifindex = nd.ifindex, "device changed");
            self.publish_locked(&inner, &c.pool);
        }
    }

    /// A link left the host netns (by ifindex, as netlink reports it).
    pub fn link_gone(&self, ifindex: u32, name: Option<&str>) {
        let mut inner = self.lock();
        let name = match name {
            Some(n) => Some(n.to_string()),
            None => inner.inventory.name_of_ifindex(ifindex),
        };
        let Some(name) = name else { return };
        if let Some(c) = inner.inventory.device_gone(&name) {
            let allocated = inner.state.allocations.contains_key(&name);
            tracing::info!(pool = %c.pool, device = %c.device, allocated, "device left the host netns");
            self.publish_locked(&inner, &c.pool);
        }
    }
}
