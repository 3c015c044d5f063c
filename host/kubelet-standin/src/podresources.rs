//! `v1.PodResourcesLister` served from the assignments the stand-in recorded.
//!
//! Like kubelet, every device is reported as its own `ContainerDevices`
//! entry carrying that device's NUMA topology, so clients must merge
//! entries of the same resource.

use std::sync::Arc;

use afxdp_proto::podresources::pod_resources_lister_server::PodResourcesLister;
use afxdp_proto::podresources::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, NumaNode, PodResources, TopologyInfo,
};
use tonic::{Request, Response, Status};

use crate::state::{PodDevices, Shared, State};

pub(crate) struct PodResourcesService {
    pub shared: Arc<Shared>,
}

fn topology(numa_nodes: Vec<i64>) -> Option<TopologyInfo> {
    (!numa_nodes.is_empty()).then(|| TopologyInfo {
        nodes: numa_nodes.into_iter().map(|id| NumaNode { id }).collect(),
    })
}

fn device_entry(state: &State, resource: &str, id: &str) -> ContainerDevices {
    ContainerDevices {
        resource_name: resource.to_string(),
        device_ids: vec![id.to_string()],
        topology: topology(state.numa_nodes(resource, id)),
    }
}

fn pod_resources(
    state: &State,
    namespace: &str,
    name: &str,
    containers: &PodDevices,
) -> PodResources {
    PodResources {
        name: name.to_string(),
        namespace: namespace.to_string(),
        containers: containers
            .iter()
            .map(|(container, per_resource)| ContainerResources {
                name: container.clone(),
                devices: per_resource
                    .iter()
                    .flat_map(|(resource, ids)| ids.iter().map(move |id| (resource, id)))
                    .map(|(resource, id)| device_entry(state, resource, id))
                    .collect(),
                cpu_ids: Vec::new(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl PodResourcesLister for PodResourcesService {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        let pod_resources = self.shared.read(|s| {
            s.pods
                .iter()
                .map(|((namespace, name), containers)| {
                    pod_resources(s, namespace, name, containers)
                })
                .collect()
        });
        Ok(Response::new(ListPodResourcesResponse { pod_resources }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        let devices = self.shared.read(|s| {
            let mut resources: Vec<&String> = s
                .plugins
                .iter()
                .filter(|(_, p)| p.connected)
                .map(|(r, _)| r)
                .collect();
            resources.sort();
            resources
                .into_iter()
                .flat_map(|r| s.plugins[r].devices.iter().map(move |d| (r, d)))
                .map(|(r, d)| ContainerDevices {
                    resource_name: r.clone(),
                    device_ids: vec![d.id.clone()],
                    topology: topology(d.numa_nodes.clone()),
                })
                .collect()
        });
        Ok(Response::new(AllocatableResourcesResponse {
            devices,
            cpu_ids: Vec::new(),
        }))
    }

    async fn get(
        &self,
        request: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        let req = request.into_inner();
        let key = (req.pod_namespace, req.pod_name);
        let found = self.shared.read(|s| {
            s.pods
                .get(&key)
                .map(|c| pod_resources(s, &key.0, &key.1, c))
        });
        match found {
            Some(pod) => Ok(Response::new(GetPodResourcesResponse {
                pod_resources: Some(pod),
            })),
            // Kubelet answers with a plain error (code Unknown); NotFound is
            // what it means, and clients should not rely on either code.
            None => Err(Status::not_found(format!(
                "pod {} in namespace {} not found",
                key.1, key.0
            ))),
        }
    }
}
