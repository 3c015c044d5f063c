//! The CNI result of ADD (and the prevResult CHECK reads).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The device's PCI address, when it has one (spec 1.1 `pciID`).
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<serde_json::Value>,
    #[serde(default)]
    pub dns: serde_json::Value,
}

impl CniResult {
    pub fn with_interface(cni_version: &str, iface: Interface) -> Self {
        Self {
            cni_version: cni_version.to_string(),
            interfaces: vec![iface],
            ips: Vec::new(),
            routes: Vec::new(),
            dns: serde_json::json!({}),
        }
    }

    /// With an IPAM lease's addresses (on the interface), routes and DNS.
    pub fn with_lease(mut self, lease: &crate::ipam::Lease) -> Self {
        self.ips = lease.result_ips();
        self.routes.clone_from(&lease.routes);
        if let Some(dns) = &lease.dns {
            self.dns = dns.clone();
        }
        self
    }
}
