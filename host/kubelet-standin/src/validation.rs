//! The checks kubelet applies to a `RegisterRequest`, written from
//! `pkg/kubelet/cm/devicemanager/plugin/v1beta1/server.go` (`Register`) and
//! `pkg/apis/core/v1/helper` (`IsExtendedResourceName`).
//!
//! Kubelet joins the endpoint to its socket dir without checking it; the
//! stand-in is stricter and requires a bare file name, so a plugin that
//! would only work by accident against the real kubelet fails here.

use afxdp_proto::deviceplugin::{RegisterRequest, VERSION};

/// Why a `RegisterRequest` is refused; the text is what the plugin reads in
/// the gRPC status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("requested API version {0:?} is not supported by kubelet. Supported versions are [{VERSION:?}]")]
    Version(String),
    #[error("the ResourceName {0:?} is invalid")]
    ResourceName(String),
    #[error("the endpoint {0:?} is invalid: it must be a bare file name inside the device-plugin directory")]
    Endpoint(String),
}

/// Check `req` as kubelet does before it dials the plugin.
pub(crate) fn validate(req: &RegisterRequest) -> Result<(), Invalid> {
    if req.version != VERSION {
        return Err(Invalid::Version(req.version.clone()));
    }
    if !is_extended_resource_name(&req.resource_name) {
        return Err(Invalid::ResourceName(req.resource_name.clone()));
    }
    if !is_bare_file_name(&req.endpoint) {
        return Err(Invalid::Endpoint(req.endpoint.clone()));
    }
    Ok(())
}

/// `v1helper.IsExtendedResourceName`: `domain/name`, not in the
/// `kubernetes.io/` namespace, no `requests.` prefix, and
/// `requests.<name>` must be a qualified name.
pub(crate) fn is_extended_resource_name(name: &str) -> bool {
    const DEFAULT_NAMESPACE_PREFIX: &str = "kubernetes.io/";
    const REQUESTS_PREFIX: &str = "requests.";
    let native = !name.contains('/') || name.contains(DEFAULT_NAMESPACE_PREFIX);
    if native || name.starts_with(REQUESTS_PREFIX) {
        return false;
    }
    is_qualified_name(&format!("{REQUESTS_PREFIX}{name}"))
}

/// `validation.IsQualifiedName`: `[prefix/]name`, prefix a DNS-1123
/// subdomain, name at most 63 characters of `[A-Za-z0-9_.-]` starting and
/// ending with an alphanumeric.
fn is_qualified_name(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if !is_dns1123_subdomain(prefix) {
                return false;
            }
            name
        }
        _ => return false,
    };
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            name.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsDNS1123Subdomain`: at most 253 characters, dot-separated
/// labels of `[a-z0-9-]` starting and ending with `[a-z0-9]`.
fn is_dns1123_subdomain(value: &str) -> bool {
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                is_lower_alnum(*first)
                    && is_lower_alnum(*last)
                    && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
            }
            _ => false,
        }
    };
    !value.is_empty() && value.len() <= 253 && value.split('.').all(label_ok)
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_bare_file_name(endpoint: &str) -> bool {
    !endpoint.is_empty() && endpoint != "." && endpoint != ".." && !endpoint.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_follow_kubelet() {
        for good in [
            "afxdp/pool1",
            "example.com/nic",
            "a-b.c/x_y.z-1",
            "intel.com/QAT",
        ] {
            assert!(is_extended_resource_name(good), "{good} should be accepted");
        }
        for bad in [
            "",
            "afxdp",
            "kubernetes.io/foo",
            "x.kubernetes.io/foo",
            "requests.afxdp/pool",
            "Afxdp/pool",
            "afxdp/",
            "/pool",
            "afxdp/pool/x",
            "afxdp/-pool",
            "afxdp/pool-",
            "af_xdp/pool",
            "afxdp/pool!",
            &format!("afxdp/{}", "p".repeat(64)),
        ] {
            assert!(!is_extended_resource_name(bad), "{bad:?} should be refused");
        }
        assert!(is_extended_resource_name(&format!(
            "afxdp/{}",
            "p".repeat(63)
        )));
    }

    #[test]
    fn endpoints_must_be_bare_file_names() {
        for good in ["afxdp-pool1.sock", "x", "a.b-c_d"] {
            assert!(is_bare_file_name(good));
        }
        for bad in [
            "",
            ".",
            "..",
            "../x.sock",
            "sub/x.sock",
            "/abs/x.sock",
            "x\0y",
        ] {
            assert!(!is_bare_file_name(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn validate_checks_in_kubelet_order() {
        let req = RegisterRequest {
            version: "v1alpha".into(),
            endpoint: "../x".into(),
            resource_name: "bad".into(),
            options: None,
        };
        assert_eq!(validate(&req), Err(Invalid::Version("v1alpha".into())));
        let req = RegisterRequest {
            version: VERSION.into(),
            ..req
        };
        assert_eq!(validate(&req), Err(Invalid::ResourceName("bad".into())));
        let req = RegisterRequest {
            resource_name: "afxdp/p".into(),
            ..req
        };
        assert_eq!(validate(&req), Err(Invalid::Endpoint("../x".into())));
        let req = RegisterRequest {
            endpoint: "x.sock".into(),
            ..req
        };
        assert_eq!(validate(&req), Ok(()));
    }
}
