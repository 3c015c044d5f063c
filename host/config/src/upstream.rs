//! The upstream Go plugin's `config.json`, every version of it.
//!
//! # Keys
//! Keys match case-insensitively, as Go's `encoding/json` matches them
//! (`"ExcludeDevices"` = `"excludeDevices"`), and `null` means "not set".
//! Unlike Go, an unknown key is an error: a mistyped `excludeDevice` must not
//! silently select the NIC that carries the node's traffic. Keys that some
//! upstream version wrote in its own examples are all known; those with no
//! meaning here (`udsFuzz`, `cndpFuzz`, ...) are accepted with a warning.
//! Two spellings of one key in the same object are an error (Go would keep
//! the last).
//!
//! # Versions accepted
//! * Current: `pools[]` of `{name, mode, drivers[], devices[], nodes[],
//!   uid, udsTimeout, UdsServerDisable, BpfMapPinningEnable,
//!   RequiresUnprivilegedBpf, ethtoolCmds[], UdsFuzz}`, top-level `logLevel`,
//!   `logFile`, `kindCluster`; the Red Hat fork's `bpfdClientEnable`,
//!   `BpfdClientEnable`, `bpfByteCodeImage`, `bpfByteCodeSection`.
//! * First versions: drivers and devices as bare strings, top-level `mode`
//!   (`cndp` = primary), `timeout`, `requireUnprivilegedBpf`, absolute
//!   `logFile` paths, no pool `mode`.
//!
//! `mode: "cdq"` (pool, or legacy top level) selects subfunction pools:
//! each device's `secondary` count (default 1) is how many subfunction slots
//! it advertises; afxdp-dp creates one over devlink at Allocate.
//!
//! `bpfdClientEnable: true` (top level: every pool) or `BpfdClientEnable:
//! true` (one pool) has bpfman load the pool's programs
//! (`programManager: bpfman`); such a pool's `bpfByteCodeImage` is the
//! image bpfman loads (it must be pinned by digest, `repo@sha256:...`) and
//! `bpfByteCodeSection` its function. Without bpfman the image is pulled
//! and attached natively, as before.
//!
//! # Not supported yet (refused)
//! `UdsServerDisable: true` without
//! `BpfMapPinningEnable`, `RequiresUnprivilegedBpf: true` (and legacy
//! `requireUnprivilegedBpf`), an `ethtoolCmds` entry that cannot be
//! translated (`-X` RSS, unknown fields): see [`crate::ethtool_cmd`].
//! Secondary counts in a primary pool are dropped with a warning, as
//! before.
//!
//! # Defaults filled in for older files
//! A pool without `mode` gets the top-level legacy `mode`, else `primary`
//! (with a warning). Bare-string drivers skip addressed devices, as those
//! versions always did.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::common::{self, Dialect};
use crate::ethtool_cmd::{self, EthtoolOp, NtupleTemplate};
use crate::json::{Json, JsonPath};
use crate::model::{
    is_digest_pinned, BpfmanPool, Config, LogFormat, LogLevel, PoolConfig, PoolMode,
    ProgramManagerKind, ProgramSource, Selector, SharingMode, SourceFormat, XdpMode,
    DEFAULT_UDS_TIMEOUT, UPSTREAM_LOG_DIR,
};
use crate::reader::{Ctx, Keys, ObjReader};

/// UID bounds upstream enforces for non-zero values (Alpine's first user,
/// BusyBox adduser's maximum).
const UID_MIN: i64 = 1000;
const UID_MAX: i64 = 256_000;
/// UDS timeout bounds, seconds.
const UDS_TIMEOUT_MIN: i64 = 30;
const UDS_TIMEOUT_MAX: i64 = 300;

/// Settings given once at the top level by the first upstream versions and
/// inherited by every pool.
#[derive(Default)]
struct Legacy {
    mode: Option<PoolMode>,
    timeout: Option<Duration>,
    /// Top-level `bpfdClientEnable: true` (the Red Hat fork's switch to
    /// bpfman): every pool's programs are bpfman's.
    bpfman: bool,
}

pub(crate) fn parse(root: &Json, ctx: &mut Ctx) -> Option<Config> {
    let path = JsonPath::root();
    let mut obj = ObjReader::new(root, &path, Keys::GoFold, ctx)?;

    let log_level = match obj.string("logLevel", ctx) {
        None => LogLevel::default(),
        Some((_, "")) => LogLevel::default(),
        Some((p, s)) => {
            match s {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                other => {
                    ctx.invalid(
                    &p,
                    format!("invalid log level {other:?}: expected one of debug, info, warning, error"),
                );
                    LogLevel::default()
                }
            }
        }
    };
    let log_file = obj
        .string("logFile", ctx)
        .and_then(|(p, s)| log_file(s, &p, ctx));

    let mut include_virtual_devices = false;
    if let Some((_, b)) = obj.bool("kindCluster", ctx) {
        include_virtual_devices = b;
    }
    if let Some((p, s)) = obj.string("clusterType", ctx) {
        if s.eq_ignore_ascii_case("kind") {
            include_virtual_devices = true;
        } else {
            ctx.warn(
                &p,
                format!("ignored: unknown cluster type {s:?} (only \"kind\" has an effect)"),
            );
        }
    }

    let mut legacy = Legacy::default();
    if let Some((_, true)) = obj.bool("bpfdClientEnable", ctx) {
        legacy.bpfman = true;
    }
    if let Some((p, s)) = obj.string("mode", ctx) {
        ctx.warn(
            &p,
            "legacy top-level mode: applies to pools that do not set their own mode",
        );
        match s {
            "cndp" | "primary" => legacy.mode = Some(PoolMode::Primary),
            "cdq" => legacy.mode = Some(PoolMode::Cdq),
            "" => {}
            other => ctx.invalid(
                &p,
                format!("invalid mode {other:?}: expected one of primary, cdq (or legacy cndp)"),
            ),
        }
    }
    if let Some((p, t)) = obj.int("timeout", ctx) {
        ctx.warn(
            &p,
            "legacy top-level UDS timeout: applies to pools without udsTimeout",
        );
        legacy.timeout = uds_timeout(t, "timeout", &p, ctx);
    }
    if let Some((p, true)) = obj.bool("requireUnprivilegedBpf", ctx) {
        common::refuse_unprivileged_bpf(&p, ctx);
    }
    for key in ["udsFuzz", "cndpFuzz"] {
        if let Some((p, b)) = obj.bool(key, ctx) {
            if b {
                ctx.warn(&p, "ignored: UDS fuzzing is a test-only upstream switch");
            }
        }
    }

    let mut pools = Vec::new();
    if let Some((p, items)) = obj.array("pools", ctx) {
        for (i, item) in items.iter().enumerate() {
            let ip = p.index(i);
            if *item == Json::Null {
                ctx.invalid(&ip, "a pool entry cannot be null");
            } else if let Some(pool) = parse_pool(item, &ip, &legacy, ctx) {
                pools.push((ip, pool));
            }
        }
    }
    obj.finish(ctx);
    common::check_pools(&pools, ctx);

    Some(Config {
        source_format: SourceFormat::Upstream,
        log_level,
        log_file,
        log_format: LogFormat::Text,
        program_manager: if legacy.bpfman {
            ProgramManagerKind::Bpfman
        } else {
            ProgramManagerKind::Native
        },
        include_virtual_devices,
        pools: pools.into_iter().map(|(_, p)| p).collect(),
        warnings: Vec::new(),
    })
}

/// Current upstream takes a file name (`afxdp-dp.log`) and places it in
/// `/var/log/afxdp-k8s-plugins/`; its first versions took an absolute path,
/// still accepted.
fn log_file(s: &str, path: &JsonPath, ctx: &mut Ctx) -> Option<PathBuf> {
    if s.is_empty() {
        return None;
    }
    let name_ok = |n: &str| {
        let stem = n.strip_suffix(".log").or_else(|| n.strip_suffix(".txt"));
        stem.is_some_and(|st| {
            !st.is_empty()
                && st
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    };
    if name_ok(s) {
        return Some(Path::new(UPSTREAM_LOG_DIR).join(s));
    }
    let p = Path::new(s);
    if p.is_absolute()
        && p.components().all(|c| !matches!(c, Component::ParentDir))
        && p.file_name().and_then(|n| n.to_str()).is_some_and(name_ok)
        && !s.ends_with('/')
    {
        return Some(p.to_path_buf());
    }
    ctx.invalid(
        path,
        format!(
            "invalid log file {s:?}: expected a file name of letters, digits, '_' and '-' ending \
             in .log or .txt (placed in {UPSTREAM_LOG_DIR}), or an absolute path to such a file"
        ),
    );
    None
}

/// `-1` disables the timeout, `0` means the default (30 s), otherwise
/// 30..=300 seconds.
fn uds_timeout(t: i64, key: &str, path: &JsonPath, ctx: &mut Ctx) -> Option<Duration> {
    match t {
        -1 => Some(Duration::ZERO),
        0 => None,
        UDS_TIMEOUT_MIN..=UDS_TIMEOUT_MAX => Some(Duration::from_secs(t as u64)),
        _ => {
            ctx.invalid(
                path,
                format!(
                    "{key} must be -1 (no timeout), 0 (default, 30 s) or between \
                     {UDS_TIMEOUT_MIN} and {UDS_TIMEOUT_MAX} seconds, got {t}"
                ),
            );
            None
        }
    }
}

fn parse_pool(v: &Json, path: &JsonPath, legacy: &Legacy, ctx: &mut Ctx) -> Option<PoolConfig> {
    let mut obj = ObjReader::new(v, path, Keys::GoFold, ctx)?;
    let name = match obj.string("name", ctx) {
        Some((p, s)) => common::check_upstream_pool_name(s, &p, ctx).then(|| s.to_owned()),
        None => {
            ctx.missing(&obj.child_path("name"), "a pool must have a name");
            None
        }
    };
    let mode = match obj.string("mode", ctx) {
        Some((_, "primary")) => PoolMode::Primary,
        Some((_, "cdq")) => PoolMode::Cdq,
        Some((p, s)) if !s.is_empty() => {
            ctx.invalid(
                &p,
                format!("invalid mode {s:?}: expected one of primary, cdq"),
            );
            PoolMode::Primary
        }
        _ => match legacy.mode {
            Some(m) => m,
            None => {
                ctx.warn(
                    &obj.child_path("mode"),
                    "no mode given: using primary (current upstream requires a mode)",
                );
                PoolMode::Primary
            }
        },
    };

    let selects_something =
        obj.array_len("drivers") + obj.array_len("devices") + obj.array_len("nodes") > 0;
    let (drivers, devices) = common::drivers_and_devices(&mut obj, Dialect::Upstream, ctx);
    let nodes = common::nodes(&mut obj, Dialect::Upstream, ctx);
    if !selects_something {
        ctx.missing(
            path,
            "a pool must select devices: give drivers, devices or nodes",
        );
    }

    let uds_disable = obj.bool("UdsServerDisable", ctx);
    let pinning = obj.bool("BpfMapPinningEnable", ctx);
    let bpfman = obj.bool("BpfdClientEnable", ctx).is_some_and(|(_, b)| b) || legacy.bpfman;
    let timeout = obj.int("udsTimeout", ctx);
    if let Some((p, true)) = obj.bool("UdsFuzz", ctx) {
        ctx.warn(&p, "ignored: UDS fuzzing is a test-only upstream switch");
    }
    if let Some((p, true)) = obj.bool("RequiresUnprivilegedBpf", ctx) {
        common::refuse_unprivileged_bpf(&p, ctx);
    }
    let uid = match obj.int("uid", ctx) {
        None | Some((_, 0)) => 0,
        Some((p, n)) => {
            if (UID_MIN..=UID_MAX).contains(&n) {
                n as u32
            } else {
                ctx.invalid(
                    &p,
                    format!("uid must be 0 or between {UID_MIN} and {UID_MAX}, got {n}"),
                );
                0
            }
        }
    };
    let (ethtool_cmds, channels) = ethtool_cmds(&mut obj, ctx);
    let image = obj.string("bpfByteCodeImage", ctx);
    let image_path = image.as_ref().map(|(p, _)| p.clone());
    let section = obj.string("bpfByteCodeSection", ctx);
    let program = match (image, section) {
        (Some((p, img)), sec) if !img.is_empty() => {
            if img.chars().any(char::is_whitespace) {
                ctx.invalid(&p, format!("invalid image reference {img:?}"));
            }
            let function = sec.map(|(_, s)| s.to_owned()).filter(|s| !s.is_empty());
            Some(ProgramSource::Image {
                image: img.to_owned(),
                function,
            })
        }
        (_, Some((p, sec))) if !sec.is_empty() => {
            ctx.invalid(&p, "bpfByteCodeSection needs bpfByteCodeImage");
            None
        }
        _ => None,
    };
    let (program, bpfman) = match (bpfman, program) {
        (false, program) => (program, None),
        (true, program) => (None, Some(bpfman_pool(program, image_path, ctx))),
    };
    obj.finish(ctx);

    let uds_disable_v = uds_disable.as_ref().is_some_and(|(_, b)| *b);
    let pinning_v = pinning.as_ref().is_some_and(|(_, b)| *b);
    let sharing = match (uds_disable_v, pinning_v) {
        (false, false) => SharingMode::Uds,
        (true, true) => SharingMode::PinnedMap,
        (true, false) => {
            if let Some((p, _)) = &uds_disable {
                common::not_supported(
                    p,
                    "true without BpfMapPinningEnable (the pod would get the raw netdev, or \
                     bpfman's CSI map with bpfdClientEnable)",
                    "",
                    ctx,
                );
            }
            SharingMode::Unmanaged
        }
        (false, true) => {
            if let Some((p, _)) = &pinning {
                ctx.invalid(
                    p,
                    "BpfMapPinningEnable needs UdsServerDisable: true (handing the map out over \
                     the UDS and as a pinned map at the same time is not supported)",
                );
            }
            SharingMode::PinnedMap
        }
    };
    let mut uds_timeout_v = DEFAULT_UDS_TIMEOUT;
    match timeout {
        Some((p, t)) => {
            if let Some(d) = uds_timeout(t, "udsTimeout", &p, ctx) {
                uds_timeout_v = d;
            }
            if sharing != SharingMode::Uds && t != 0 {
                ctx.warn(&p, "ignored: this pool does not use the UDS server");
                uds_timeout_v = DEFAULT_UDS_TIMEOUT;
            }
        }
        None => {
            if let (Some(d), SharingMode::Uds) = (legacy.timeout, sharing) {
                uds_timeout_v = d;
            }
        }
    }
    if sharing == SharingMode::Unmanaged && uid != 0 {
        ctx.warn(
            path,
            "uid has no effect: the pool hands out raw devices (UdsServerDisable)",
        );
    }

    let mut selector = Selector {
        drivers,
        devices,
        nodes,
    };
    if mode == PoolMode::Primary && clear_secondary(&mut selector) {
        ctx.warn(
            path,
            "ignored: secondary counts have no effect in primary mode",
        );
    }

    Some(PoolConfig {
        name: name?,
        mode,
        sharing,
        uid,
        uds_timeout: uds_timeout_v,
        xdp_mode: XdpMode::Auto,
        program,
        requires_unprivileged_bpf: false,
        selector,
        channels,
        ethtool_cmds,
        policy: None,
        bpfman,
    })
}

/// A bpfman pool: its `bpfByteCodeImage` (pinned by digest) and
/// `bpfByteCodeSection` are what bpfman loads.
fn bpfman_pool(
    program: Option<ProgramSource>,
    image_path: Option<JsonPath>,
    ctx: &mut Ctx,
) -> BpfmanPool {
    let mut pool = BpfmanPool::default();
    if let Some(ProgramSource::Image { image, function }) = program {
        if is_digest_pinned(&image) {
            pool.image = Some(image);
        } else if let Some(p) = image_path {
            ctx.invalid(
                &p,
                format!(
                    "bytecode image {image:?} is not pinned by digest: bpfman pools need \
                     registry/repo@sha256:<64 hex digits>"
                ),
            );
        }
        pool.function = function;
    }
    pool
}

/// `ethtoolCmds`, translated: the ntuple rules and the channel count of the
/// last `-L` (see [`crate::ethtool_cmd`]); each untranslatable one refused.
fn ethtool_cmds(obj: &mut ObjReader<'_>, ctx: &mut Ctx) -> (Vec<NtupleTemplate>, Option<u32>) {
    let (mut rules, mut channels) = (Vec::new(), None);
    let Some((p, items)) = obj.array("ethtoolCmds", ctx) else {
        return (rules, channels);
    };
    for (i, item) in items.iter().enumerate() {
        let ip = p.index(i);
        let Json::String(s) = item else {
            ctx.wrong_type(&ip, "a string", item);
            continue;
        };
        if !ethtool_cmd_ok(s) {
            ctx.invalid(
                &ip,
                format!(
                    "invalid ethtool command {s:?}: use letters, digits, spaces and \
                     - : . / (as ethtool arguments; -device- and -ip- are substituted)"
                ),
            );
            continue;
        }
        match ethtool_cmd::translate(s) {
            Ok(EthtoolOp::Ntuple(rule)) => rules.push(rule),
            Ok(EthtoolOp::Channels(n)) => channels = Some(n),
            Err(why) => ctx.invalid(&ip, format!("ethtool command {s:?}: {why}")),
        }
    }
    (rules, channels)
}

/// Upstream's filter regex allowed letters, digits, whitespace and `- : . /`.
fn ethtool_cmd_ok(s: &str) -> bool {
    !s.trim().is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || c.is_whitespace() || matches!(c, '-' | ':' | '.' | '/')
        })
}

/// Drops every secondary count; true when there was one.
fn clear_secondary(sel: &mut Selector) -> bool {
    let mut found = false;
    let mut clear = |s: &mut Option<u32>| found |= s.take().is_some();
    for d in sel.drivers.iter_mut() {
        clear(&mut d.secondary);
    }
    for d in sel.devices.iter_mut() {
        clear(&mut d.secondary);
    }
    for n in sel.nodes.iter_mut() {
        for d in n.drivers.iter_mut() {
            clear(&mut d.secondary);
        }
        for d in n.devices.iter_mut() {
            clear(&mut d.secondary);
        }
    }
    found
}
