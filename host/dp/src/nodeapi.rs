//! The node API afxdp-cni talks to: device settings for ADD/CHECK, release on DEL.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use afxdp_proto::nodeapi::{self as api, node_api_server::NodeApi, node_api_server::NodeApiServer};

use crate::agent::{Agent, Claimant, NetnsId, ReleaseBy, ReleaseError, Released};

/// The node API's bounds (see `afxdp_proto::limits`): afxdp-cni sends one
/// small request per call; a settings call runs at most a policy call.
pub static LIMITS: std::sync::LazyLock<afxdp_proto::limits::Limits> =
    std::sync::LazyLock::new(afxdp_proto::limits::Limits::default);

pub struct NodeApiService {
    agent: Arc<Agent>,
    pods: Option<crate::pods::PodDirectory>,
    /// This node's name (the source of the Events it posts).
    node: String,
}

impl NodeApiService {
    pub fn new(
        agent: Arc<Agent>,
        pods: Option<crate::pods::PodDirectory>,
        node: String,
    ) -> NodeApiServer<Self> {
        NodeApiServer::new(Self { agent, pods, node }).max_decoding_message_size(LIMITS.max_message)
    }

    /// A failed CNI ADD/CHECK settings call as a Warning Event on its pod
    /// (best effort, when the API server is reachable).
    async fn report_failure(&self, namespace: &str, name: &str, message: &str) {
        let (Some(dir), false) = (&self.pods, namespace.is_empty() || name.is_empty()) else {
            return;
        };
        if let Err(e) = dir
            .warn(
                (namespace, name),
                "DeviceSettingsFailed",
                message,
                &self.node,
            )
            .await
        {
            tracing::warn!(namespace, name, error = %e, "settings failure event not posted");
        }
    }

    /// The pod as policies see it: name from the CNI, metadata from the API server.
    async fn pod(&self, namespace: &str, name: &str) -> afxdp_policy::Pod {
        let mut pod = afxdp_policy::Pod {
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        };
        if let (Some(dir), false) = (&self.pods, namespace.is_empty() || name.is_empty()) {
            match dir.lookup(namespace, name).await {
                Ok(Some(meta)) => {
                    pod.annotations = meta.annotations;
                    pod.labels = meta.labels;
                }
                Ok(None) => tracing::warn!(namespace, name, "pod not found in the API server"),
                Err(e) => tracing::warn!(namespace, name, error = %e, "pod metadata unavailable"),
            }
        }
        pod
    }
}

fn release_status(e: &ReleaseError) -> Status {
    match e {
        ReleaseError::Detach { .. } | ReleaseError::Subfunction { .. } => {
            Status::internal(e.to_string())
        }
        ReleaseError::Busy(_) | ReleaseError::State(_) => Status::unavailable(e.to_string()),
    }
}

/// The container a CNI request comes from.
fn claimant(r: &api::DeviceRef) -> Claimant {
    Claimant {
        container_id: r.container_id.clone(),
        pod_namespace: r.pod_namespace.clone(),
        pod_name: r.pod_name.clone(),
        netns: (r.netns_ino != 0).then_some(NetnsId {
            dev: r.netns_dev,
            ino: r.netns_ino,
        }),
        network: r.network.clone(),
        ifname: r.ifname.clone(),
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
        let mut addresses = Vec::new();
        for a in &r.addresses {
            addresses.push(
                a.parse::<std::net::IpAddr>()
                    .map_err(|_| Status::invalid_argument(format!("bad address {a:?}")))?,
            );
        }
        let pod = self.pod(&r.pod_namespace, &r.pod_name).await;
        let agent = self.agent.clone();
        let device = r.device.clone();
        let who = claimant(&r);
        let settings = afxdp_policy::Blocking::spawn(move |b| {
            agent.device_settings(b, &device, &who, pod, &addresses)
        })
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        let settings = match settings {
            Ok(s) => s,
            Err(e) => {
                self.report_failure(&r.pod_namespace, &r.pod_name, &e.to_string())
                    .await;
                return Err(crate::deviceplugin::allocate_status(&e));
            }
        };
        let out = match settings {
            Some(s) => api::DeviceSettings {
                device: s.allocation.device.clone(),
                pool: s.allocation.pool.clone(),
                allocated: true,
                sharing_mode: s.allocation.sharing.as_str().to_string(),
                queues: s.allocation.queues.clone(),
                channels: s.allocation.channels,
                program: s.allocation.program_id.to_string(),
                filter_rules: s.filter_rules.iter().map(rule_to_wire).collect(),
                filters_required: s.filters_required,
                policy_digest: s.policy_digest.unwrap_or_default(),
                pci_address: s.allocation.netdev.pci.clone().unwrap_or_default(),
                netdev: s
                    .allocation
                    .subfunction
                    .as_ref()
                    .map(|sf| sf.netdev.clone())
                    .unwrap_or_default(),
            },
            None => api::DeviceSettings {
                device: r.device,
                allocated: false,
                ..Default::default()
            },
        };
        Ok(Response::new(out))
    }

    async fn release_device(
        &self,
        req: Request<api::DeviceRef>,
    ) -> Result<Response<api::ReleaseResult>, Status> {
        let mut r = req.into_inner();
        let agent = self.agent.clone();
        if r.device.is_empty() {
            // A DEL without a deviceID: the device its attachment claimed.
            match claimed_device(&agent, &r) {
                Some(device) => r.device = device,
                None => {
                    tracing::info!(container = %r.container_id, ifname = %r.ifname, network = %r.network, "release without a device: the attachment claims none");
                    return Ok(Response::new(api::ReleaseResult::default()));
                }
            }
        }
        let span = tracing::info_span!("release", device = %r.device, container = %r.container_id);
        let who = claimant(&r);
        let device_name = r.device.clone();
        // The release is durable once begun: DEL is answered then, and the
        // detach goes on behind it (the device stays busy until it is done;
        // a crash before that is finished at the next start).
        let begun = tokio::task::spawn_blocking({
            let (agent, span) = (agent.clone(), span.clone());
            move || span.in_scope(|| agent.begin_release(&r.device, ReleaseBy::Cni(&who)))
        })
        .await
        .map_err(|e| Status::internal(format!("release task: {e}")))?
        .map_err(|e| release_status(&e))?;
        let released = match begun {
            Ok(pending) => {
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| {
                        if let Err(e) = agent.finish_release(pending) {
                            tracing::error!(error = %e, "finishing the release failed; the next start retries");
                        }
                    })
                });
                true
            }
            Err(outcome) => outcome == Released::Freed,
        };
        Ok(Response::new(api::ReleaseResult {
            released,
            device: device_name,
        }))
    }

    async fn get_status(
        &self,
        _: Request<api::StatusRequest>,
    ) -> Result<Response<api::NodeStatus>, Status> {
        let (ready, reason) = match self.agent.metrics().ready() {
            Ok(()) => (true, String::new()),
            Err(why) => (false, why),
        };
        Ok(Response::new(api::NodeStatus { ready, reason }))
    }

    async fn collect_garbage(
        &self,
        req: Request<api::GcRequest>,
    ) -> Result<Response<api::GcResult>, Status> {
        let r = req.into_inner();
        if r.network.is_empty() {
            return Err(Status::invalid_argument("network is empty"));
        }
        let valid: std::collections::BTreeSet<(String, String)> = r
            .valid
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        let agent = self.agent.clone();
        let span = tracing::info_span!("gc", network = %r.network, valid = valid.len());
        let released = tokio::task::spawn_blocking(move || {
            span.in_scope(|| agent.collect_garbage(&r.network, &valid))
        })
        .await
        .map_err(|e| Status::internal(format!("gc task: {e}")))?;
        Ok(Response::new(api::GcResult { released }))
    }
}

/// Bind the node API socket (root-only: 0600).
pub fn bind(path: &Path) -> std::io::Result<afxdp_proto::limits::BoundedIncoming> {
    use std::os::unix::fs::PermissionsExt;
    let incoming = LIMITS.bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(incoming)
}

/// A policy's filter rule on the wire (validated by the policy host already).
fn rule_to_wire(r: &afxdp_policy::FilterRule) -> api::FilterRule {
    let ip = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (drop, queue) = match r.action {
        afxdp_policy::RuleAction::Drop => (true, 0),
        afxdp_policy::RuleAction::Queue(q) => (false, q),
    };
    api::FilterRule {
        flow_type: r.flow_type.as_str().to_string(),
        src_ip: ip(r.src_ip),
        src_ip_mask: ip(r.src_ip_mask),
        dst_ip: ip(r.dst_ip),
        dst_ip_mask: ip(r.dst_ip_mask),
        src_port: r.src_port.map(u32::from).unwrap_or(0),
        src_port_mask: r.src_port_mask.map(u32::from).unwrap_or(0),
        dst_port: r.dst_port.map(u32::from).unwrap_or(0),
        dst_port_mask: r.dst_port_mask.map(u32::from).unwrap_or(0),
        drop,
        queue,
    }
}

/// The device `r`'s attachment (container, network, ifname) claimed at CNI
/// ADD, if any; `None` when the request does not say which attachment.
fn claimed_device(agent: &Agent, r: &api::DeviceRef) -> Option<String> {
    if r.container_id.is_empty() || r.ifname.is_empty() {
        return None;
    }
    agent.claimed_device(&r.container_id, &r.network, &r.ifname)
}
