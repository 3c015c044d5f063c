//! Our own configuration form, selected by `"apiVersion": "afxdp.io/v1alpha1"`.
//!
//! Keys are exact and camelCase; unknown keys, `null` values and settings
//! that cannot take effect (including those not supported yet, marked
//! *refused* below) are errors. Example (every key shown; most are
//! optional):
//!
//! ```json
//! {
//!   "apiVersion": "afxdp.io/v1alpha1",
//!   "logLevel": "info",
//!   "logFile": "/var/log/afxdp/afxdp-dp.log",
//!   "logFormat": "json",
//!   "programManager": "native",
//!   "includeVirtualDevices": false,
//!   "pools": [
//!     {
//!       "name": "fast-net",
//!       "mode": "primary",
//!       "selectors": {
//!         "drivers": [
//!           { "name": "ice", "maxDevices": 2, "excludeAddressed": true,
//!             "exclude": [ { "name": "ens801f3" }, { "pci": "0000:81:00.3" } ] }
//!         ],
//!         "devices": [ { "mac": "68:05:ca:2d:e9:1b" } ],
//!         "nodes": [ { "hostname": "worker-1.example.com", "drivers": [ { "name": "i40e" } ] } ]
//!       },
//!       "sharing": "uds",
//!       "uid": 1500,
//!       "udsTimeoutSeconds": 60,
//!       "xdpMode": "native",
//!       "program": { "image": "quay.io/example/xdp@sha256:...", "function": "xsk_redirect" },
//!       "queues": 4,
//!       "requiresUnprivilegedBpf": false,
//!       "programManager": "native",
//!       "policy": {
//!         "ref": "registry.example.com/afxdp/numa-spread@sha256:...",
//!         "failurePolicy": "Fail",
//!         "timeoutMs": 100,
//!         "memoryMiB": 32,
//!         "config": { "queuesPerPod": 2 }
//!       }
//!     }
//!   ]
//! }
//! ```
//!
//! | key | values | default |
//! |---|---|---|
//! | `logLevel` | `error` `warn` `info` `debug` `trace` | `info` |
//! | `logFile` | absolute path | stderr |
//! | `logFormat` | `text` `json` | `text` |
//! | `programManager` | `native` (aya, in afxdp-dp) or `bpfman` (`bpfman-rpc` loads and attaches): the default of pools that do not name their own | `native` |
//! | `includeVirtualDevices` | consider veth, bridges, VLANs, tunnels... as candidate devices ([`crate::selector`]) | `false` |
//! | pool `mode` | `primary` (the device itself); `cdq` (a PCI subfunction per pod, created over devlink at Allocate, deleted at release) | `primary` |
//! | pool `sharing` | `uds` `pinned` (bpffs hostPath) `csi` (afxdp-dp's CSI node plugin `csi.afxdp.io` pins the map into the pod's inline volume); `none` (raw netdev) *refused* | `uds` |
//! | pool `uid` | owner of the UDS / pin directory, 0..=4294967294 | 0 |
//! | pool `udsTimeoutSeconds` | 0 (never) ..= 3600, `sharing: uds` only | 30 |
//! | pool `xdpMode` | `native` `generic` `auto` | `native` |
//! | pool `program` | absolute path, or `{path|image, function}` | built-in |
//! | pool `queues` | channel count to request, 1..=1024 | unchanged |
//! | driver `maxDevices` | 1..=1024 per node | no limit |
//! | pool `requiresUnprivilegedBpf` | `false`; `true` *refused* (the node's sysctl is not checked yet) | `false` |
//! | driver/device `secondary` | subfunction slots per device, 1..=350, `cdq` only | 1 (in `cdq`) |
//! | driver `excludeAddressed` | skip devices with IP addresses (IPv6 link-local ones, which every up link gets, do not count) | **`true`** |
//! | pool `programManager` | `native` `bpfman` | the top-level one |
//! | pool `bpfman` | bpfman settings, only with `programManager: bpfman` (below) | defaults below |
//! | bpfman `image` | bytecode image loaded for the built-in program, pinned by digest (`registry/repo@sha256:<64 hex>`); a tag is refused | the built-in object as a file (or the pool's `program` path), which bpfman must see at the same path |
//! | bpfman `pullPolicy` | `Always` `IfNotPresent` `Never` | `IfNotPresent` |
//! | bpfman `credentialsFile` | absolute path of a dockerconfigjson file with the registry's credentials | anonymous |
//! | bpfman `function` | function loaded when the decision names none | `xsk_redirect` |
//! | bpfman `priority` | position in bpfman's XDP dispatcher, 1 (first) ..= 1000 (last), when no policy decides it | 50 |
//! | bpfman `proceedOn` | XDP actions after which the next program runs: `aborted` `drop` `pass` `tx` `redirect` `dispatcher_return` | `["pass", "dispatcher_return"]` |
//! | pool `policy` | `{ref | file, pullPolicy, insecure, failurePolicy, timeoutMs, memoryMiB, maxConcurrentCalls, config}` (see [`crate::policy`]) | built-in decisions |
//!
//! A bpfman pool's `program` may be a file path (bpfman opens it); its
//! image goes in `bpfman.image` (a policy's `select-program` image is
//! given to bpfman as chosen, with the pool's pull policy and credentials).
//! bpfman picks the XDP mode itself (its own per-interface config): the
//! decided `xdpMode` is recorded in the program's metadata.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::common::{self, Dialect};
use crate::json::{Json, JsonPath};
use crate::model::{
    is_digest_pinned, BpfmanPool, Config, DeviceMatch, DeviceSelector, DriverSelector,
    ImagePullPolicy, LogFormat, LogLevel, PoolConfig, PoolMode, ProceedOn, ProgramManagerKind,
    ProgramSource, Selector, SharingMode, SourceFormat, XdpMode, DEFAULT_UDS_TIMEOUT,
};
use crate::reader::{Ctx, Keys, ObjReader};

/// The `apiVersion` value that selects this form.
pub const API_VERSION: &str = "afxdp.io/v1alpha1";

const UDS_TIMEOUT_MAX: i64 = 3600;
const QUEUES_MAX: i64 = 1024;
const BPFMAN_PRIORITY_MAX: i32 = 1000;

/// Reads an enumerated string: `None` when absent, the default-free value
/// otherwise (errors reported).
fn choice<T: Copy>(
    obj: &mut ObjReader<'_>,
    key: &'static str,
    options: &[(&str, T)],
    ctx: &mut Ctx,
) -> Option<T> {
    choice_at(obj, key, options, ctx).map(|(_, v)| v)
}

/// [`choice`] with the value's path, for values refused after parsing.
fn choice_at<T: Copy>(
    obj: &mut ObjReader<'_>,
    key: &'static str,
    options: &[(&str, T)],
    ctx: &mut Ctx,
) -> Option<(JsonPath, T)> {
    let (p, s) = obj.string(key, ctx)?;
    match options.iter().find(|(name, _)| *name == s) {
        Some((_, v)) => Some((p, *v)),
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ctx.invalid(
                &p,
                format!("invalid {key} {s:?}: expected one of {}", names.join(", ")),
            );
            None
        }
    }
}

fn absolute_path(s: &str, what: &str, path: &JsonPath, ctx: &mut Ctx) -> Option<PathBuf> {
    let p = Path::new(s);
    if p.is_absolute() && !s.ends_with('/') && p.components().all(|c| c != Component::ParentDir) {
        Some(p.to_path_buf())
    } else {
        ctx.invalid(
            path,
            format!("invalid {what} {s:?}: expected an absolute file path without '..'"),
        );
        None
    }
}

pub(crate) fn parse(root: &Json, ctx: &mut Ctx) -> Option<Config> {
    let path = JsonPath::root();
    let mut obj = ObjReader::new(root, &path, Keys::Exact, ctx)?;
    if let Some((p, v)) = obj.string("apiVersion", ctx) {
        if v != API_VERSION {
            ctx.invalid(
                &p,
                format!("unsupported apiVersion {v:?}: expected {API_VERSION:?}"),
            );
        }
    }
    let log_level = choice(
        &mut obj,
        "logLevel",
        &[
            ("error", LogLevel::Error),
            ("warn", LogLevel::Warn),
            ("info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("trace", LogLevel::Trace),
        ],
        ctx,
    )
    .unwrap_or_default();
    let log_file = obj
        .string("logFile", ctx)
        .and_then(|(p, s)| absolute_path(s, "logFile", &p, ctx));
    let log_format = choice(
        &mut obj,
        "logFormat",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ctx,
    )
    .unwrap_or_default();
    let program_manager = program_manager(&mut obj, ctx).unwrap_or_default();
    let include_virtual_devices = obj
        .bool("includeVirtualDevices", ctx)
        .is_some_and(|(_, b)| b);

    let mut pools = Vec::new();
    match obj.array("pools", ctx) {
        Some((p, items)) => {
            for (i, item) in items.iter().enumerate() {
                let ip = p.index(i);
                if let Some(pool) = parse_pool(item, &ip, program_manager, ctx) {
                    pools.push((ip, pool));
                }
            }
        }
        None if !obj.has("pools") => {
            ctx.missing(
                &obj.child_path("pools"),
                "pools is required (it may be empty)",
            );
        }
        None => {}
    }
    obj.finish(ctx);
    common::check_pools(&pools, ctx);

    Some(Config {
        source_format: SourceFormat::V1Alpha1,
        log_level,
        log_file,
        log_format,
        program_manager,
        include_virtual_devices,
        pools: pools.into_iter().map(|(_, p)| p).collect(),
        warnings: Vec::new(),
    })
}

fn parse_program(v: &Json, path: &JsonPath, ctx: &mut Ctx) -> Option<ProgramSource> {
    if let Json::String(s) = v {
        return absolute_path(s, "program path", path, ctx).map(|path| ProgramSource::File {
            path,
            function: None,
        });
    }
    let mut obj = ObjReader::new(v, path, Keys::Exact, ctx)?;
    let file = obj.string("path", ctx);
    let image = obj.string("image", ctx);
    let function = obj.string("function", ctx).and_then(|(p, f)| {
        if f.is_empty() || f.chars().any(char::is_whitespace) {
            ctx.invalid(&p, format!("invalid function name {f:?}"));
            None
        } else {
            Some(f.to_owned())
        }
    });
    let out = match (file, image) {
        (Some((p, f)), None) => absolute_path(f, "program path", &p, ctx)
            .map(|path| ProgramSource::File { path, function }),
        (None, Some((p, img))) => {
            if img.is_empty() || img.chars().any(char::is_whitespace) {
                ctx.invalid(&p, format!("invalid image reference {img:?}"));
                None
            } else {
                Some(ProgramSource::Image {
                    image: img.to_owned(),
                    function,
                })
            }
        }
        (Some(_), Some(_)) => {
            ctx.invalid(path, "give either path or image, not both");
            None
        }
        (None, None) => {
            ctx.missing(path, "a program needs a path or an image");
            None
        }
    };
    obj.finish(ctx);
    out
}

/// `programManager`, top level (the default of pools) or per pool.
fn program_manager(obj: &mut ObjReader<'_>, ctx: &mut Ctx) -> Option<ProgramManagerKind> {
    choice(
        obj,
        "programManager",
        &[
            ("native", ProgramManagerKind::Native),
            ("bpfman", ProgramManagerKind::Bpfman),
        ],
        ctx,
    )
}

/// A pool's `bpfman` object (see [`BpfmanPool`]).
fn parse_bpfman(v: &Json, path: &JsonPath, ctx: &mut Ctx) -> Option<BpfmanPool> {
    let mut obj = ObjReader::new(v, path, Keys::Exact, ctx)?;
    let mut out = BpfmanPool::default();
    if let Some((p, img)) = obj.string("image", ctx) {
        if is_digest_pinned(img) && !img.chars().any(char::is_whitespace) {
            out.image = Some(img.to_owned());
        } else {
            ctx.invalid(
                &p,
                format!(
                    "bytecode image {img:?} is not pinned by digest: expected \
                     registry/repo@sha256:<64 hex digits> (`afxdpctl image push` prints it)"
                ),
            );
        }
    }
    if let Some(policy) = choice(
        &mut obj,
        "pullPolicy",
        &[
            ("Always", ImagePullPolicy::Always),
            ("IfNotPresent", ImagePullPolicy::IfNotPresent),
            ("Never", ImagePullPolicy::Never),
        ],
        ctx,
    ) {
        out.pull_policy = policy;
    }
    out.credentials_file = obj
        .string("credentialsFile", ctx)
        .and_then(|(p, s)| absolute_path(s, "credentialsFile", &p, ctx));
    if let Some((p, f)) = obj.string("function", ctx) {
        if f.is_empty() || f.chars().any(char::is_whitespace) {
            ctx.invalid(&p, format!("invalid function name {f:?}"));
        } else {
            out.function = Some(f.to_owned());
        }
    }
    if let Some((p, n)) = obj.int("priority", ctx) {
        match i32::try_from(n) {
            Ok(n) if (1..=BPFMAN_PRIORITY_MAX).contains(&n) => out.priority = n,
            _ => ctx.invalid(
                &p,
                format!(
                    "priority must be between 1 (first) and {BPFMAN_PRIORITY_MAX} (last), got {n}"
                ),
            ),
        }
    }
    if let Some((p, items)) = obj.array("proceedOn", ctx) {
        out.proceed_on = proceed_on(items, &p, ctx);
    }
    obj.finish(ctx);
    Some(out)
}

/// `proceedOn`: XDP action names, each at most once.
fn proceed_on(items: &[Json], path: &JsonPath, ctx: &mut Ctx) -> Vec<ProceedOn> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = path.index(i);
        let Json::String(s) = item else {
            ctx.wrong_type(&ip, "a string", item);
            continue;
        };
        match ProceedOn::ALL.iter().find(|(n, _)| n == s) {
            Some((_, a)) if out.contains(a) => ctx.invalid(&ip, format!("{s:?} is listed twice")),
            Some((_, a)) => out.push(*a),
            None => {
                let names: Vec<&str> = ProceedOn::ALL.iter().map(|(n, _)| *n).collect();
                ctx.invalid(
                    &ip,
                    format!(
                        "invalid XDP action {s:?}: expected one of {}",
                        names.join(", ")
                    ),
                );
            }
        }
    }
    out
}

/// The pool's bpfman settings: `Some` when its manager is bpfman; `bpfman`
/// settings on a native pool are an error.
fn pool_bpfman(
    obj: &mut ObjReader<'_>,
    default_manager: ProgramManagerKind,
    ctx: &mut Ctx,
) -> Option<BpfmanPool> {
    let manager = program_manager(obj, ctx).unwrap_or(default_manager);
    let settings = obj
        .take("bpfman", ctx)
        .map(|(p, v)| (parse_bpfman(v, &p, ctx), p));
    match (manager, settings) {
        (ProgramManagerKind::Bpfman, Some((s, _))) => Some(s.unwrap_or_default()),
        (ProgramManagerKind::Bpfman, None) => Some(BpfmanPool::default()),
        (ProgramManagerKind::Native, Some((_, p))) => {
            ctx.invalid(&p, "bpfman settings need programManager \"bpfman\"");
            None
        }
        (ProgramManagerKind::Native, None) => None,
    }
}

/// A bpfman pool's `program`: a file bpfman loads; its image goes in
/// `bpfman.image`, where its pull settings are.
fn check_bpfman_program(
    program: Option<&(JsonPath, ProgramSource)>,
    bpfman: &BpfmanPool,
    ctx: &mut Ctx,
) {
    match program {
        Some((p, ProgramSource::Image { .. })) => ctx.invalid(
            p,
            "a bpfman pool names its bytecode image in bpfman.image (with its pull policy and \
             credentials), not in program",
        ),
        Some((p, ProgramSource::File { .. })) if bpfman.image.is_some() => ctx.invalid(
            p,
            "give the pool's program either as program (a file bpfman reads) or as \
             bpfman.image, not both",
        ),
        _ => {}
    }
}

fn parse_pool(
    v: &Json,
    path: &JsonPath,
    default_manager: ProgramManagerKind,
    ctx: &mut Ctx,
) -> Option<PoolConfig> {
    let mut obj = ObjReader::new(v, path, Keys::Exact, ctx)?;
    let name = match obj.string("name", ctx) {
        Some((p, s)) => common::check_v1_pool_name(s, &p, ctx).then(|| s.to_owned()),
        None => {
            ctx.missing(&obj.child_path("name"), "a pool must have a name");
            None
        }
    };
    let mode = choice(
        &mut obj,
        "mode",
        &[("primary", PoolMode::Primary), ("cdq", PoolMode::Cdq)],
        ctx,
    )
    .unwrap_or_default();

    let mut selector = Selector::default();
    match obj.take("selectors", ctx) {
        Some((sp, sv)) => {
            if let Some(mut sel) = ObjReader::new(sv, &sp, Keys::Exact, ctx) {
                let given =
                    sel.array_len("drivers") + sel.array_len("devices") + sel.array_len("nodes");
                let (drivers, devices) =
                    common::drivers_and_devices(&mut sel, Dialect::V1Alpha1, ctx);
                let nodes = common::nodes(&mut sel, Dialect::V1Alpha1, ctx);
                if given == 0 {
                    ctx.missing(&sp, "selectors must give drivers, devices or nodes");
                }
                sel.finish(ctx);
                selector = Selector {
                    drivers,
                    devices,
                    nodes,
                };
            }
        }
        None => ctx.missing(
            &obj.child_path("selectors"),
            "a pool must have selectors (drivers, devices or nodes)",
        ),
    }
    if mode == PoolMode::Primary {
        let sel = &selector;
        let drivers = sel
            .drivers
            .iter()
            .chain(sel.nodes.iter().flat_map(|n| &n.drivers));
        let devices = sel
            .devices
            .iter()
            .chain(sel.nodes.iter().flat_map(|n| &n.devices));
        if drivers
            .map(|d| d.secondary)
            .chain(devices.map(|d| d.secondary))
            .any(|s| s.is_some())
        {
            ctx.invalid(path, "secondary counts are only valid with mode \"cdq\"");
        }
    }

    let sharing = match choice_at(
        &mut obj,
        "sharing",
        &[
            ("uds", SharingMode::Uds),
            ("pinned", SharingMode::PinnedMap),
            ("csi", SharingMode::Csi),
            ("none", SharingMode::Unmanaged),
        ],
        ctx,
    ) {
        Some((p, SharingMode::Unmanaged)) => {
            common::not_supported(&p, "\"none\" (the raw netdev, no program)", "", ctx);
            SharingMode::Unmanaged
        }
        other => other.map(|(_, m)| m).unwrap_or_default(),
    };
    let uid = match obj.int("uid", ctx) {
        None => 0,
        Some((p, n)) => match u32::try_from(n) {
            Ok(u) if u != u32::MAX => u,
            _ => {
                ctx.invalid(&p, format!("uid must be between 0 and 4294967294, got {n}"));
                0
            }
        },
    };
    let uds_timeout = match obj.int("udsTimeoutSeconds", ctx) {
        None => DEFAULT_UDS_TIMEOUT,
        Some((p, n)) => {
            if sharing != SharingMode::Uds {
                ctx.invalid(&p, "udsTimeoutSeconds is only valid with sharing \"uds\"");
                DEFAULT_UDS_TIMEOUT
            } else if (0..=UDS_TIMEOUT_MAX).contains(&n) {
                Duration::from_secs(n as u64)
            } else {
                ctx.invalid(
                    &p,
                    format!(
                        "udsTimeoutSeconds must be between 0 (never) and {UDS_TIMEOUT_MAX}, got {n}"
                    ),
                );
                DEFAULT_UDS_TIMEOUT
            }
        }
    };
    let xdp_mode = choice(
        &mut obj,
        "xdpMode",
        &[
            ("native", XdpMode::Native),
            ("generic", XdpMode::Generic),
            ("auto", XdpMode::Auto),
        ],
        ctx,
    )
    .unwrap_or_default();
    let program = obj
        .take("program", ctx)
        .and_then(|(p, v)| parse_program(v, &p, ctx).map(|s| (p, s)));
    let bpfman = pool_bpfman(&mut obj, default_manager, ctx);
    if let Some(b) = &bpfman {
        check_bpfman_program(program.as_ref(), b, ctx);
    }
    let program = program.map(|(_, s)| s);
    if program.is_some() && sharing == SharingMode::Unmanaged {
        ctx.invalid(
            path,
            "program has no effect with sharing \"none\" (nothing is loaded)",
        );
    }
    let channels = obj.int("queues", ctx).and_then(|(p, n)| {
        if (1..=QUEUES_MAX).contains(&n) {
            u32::try_from(n).ok()
        } else {
            ctx.invalid(
                &p,
                format!("queues must be between 1 and {QUEUES_MAX}, got {n}"),
            );
            None
        }
    });
    if let Some((p, true)) = obj.bool("requiresUnprivilegedBpf", ctx) {
        common::refuse_unprivileged_bpf(&p, ctx);
    }
    let requires_unprivileged_bpf = false;
    let policy = obj
        .take("policy", ctx)
        .and_then(|(p, v)| crate::policy::parse(v, &p, ctx));
    obj.finish(ctx);

    Some(PoolConfig {
        name: name?,
        mode,
        sharing,
        uid,
        uds_timeout,
        xdp_mode,
        program,
        requires_unprivileged_bpf,
        selector,
        channels,
        ethtool_cmds: Vec::new(),
        policy,
        bpfman,
    })
}

/// Why a [`Config`] cannot be written in the v1alpha1 form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// Upstream `ethtoolCmds` have no v1alpha1 equivalent: filter rules come
    /// from the pool policy there.
    #[error("pool {pool:?} uses ethtoolCmds, which the v1alpha1 form does not carry (filter rules come from the pool policy)")]
    EthtoolCmds {
        /// The pool concerned.
        pool: String,
    },
}

fn device_match_json(m: &DeviceMatch) -> Value {
    match m {
        DeviceMatch::Name(n) => json!({ "name": n }),
        DeviceMatch::Pci(p) => json!({ "pci": p.to_string() }),
        DeviceMatch::Mac(m) => json!({ "mac": m.to_string() }),
    }
}

fn device_json(d: &DeviceSelector) -> Value {
    let mut v = device_match_json(&d.matcher);
    if let (Some(s), Some(o)) = (d.secondary, v.as_object_mut()) {
        o.insert("secondary".into(), s.into());
    }
    v
}

fn driver_json(d: &DriverSelector) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), d.name.clone().into());
    if let Some(m) = d.max_devices {
        o.insert("maxDevices".into(), m.into());
    }
    if let Some(s) = d.secondary {
        o.insert("secondary".into(), s.into());
    }
    if !d.exclude.is_empty() {
        o.insert(
            "exclude".into(),
            d.exclude.iter().map(device_match_json).collect(),
        );
    }
    o.insert("excludeAddressed".into(), d.exclude_addressed.into());
    Value::Object(o)
}

fn lists_json(o: &mut Map<String, Value>, drivers: &[DriverSelector], devices: &[DeviceSelector]) {
    if !drivers.is_empty() {
        o.insert("drivers".into(), drivers.iter().map(driver_json).collect());
    }
    if !devices.is_empty() {
        o.insert("devices".into(), devices.iter().map(device_json).collect());
    }
}

fn bpfman_json(b: &BpfmanPool) -> Value {
    let mut o = Map::new();
    if let Some(i) = &b.image {
        o.insert("image".into(), i.clone().into());
    }
    o.insert("pullPolicy".into(), b.pull_policy.as_str().into());
    if let Some(f) = &b.credentials_file {
        o.insert(
            "credentialsFile".into(),
            f.to_string_lossy().into_owned().into(),
        );
    }
    if let Some(f) = &b.function {
        o.insert("function".into(), f.clone().into());
    }
    o.insert("priority".into(), b.priority.into());
    let actions: Vec<Value> = b.proceed_on.iter().map(|a| a.as_str().into()).collect();
    o.insert("proceedOn".into(), actions.into());
    Value::Object(o)
}

/// Writes `config` in the v1alpha1 form (pretty-printed JSON), with every
/// setting explicit. Parsing the result gives back the same pools and
/// settings (`source_format` becomes `V1Alpha1` and `warnings` are empty);
/// this is how `afxdpctl` can convert an upstream file.
///
/// # Errors
/// [`ConvertError`] when the config uses something the form cannot carry.
pub fn to_v1alpha1(config: &Config) -> Result<String, ConvertError> {
    let mut root = Map::new();
    root.insert("apiVersion".into(), API_VERSION.into());
    root.insert("logLevel".into(), config.log_level.as_str().into());
    if let Some(f) = &config.log_file {
        root.insert("logFile".into(), f.to_string_lossy().into_owned().into());
    }
    root.insert("logFormat".into(), config.log_format.as_str().into());
    root.insert(
        "programManager".into(),
        config.program_manager.as_str().into(),
    );
    root.insert(
        "includeVirtualDevices".into(),
        config.include_virtual_devices.into(),
    );
    let mut pools = Vec::new();
    for p in &config.pools {
        if !p.ethtool_cmds.is_empty() {
            return Err(ConvertError::EthtoolCmds {
                pool: p.name.clone(),
            });
        }
        let mut o = Map::new();
        o.insert("name".into(), p.name.clone().into());
        o.insert("mode".into(), p.mode.as_str().into());
        let mut sel = Map::new();
        lists_json(&mut sel, &p.selector.drivers, &p.selector.devices);
        if !p.selector.nodes.is_empty() {
            let nodes: Vec<Value> = p
                .selector
                .nodes
                .iter()
                .map(|n| {
                    let mut no = Map::new();
                    no.insert("hostname".into(), n.hostname.clone().into());
                    lists_json(&mut no, &n.drivers, &n.devices);
                    Value::Object(no)
                })
                .collect();
            sel.insert("nodes".into(), nodes.into());
        }
        o.insert("selectors".into(), Value::Object(sel));
        o.insert("sharing".into(), p.sharing.as_str().into());
        o.insert("uid".into(), p.uid.into());
        if p.sharing == SharingMode::Uds {
            o.insert("udsTimeoutSeconds".into(), p.uds_timeout.as_secs().into());
        }
        o.insert("xdpMode".into(), p.xdp_mode.as_str().into());
        match &p.program {
            None => {}
            Some(ProgramSource::File { path, function }) => {
                let mut po = Map::new();
                po.insert("path".into(), path.to_string_lossy().into_owned().into());
                if let Some(f) = function {
                    po.insert("function".into(), f.clone().into());
                }
                o.insert("program".into(), Value::Object(po));
            }
            Some(ProgramSource::Image { image, function }) => {
                let mut po = Map::new();
                po.insert("image".into(), image.clone().into());
                if let Some(f) = function {
                    po.insert("function".into(), f.clone().into());
                }
                o.insert("program".into(), Value::Object(po));
            }
        }
        if let Some(c) = p.channels {
            o.insert("queues".into(), c.into());
        }
        o.insert(
            "requiresUnprivilegedBpf".into(),
            p.requires_unprivileged_bpf.into(),
        );
        if let Some(policy) = &p.policy {
            o.insert("policy".into(), crate::policy::to_json(policy));
        }
        o.insert("programManager".into(), p.program_manager().as_str().into());
        if let Some(b) = &p.bpfman {
            o.insert("bpfman".into(), bpfman_json(b));
        }
        pools.push(Value::Object(o));
    }
    root.insert("pools".into(), pools.into());
    // Serialising a `Value` built from strings, numbers and bools cannot fail.
    Ok(serde_json::to_string_pretty(&Value::Object(root)).unwrap_or_default())
}
