//! The node API afxdp-cni talks to: device settings for ADD/CHECK, release on DEL.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use afxdp_proto::nodeapi::{self as api, node_api_server::NodeApi, node_api_server::NodeApiServer};

use crate::agent::{Agent, ReleaseError};

pub struct NodeApiService {
    agent: Arc<Agent>,
}

impl NodeApiService {
    pub fn new(agent: Arc<Agent>) -> NodeApiServer<Self> {
        NodeApiServer::new(Self { agent })
    }
}

fn release_status(e: &ReleaseError) -> Status {
    match e {
        ReleaseError::Detach { .. } => Status::internal(e.to_string()),
        ReleaseError::State(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl NodeApi for NodeApiService {
    async fn get_device_settings(
        &self,
        req: Request<api::DeviceRef>,
    ) -> Result<Response<api::DeviceSettings>, Status> {
        let r = req.into_inner();
        if r.device.is_empty() {
            return Err(Status::invalid_argument("device is empty"));
        }
        let settings = match self.agent.allocation(&r.device) {
            Some(a) => api::DeviceSettings {
                device: a.device,
                pool: a.pool,
                allocated: true,
                sharing_mode: a.sharing.as_str().to_string(),
                queues: a.queues,
                channels: a.channels,
                program: a.program_id.to_string(),
                ..Default::default()
            },
            None => api::DeviceSettings {
                device: r.device,
                allocated: false,
                ..Default::default()
            },
        };
        Ok(Response::new(settings))
    }

    async fn release_device(
        &self,
        req: Request<api::DeviceRef>,
    ) -> Result<Response<api::ReleaseResult>, Status> {
        let r = req.into_inner();
        if r.device.is_empty() {
            return Err(Status::invalid_argument("device is empty"));
        }
        let agent = self.agent.clone();
        let span = tracing::info_span!("release", device = %r.device, container = %r.container_id);
        let released =
            tokio::task::spawn_blocking(move || span.in_scope(|| agent.release(&r.device)))
                .await
                .map_err(|e| Status::internal(format!("release task: {e}")))?
                .map_err(|e| release_status(&e))?;
        Ok(Response::new(api::ReleaseResult { released }))
    }
}

/// Bind the node API socket (root-only: 0600).
pub fn bind(path: &Path) -> std::io::Result<tokio_stream::wrappers::UnixListenerStream> {
    use std::os::unix::fs::PermissionsExt;
    let incoming = afxdp_proto::unix::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(incoming)
}
