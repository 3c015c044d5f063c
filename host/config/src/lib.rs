//! Configuration of the afxdp-dp daemon.
//!
//! Two document forms normalise into one [`Config`]:
//!
//! * the upstream Go plugin's `config.json`, as-is, every version of it
//!   ([`upstream`](crate#upstream-form) rules below);
//! * our richer form, chosen by a top-level `"apiVersion":
//!   "afxdp.io/v1alpha1"` key (see [`v1alpha1`]).
//!
//! [`parse`] reports **every** problem at once, each with the JSON path of
//! the value concerned (`pools[1].drivers[0].excludeDevices[2].pci: invalid
//! PCI address "xyz" ...`), or the line and column of a JSON syntax error.
//! Non-fatal findings land in [`Config::warnings`].
//!
//! [`selector`] turns a config plus the node's discovered netdevs into pool
//! contents.
//!
//! # Upstream form
//! Keys match case-insensitively as in Go's `encoding/json`, `null` means
//! unset, and unknown keys are errors (Go ignores them; a typo there silently
//! changes which NICs are taken). Validation follows upstream's rules
//! (pool name 1-20 letters/digits, `mode` `primary`|`cdq`, a pool selects
//! drivers, devices or nodes, devices identified by exactly one of
//! name/pci/mac, `primary` 1-10, `secondary` 1-350, `uid` 0 or
//! 1000-256000, `udsTimeout` -1/0/30-300, `logLevel`
//! debug/info/warning/error, `logFile` a `.log`/`.txt` name) with upstream's
//! bugs fixed: anchored PCI syntax with range checks, MACs normalised,
//! interface names limited to what Linux accepts, FQDN node names allowed,
//! duplicate pools/nodes rejected, `BpfMapPinningEnable` without
//! `UdsServerDisable` rejected. See the `upstream` module source for the
//! full list of accepted keys and legacy shapes.
//!
//! # Settings not supported yet
//! Every key either form accepts takes effect in afxdp-dp. Settings whose
//! feature does not exist yet are refused with `... is not supported yet`
//! rather than accepted and ignored:
//! `sharing: "none"` (upstream `UdsServerDisable` without
//! `BpfMapPinningEnable`), `requiresUnprivilegedBpf: true` (upstream
//! `RequiresUnprivilegedBpf`, legacy `requireUnprivilegedBpf`), upstream
//! `ethtoolCmds` other than `-L combined` and `-N` flow rules (those are
//! translated: [`ethtool_cmd`]), and a policy's `insecure: true`. The model keeps
//! their variants and fields for when they arrive. `tests/every_key.rs`
//! walks every key the parser knows and checks which of the two it is.
//!
//! # Pool names
//! A pool `p` is advertised as `afxdp/p` and its devices are listed to the
//! container in `AFXDP_DEVICES_<P>`, the name upper-cased with `-` mapped to
//! `_` ([`PoolConfig::env_var_name`]). Names that collide after that
//! mapping are rejected, as are duplicate names.

#![deny(missing_docs)]

mod common;
mod error;
pub mod ethtool_cmd;
mod json;
mod model;
pub mod policy;
mod reader;
pub mod selector;
mod upstream;
pub mod v1alpha1;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use json::{JsonPath, PathSegment};
pub use model::{
    env_var_name, is_digest_pinned, AddressParseError, BpfmanPool, Config, DeviceMatch,
    DeviceSelector, DriverSelector, FailurePolicy, ImagePullPolicy, LogFormat, LogLevel,
    MacAddress, NodeSelector, PciAddress, PolicyConfig, PolicySource, PoolConfig, PoolMode,
    ProceedOn, ProgramManagerKind, ProgramSource, PullPolicy, Selector, SharingMode, SourceFormat,
    XdpMode, DEFAULT_BPFMAN_PRIORITY, DEFAULT_UDS_TIMEOUT, ENV_VAR_PREFIX, RESOURCE_PREFIX,
    UPSTREAM_LOG_DIR,
};
pub use selector::{
    assign_pools, assign_pools_detailed, AssignedDevice, DeviceFacts, PoolAssignment,
};
pub use v1alpha1::{to_v1alpha1, ConvertError, API_VERSION};

use json::Json;
use reader::Ctx;

/// Parses and validates a configuration document of either form.
///
/// # Errors
/// [`ConfigErrors`] listing every problem found: a JSON syntax error (with
/// line and column) alone, or all schema and validation errors with paths.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let root: Json = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        line: e.line(),
        column: e.column(),
        message: syntax_message(&e),
    })?;
    let mut ctx = Ctx::default();
    let is_v1 =
        matches!(&root, Json::Object(entries) if entries.iter().any(|(k, _)| k == "apiVersion"));
    let config = if is_v1 {
        v1alpha1::parse(&root, &mut ctx)
    } else {
        upstream::parse(&root, &mut ctx)
    };
    match config {
        Some(mut c) if ctx.errors.is_empty() => {
            c.warnings = ctx.warnings;
            Ok(c)
        }
        _ => Err(ConfigErrors(ctx.errors)),
    }
}

/// serde_json appends " at line L column C" to its messages; the position
/// is reported separately.
fn syntax_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Reads `path` and [`parse`]s it. Reading the file is the only I/O.
///
/// # Errors
/// [`ConfigError::Io`] when the file cannot be read (or is not UTF-8), else
/// as [`parse`].
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// What `afxdpctl config check PATH` runs: [`load`]. The caller prints
/// the errors (one per line via `Display`) or the warnings of the result.
///
/// # Errors
/// As [`load`].
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    load(path)
}
