//! Section "scale": what afxdp-dp's start costs as the node grows.
//! Discovery (`afxdp_netdev::list`: one rtnetlink dump, then ethtool and
//! sysfs per device) and the pool build (the config's selectors over every
//! device, `afxdp_config::selector::assign_pools`, as afxdp-dp's inventory
//! does) on 64, 256 and 1,024 veth netdevs in a netns the bench made. Each
//! size is compared with the one before it, so the ratio shows how cost
//! grows (4× the devices at linear cost is a 4× ratio).

use crate::{table::median, table::Row, Settings};
use afxdp_config::selector::assign_pools;
use afxdp_dp::pool::device_facts;
use afxdp_testnet::Netns;
use anyhow::{ensure, Context, Result};
use std::{io::Write, process::Stdio, time::Instant};

const SECTION: &str = "scale";
/// The target at the largest size (issue: ≤ 200 ms for 1,024 netdevs).
const TARGET_MS: f64 = 200.0;

/// The config afxdp-dp would read: one pool of every veth.
const CONFIG: &str = r#"{
    "apiVersion": "afxdp.io/v1alpha1",
    "includeVirtualDevices": true,
    "pools": [{ "name": "scale", "selectors": { "drivers": [{ "name": "veth" }] } }]
}"#;

/// Runs the section at each size of `settings.scale_sizes`.
pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let config = afxdp_config::parse(CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows: Vec<Row> = Vec::new();
    for &netdevs in settings.scale_sizes {
        let ns = Netns::new("afxb-scale")?;
        make_veths(&ns, netdevs, false)?;
        let mut times = Vec::with_capacity(settings.runs);
        let mut pooled = 0;
        for _ in 0..settings.runs {
            let (ms, n) = ns.run(|| discover_and_pool(&config))??;
            times.push(ms);
            pooled = n;
        }
        ensure!(pooled == netdevs, "{pooled} of {netdevs} veths pooled");
        let ms = median(&mut times);
        let mut row = Row::new(
            SECTION,
            format!("discovery + pool build, {netdevs} netdevs"),
            ms,
            "ms",
        )
        .note(format!("{:.0} µs per netdev", ms * 1000.0 / netdevs as f64));
        if let Some(prev) = rows.last() {
            row = row.versus(prev);
        }
        if netdevs == 1024 {
            row = row.target("≤ 200 ms", ms <= TARGET_MS);
        }
        rows.push(row);
    }
    // The afxdp-dp rows are new: a failure is shown in the table, not fatal
    // to the rows above (it still fails nothing in CI's quick run).
    match crate::scale_dp::run(settings) {
        Ok(dp) => rows.extend(dp),
        Err(e) => rows.push(
            Row::new(SECTION, "afxdp-dp on the node: not measured", 0.0, "").note(format!("{e:#}")),
        ),
    }
    Ok(rows)
}

/// `netdevs / 2` veth pairs in `ns`, made (and with `up` set up) by one
/// `ip -batch`.
pub(crate) fn make_veths(ns: &Netns, netdevs: usize, up: bool) -> Result<()> {
    let mut batch = String::new();
    for i in 0..netdevs / 2 {
        batch += &format!("link add sc{i}a type veth peer name sc{i}b\n");
        if up {
            batch += &format!("link set sc{i}a up\nlink set sc{i}b up\n");
        }
    }
    let mut child = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("ip -batch")?;
    child
        .stdin
        .take()
        .context("ip stdin")?
        .write_all(batch.as_bytes())?;
    let status = child.wait()?;
    ensure!(status.success(), "ip -batch: {status}");
    Ok(())
}

/// One discovery and pool build in the calling thread's netns: its time in
/// ms and how many devices the pool got.
fn discover_and_pool(config: &afxdp_config::Config) -> Result<(f64, usize)> {
    let start = Instant::now();
    let netdevs = afxdp_netdev::list()?;
    // As afxdp-dp's inventory sees them (the bench's netns has no default route).
    let facts: Vec<_> = netdevs.iter().map(|d| device_facts(d, &[])).collect();
    let pools = assign_pools(config, "bench-node", &facts);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    Ok((ms, pools.iter().map(|(_, d)| d.len()).sum()))
}
