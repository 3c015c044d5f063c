//! `v1beta1.Registration/Register` and the device-manager side of each
//! plugin: dial, `GetDevicePluginOptions`, then a ListAndWatch task that
//! keeps the latest snapshot, as kubelet's `connectClient`/`runClient` do.

use std::sync::Arc;
use std::time::Duration;

use afxdp_proto::deviceplugin::device_plugin_client::DevicePluginClient;
use afxdp_proto::deviceplugin::registration_server::Registration;
use afxdp_proto::deviceplugin::{Empty, RegisterRequest};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::state::{DeviceState, Health, Plugin, Shared};
use crate::validation;

/// Kubelet dials a plugin with a 10 s timeout; unary calls use the same bound.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct RegistrationService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        info!(resource = %req.resource_name, endpoint = %req.endpoint, version = %req.version, "registration request");
        if let Err(e) = validation::validate(&req) {
            warn!(resource = %req.resource_name, error = %e, "bad registration request");
            return Err(Status::invalid_argument(e.to_string()));
        }
        let generation = self.shared.read(|s| s.generation);
        let path = self.shared.dir.join(&req.endpoint);

        let channel = afxdp_proto::unix::connect(&path, CALL_TIMEOUT).await.map_err(|e| {
            warn!(resource = %req.resource_name, path = %path.display(), error = %e, "cannot dial device plugin");
            Status::unavailable(format!("failed to dial device plugin at {}: {e}", path.display()))
        })?;
        let options = DevicePluginClient::new(channel.clone())
            .get_device_plugin_options(Empty {})
            .await
            .map_err(|e| {
                warn!(resource = %req.resource_name, error = %e, "GetDevicePluginOptions failed");
                Status::unavailable(format!(
                    "GetDevicePluginOptions on {} failed: {}",
                    path.display(),
                    e.message()
                ))
            })?
            .into_inner();

        let resource = req.resource_name.clone();
        let inserted = self.shared.update(|s| {
            if s.generation != generation {
                return None;
            }
            s.next_id += 1;
            let id = s.next_id;
            // Like kubelet, the previous snapshot stays until the new
            // endpoint's first ListAndWatch answer replaces it.
            let devices = s
                .plugins
                .remove(&resource)
                .map(|old| old.devices.clone())
                .unwrap_or_default();
            s.plugins.insert(
                resource.clone(),
                Plugin {
                    id,
                    request: req,
                    options,
                    channel,
                    devices,
                    connected: true,
                    watcher: None,
                },
            );
            Some(id)
        });
        let Some(id) = inserted else {
            return Err(Status::unavailable(
                "kubelet restarted during registration; register again",
            ));
        };

        // Separate lazy channel: ListAndWatch is a long-lived stream and must
        // not carry the unary call timeout.
        let task = tokio::spawn(watch_plugin(
            self.shared.clone(),
            resource.clone(),
            id,
            afxdp_proto::unix::connect_lazy(&path),
        ));
        self.shared.update(|s| match s.plugins.get_mut(&resource) {
            Some(p) if p.id == id => p.watcher = Some(task),
            _ => task.abort(),
        });
        info!(resource = %resource, "device plugin registered");
        Ok(Response::new(Empty {}))
    }
}

/// Follow ListAndWatch of registration `id` until the stream ends, then
/// mark the plugin gone and its devices unhealthy (kubelet's
/// `markResourceUnhealthy` on disconnect).
async fn watch_plugin(shared: Arc<Shared>, resource: String, id: u64, channel: Channel) {
    let mut client = DevicePluginClient::new(channel);
    let why = match client.list_and_watch(Empty {}).await {
        Err(status) => format!("ListAndWatch refused: {status}"),
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        let devices: Vec<DeviceState> =
                            msg.devices.iter().map(DeviceState::from_wire).collect();
                        info!(resource = %resource, count = devices.len(), "ListAndWatch update");
                        shared.update(|s| {
                            if let Some(p) = s.plugins.get_mut(&resource).filter(|p| p.id == id) {
                                p.devices = devices;
                            }
                        });
                    }
                    Ok(None) => break "ListAndWatch stream closed by the plugin".to_string(),
                    Err(status) => break format!("ListAndWatch failed: {status}"),
                }
            }
        }
    };
    warn!(resource = %resource, reason = %why, "device plugin gone");
    shared.update(|s| {
        if let Some(p) = s.plugins.get_mut(&resource).filter(|p| p.id == id) {
            p.connected = false;
            // The task is ending on its own; do not let Drop abort it mid-update.
            p.watcher = None;
            for d in &mut p.devices {
                d.health = Health::Unhealthy;
            }
        }
    });
}
