//! Control-plane timings on a lab node, shared by the benches
//! (`tests/benches/foundation.rs` and the data-path bench, `tests/bench`).

use std::time::{Duration, Instant};

use afxdp_dp::agent::ReleaseBy;

use crate::{step, Lab, LabConfig, LabError, Sharing, RESOURCE};

/// Wall time of `n` Allocate calls of one native-XDP device through the real
/// device-plugin gRPC (the kubelet stand-in), each followed by an operator
/// release (not timed). With `prepared`, afxdp-dp runs with
/// `--prepare-attachments`. `between` runs after each release, with the
/// device free and nothing attached (the kernel's own attach cost on the same
/// veth, measured in the same run); its times are returned beside.
///
/// # Errors
/// A lab step, an Allocate or a release that failed.
pub async fn allocate_latency(
    sharing: Sharing,
    prepared: bool,
    n: usize,
    mut between: impl FnMut(&str) -> Option<Duration>,
) -> Result<(Vec<Duration>, Vec<Duration>), LabError> {
    let mut lab = Lab::start(LabConfig::one_nic(sharing)).await?;
    let result = allocate_rounds(&mut lab, prepared, n, &mut between).await;
    lab.teardown().await?;
    result
}

async fn allocate_rounds(
    lab: &mut Lab,
    prepared: bool,
    n: usize,
    between: &mut impl FnMut(&str) -> Option<Duration>,
) -> Result<(Vec<Duration>, Vec<Duration>), LabError> {
    if prepared {
        // The same node with --prepare-attachments.
        let daemon = lab
            .daemon
            .take()
            .ok_or_else(|| step("restart")("afxdp-dp is not in process".into()))?;
        daemon.stop().await;
        let mut opts = lab.paths.daemon_options();
        opts.prepare_attachments = true;
        lab.daemon = Some(
            afxdp_dp::daemon::Daemon::start(opts)
                .await
                .map_err(|e| step("restart afxdp-dp")(e.to_string()))?,
        );
        lab.kubelet()
            .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
                d.len() == 1 && d[0].is_healthy()
            })
            .await
            .map_err(|e| step("re-registered")(e.to_string()))?;
    }
    let nic = lab.nics[0].name.clone();
    // Warm up (and, after a restart, wait for kubelet to follow the new socket).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lab
            .kubelet()
            .allocate(RESOURCE, std::slice::from_ref(&nic))
            .await
        {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(step("allocate")(e.to_string())),
        }
    }
    release(lab, &nic).await?;
    let (mut samples, mut kernel) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        lab.kubelet()
            .allocate(RESOURCE, std::slice::from_ref(&nic))
            .await
            .map_err(|e| step("allocate")(e.to_string()))?;
        samples.push(t.elapsed());
        release(lab, &nic).await?;
        kernel.extend(between(&nic));
    }
    Ok((samples, kernel))
}

/// An operator release of `device`, on the blocking pool.
async fn release(lab: &Lab, device: &str) -> Result<(), LabError> {
    let agent = lab
        .daemon
        .as_ref()
        .ok_or_else(|| step("release")("afxdp-dp is not in process".into()))?
        .agent
        .clone();
    let d = device.to_string();
    tokio::task::spawn_blocking(move || {
        agent
            .release(&d, ReleaseBy::Operator)
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| step("release")(e.to_string()))?
    .map_err(step("release"))
}
