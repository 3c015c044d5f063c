//! A pool's `policy` block (richer form):
//!
//! ```json
//! "policy": {
//!   "ref": "127.0.0.1:5000/afxdp/numa-spread@sha256:<64 hex>",
//!   "failurePolicy": "Ignore",
//!   "timeoutMs": 100,
//!   "memoryMiB": 32,
//!   "maxConcurrentCalls": 2,
//!   "config": { "queuesPerPod": 2 }
//! }
//! ```
//!
//! | key | values | default |
//! |---|---|---|
//! | `ref` | `registry/repo@sha256:<64 hex>`; a tag (`repo:tag`) only with `pullPolicy` | - |
//! | `file` | absolute path of a component on the node (instead of `ref`) | - |
//! | `pullPolicy` | `IfNotPresent` `Always` (tags only; on a digest: a warning, no effect) | - |
//! | `insecure` | `false`; `true` (plain HTTP to a non-loopback registry) is refused: not supported yet (loopback registries use HTTP anyway) | `false` |
//! | `failurePolicy` | `Fail` (the allocation fails) `Ignore` (built-in default, warning) | `Fail` |
//! | `timeoutMs` | deadline per decision, 1..=10000 | 100 |
//! | `memoryMiB` | memory cap per decision, 1..=1024 | 32 |
//! | `maxConcurrentCalls` | decisions of this pool running at once, 1..=64 (a call waits up to its `timeoutMs` for a slot, then fails as the `failurePolicy` says) | CPUs of the node |
//! | `config` | any JSON object, handed to the policy (`validate-config` at load) | `{}` |

use std::time::Duration;

use crate::json::{Json, JsonPath};
use crate::model::{FailurePolicy, PolicyConfig, PolicySource, PullPolicy};
use crate::reader::{Ctx, Keys, ObjReader};

const TIMEOUT_MS_MAX: i64 = 10_000;
/// Largest `memoryMiB` (the policy runtime's memory slot is this size).
pub const MEMORY_MIB_MAX: i64 = 1024;
const MAX_CONCURRENT_CALLS_MAX: i64 = 64;

/// Is `reference` pinned: `...@sha256:<64 lower-case hex>`?
fn pinned(reference: &str) -> Option<bool> {
    match reference.rsplit_once('@') {
        None => Some(false),
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:")?;
            let ok = !name.is_empty()
                && hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            ok.then_some(true)
        }
    }
}

pub(crate) fn parse(v: &Json, path: &JsonPath, ctx: &mut Ctx) -> Option<PolicyConfig> {
    let mut obj = ObjReader::new(v, path, Keys::Exact, ctx)?;
    let reference = obj.string("ref", ctx);
    let file = obj.string("file", ctx);
    let pull_policy = obj.string("pullPolicy", ctx).and_then(|(p, s)| match s {
        "IfNotPresent" => Some(PullPolicy::IfNotPresent),
        "Always" => Some(PullPolicy::Always),
        other => {
            ctx.invalid(
                &p,
                format!("invalid pullPolicy {other:?}: expected IfNotPresent or Always"),
            );
            None
        }
    });
    if let Some((p, true)) = obj.bool("insecure", ctx) {
        crate::common::not_supported(
            &p,
            "true (plain HTTP to a non-loopback registry)",
            "; loopback registries are reached over HTTP without it",
            ctx,
        );
    }
    let insecure = false;
    let source = match (reference, file) {
        (Some((p, r)), None) => match pinned(r) {
            None => {
                ctx.invalid(
                    &p,
                    format!("invalid reference {r:?}: a digest must be sha256:<64 lower-case hex>"),
                );
                None
            }
            Some(false) if r.is_empty() || r.chars().any(char::is_whitespace) => {
                ctx.invalid(&p, format!("invalid reference {r:?}"));
                None
            }
            Some(false) if pull_policy.is_none() => {
                ctx.invalid(
                    &p,
                    format!("{r:?} is a tag: pin it by digest or set pullPolicy"),
                );
                None
            }
            Some(is_pinned) => {
                if is_pinned && pull_policy.is_some() {
                    ctx.warn(&p, "pullPolicy has no effect on a digest reference");
                }
                Some(PolicySource::Oci {
                    reference: r.to_owned(),
                    // A digest is fetched once and served from the cache.
                    pull_policy: pull_policy.filter(|_| !is_pinned),
                    insecure,
                })
            }
        },
        (None, Some((p, f))) => {
            let fp = std::path::Path::new(f);
            if fp.is_absolute() {
                Some(PolicySource::File(fp.to_path_buf()))
            } else {
                ctx.invalid(
                    &p,
                    format!("invalid policy file {f:?}: expected an absolute path"),
                );
                None
            }
        }
        (Some(_), Some(_)) => {
            ctx.invalid(path, "give either ref or file, not both");
            None
        }
        (None, None) => {
            ctx.missing(path, "a policy needs a ref or a file");
            None
        }
    };
    let failure_policy = obj
        .string("failurePolicy", ctx)
        .and_then(|(p, s)| match s {
            "Fail" => Some(FailurePolicy::Fail),
            "Ignore" => Some(FailurePolicy::Ignore),
            other => {
                ctx.invalid(
                    &p,
                    format!("invalid failurePolicy {other:?}: expected Fail or Ignore"),
                );
                None
            }
        })
        .unwrap_or_default();
    let timeout = obj.int("timeoutMs", ctx).and_then(|(p, n)| {
        if (1..=TIMEOUT_MS_MAX).contains(&n) {
            Some(Duration::from_millis(n as u64))
        } else {
            ctx.invalid(
                &p,
                format!("timeoutMs must be between 1 and {TIMEOUT_MS_MAX}, got {n}"),
            );
            None
        }
    });
    let memory_limit = obj.int("memoryMiB", ctx).and_then(|(p, n)| {
        if (1..=MEMORY_MIB_MAX).contains(&n) {
            Some((n as usize) << 20)
        } else {
            ctx.invalid(
                &p,
                format!("memoryMiB must be between 1 and {MEMORY_MIB_MAX}, got {n}"),
            );
            None
        }
    });
    let max_concurrent_calls = obj.int("maxConcurrentCalls", ctx).and_then(|(p, n)| {
        if (1..=MAX_CONCURRENT_CALLS_MAX).contains(&n) {
            Some(n as usize)
        } else {
            ctx.invalid(
                &p,
                format!(
                    "maxConcurrentCalls must be between 1 and {MAX_CONCURRENT_CALLS_MAX}, got {n}"
                ),
            );
            None
        }
    });
    let config_json = match obj.take("config", ctx) {
        None => "{}".to_owned(),
        Some((p, c @ Json::Object(_))) => {
            let _ = p;
            c.to_value().to_string()
        }
        Some((p, other)) => {
            ctx.wrong_type(&p, "an object", other);
            "{}".to_owned()
        }
    };
    obj.finish(ctx);
    Some(PolicyConfig {
        source: source?,
        failure_policy,
        timeout,
        memory_limit,
        max_concurrent_calls,
        config_json,
    })
}

/// The `policy` block of `p` in the richer form (inverse of [`parse`]).
pub(crate) fn to_json(p: &PolicyConfig) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    match &p.source {
        PolicySource::Oci {
            reference,
            pull_policy,
            insecure,
        } => {
            o.insert("ref".into(), reference.clone().into());
            if let Some(pp) = pull_policy {
                let s = match pp {
                    PullPolicy::IfNotPresent => "IfNotPresent",
                    PullPolicy::Always => "Always",
                };
                o.insert("pullPolicy".into(), s.into());
            }
            if *insecure {
                o.insert("insecure".into(), true.into());
            }
        }
        PolicySource::File(path) => {
            o.insert("file".into(), path.to_string_lossy().into_owned().into());
        }
    }
    let fp = match p.failure_policy {
        FailurePolicy::Fail => "Fail",
        FailurePolicy::Ignore => "Ignore",
    };
    o.insert("failurePolicy".into(), fp.into());
    if let Some(t) = p.timeout {
        o.insert("timeoutMs".into(), (t.as_millis() as u64).into());
    }
    if let Some(m) = p.memory_limit {
        o.insert("memoryMiB".into(), ((m >> 20) as u64).into());
    }
    if let Some(n) = p.max_concurrent_calls {
        o.insert("maxConcurrentCalls".into(), (n as u64).into());
    }
    let config = serde_json::from_str(&p.config_json).unwrap_or_else(|_| serde_json::json!({}));
    o.insert("config".into(), config);
    serde_json::Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::pinned;

    #[test]
    fn digest_references_are_recognised() {
        let d = "a".repeat(64);
        assert_eq!(pinned(&format!("r:5000/p/x@sha256:{d}")), Some(true));
        assert_eq!(pinned("r/p/x:v1"), Some(false));
        assert_eq!(pinned("r/p/x@sha256:abc"), None);
        assert_eq!(pinned(&format!("r/p/x@sha256:{}", "A".repeat(64))), None);
        assert_eq!(pinned(&format!("@sha256:{d}")), None);
    }
}
