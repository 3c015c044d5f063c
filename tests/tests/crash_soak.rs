//! Crash soak: afxdp-dp (its own process) is SIGKILLed at seeded random
//! points while pods are admitted (Allocate, CNI ADD, app handshake) and
//! removed (CNI DEL), then restarted. After every restart the node must be
//! whole: no XDP program, pin, UDS directory or netns leaked; every device
//! free or allocated to a live pod; every live pod still receiving.
//!
//! What the "runtime" does around a crash is what kubelet and containerd
//! do: a pod whose admission failed is deleted (CNI DEL, retried until it
//! succeeds, before its netns goes), a failed DEL is retried.
//!
//! `AFXDP_SOAK_SEED` replays a run (the seed is printed first);
//! `AFXDP_SOAK_CYCLES` sets the number of cycles (default 100).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use afxdp_lab::{DaemonRun, Lab, LabConfig, Pod, Sharing, RESOURCE};

/// A small seeded generator (SplitMix64): the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed() -> u64 {
    env_u64("AFXDP_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    })
}

/// One cycle's operation.
#[derive(Debug, Clone, Copy)]
enum Op {
    Admit,
    Remove(usize),
}

/// What the cycle did.
struct Cycle {
    n: usize,
    op: Op,
    kill_after: Duration,
    /// How long the operation ran (the kill landed inside it when shorter).
    took: Duration,
    outcome: String,
}

impl Cycle {
    fn killed_midway(&self) -> bool {
        self.kill_after < self.took
    }
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cycle {} ({:?} took {:?}, SIGKILL after {:?}): {}",
            self.n, self.op, self.took, self.kill_after, self.outcome
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_leaks_nothing() {
    afxdp_testnet::require_root();
    let seed = seed();
    let cycles = env_u64("AFXDP_SOAK_CYCLES").unwrap_or(100) as usize;
    eprintln!("crash soak: seed {seed}, {cycles} cycles (AFXDP_SOAK_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut lab = Lab::start(LabConfig {
        nics: 3,
        queues: 2,
        sharing: Sharing::Uds,
        daemon: DaemonRun::Process,
        ..Default::default()
    })
    .await
    .expect("lab");
    let started = Instant::now();
    let mut kills_mid_op = 0usize;
    for n in 0..cycles {
        let cycle = run_cycle(&mut lab, &mut rng, n).await;
        eprintln!("crash soak: {cycle}");
        if cycle.killed_midway() {
            kills_mid_op += 1;
        }
        if let Err(e) = check_node(&lab).await {
            let log = lab
                .process
                .as_ref()
                .map(|p| p.log_tail(40))
                .unwrap_or_default();
            panic!("seed {seed}, after {cycle}: {e}\nafxdp-dp log tail:\n{log}");
        }
    }
    eprintln!(
        "crash soak: {cycles} cycles, {kills_mid_op} SIGKILLs landed inside an operation, {:?}",
        started.elapsed()
    );
    assert!(
        kills_mid_op > 0,
        "seed {seed}: no kill landed inside an operation; the soak proved nothing"
    );
    lab.teardown().await.expect("teardown");
}

/// Admit or remove one pod while a SIGKILL lands after a random delay,
/// restart afxdp-dp, and finish what the runtime must finish (DELs).
async fn run_cycle(lab: &mut Lab, rng: &mut Rng, n: usize) -> Cycle {
    let op = if lab.pods.len() < lab.nics.len() && (lab.pods.is_empty() || rng.below(2) == 0) {
        Op::Admit
    } else {
        Op::Remove(rng.below(lab.pods.len() as u64) as usize)
    };
    // Here an admission (Allocate, CNI ADD, app handshake) takes 50-100 ms
    // and a removal (CNI DEL, release) 40-110 ms: most kills land inside
    // one, the rest just after it.
    let window = match op {
        Op::Admit => 110,
        Op::Remove(_) => 100,
    };
    let kill_after = Duration::from_millis(rng.below(window));
    let pid = lab.process.as_ref().expect("afxdp-dp runs").pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(kill_after);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let mut unfinished: Vec<Box<Pod>> = Vec::new();
    let began = Instant::now();
    let outcome = match op {
        Op::Admit => match lab.try_add_pod(&format!("p{n}")).await {
            Ok(_) => "done".to_string(),
            Err(f) => {
                unfinished.extend(f.leftover);
                format!("admission failed: {}", f.error)
            }
        },
        Op::Remove(i) => {
            let pod = lab.pods.remove(i);
            lab.apiserver.remove_pod(&pod.namespace, &pod.name);
            match pod.try_remove(lab).await {
                Ok(()) => "done".to_string(),
                Err((pod, e)) => {
                    unfinished.push(pod);
                    format!("DEL failed: {e}")
                }
            }
        }
    };
    let took = began.elapsed();
    let _ = tokio::task::spawn_blocking(move || killer.join()).await;
    lab.kill_daemon();
    if let Err(e) = lab.restart_daemon().await {
        panic!("cycle {n} ({op:?}, kill after {kill_after:?}): afxdp-dp did not come back: {e}");
    }
    // The runtime retries DEL until it succeeds.
    for pod in unfinished {
        if let Err((_, e)) = pod.try_remove(lab).await {
            panic!("cycle {n} ({op:?}, kill after {kill_after:?}): DEL after the restart: {e}");
        }
    }
    Cycle {
        n,
        op,
        kill_after,
        took,
        outcome,
    }
}

/// The node is whole: afxdp-dp's allocations are exactly the live pods'
/// devices, the kernel holds programs, pins and UDS directories for those
/// only, no pod netns is left behind, kubelet sees every device healthy,
/// and every live pod receives.
async fn check_node(lab: &Lab) -> Result<(), String> {
    let live: BTreeMap<String, String> = lab
        .pods
        .iter()
        .map(|p| (p.device.clone(), format!("{}/{}", p.namespace, p.name)))
        .collect();
    let allocated = allocations(lab)?;
    if allocated != live {
        return Err(format!(
            "afxdp-dp's allocations {allocated:?} are not the live pods' {live:?}"
        ));
    }
    check_kernel(lab, &live)?;
    check_leftovers(lab, &live)?;
    lab.kubelet()
        .wait_devices(RESOURCE, Duration::from_secs(10), |d| {
            d.len() == lab.nics.len() && d.iter().all(|x| x.is_healthy())
        })
        .await
        .map_err(|e| format!("kubelet's device list: {e}"))?;
    for pod in &lab.pods {
        let before = pod.total();
        let sent = lab.send(&pod.device, 4, 5).map_err(|e| e.to_string())?;
        pod.wait_total(before + sent, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// device → pod of every allocation `/status` shows.
fn allocations(lab: &Lab) -> Result<BTreeMap<String, String>, String> {
    let status = lab
        .process
        .as_ref()
        .ok_or("afxdp-dp is not running")?
        .status()
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for pool in status["pools"].as_array().into_iter().flatten() {
        for d in pool["devices"].as_array().into_iter().flatten() {
            if d["allocation"].is_object() {
                out.insert(
                    d["name"].as_str().unwrap_or_default().to_string(),
                    d["allocation"]["pod"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    Ok(out)
}

/// A live pod's device is in its netns with the program attached; every
/// other device is back in the host netns with no program.
fn check_kernel(lab: &Lab, live: &BTreeMap<String, String>) -> Result<(), String> {
    for nic in &lab.nics {
        match lab.pods.iter().find(|p| p.device == nic.name) {
            Some(pod) => {
                if !afxdp_e2e::xdp_attached_in(&pod.netns, &nic.name) {
                    return Err(format!("{}: no program in pod {}", nic.name, pod.name));
                }
            }
            None => {
                if !afxdp_testnet::link_exists(&nic.name) {
                    return Err(format!("free device {} is not in the host netns", nic.name));
                }
                if afxdp_e2e::xdp_attached(&nic.name) {
                    return Err(format!(
                        "free device {} still carries a program (live: {live:?})",
                        nic.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Pins, UDS directories and pod netns exist for live pods only.
fn check_leftovers(lab: &Lab, live: &BTreeMap<String, String>) -> Result<(), String> {
    let devices: BTreeSet<String> = live.keys().cloned().collect();
    let state = &lab.paths.state_dir;
    for dir in ["pins/maps", "pins/links", "pins/meta", "uds"] {
        let found = names_in(&state.join(dir));
        if found != devices {
            return Err(format!("{dir}: {found:?}, live devices {devices:?}"));
        }
    }
    let pod_netns: BTreeSet<String> = lab
        .pods
        .iter()
        .map(|p| p.netns.name().to_string())
        .collect();
    let netns: BTreeSet<String> = names_in(Path::new("/var/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with("afxpod"))
        .collect();
    if netns != pod_netns {
        return Err(format!("pod netns {netns:?}, live pods' {pod_netns:?}"));
    }
    Ok(())
}

/// The names directly under `dir` (none if it does not exist).
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
