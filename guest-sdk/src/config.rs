//! Typed pool config: the pool's `config-json` parsed into a policy's
//! `Config` type.

use serde::de::DeserializeOwned;

use crate::PolicyError;

/// A pool config that does not parse as the policy's `Config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy config: at `{path}`: {message}")]
pub struct ConfigError {
    /// Where in the JSON document (`images.fast`, `.` for the top).
    pub path: String,
    /// What serde said (with line and column).
    pub message: String,
}

impl From<ConfigError> for PolicyError {
    fn from(e: ConfigError) -> Self {
        PolicyError::invalid_input(e.to_string())
    }
}

/// Parse `json` as `C`. Empty (or blank) text and `null` mean "no config"
/// and give `C::default()`. Errors carry the JSON path of the bad value.
///
/// ```
/// use afxdp_policy_sdk::config::parse_config;
/// #[derive(serde::Deserialize, Default, Debug, PartialEq)]
/// #[serde(deny_unknown_fields, rename_all = "camelCase")]
/// struct Config { queues_per_pod: Option<u32> }
///
/// assert_eq!(parse_config::<Config>("").unwrap(), Config::default());
/// assert_eq!(parse_config::<Config>(r#"{"queuesPerPod": 2}"#).unwrap().queues_per_pod, Some(2));
/// let e = parse_config::<Config>(r#"{"queuesPerPod": "two"}"#).unwrap_err();
/// assert_eq!(e.path, "queuesPerPod");
/// ```
pub fn parse_config<C: DeserializeOwned + Default>(json: &str) -> Result<C, ConfigError> {
    let t = json.trim();
    if t.is_empty() || t == "null" {
        return Ok(C::default());
    }
    let mut de = serde_json::Deserializer::from_str(t);
    let value: C = serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    // Trailing characters after the document.
    de.end().map_err(|e| ConfigError {
        path: ".".to_string(),
        message: e.to_string(),
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        n: u32,
        #[serde(default)]
        images: BTreeMap<String, String>,
    }

    #[test]
    fn table() {
        let ok: &[(&str, u32)] = &[
            ("", 0),
            ("  ", 0),
            ("null", 0),
            ("{}", 0),
            (r#"{"n": 7}"#, 7),
        ];
        for (json, n) in ok {
            let c: Cfg = parse_config(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(c.n, *n, "{json}");
        }
        let bad: &[(&str, &str)] = &[
            (r#"{"n": -1}"#, "n"),
            (r#"{"n": "x"}"#, "n"),
            (r#"{"images": {"fast": 3}}"#, "images.fast"),
            (r#"{"m": 1}"#, "m"),
            (r#"{"n": 1} x"#, "."),
            ("[", "."),
            ("42", "."),
        ];
        for (json, path) in bad {
            let e = parse_config::<Cfg>(json).expect_err(json);
            assert_eq!(e.path, *path, "{json}: {e}");
            let pe = PolicyError::from(e);
            assert_eq!(pe.code, crate::ErrorCode::InvalidInput);
            assert!(
                pe.message.starts_with("policy config: at `"),
                "{}",
                pe.message
            );
        }
    }
}
