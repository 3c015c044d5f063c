//! Generated protocol code, fenced here so the rest of the host speaks domain types,
//! plus the unix-socket transport every gRPC peer of afxdp-rs uses.
//!
//! - [`deviceplugin`]: kubelet device-plugin API v1beta1 (`Registration`, `DevicePlugin`).
//! - [`podresources`]: kubelet PodResources API v1 (`PodResourcesLister`).
//! - [`nodeapi`]: afxdp-cni ↔ afxdp-dp node API.
//! - [`csi`]: the CSI spec v1 (`Identity`, `Node`, `Controller`).
//! - [`pluginregistration`]: kubelet's plugin registration API v1.
//! - [`unix`]: connect a tonic client to, and serve on, a unix socket.
//! - [`limits`]: the bounds of afxdp-dp's gRPC servers.

#[allow(clippy::all, missing_docs)]
pub mod deviceplugin {
    tonic::include_proto!("v1beta1");
    /// The API version string kubelet expects in `RegisterRequest.version`.
    pub const VERSION: &str = "v1beta1";
    /// Device health values of the API.
    pub const HEALTHY: &str = "Healthy";
    /// Device health values of the API.
    pub const UNHEALTHY: &str = "Unhealthy";
}

#[allow(clippy::all, missing_docs)]
pub mod podresources {
    tonic::include_proto!("v1");
}

#[allow(clippy::all, missing_docs)]
pub mod nodeapi {
    tonic::include_proto!("afxdp.node.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod csi {
    tonic::include_proto!("csi.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
    /// `PluginInfo.type` of a CSI node plugin.
    pub const CSI_PLUGIN: &str = "CSIPlugin";
}

pub mod limits;
pub mod unix;
