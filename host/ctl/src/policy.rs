//! `afxdpctl policy`: push, inspect, run and test pool policies with the same
//! host (wasmtime limits, validation) and the same OCI code afxdp-dp uses.
//!
//! A request (for `run`, and each case of `test`) is JSON:
//!
//! ```json
//! { "decision": "assign-queues", "pool": "fast", "config": { "queuesPerPod": 2 },
//!   "device": { "name": "eth1", "rxQueues": 4, "numaNode": 0 },
//!   "pod": { "namespace": "ns", "name": "p", "annotations": { "afxdp.io/udp-ports": "4789" } },
//!   "addresses": ["10.0.0.2"], "available": [ { "name": "eth1", "rxQueues": 4 } ],
//!   "mustInclude": [], "size": 1 }
//! ```
//!
//! `decision` is one of `metadata`, `validate-config`, `select-program`,
//! `assign-queues`, `filter-rules`, `preferred-allocation`. A `test` case adds
//! `"expect": <decision JSON>` or `"expectError": "<kind>"` (`guest`,
//! `timeout`, `memory`, `trap`, `invalid`, ...).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Deserialize;
use serde_json::{json, Value};

use afxdp_policy::{Blocking, CallCtx, DecisionError, EngineConfig, LoadedPolicy, PolicyEngine};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Push a component to a registry; prints the pinned reference.
    Push {
        /// The .wasm component.
        wasm: PathBuf,
        /// `registry/repo:tag`.
        reference: String,
    },
    /// Fetch (verifying digests) and describe a policy: digest, metadata.
    Inspect { policy: String },
    /// Run one decision; the answer (or the error) as JSON on stdout.
    Run {
        #[arg(long)]
        request: PathBuf,
        policy: String,
    },
    /// Run every `*.json` case of a directory; exit non-zero on a mismatch.
    Test { cases: PathBuf, policy: String },
    /// Build a policy crate for wasm32-wasip2 (release); prints the .wasm path.
    Build {
        /// The policy crate's directory (its Cargo.toml).
        dir: PathBuf,
    },
    /// Run a policy over a recorded node inventory (`afxdpctl inventory dump`):
    /// `pods` pods each requesting `per-pod` devices, as kubelet would admit
    /// them; prints the allocation table.
    Simulate {
        #[arg(long)]
        inventory: PathBuf,
        #[arg(long, default_value_t = 2)]
        pods: usize,
        #[arg(long, default_value_t = 1)]
        per_pod: usize,
        /// The policy's config (JSON text).
        #[arg(long, default_value = "{}")]
        config: String,
        policy: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DeviceJson {
    name: String,
    driver: Option<String>,
    pci: Option<String>,
    mac: Option<String>,
    numa_node: Option<i64>,
    rx_queues: u32,
    tx_queues: Option<u32>,
    speed_mbps: Option<u32>,
    addresses: Vec<IpAddr>,
    max_channels: Option<u32>,
}

impl DeviceJson {
    fn view(&self) -> afxdp_policy::Netdev {
        afxdp_policy::Netdev {
            name: self.name.clone(),
            driver: self.driver.clone(),
            pci: self.pci.clone(),
            mac: self.mac.clone(),
            numa_node: self.numa_node,
            rx_queues: self.rx_queues,
            tx_queues: self.tx_queues.unwrap_or(self.rx_queues),
            speed_mbps: self.speed_mbps,
            addresses: self.addresses.clone(),
            max_channels: self.max_channels,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodJson {
    namespace: String,
    name: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    requested: u32,
}

/// One request (and, for `test`, its expectation).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    decision: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    device: DeviceJson,
    #[serde(default)]
    pod: PodJson,
    #[serde(default)]
    addresses: Vec<IpAddr>,
    #[serde(default)]
    available: Vec<DeviceJson>,
    #[serde(default)]
    must_include: Vec<String>,
    #[serde(default)]
    size: usize,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<String>,
}

fn mode(m: afxdp_policy::XdpMode) -> &'static str {
    match m {
        afxdp_policy::XdpMode::Native => "native",
        afxdp_policy::XdpMode::Generic => "generic",
        afxdp_policy::XdpMode::Auto => "auto",
    }
}

fn rule_json(r: &afxdp_policy::FilterRule) -> Value {
    let action = match r.action {
        afxdp_policy::RuleAction::Queue(q) => json!({ "queue": q }),
        afxdp_policy::RuleAction::Drop => json!("drop"),
    };
    json!({
        "flowType": r.flow_type.as_str(),
        "srcIp": r.src_ip, "srcIpMask": r.src_ip_mask, "dstIp": r.dst_ip, "dstIpMask": r.dst_ip_mask,
        "srcPort": r.src_port, "srcPortMask": r.src_port_mask, "dstPort": r.dst_port, "dstPortMask": r.dst_port_mask,
        "action": action,
    })
}

/// Run `req` against `policy`; `Ok` holds the decision as JSON.
fn decide(
    b: &Blocking,
    policy: &LoadedPolicy,
    req: &Request,
) -> anyhow::Result<Result<Value, DecisionError>> {
    let config = req.config.clone().unwrap_or_else(|| json!({})).to_string();
    let ctx = CallCtx::new(
        if req.pool.is_empty() {
            "cli"
        } else {
            req.pool.as_str()
        },
        config,
    );
    let pod = afxdp_policy::Pod {
        namespace: req.pod.namespace.clone(),
        name: req.pod.name.clone(),
        annotations: req.pod.annotations.clone(),
        labels: req.pod.labels.clone(),
        requested: req.pod.requested.max(1),
    };
    let dev = req.device.view();
    Ok(match req.decision.as_str() {
        "metadata" => {
            let m = policy.metadata();
            let d: Vec<&str> = m.decisions.iter().map(|d| d.as_str()).collect();
            Ok(json!({ "name": m.name, "version": m.version, "description": m.description, "decisions": d }))
        }
        "validate-config" => policy.validate_config(b, &ctx).map(|()| json!("ok")),
        "select-program" => policy.select_program(b, &ctx, &dev, &pod).map(|c| {
            let source = match &c.source {
                afxdp_policy::ProgramSource::Builtin => json!("builtin"),
                afxdp_policy::ProgramSource::File(p) => json!({ "file": p }),
                afxdp_policy::ProgramSource::Image(i) => json!({ "image": i }),
            };
            json!({ "source": source, "function": c.function, "mode": mode(c.mode), "priority": c.priority })
        }),
        "assign-queues" => policy
            .assign_queues(b, &ctx, &dev, &pod)
            .map(|q| json!({ "channels": q.channels, "queues": q.queues })),
        "filter-rules" => policy
            .filter_rules(b, &ctx, &dev, &pod, &req.addresses)
            .map(|rules| Value::Array(rules.iter().map(rule_json).collect())),
        "preferred-allocation" => {
            let avail: Vec<_> = req.available.iter().map(DeviceJson::view).collect();
            policy.preferred_allocation(b, &ctx, &avail, &req.must_include, req.size).map(|v| json!(v))
        }
        other => bail!("unknown decision {other:?}"),
    })
}

fn error_json(e: &DecisionError) -> Value {
    json!({ "error": e.kind(), "message": e.to_string() })
}

fn engine() -> anyhow::Result<PolicyEngine> {
    PolicyEngine::new(EngineConfig::default()).context("policy engine")
}

fn fetcher(cache: &Path) -> anyhow::Result<afxdp_oci::Fetcher> {
    fetcher_with(cache, Vec::new())
}

/// The OCI client of `policy` and `image` commands: credentials from
/// `$AFXDP_PULL_SECRET` (a dockerconfigjson), plain HTTP also to the
/// `insecure` registries.
pub(crate) fn fetcher_with(
    cache: &Path,
    insecure: Vec<String>,
) -> anyhow::Result<afxdp_oci::Fetcher> {
    afxdp_oci::Fetcher::new(afxdp_oci::FetcherConfig {
        cache_dir: cache.to_path_buf(),
        auth: match std::env::var_os("AFXDP_PULL_SECRET") {
            Some(p) => afxdp_oci::Auth::PullSecretFile(p.into()),
            None => afxdp_oci::Auth::Anonymous,
        },
        insecure_registries: insecure,
        timeout: Duration::from_secs(30),
    })
    .context("OCI client")
}

/// The content-addressed cache of `policy` and `image` commands:
/// `$AFXDP_POLICY_CACHE`, or `afxdpctl-policy-cache` in the temp dir.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("AFXDP_POLICY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("afxdpctl-policy-cache"))
}

/// A policy from a `.wasm` file or an OCI reference: (bytes, digest).
async fn read_policy(policy: &str) -> anyhow::Result<(Vec<u8>, String)> {
    let path = Path::new(policy);
    if path.exists() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {policy}"))?;
        let digest = afxdp_oci::sha256_digest(&bytes);
        return Ok((bytes, digest));
    }
    let r = afxdp_oci::PolicyRef::parse_with_pull_policy(
        policy,
        Some(afxdp_oci::PullPolicy::IfNotPresent),
    )
    .with_context(|| format!("{policy} is neither a file nor a policy reference"))?;
    let f = fetcher(&cache_dir())?
        .fetch(&r, afxdp_oci::PullPolicy::IfNotPresent)
        .await?;
    Ok((f.wasm, f.layer_digest))
}

/// Fetch (on a runtime of its own) and load `policy`; the load and every
/// later call run on this thread, outside any async runtime.
fn load(b: &Blocking, policy: &str) -> anyhow::Result<Arc<LoadedPolicy>> {
    let (bytes, digest) = crate::runtime()?.block_on(read_policy(policy))?;
    engine()?
        .load(b, &bytes, &digest)
        .with_context(|| format!("loading {policy}"))
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<bool> {
    // Policy calls block (and a panicking guest's stderr needs a thread with
    // no runtime entered): only the registry I/O runs on a runtime.
    let b = Blocking::here()?;
    match cmd {
        PolicyCommand::Push { wasm, reference } => {
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let pinned =
                crate::runtime()?.block_on(fetcher(&cache_dir())?.push(&reference, &bytes))?;
            println!("{pinned}");
            Ok(true)
        }
        PolicyCommand::Inspect { policy } => {
            let (bytes, digest) = crate::runtime()?.block_on(read_policy(&policy))?;
            let loaded = engine()?.load(&b, &bytes, &digest)?;
            let m = loaded.metadata();
            let d: Vec<&str> = m.decisions.iter().map(|d| d.as_str()).collect();
            let out = json!({ "digest": digest, "bytes": bytes.len(), "name": m.name, "version": m.version,
                "description": m.description, "decisions": d });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(true)
        }
        PolicyCommand::Run { request, policy } => {
            let req: Request = serde_json::from_slice(
                &std::fs::read(&request)
                    .with_context(|| format!("reading {}", request.display()))?,
            )
            .with_context(|| format!("parsing {}", request.display()))?;
            let loaded = load(&b, &policy)?;
            let out = match decide(&b, &loaded, &req)? {
                Ok(v) => v,
                Err(e) => error_json(&e),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(out.get("error").is_none())
        }
        PolicyCommand::Build { dir } => build(&dir),
        PolicyCommand::Simulate {
            inventory,
            pods,
            per_pod,
            config,
            policy,
        } => {
            let text = std::fs::read(&inventory)
                .with_context(|| format!("reading {}", inventory.display()))?;
            let devices: Vec<DeviceJson> = serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", inventory.display()))?;
            let loaded = load(&b, &policy)?;
            simulate(&b, &loaded, &devices, pods, per_pod, &config)?;
            Ok(true)
        }
        PolicyCommand::Test { cases, policy } => {
            let loaded = load(&b, &policy)?;
            run_cases(&b, &loaded, &cases)
        }
    }
}

/// `policy test`: every `*.json` case of `cases` against `loaded`.
fn run_cases(b: &Blocking, loaded: &LoadedPolicy, cases: &Path) -> anyhow::Result<bool> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases)
        .with_context(|| format!("reading {}", cases.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    for f in &files {
        let req: Request = serde_json::from_slice(&std::fs::read(f)?)
            .with_context(|| format!("parsing {}", f.display()))?;
        let got = decide(b, loaded, &req)?;
        let verdict = match (&got, &req.expect, &req.expect_error) {
            (Ok(v), Some(e), None) if v == e => Ok(()),
            (Err(err), None, Some(kind)) if err.kind() == kind => Ok(()),
            (Ok(v), _, _) => Err(format!("got {v}")),
            (Err(err), _, _) => Err(format!("got error {}: {err}", err.kind())),
        };
        match verdict {
            Ok(()) => {
                passed += 1;
                println!("ok   {}", f.display());
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}: {why}", f.display());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0 && passed > 0)
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; prints the component.
fn build(dir: &Path) -> anyhow::Result<bool> {
    let manifest = dir.join("Cargo.toml");
    let meta: Value = serde_json::from_slice(
        &std::process::Command::new("cargo")
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(&manifest)
            .output()
            .context("cargo metadata")?
            .stdout,
    )
    .context("cargo metadata output")?;
    let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));
    let name = meta["packages"]
        .as_array()
        .and_then(|p| {
            let want = std::fs::canonicalize(&manifest).ok()?;
            p.iter().find(|pkg| {
                pkg["manifest_path"]
                    .as_str()
                    .and_then(|m| std::fs::canonicalize(m).ok())
                    .as_ref()
                    == Some(&want)
            })
        })
        .and_then(|p| p["name"].as_str())
        .with_context(|| format!("no package at {}", manifest.display()))?
        .to_string();
    let status = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("cargo build failed for {}", manifest.display());
    }
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    anyhow::ensure!(wasm.is_file(), "{} was not produced", wasm.display());
    println!("{}", wasm.display());
    Ok(true)
}

/// Admit `pods` pods of `per_pod` devices each, as kubelet does: preferred
/// allocation from the free devices, then the queue plan per device.
fn simulate(
    b: &Blocking,
    policy: &LoadedPolicy,
    devices: &[DeviceJson],
    pods: usize,
    per_pod: usize,
    config: &str,
) -> anyhow::Result<()> {
    let ctx = CallCtx::new("simulate", config);
    let mut free: Vec<afxdp_policy::Netdev> = devices.iter().map(DeviceJson::view).collect();
    println!(
        "{:<8} {:<16} {:>5} {:>9} {:<16}",
        "POD", "DEVICE", "NUMA", "CHANNELS", "QUEUES"
    );
    for i in 0..pods {
        let pod = afxdp_policy::Pod {
            namespace: "sim".into(),
            name: format!("pod-{i}"),
            requested: u32::try_from(per_pod).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let picks = if policy.makes(afxdp_policy::Decision::PreferredAllocation) {
            policy
                .preferred_allocation(b, &ctx, &free, &[], per_pod)
                .map_err(|e| anyhow::anyhow!("pod-{i}: {e}"))?
        } else {
            afxdp_policy::defaults::preferred_allocation(&free, &[], per_pod)
        };
        if picks.len() < per_pod {
            println!("pod-{i:<4} (not enough free devices)");
            break;
        }
        for name in &picks {
            let Some(pos) = free.iter().position(|d| &d.name == name) else {
                continue;
            };
            let dev = free.remove(pos);
            let plan = if policy.makes(afxdp_policy::Decision::AssignQueues) {
                policy
                    .assign_queues(b, &ctx, &dev, &pod)
                    .map_err(|e| anyhow::anyhow!("pod-{i} {name}: {e}"))?
            } else {
                afxdp_policy::defaults::queue_plan(&dev)
            };
            let queues: Vec<String> = plan.queues.iter().map(u32::to_string).collect();
            println!(
                "{:<8} {:<16} {:>5} {:>9} {:<16}",
                pod.name,
                dev.name,
                dev.numa_node
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                plan.channels
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                queues.join(",")
            );
        }
    }
    Ok(())
}
