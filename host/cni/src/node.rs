//! The node API client: ask afxdp-dp about a device, tell it a device is released.

use std::path::Path;
use std::time::Duration;

use afxdp_proto::nodeapi::{node_api_client::NodeApiClient, DeviceRef, DeviceSettings, GcRequest};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("afxdp-dp node API at {path} unreachable: {detail}")]
    Unreachable { path: String, detail: String },
    #[error("afxdp-dp refused: {0}")]
    Refused(String),
}

/// One blocking client (a current-thread runtime: the CNI is short-lived).
pub struct NodeClient {
    rt: tokio::runtime::Runtime,
    client: NodeApiClient<tonic::transport::Channel>,
}

impl NodeClient {
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, NodeError> {
        let unreachable = |detail: String| NodeError::Unreachable {
            path: path.display().to_string(),
            detail,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let ch = rt
            .block_on(afxdp_proto::unix::connect(path, timeout))
            .map_err(|e| unreachable(format!("{e}: {}", source_chain(&e))))?;
        Ok(Self {
            rt,
            client: NodeApiClient::new(ch),
        })
    }

    pub fn settings(&mut self, dev: DeviceRef) -> Result<DeviceSettings, NodeError> {
        let c = &mut self.client;
        self.rt
            .block_on(c.get_device_settings(dev))
            .map(|r| r.into_inner())
            .map_err(refused)
    }

    /// Releases `dev.device`, or with an empty one the device the
    /// attachment claimed; returns whether a device was freed and which.
    pub fn release(&mut self, dev: DeviceRef) -> Result<(bool, String), NodeError> {
        let c = &mut self.client;
        self.rt
            .block_on(c.release_device(dev))
            .map(|r| {
                let r = r.into_inner();
                (r.released, r.device)
            })
            .map_err(refused)
    }

    /// CNI STATUS: `Err(reason)` when afxdp-dp is not ready.
    pub fn status(&mut self) -> Result<Result<(), String>, NodeError> {
        let c = &mut self.client;
        self.rt
            .block_on(c.get_status(afxdp_proto::nodeapi::StatusRequest {}))
            .map(|r| {
                let s = r.into_inner();
                if s.ready {
                    Ok(())
                } else {
                    Err(s.reason)
                }
            })
            .map_err(refused)
    }

    /// CNI GC: the devices afxdp-dp released.
    pub fn collect_garbage(&mut self, req: GcRequest) -> Result<Vec<String>, NodeError> {
        let c = &mut self.client;
        self.rt
            .block_on(c.collect_garbage(req))
            .map(|r| r.into_inner().released)
            .map_err(refused)
    }
}

fn refused(s: tonic::Status) -> NodeError {
    NodeError::Refused(format!("{}: {}", s.code(), s.message()))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
