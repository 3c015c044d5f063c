//! Link events from the host netns: a pool device changed or left.

use super::Agent;

impl Agent {
    /// Apply a link event seen in the host netns. A free pool device that
    /// comes back (a CNI DEL moved it, down, after its release) is set up
    /// and prepared again, as a release does when the device is back first.
    /// Blocks (netlink, attach) on the link watcher's thread.
    pub fn link_seen(&self, nd: &afxdp_netdev::NetDev) {
        let mut inner = self.lock();
        let came_back = inner.inventory.device(&nd.name).is_some_and(|d| !d.present)
            && !nd.admin_up
            && !inner.state.allocations.contains_key(&nd.name)
            && !inner.busy.contains(&nd.name);
        let Some(c) = inner.inventory.device_seen(nd) else {
            return;
        };
        tracing::info!(pool = %c.pool, device = %c.device, state = ?nd.state, ifindex = nd.ifindex, came_back, "device changed");
        self.publish_locked(&inner, &c.pool);
        drop(inner);
        if came_back {
            self.return_to_pool(&c.device, &c.pool);
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
