//! Registry credentials: anonymous, one Basic pair, or a Kubernetes
//! `kubernetes.io/dockerconfigjson` pull secret.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::OciError;

/// How the fetcher authenticates. `Debug` never prints secrets.
#[derive(Clone)]
pub enum Auth {
    /// No credentials.
    Anonymous,
    /// HTTP Basic (or token exchange with Basic) for every registry this
    /// fetcher talks to.
    Basic {
        /// User name.
        user: String,
        /// Password or token.
        password: String,
    },
    /// A dockerconfigjson file (`{"auths":{"host:port":{"auth":"base64(user:pass)"}}}`,
    /// `username`/`password` fields are accepted too). Read once by
    /// [`crate::Fetcher::new`]; registries it does not list are accessed anonymously.
    PullSecretFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Auth::PullSecretFile(p) => f.debug_tuple("PullSecretFile").field(p).finish(),
        }
    }
}

/// Credentials resolved per registry.
#[derive(Clone)]
pub(crate) enum Credentials {
    Anonymous,
    Basic(String, String),
    PerRegistry(HashMap<String, (String, String)>),
}

impl Credentials {
    pub(crate) fn load(auth: &Auth) -> Result<Self, OciError> {
        Ok(match auth {
            Auth::Anonymous => Credentials::Anonymous,
            Auth::Basic { user, password } => Credentials::Basic(user.clone(), password.clone()),
            Auth::PullSecretFile(path) => Credentials::PerRegistry(read_pull_secret(path)?),
        })
    }

    pub(crate) fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic(u, p) => RegistryAuth::Basic(u.clone(), p.clone()),
            Credentials::PerRegistry(map) => match map.get(registry) {
                Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
                None => RegistryAuth::Anonymous,
            },
        }
    }

    /// For log lines: which kind of credential is used, never the secret.
    pub(crate) fn describe(&self, registry: &str) -> &'static str {
        match self.for_registry(registry) {
            RegistryAuth::Anonymous => "anonymous",
            RegistryAuth::Basic(..) => "basic",
            RegistryAuth::Bearer(_) => "bearer",
        }
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    auths: HashMap<String, DockerAuthEntry>,
}

#[derive(Deserialize)]
struct DockerAuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// `https://host:port/v1/` → `host:port`.
fn normalize_registry_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    if k == "index.docker.io" {
        "docker.io".to_string()
    } else {
        k.to_string()
    }
}

/// The user and password the dockerconfigjson file at `path` gives for the
/// registry of `image` (`host[:port]/repo...`); `None` when it lists none.
///
/// # Errors
/// The file cannot be read or is not a dockerconfigjson document.
pub fn registry_credentials(
    path: &Path,
    image: &str,
) -> Result<Option<(String, String)>, OciError> {
    Ok(read_pull_secret(path)?.remove(&normalize_registry_key(image)))
}

fn read_pull_secret(path: &Path) -> Result<HashMap<String, (String, String)>, OciError> {
    let bad = |reason: String| OciError::PullSecret {
        path: path.to_path_buf(),
        reason,
    };
    let raw = std::fs::read(path).map_err(|e| OciError::io("read pull secret", path, e))?;
    let cfg: DockerConfig = serde_json::from_slice(&raw)
        .map_err(|e| bad(format!("not a dockerconfigjson document: {e}")))?;
    let mut out = HashMap::new();
    for (key, entry) in cfg.auths {
        let creds = match (entry.auth, entry.username, entry.password) {
            (Some(b64), _, _) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| bad(format!("auths.{key}.auth is not base64: {e}")))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| bad(format!("auths.{key}.auth is not user:password")))?;
                (u.to_string(), p.to_string())
            }
            (None, Some(u), Some(p)) => (u, p),
            _ => {
                return Err(bad(format!(
                    "auths.{key} has neither auth nor username/password"
                )))
            }
        };
        out.insert(normalize_registry_key(&key), creds);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_secret_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
                "https://ghcr.io/v1/":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let c = Credentials::load(&Auth::PullSecretFile(p.clone())).unwrap();
        assert!(matches!(c.for_registry("127.0.0.1:5000"),
            RegistryAuth::Basic(u, pw) if u == "user" && pw == "pa:ss"));
        assert!(matches!(c.for_registry("ghcr.io"), RegistryAuth::Basic(u, _) if u == "u"));
        assert!(matches!(c.for_registry("other:1"), RegistryAuth::Anonymous));

        std::fs::write(&p, r#"{"auths":{"x":{"auth":"!!"}}}"#).unwrap();
        assert!(matches!(
            Credentials::load(&Auth::PullSecretFile(p.clone())),
            Err(OciError::PullSecret { .. })
        ));
        std::fs::write(&p, "not json").unwrap();
        assert!(matches!(
            Credentials::load(&Auth::PullSecretFile(p)),
            Err(OciError::PullSecret { .. })
        ));
        assert!(matches!(
            Credentials::load(&Auth::PullSecretFile(dir.path().join("missing"))),
            Err(OciError::Io { .. })
        ));
    }

    #[test]
    fn debug_redacts_password() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
