//! Parse + validation time of big configs, both forms: `cargo bench -p
//! afxdp-config --bench parse`. Prints a table (pools, bytes, ms); the
//! target is a 1 MiB config (a ConfigMap's limit) in at most 100 ms.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The document forms.
#[derive(Clone, Copy)]
enum Form {
    Upstream,
    V1Alpha1,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Upstream => "upstream",
            Form::V1Alpha1 => "v1alpha1",
        }
    }

    fn head(self) -> &'static str {
        match self {
            Form::Upstream => r#"{"logLevel":"info","pools":["#,
            Form::V1Alpha1 => r#"{"apiVersion":"afxdp.io/v1alpha1","pools":["#,
        }
    }
}

/// Shape of each pool.
#[derive(Clone, Copy)]
enum Shape {
    /// One driver: the smallest useful pool (~60 bytes, as in the issue).
    Small,
    /// Drivers with exclusions, devices by name/pci/mac, two nodes.
    Rich,
}

/// A pool name valid in both forms and unique per index.
fn pool_name(i: usize) -> String {
    format!("pool{i:05}")
}

fn write_pool(out: &mut String, form: Form, shape: Shape, i: usize) {
    let name = pool_name(i);
    let (b, c, d) = ((i >> 8) & 0xff, (i >> 3) & 0x1f, i & 7);
    let _ = match (form, shape) {
        (Form::Upstream, Shape::Small) => write!(
            out,
            r#"{{"name":"{name}","mode":"primary","drivers":[{{"name":"ice"}}]}}"#
        ),
        (Form::V1Alpha1, Shape::Small) => write!(
            out,
            r#"{{"name":"{name}","selectors":{{"drivers":[{{"name":"ice"}}]}}}}"#
        ),
        (Form::Upstream, Shape::Rich) => write!(
            out,
            r#"{{"name":"{name}","mode":"primary","uid":1500,"udsTimeout":60,
"drivers":[{{"name":"ice","primary":2,"excludeDevices":[{{"name":"ens{i}f3"}},{{"pci":"0000:{b:02x}:{c:02x}.{d}"}}]}}],
"devices":[{{"mac":"68:05:ca:{b:02x}:{c:02x}:{d:02x}"}}],
"nodes":[{{"hostname":"worker-{i}-a.example.com","drivers":[{{"name":"i40e"}}]}},{{"hostname":"worker-{i}-b"}}]}}"#
        ),
        (Form::V1Alpha1, Shape::Rich) => write!(
            out,
            r#"{{"name":"{name}","mode":"primary","sharing":"uds","uid":1500,"udsTimeoutSeconds":60,
"selectors":{{"drivers":[{{"name":"ice","maxDevices":2,"exclude":[{{"name":"ens{i}f3"}},{{"pci":"0000:{b:02x}:{c:02x}.{d}"}}]}}],
"devices":[{{"mac":"68:05:ca:{b:02x}:{c:02x}:{d:02x}"}}],
"nodes":[{{"hostname":"worker-{i}-a.example.com","drivers":[{{"name":"i40e"}}]}},{{"hostname":"worker-{i}-b"}}]}},
"xdpMode":"native","queues":4}}"#
        ),
    };
}

/// `pools` pools of `shape`, or as many as fit in `max_bytes` when given.
fn config(form: Form, shape: Shape, pools: usize, max_bytes: Option<usize>) -> (String, usize) {
    let mut out = String::from(form.head());
    let mut n = 0;
    let mut pool = String::new();
    while n < pools {
        pool.clear();
        write_pool(&mut pool, form, shape, n);
        if max_bytes.is_some_and(|m| out.len() + pool.len() + 3 > m) {
            break;
        }
        if n > 0 {
            out.push(',');
        }
        out.push_str(&pool);
        n += 1;
    }
    out.push_str("]}");
    (out, n)
}

/// One pool whose `nodes` list fills `max_bytes`.
fn many_nodes(form: Form, max_bytes: usize) -> (String, usize) {
    let mut out = String::from(form.head());
    let nodes_open = match form {
        Form::Upstream => r#"{"name":"nodes","mode":"primary","nodes":["#,
        Form::V1Alpha1 => r#"{"name":"nodes","selectors":{"nodes":["#,
    };
    out.push_str(nodes_open);
    let mut n = 0;
    loop {
        let node =
            format!(r#"{{"hostname":"worker-{n}.example.com","drivers":[{{"name":"ice"}}]}}"#);
        if out.len() + node.len() + 6 > max_bytes {
            break;
        }
        if n > 0 {
            out.push(',');
        }
        out.push_str(&node);
        n += 1;
    }
    out.push_str(match form {
        Form::Upstream => "]}]}",
        Form::V1Alpha1 => "]}}]}",
    });
    (out, n)
}

/// Best of a few runs (at least 3, at most ~2 s of work).
fn time_parse(text: &str, expect_pools: usize) -> Duration {
    let mut best = Duration::MAX;
    let started = Instant::now();
    for run in 0.. {
        let t = Instant::now();
        let parsed = afxdp_config::parse(std::hint::black_box(text));
        let took = t.elapsed();
        match parsed {
            Ok(c) => assert_eq!(c.pools.len(), expect_pools, "pool count"),
            Err(e) => panic!("generated config rejected: {e}"),
        }
        best = best.min(took);
        if run >= 2 && (started.elapsed() > Duration::from_secs(2) || run >= 20) {
            break;
        }
    }
    best
}

const MIB: usize = 1 << 20;

fn main() {
    println!(
        "{:<9} {:<27} {:>7} {:>9} {:>9}",
        "form", "case", "pools", "bytes", "ms"
    );
    for form in [Form::Upstream, Form::V1Alpha1] {
        let mut rows: Vec<(String, String, usize)> = Vec::new();
        for pools in [2_000, 8_000, 16_000] {
            let (text, n) = config(form, Shape::Small, pools, None);
            rows.push((format!("{pools} small pools"), text, n));
        }
        let (text, n) = config(form, Shape::Small, usize::MAX, Some(MIB));
        rows.push(("1 MiB of small pools".into(), text, n));
        let (text, n) = config(form, Shape::Rich, usize::MAX, Some(MIB));
        rows.push(("1 MiB of rich pools".into(), text, n));
        let (text, nodes) = many_nodes(form, MIB);
        rows.push((format!("1 MiB: 1 pool, {nodes} nodes"), text, 1));
        for (case, text, n) in rows {
            let took = time_parse(&text, n);
            println!(
                "{:<9} {:<27} {:>7} {:>9} {:>9.1}",
                form.name(),
                case,
                n,
                text.len(),
                took.as_secs_f64() * 1e3
            );
        }
    }
}
