//! The network configuration afxdp-cni reads on stdin, and the CNI_* environment.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{CniError, Code};

/// The spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// Default node API socket of afxdp-dp.
pub const DEFAULT_NODE_API_SOCKET: &str = "/run/afxdp/node.sock";

/// Runtime config passed by the runtime or Multus.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(rename = "deviceID", alias = "deviceId")]
    pub device_id: Option<String>,
}

/// The plugin's network configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Multus injects the allocated device here.
    #[serde(rename = "deviceID", alias = "deviceId", default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub node_api_socket: Option<PathBuf>,
    /// Milliseconds to wait for afxdp-dp.
    #[serde(default)]
    pub node_api_timeout_ms: Option<u64>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Where ADD records what it programmed for DEL (filter rule locations).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    /// The IPAM plugin to delegate to (`type`, and its own settings).
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    /// GC: the attachments the runtime still has (spec 1.1).
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Vec<ValidAttachment>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                "failed to decode network configuration",
                e.to_string(),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                "incompatible CNI version",
                format!(
                    "config has {}, supported: {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        Ok(conf)
    }

    /// The device to plumb: `runtimeConfig.deviceID`, else `deviceID`.
    pub fn device(&self) -> Result<&str, CniError> {
        self.runtime_config
            .device_id
            .as_deref()
            .or(self.device_id.as_deref())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    "no device",
                    "set deviceID or runtimeConfig.deviceID (Multus does)",
                )
            })
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::filters::DEFAULT_CACHE_DIR))
    }

    pub fn node_api_socket(&self) -> PathBuf {
        self.node_api_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_API_SOCKET))
    }
}

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: HashMap<String, String>,
}

impl Env {
    /// Read and check the variables `command` needs.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = get("CNI_COMMAND")
            .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_COMMAND is not set", ""))?;
        let need = |k: &str| {
            get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("{k} is required for {command}"),
                    "",
                )
            })
        };
        let (container_id, netns, ifname) = match command.as_str() {
            "ADD" | "CHECK" => (
                need("CNI_CONTAINERID")?,
                Some(PathBuf::from(need("CNI_NETNS")?)),
                need("CNI_IFNAME")?,
            ),
            "DEL" => (
                need("CNI_CONTAINERID")?,
                get("CNI_NETNS")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                need("CNI_IFNAME")?,
            ),
            _ => (String::new(), None, String::new()),
        };
        let args = get("CNI_ARGS")
            .map(|a| {
                a.split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_netns_ifname_and_container() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "net1"),
        ])
        .expect_err("no netns");
        assert_eq!(e.code, Code::InvalidEnv as u32);
        assert!(e.msg.contains("CNI_NETNS"), "{e:?}");
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "net1"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"),
        ])
        .expect("valid");
        assert_eq!(ok.args.get("K8S_POD_NAME").map(String::as_str), Some("p"));
    }

    #[test]
    fn del_tolerates_missing_netns() {
        let ok = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "net1"),
        ])
        .expect("valid");
        assert_eq!(ok.netns, None);
    }

    #[test]
    fn config_versions_and_device() {
        let bad = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"afxdp-cni"}"#)
            .expect_err("version");
        assert_eq!(bad.code, Code::IncompatibleVersion as u32);
        let garbage = NetConf::parse(b"{").expect_err("decode");
        assert_eq!(garbage.code, Code::Decode as u32);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"afxdp-cni","deviceID":"a","runtimeConfig":{"deviceID":"b"}}"#,
        )
        .expect("valid");
        assert_eq!(c.device().expect("device"), "b");
        let none = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"afxdp-cni"}"#)
            .expect("valid");
        assert_eq!(
            none.device().expect_err("no device").code,
            Code::InvalidConfig as u32
        );
        assert_eq!(
            none.node_api_socket(),
            PathBuf::from(DEFAULT_NODE_API_SOCKET)
        );
    }
}
