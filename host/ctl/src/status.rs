//! `afxdpctl status`: pools, devices, health, allocations and the deciding
//! policy, read from the running afxdp-dp (`GET /status` on its
//! `--metrics-address`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// afxdp-dp's --metrics-address.
    #[arg(long, env = "AFXDP_METRICS_ADDRESS", default_value = "127.0.0.1:9740")]
    address: SocketAddr,
    /// Print the daemon's JSON as it is.
    #[arg(long)]
    json: bool,
}

/// `GET /status` from the daemon.
fn fetch(address: SocketAddr) -> anyhow::Result<Value> {
    let t = Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&address, t)
        .with_context(|| format!("afxdp-dp at {address} (its --metrics-address)"))?;
    s.set_read_timeout(Some(t))?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: afxdp-dp\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text).context("reading the answer")?;
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("afxdp-dp answered {}", head.lines().next().unwrap_or(""));
    }
    serde_json::from_str(body).context("the status is not JSON")
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The status as a table: one line per device, a policy line per pool.
fn table(status: &Value) -> String {
    let mut out = format!(
        "{:<10} {:<16} {:<10} {:<24} {:<28} {}\n",
        "POOL", "DEVICE", "HEALTH", "POD", "PROGRAM", "DECIDED BY"
    );
    let empty = Vec::new();
    for pool in status["pools"].as_array().unwrap_or(&empty) {
        let name = text(&pool["name"]);
        for d in pool["devices"].as_array().unwrap_or(&empty) {
            let a = &d["allocation"];
            let (pod, program, by) = if a.is_null() {
                ("(free)", "-", "-")
            } else {
                (text(&a["pod"]), text(&a["program"]), text(&a["decidedBy"]))
            };
            let pod = if pod.is_empty() { "(not plumbed)" } else { pod };
            out += &format!(
                "{:<10} {:<16} {:<10} {:<24} {:<28} {}\n",
                name,
                text(&d["name"]),
                text(&d["health"]),
                pod,
                program,
                by
            );
            if let Some(reason) = d["unhealthyReason"].as_str() {
                out += &format!("{name}: {}: {reason}\n", text(&d["name"]));
            }
        }
        if pool["retiring"].as_bool() == Some(true) {
            out += &format!(
                "{name}: dropped from the config; served until its devices are released\n"
            );
        }
        let policy = &pool["policy"];
        if let Some(digest) = policy["inForce"].as_str() {
            out += &format!("{name}: policy {digest}\n");
        }
        if let Some(f) = policy["failure"].as_object() {
            out += &format!(
                "{name}: policy not loaded ({} attempts): {}\n",
                f.get("attempts").unwrap_or(&Value::Null),
                f.get("reason").map_or("-", text)
            );
        }
    }
    out
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let status = fetch(args.address)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", table(&status));
    }
    Ok(())
}
