//! A lab pod: a netns, the device kubelet allocated to it, and the example app
//! running unprivileged inside.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afxdp_testnet::Netns;

use crate::cni::{self, CniOutcome};
use crate::unprivileged::{self, PodUser};
use crate::{step, Lab, LabError, Sharing, RESOURCE};

/// Packets per queue as the app reports them.
pub type QueueCounts = BTreeMap<u32, u64>;

/// One running pod.
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub container_id: String,
    pub device: String,
    /// The resource the device was allocated from (`afxdp/<pool>`).
    pub resource: String,
    pub netns: Netns,
    /// Env and mounts from Allocate.
    pub envs: BTreeMap<String, String>,
    pub mounts: Vec<(PathBuf, PathBuf)>,
    pub add: CniOutcome,
    app: Option<Child>,
    counts: Arc<Mutex<QueueCounts>>,
    ready: Arc<Mutex<bool>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Pod {
    /// Latest per-queue packet counts.
    pub fn counts(&self) -> QueueCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total packets received.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// The app's pid.
    pub fn app_pid(&self) -> Option<u32> {
        self.app.as_ref().map(|c| c.id())
    }

    /// Lines the app printed (stdout JSON, stderr text).
    pub fn app_log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The app's stderr and its last few lines, for error messages.
    fn log_tail(&self) -> Vec<String> {
        let log = self.app_log();
        let mut out: Vec<String> = log
            .iter()
            .filter(|l| l.starts_with("stderr:"))
            .cloned()
            .collect();
        out.extend(log.iter().rev().take(5).rev().cloned());
        out
    }

    /// Wait (bounded) until the app's total reaches `n`.
    pub fn wait_total(&self, n: u64, timeout: Duration) -> Result<u64, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.total();
            if t >= n {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(step(format!("pod {} receiving {n} packets", self.name))(
                    format!(
                        "got {t} within {timeout:?}; counts {:?}; app log: {:?}",
                        self.counts(),
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        while !self.ready.lock().map(|r| *r).unwrap_or(false) {
            let exited = self.app.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(step(format!("pod {} app ready", self.name))(format!(
                    "the app exited ({status}); app log: {:?}",
                    self.log_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(step(format!("pod {} app ready", self.name))(format!(
                    "app log: {:?}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn stop_app(&mut self) {
        if let Some(mut child) = self.app.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the app, CNI DEL, forget the pod in kubelet. The netns goes with
    /// `self`, also when the DEL fails.
    pub async fn remove(self, lab: &Lab) -> Result<(), LabError> {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        self.try_remove(lab).await.map_err(|(pod, e)| {
            lab.kubelet().remove_pod(&namespace, &name);
            drop(pod);
            e
        })
    }

    /// Exec afxdp-cni `command` for this pod's attachment with `conf`.
    pub fn cni(
        &self,
        lab: &Lab,
        command: &str,
        conf: &serde_json::Value,
    ) -> Result<CniOutcome, LabError> {
        cni::exec(
            &lab.cni,
            command,
            &self.container_id,
            Some(self.netns.path()),
            "net1",
            &self.namespace,
            &self.name,
            conf,
        )
        .map_err(|e| step(format!("CNI {command}"))(e.to_string()))
    }

    /// Stop the app and CNI DEL; only once the DEL succeeded is the pod
    /// forgotten in kubelet and its netns deleted. A failed DEL gives the pod
    /// back, to retry as runtimes do (deleting a netns that still holds a
    /// veth would destroy the device).
    pub async fn try_remove(mut self, lab: &Lab) -> Result<(), (Box<Pod>, LabError)> {
        self.stop_app();
        let del = self.cni(lab, "DEL", &lab.net_conf(&self.device));
        let failure = match del {
            Err(e) => step("CNI DEL")(e.to_string()),
            Ok(del) if !del.success => {
                step(format!("CNI DEL of {}", self.name))(format!("{} {}", del.stdout, del.stderr))
            }
            Ok(_) => {
                lab.kubelet().remove_pod(&self.namespace, &self.name);
                return Ok(());
            }
        };
        Err((Box::new(self), failure))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop_app();
    }
}

/// A pod whose admission failed, and what of it is left to undo.
pub struct AdmitFailure {
    pub error: LabError,
    /// The runtime's cleanup (CNI DEL) failed too: the half-made pod, to
    /// remove once the DEL can succeed.
    pub leftover: Option<Box<Pod>>,
}

impl From<LabError> for AdmitFailure {
    fn from(error: LabError) -> Self {
        Self {
            error,
            leftover: None,
        }
    }
}

/// Admit `namespace/name`: Allocate, netns, CNI ADD, app.
pub async fn admit(lab: &Lab, namespace: &str, name: &str) -> Result<Pod, LabError> {
    try_admit(lab, namespace, name).await.map_err(|f| f.error)
}

/// [`admit`], undoing a failure the way a runtime does: a pod that failed
/// after its netns was made gets a CNI DEL and is deleted.
pub async fn try_admit(lab: &Lab, namespace: &str, name: &str) -> Result<Pod, AdmitFailure> {
    try_admit_from(lab, RESOURCE, namespace, name).await
}

/// [`try_admit`] with a device of `resource` (a pool other than the lab's).
pub async fn try_admit_from(
    lab: &Lab,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Pod, AdmitFailure> {
    let mut pod = allocate(lab, resource, namespace, name).await?;
    let Err(error) = plumb_and_start(lab, &mut pod).await else {
        return Ok(pod);
    };
    let device = pod.device.clone();
    match pod.try_remove(lab).await {
        Ok(()) => {
            lab.settle(&device).await;
            Err(error.into())
        }
        Err((pod, _del)) => Err(AdmitFailure {
            error,
            leftover: Some(pod),
        }),
    }
}

/// Kubelet's Allocate for one device, and the pod's netns.
async fn allocate(lab: &Lab, resource: &str, namespace: &str, name: &str) -> Result<Pod, LabError> {
    let admission = lab
        .kubelet()
        .admit_pod(namespace, name, "app", resource, 1)
        .await
        .map_err(|e| {
            // Kubelet rejects a pod whose admission (Allocate) failed: Failed.
            lab.apiserver.set_phase(namespace, name, "Failed");
            step(format!("admit {namespace}/{name}"))(e.to_string())
        })?;
    let device = admission
        .device_ids
        .first()
        .cloned()
        .ok_or_else(|| step("admit")("no device".into()))?;
    let envs: BTreeMap<String, String> = admission.response.envs.clone().into_iter().collect();
    let mounts: Vec<(PathBuf, PathBuf)> = admission
        .response
        .mounts
        .iter()
        .map(|m| {
            (
                PathBuf::from(&m.container_path),
                PathBuf::from(&m.host_path),
            )
        })
        .collect();
    let netns = Netns::new("afxpod").map_err(|e| step("pod netns")(e.to_string()))?;
    Ok(Pod {
        namespace: namespace.to_string(),
        name: name.to_string(),
        container_id: format!("{namespace}-{name}-{}", std::process::id()),
        device,
        resource: resource.to_string(),
        netns,
        envs,
        mounts,
        add: CniOutcome::not_run(),
        app: None,
        counts: Arc::new(Mutex::new(QueueCounts::new())),
        ready: Arc::new(Mutex::new(false)),
        log: Arc::new(Mutex::new(Vec::new())),
    })
}

/// CNI ADD, the wire side's neighbour entry, the app until ready.
async fn plumb_and_start(lab: &Lab, pod: &mut Pod) -> Result<(), LabError> {
    let conf = lab.net_conf(&pod.device);
    pod.add = cni::exec(
        &lab.cni,
        "ADD",
        &pod.container_id,
        Some(pod.netns.path()),
        "net1",
        &pod.namespace,
        &pod.name,
        &conf,
    )
    .map_err(|e| step("CNI ADD")(e.to_string()))?;
    if !pod.add.success {
        return Err(step(format!("CNI ADD of {}", pod.name))(format!(
            "stdout {} stderr {}",
            pod.add.stdout, pod.add.stderr
        )));
    }
    // What IPAM and ARP would give the wire side: a static neighbour for the pod.
    if let Some(nic) = lab.nic(&pod.device) {
        let mac = pod
            .add
            .json()
            .and_then(|j| j["interfaces"][0]["mac"].as_str().map(str::to_string))
            .ok_or_else(|| step("CNI ADD result")(format!("no MAC in {}", pod.add.stdout)))?;
        lab.wire
            .exec(&[
                "ip",
                "neigh",
                "replace",
                &nic.pod_ip().to_string(),
                "lladdr",
                &mac,
                "dev",
                &nic.peer,
                "nud",
                "permanent",
            ])
            .map_err(|e| step("static neighbour")(e.to_string()))?;
    }
    start_app(lab, pod)?;
    pod.wait_ready(Duration::from_secs(10))
}

fn start_app(lab: &Lab, pod: &mut Pod) -> Result<(), LabError> {
    let dir = afxdp_dp::sharing::container_dir(&pod.device);
    let mut cmd = Command::new(&lab.pod_app);
    cmd.env_clear()
        .envs(&pod.envs)
        .arg("--device")
        .arg(&pod.device)
        .arg("--stats-interval-ms")
        .arg("100");
    // The app sees the container paths, as in a pod (DPDK's dp_path).
    match lab.cfg.sharing {
        Sharing::Uds => {
            cmd.arg("--uds").arg(dir.join(afxdp_dp::sharing::UDS_FILE));
            cmd.arg("--pod")
                .arg(format!("{}/{}", pod.namespace, pod.name));
        }
        Sharing::Pinned => {
            cmd.arg("--pinned-map")
                .arg(dir.join(afxdp_dp::sharing::MAP_FILE));
        }
        Sharing::Csi => {
            return Err(step("start pod app")(
                "the lab has no CSI driver to mount the pod's volume: its pods take uds or pinned sharing".into(),
            ))
        }
    }
    let ns: OwnedFd = std::fs::File::open(pod.netns.path())
        .map_err(|e| step("open pod netns")(e.to_string()))?
        .into();
    let mounts = unprivileged::ContainerMounts {
        root: PathBuf::from("/tmp"),
        binds: pod
            .mounts
            .iter()
            .map(|(c, h)| (h.clone(), c.clone()))
            .collect(),
    };
    unprivileged::confine(&mut cmd, ns, PodUser::nobody_net_raw(), &mounts)
        .map_err(|e| step("container mounts")(e.to_string()))?;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child =
        unprivileged::spawn_retrying(&mut cmd).map_err(|e| step("start pod app")(e.to_string()))?;
    if let Some(out) = child.stdout.take() {
        let (counts, ready, log) = (pod.counts.clone(), pod.ready.clone(), pod.log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                apply_line(&line, &counts, &ready);
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let log = pod.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push(format!("stderr: {line}"));
                }
            }
        });
    }
    pod.app = Some(child);
    Ok(())
}

/// Fold one JSON line of the app into the counters.
fn apply_line(line: &str, counts: &Mutex<QueueCounts>, ready: &Mutex<bool>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    match v["type"].as_str() {
        Some("ready") => {
            if let Ok(mut r) = ready.lock() {
                *r = true;
            }
        }
        Some("stats") => {
            if let (Some(q), Some(p)) = (v["queue"].as_u64(), v["packets"].as_u64()) {
                if let Ok(mut c) = counts.lock() {
                    c.insert(q as u32, p);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_update_counts_and_ready() {
        let counts = Mutex::new(QueueCounts::new());
        let ready = Mutex::new(false);
        apply_line(
            r#"{"type":"ready","device":"x","queues":[0,1]}"#,
            &counts,
            &ready,
        );
        apply_line(
            r#"{"type":"stats","device":"x","queue":1,"packets":5,"bytes":300}"#,
            &counts,
            &ready,
        );
        apply_line(
            r#"{"type":"stats","device":"x","queue":1,"packets":7,"bytes":400}"#,
            &counts,
            &ready,
        );
        apply_line("not json", &counts, &ready);
        assert!(*ready.lock().expect("lock"));
        assert_eq!(counts.lock().expect("lock").get(&1), Some(&7));
    }
}
