//! Section "control plane": what a pod's admission costs afxdp-dp, beside
//! what the kernel's part of it costs in the same run.
//!
//! - **Allocate** through the real device-plugin gRPC (the kubelet stand-in
//!   calling afxdp-dp in process, one native-XDP veth, UDS sharing), by
//!   default and with `--prepare-attachments`, p50 with p99 in the note
//!   (`afxdp_lab::measure::allocate_latency`, as the foundation bench).
//!   Between two Allocates, with the device released, the kernel's own
//!   attach on the same veth: `BPF_LINK_CREATE` of an already loaded
//!   program, and loading the built-in object (maps + `BPF_PROG_LOAD`, as
//!   afxdp-dp does per attach) then attaching it.
//! - **Policy decisions**: each example policy (`policies/`, built to
//!   wasm32-wasip2; `AFXDP_POLICY_WASM_DIR`) on its reference request
//!   (`afxdp_policy::examples`), p50 of every decision it makes (fresh
//!   Store, instantiate, call, host validation), against that policy's
//!   instantiation floor (fresh Store + instantiate, nothing called).
//!   Target: every decision p50 ≤ 10 µs; where the floor measured in the
//!   same run already lies above that, the row says "at the floor" and
//!   holds the decision to 1.25× the floor (`afxdp_policy::examples::verdict`).

use crate::{table::percentile, table::Row, Settings};
use afxdp_lab::Sharing;
use afxdp_policy::examples::{examples, time, verdict, wasm_dir, Example};
use afxdp_policy::{sha256_digest, Blocking, Decision, EngineConfig, PolicyEngine};
use afxdp_program::{attach_xdp_link, builtin_object, XdpMode, BUILTIN_PROGRAM_NAME};
use anyhow::{anyhow, Context, Result};
use aya::programs::Xdp;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

const SECTION: &str = "control plane";
/// Allocate p50 target, ms (the foundation bench's).
const ALLOCATE_P50_MS: f64 = 5.0;

/// Runs the section.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let mut rows = allocate_rows(settings.allocations)?;
    rows.extend(policy_rows(settings.decisions)?);
    Ok(rows)
}

/// The kernel's attach costs, timed on one device between Allocates.
struct KernelAttach {
    pass: OwnedFd,
    loader: aya::EbpfLoader<'static>,
    link: Vec<Duration>,
    load_and_link: Vec<Duration>,
}

impl KernelAttach {
    fn new() -> Result<Self> {
        let pass =
            crate::testrun::load_return_program("bench_pass", crate::testrun::XdpAction::Pass)
                .context("loading an XDP_PASS program")?;
        let mut loader = aya::EbpfLoader::new();
        loader.btf(None);
        Ok(KernelAttach {
            pass,
            loader,
            link: Vec::new(),
            load_and_link: Vec::new(),
        })
    }

    /// Both attaches on `device` (each detached again by closing its link).
    fn measure(&mut self, device: &str) -> Result<()> {
        let ifindex = nix::net::if_::if_nametoindex(device).context("if_nametoindex")?;
        let t = Instant::now();
        let link = attach_xdp_link(self.pass.as_fd(), ifindex, XdpMode::Native)
            .context("BPF_LINK_CREATE")?;
        self.link.push(t.elapsed());
        drop(link);

        let t = Instant::now();
        let mut ebpf = self.loader.load(builtin_object())?;
        let xdp: &mut Xdp = ebpf
            .program_mut(BUILTIN_PROGRAM_NAME)
            .context("built-in program")?
            .try_into()?;
        xdp.load()?;
        let link = attach_xdp_link(xdp.fd()?.as_fd(), ifindex, XdpMode::Native)
            .context("BPF_LINK_CREATE")?;
        self.load_and_link.push(t.elapsed());
        drop(link);
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of `samples`.
fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn allocate_rows(n: usize) -> Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut kernel = KernelAttach::new()?;
    let mut failed = None;
    // Only by default: with --prepare-attachments the released device keeps
    // its prepared program attached.
    let between = |device: &str| {
        if let Err(e) = kernel.measure(device) {
            failed.get_or_insert(e);
        }
        None
    };
    let (default, _) = rt
        .block_on(afxdp_lab::measure::allocate_latency(
            Sharing::Uds,
            false,
            n,
            between,
        ))
        .map_err(|e| anyhow!("allocate (default): {e}"))?;
    if let Some(e) = failed {
        return Err(e.context("kernel attach between Allocates"));
    }
    let (prepared, _) = rt
        .block_on(afxdp_lab::measure::allocate_latency(
            Sharing::Uds,
            true,
            n,
            |_| None,
        ))
        .map_err(|e| anyhow!("allocate (--prepare-attachments): {e}"))?;
    let row = |name: &str, samples: Vec<Duration>| {
        let count = samples.len();
        let (p50, p99) = p50_p99(samples);
        Row::new(SECTION, name, ms(p50), "ms").note(format!("p99 {:.2} ms, n = {count}", ms(p99)))
    };
    let link = row(
        "kernel: XDP attach (BPF_LINK_CREATE), same veth",
        kernel.link,
    );
    let load = row(
        "kernel: load built-in object + attach, same veth",
        kernel.load_and_link,
    );
    let allocate = |name: &str, samples: Vec<Duration>, versus: &Row| {
        let r = row(name, samples).versus(versus);
        let met = r.value <= ALLOCATE_P50_MS;
        r.target(format!("p50 ≤ {ALLOCATE_P50_MS} ms"), met)
    };
    let default = allocate("Allocate p50 (native attach + UDS)", default, &load);
    let prepared = allocate("Allocate p50, --prepare-attachments", prepared, &link);
    Ok(vec![link, load, default, prepared])
}

fn policy_rows(n: usize) -> Result<Vec<Row>> {
    let examples = examples();
    let dir = wasm_dir(&examples).map_err(|e| anyhow!(e))?;
    let engine = PolicyEngine::new(EngineConfig::default())?;
    let b = Blocking::here()?;
    let mut rows = Vec::new();
    for ex in &examples {
        let path = dir.join(format!("{}.wasm", ex.file));
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let policy = engine
            .load(&b, &wasm, &sha256_digest(&wasm))
            .with_context(|| format!("loading {}", ex.name))?;
        let floor = time(n, || policy.instantiate_only(&b).map_err(|e| e.to_string()));
        let floor = decision_row(ex, "instantiation floor", floor, None);
        let made: Vec<Decision> = Decision::ALL
            .into_iter()
            .filter(|&d| policy.makes(d))
            .collect();
        let ctx = ex.ctx();
        let mut decided = Vec::new();
        for d in made {
            ex.decide(&policy, &b, &ctx, d)
                .with_context(|| format!("{} {d}", ex.name))?;
            let samples = time(n, || ex.decide(&policy, &b, &ctx, d).is_ok());
            decided.push(decision_row(ex, &ex.label(d), samples, Some(&floor)));
        }
        rows.push(floor);
        rows.extend(decided);
    }
    Ok(rows)
}

/// One policy row: p50 in µs, p99 in the note; a decision is held to the
/// target and compared with its policy's floor.
fn decision_row(ex: &Example, what: &str, samples: Vec<Duration>, floor: Option<&Row>) -> Row {
    let (p50, p99) = p50_p99(samples);
    let row = Row::new(
        SECTION,
        format!("policy {}: {what}", ex.name),
        us(p50),
        "µs",
    )
    .note(format!("p99 {:.1} µs", us(p99)));
    match floor {
        None => row,
        Some(f) => {
            let v = verdict(row.value, f.value);
            row.versus(f).target(v.text, v.met)
        }
    }
}
