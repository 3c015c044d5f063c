//! afxdp-dp: the node agent of afxdp-rs. It owns every eBPF program on the node,
//! serves the kubelet device-plugin API per pool, hands XSKMAPs to unprivileged
//! pods (UDS handshake or pinned map), and answers afxdp-cni over the node API.
//!
//! Module map (see DESIGN.md): [`pool`] (selectors, inventory, health),
//! [`admitting`] (which pod an Allocate is for),
//! [`agent`] (allocate/release, the sync core), [`deviceplugin`] (kubelet API,
//! registration, restart watch), [`sharing`] (UDS servers, mount paths),
//! [`handshake_backend`] + [`podresources`] (who may get a map), [`nodeapi`]
//! (CNI ↔ daemon), [`state`] (crash-safe persistence), [`recover`] (state vs.
//! kernel at start), [`csi`] (the CSI node plugin of sharing mode `csi`),
//! [`daemon`] (wiring).

pub mod admitting;
pub mod agent;
pub mod csi;
pub mod daemon;
pub mod deviceplugin;
pub mod handshake_backend;
pub mod images;
pub mod link_events;
pub mod metrics;
pub mod nodeapi;
pub mod observe;
pub mod podresources;
pub mod pods;
pub mod policies;
pub mod pool;
pub mod programs;
pub mod recover;
pub mod sharing;
pub mod state;
pub mod subfunction;
