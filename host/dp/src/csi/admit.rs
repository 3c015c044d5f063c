//! Allocate's side of the CSI mode: once a pool with sharing `csi` has
//! allocated devices to the pod kubelet is admitting, annotate that pod
//! (JSON merge patch) with each device's entry, so that `NodePublishVolume`
//! finds them. Async (the API call, bounded by [`PodDirectory`]'s timeout);
//! a failure releases what was just allocated and fails the Allocate.

use std::sync::Arc;

use super::annotations::{self, AnnotationError};
use crate::agent::{Agent, ReleaseBy};
use crate::pods::{PodDirectory, PodsError};

#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    #[error("pool {pool} shares its maps through CSI ({driver}): afxdp-dp must annotate the pod kubelet is admitting and cannot tell which pod that is ({why})", driver = super::DRIVER)]
    NoPod { pool: String, why: &'static str },
    #[error("pool {pool}: {source}")]
    Annotation {
        pool: String,
        #[source]
        source: AnnotationError,
    },
    #[error("annotating pod {pod} for the CSI volume: {source}")]
    Api {
        pod: String,
        #[source]
        source: PodsError,
    },
}

/// Annotate `pod` (namespace, name) with the allocations of `devices`; on
/// failure the devices are released (the pod would get no maps) and the
/// error says why.
pub async fn annotate_admitted(
    pods: Option<&PodDirectory>,
    agent: &Arc<Agent>,
    pool: &str,
    pod: (&str, &str),
    devices: &[String],
) -> Result<(), AnnotateError> {
    let result = annotate(pods, agent, pool, pod, devices).await;
    if result.is_err() {
        release(agent, devices).await;
    }
    result
}

async fn annotate(
    pods: Option<&PodDirectory>,
    agent: &Arc<Agent>,
    pool: &str,
    (namespace, name): (&str, &str),
    devices: &[String],
) -> Result<(), AnnotateError> {
    let no_pod = |why| AnnotateError::NoPod {
        pool: pool.into(),
        why,
    };
    let pods = pods.ok_or_else(|| no_pod("no API server"))?;
    if name.is_empty() {
        return Err(no_pod(
            "no pending pod on this node fits the request, or PodResources is unavailable; see afxdp-dp's log",
        ));
    }
    let allocations: Vec<_> = devices.iter().filter_map(|d| agent.allocation(d)).collect();
    let wanted =
        annotations::for_allocations(&allocations).map_err(|source| AnnotateError::Annotation {
            pool: pool.into(),
            source,
        })?;
    pods.annotate(namespace, name, &wanted)
        .await
        .map_err(|source| AnnotateError::Api {
            pod: format!("{namespace}/{name}"),
            source,
        })?;
    tracing::info!(pod = %format!("{namespace}/{name}"), ?devices, "pod annotated for its CSI volume");
    Ok(())
}

async fn release(agent: &Arc<Agent>, devices: &[String]) {
    let (agent, devices) = (agent.clone(), devices.to_vec());
    let done = tokio::task::spawn_blocking(move || {
        for d in &devices {
            if let Err(e) = agent.release(d, ReleaseBy::Operator) {
                tracing::error!(device = %d, error = %e, "releasing after a failed annotation");
            }
        }
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "release task after a failed annotation");
    }
}
