//! Policy references: `[http(s)://]registry[:port]/repo@sha256:<hex>` or, with
//! an explicit pull policy, `registry[:port]/repo:tag`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::OciError;

/// How a tag reference is resolved. Pinned (digest) references are immutable
/// and served from the cache whenever it holds them; the policy only decides
/// whether the registry is asked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Use the cached resolution (tag → manifest digest, and the blobs) when
    /// present; go online otherwise.
    IfNotPresent,
    /// Always ask the registry. A tag that cannot be resolved online fails
    /// with [`OciError::NotCachedAndUnreachable`]; a pinned reference falls
    /// back to the cache when the registry is unreachable.
    Always,
}

/// The transport a registry is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TLS (the default for every non-loopback registry).
    Https,
    /// Plain HTTP: only loopback registries or registries marked insecure.
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Digest(String),
    Tag(String),
}

/// A parsed, validated policy artifact reference.
///
/// The registry is always explicit (no implicit `docker.io`). Display gives
/// back the canonical string (`[http://]registry/repo@sha256:…` or `registry/repo:tag`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    scheme: Option<Scheme>,
    registry: String,
    repository: String,
    target: Target,
}

const SHA256_PREFIX: &str = "sha256:";

impl PolicyRef {
    /// Parses a pinned reference `[http(s)://]registry[:port]/repo@sha256:<64 hex>`.
    ///
    /// # Errors
    /// [`OciError::InvalidReference`] for a malformed string,
    /// [`OciError::TagWithoutPullPolicy`] for a tag reference (use
    /// [`PolicyRef::parse_with_pull_policy`] to allow tags).
    pub fn parse(s: &str) -> Result<Self, OciError> {
        Self::parse_with_pull_policy(s, None)
    }

    /// Parses a reference; a tag (`registry/repo:tag`) is accepted only when
    /// the caller declares a pull policy. Digest references accept any value.
    ///
    /// An `http://` prefix asks for plain HTTP; it is checked against the
    /// fetcher's insecure list before any traffic (see [`crate::Fetcher::scheme_for`]).
    ///
    /// # Errors
    /// [`OciError::InvalidReference`], [`OciError::TagWithoutPullPolicy`].
    pub fn parse_with_pull_policy(s: &str, pull: Option<PullPolicy>) -> Result<Self, OciError> {
        let invalid = |reason: &str| OciError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Some(Scheme::Http), r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Some(Scheme::Https), r)
        } else if s.contains("://") {
            return Err(invalid("only http:// and https:// are allowed"));
        } else {
            (None, s)
        };
        let (registry, rest) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected registry[:port]/repository"))?;
        validate_registry(registry).map_err(|r| invalid(&r))?;

        let (name, target) = if let Some((name, digest)) = rest.split_once('@') {
            // `repo:tag@sha256:…` is accepted; the digest wins.
            let name = match name.rsplit_once(':') {
                Some((n, tag)) if !tag.contains('/') => {
                    validate_tag(tag).map_err(|r| invalid(&r))?;
                    n
                }
                _ => name,
            };
            validate_digest(digest).map_err(|r| invalid(&r))?;
            (name, Target::Digest(digest.to_string()))
        } else {
            match rest.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => {
                    validate_tag(tag).map_err(|r| invalid(&r))?;
                    (name, Target::Tag(tag.to_string()))
                }
                _ => {
                    return Err(invalid(
                        "no digest: pin the reference as repo@sha256:<64 hex> (or repo:tag with a pull policy)",
                    ))
                }
            }
        };
        validate_repository(name).map_err(|r| invalid(&r))?;
        if matches!(target, Target::Tag(_)) && pull.is_none() {
            return Err(OciError::TagWithoutPullPolicy {
                reference: s.to_string(),
            });
        }
        Ok(PolicyRef {
            scheme,
            registry: registry.to_string(),
            repository: name.to_string(),
            target,
        })
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The pinned manifest digest (`sha256:<hex>`), if pinned.
    pub fn digest(&self) -> Option<&str> {
        match &self.target {
            Target::Digest(d) => Some(d),
            Target::Tag(_) => None,
        }
    }

    /// The tag, if this is a tag reference.
    pub fn tag(&self) -> Option<&str> {
        match &self.target {
            Target::Tag(t) => Some(t),
            Target::Digest(_) => None,
        }
    }

    /// The scheme written in the reference, if any.
    pub fn explicit_scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// Whether the registry host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }

    /// The same repository pinned to `digest`.
    pub(crate) fn with_digest(&self, digest: &str) -> PolicyRef {
        PolicyRef {
            target: Target::Digest(digest.to_string()),
            ..self.clone()
        }
    }

    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match &self.target {
            Target::Digest(d) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            Target::Tag(t) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Some(Scheme::Http) => f.write_str("http://")?,
            Some(Scheme::Https) => f.write_str("https://")?,
            None => {}
        }
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.target {
            Target::Digest(d) => write!(f, "@{d}"),
            Target::Tag(t) => write!(f, ":{t}"),
        }
    }
}

/// Splits `host[:port]` / `[v6]:port` into the host part (brackets removed).
fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// Loopback: `localhost`, `127.0.0.0/8`, `::1` (bracketed in references).
pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = registry_host(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => a == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("empty registry".into());
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("unterminated [ in registry address")?;
        h.parse::<Ipv6Addr>()
            .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :port after ]")?),
        };
        (None, port)
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(p) = port {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} in registry"))?;
    }
    if let Some(h) = host {
        let ok_chars = !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok_chars {
            return Err(format!("invalid registry host {h:?}"));
        }
        // Without a dot, a port or `localhost` the first component is a
        // repository path (implicit docker.io), which we refuse: the registry
        // must be explicit.
        if !(h.contains('.') || port.is_some() || h.eq_ignore_ascii_case("localhost"))
            && h.parse::<Ipv4Addr>().is_err()
        {
            return Err(format!(
                "{registry:?} is not a registry host; write the registry explicitly (e.g. ghcr.io/org/policy@sha256:…)"
            ));
        }
    }
    Ok(())
}

fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("repository must be 1..=255 characters".into());
    }
    for comp in name.split('/') {
        let ok = !comp.is_empty()
            && comp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
            && comp.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "invalid repository component {comp:?} (lowercase letters, digits, . _ - ; starting and ending alphanumeric)"
            ));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

/// `sha256:` followed by exactly 64 lowercase hex digits.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix(SHA256_PREFIX)
        .ok_or_else(|| format!("digest {digest:?} must start with sha256:"))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?} must be sha256: followed by 64 lowercase hex digits"
        ))
    }
}

/// The hex part of a validated `sha256:` digest.
pub(crate) fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix(SHA256_PREFIX).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_references_parse() {
        for (s, reg, repo) in [
            (format!("127.0.0.1:5000/p/x@{D}"), "127.0.0.1:5000", "p/x"),
            (format!("ghcr.io/org/policy@{D}"), "ghcr.io", "org/policy"),
            (format!("localhost/a@{D}"), "localhost", "a"),
            (format!("[::1]:5000/a@{D}"), "[::1]:5000", "a"),
            (
                format!("ghcr.io/org/policy:v1@{D}"),
                "ghcr.io",
                "org/policy",
            ),
        ] {
            let r = PolicyRef::parse(&s).expect(&s);
            assert_eq!(r.registry(), reg);
            assert_eq!(r.repository(), repo);
            assert_eq!(r.digest(), Some(D));
        }
        let r = PolicyRef::parse(&format!("http://127.0.0.1:5000/p@{D}")).unwrap();
        assert_eq!(r.explicit_scheme(), Some(Scheme::Http));
        assert_eq!(r.to_string(), format!("http://127.0.0.1:5000/p@{D}"));
    }

    #[test]
    fn malformed_references_are_invalid() {
        for s in [
            "ghcr.io/org/policy".to_string(),
            format!("org/policy@{D}"),
            format!("policy@{D}"),
            "ghcr.io/org/policy@sha256:abc".to_string(),
            format!("ghcr.io/org/policy@{}", D.to_uppercase()),
            format!("ghcr.io/Org/policy@{D}"),
            format!("ghcr.io//policy@{D}"),
            format!("ftp://ghcr.io/p@{D}"),
            format!("ghcr.io:99999/p@{D}"),
            format!("gh cr.io/p@{D}"),
            "ghcr.io/p:bad tag".to_string(),
        ] {
            assert!(
                matches!(
                    PolicyRef::parse_with_pull_policy(&s, Some(PullPolicy::Always)),
                    Err(OciError::InvalidReference { .. })
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn tag_needs_pull_policy() {
        assert!(matches!(
            PolicyRef::parse("ghcr.io/org/policy:v1"),
            Err(OciError::TagWithoutPullPolicy { .. })
        ));
        let r = PolicyRef::parse_with_pull_policy(
            "ghcr.io/org/policy:v1",
            Some(PullPolicy::IfNotPresent),
        )
        .unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), None);
    }

    #[test]
    fn loopback_detection() {
        for (reg, lo) in [
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("10.0.0.1:5000", false),
            ("128.0.0.1", false),
            ("registry.example.com", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback_registry(reg), lo, "{reg}");
        }
    }
}
