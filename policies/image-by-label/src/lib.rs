//! `image-by-label`: pick the XDP program from a pod label.
//!
//! - `select-program`: the value of the pod's label `label` (default
//!   `afxdp.io/program`) names an entry of `images` (or `builtin`, the
//!   agent's own program). A value not in `allow` is `denied`; so is a value
//!   naming nothing when `allow` is not given (then every image and
//!   `builtin` are allowed). A pod without the label gets `default`
//!   (`builtin` unless configured).
//! - Other decisions: not made (the host's defaults).
//!
//! Config:
//!
//! ```json
//! {
//!   "label": "afxdp.io/program",
//!   "images": {
//!     "fast": "quay.io/example/xdp-fast@sha256:<64 hex>",
//!     "filter": { "image": "quay.io/example/xdp-filter@sha256:<64 hex>",
//!                 "function": "xdp_filter", "mode": "generic", "priority": 40 }
//!   },
//!   "allow": ["fast", "builtin"],
//!   "default": "builtin",
//!   "mode": "native",
//!   "priority": 50,
//!   "requireDigest": true
//! }
//! ```
//!
//! Images must be pinned by digest (`@sha256:` and 64 lower-case hex) unless
//! `requireDigest` is false. `mode` and `priority` apply to every choice an
//! image entry does not override.

use std::collections::BTreeMap;

use afxdp_policy_sdk::prelude::*;

/// The label read by default.
pub const DEFAULT_LABEL: &str = "afxdp.io/program";
/// The name of the agent's built-in program.
pub const BUILTIN: &str = "builtin";

/// One entry of `images`: a reference, or a reference with settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum ImageSpec {
    /// `"registry/repo@sha256:..."`
    Ref(String),
    /// `{ "image": ..., "function": ..., "mode": ..., "priority": ... }`
    Full(ImageEntry),
}

/// An image with its own program settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The bytecode image reference.
    pub image: String,
    /// Program (function) name in the object.
    pub function: Option<String>,
    /// Attach mode for this image.
    pub mode: Option<XdpMode>,
    /// bpfman priority for this image.
    pub priority: Option<i32>,
}

/// The pool's config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// The pod label naming the program.
    pub label: String,
    /// Images by name.
    pub images: BTreeMap<String, ImageSpec>,
    /// Names a pod may ask for; `None`: every image and `builtin`.
    pub allow: Option<Vec<String>>,
    /// The name used when the pod has no label.
    pub default: String,
    /// Attach mode (default native).
    pub mode: XdpMode,
    /// bpfman priority (default 50).
    pub priority: i32,
    /// Refuse image references not pinned by digest (default true).
    pub require_digest: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            label: DEFAULT_LABEL.to_string(),
            images: BTreeMap::new(),
            allow: None,
            default: BUILTIN.to_string(),
            mode: XdpMode::Native,
            priority: ProgramChoice::DEFAULT_PRIORITY,
            require_digest: true,
        }
    }
}

/// The image-by-label policy.
pub struct ImageByLabel;

/// Whether `reference` ends in `@sha256:` and 64 lower-case hex digits.
pub fn pinned_by_digest(reference: &str) -> bool {
    reference.split_once("@sha256:").is_some_and(|(repo, hex)| {
        !repo.is_empty()
            && hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn check_priority(field: &str, p: i32) -> Result<(), PolicyError> {
    if ProgramChoice::PRIORITY_RANGE.contains(&p) {
        Ok(())
    } else {
        Err(PolicyError::invalid_input(format!(
            "{field}: {p} is outside 1..=1000"
        )))
    }
}

/// Config checks beyond the types: a label, known names in `allow` and
/// `default`, well-formed (pinned) references, priorities in range.
pub fn validate(c: &Config) -> Result<(), PolicyError> {
    if c.label.trim().is_empty() {
        return Err(PolicyError::invalid_input("label: empty"));
    }
    check_priority("priority", c.priority)?;
    for (name, spec) in &c.images {
        let field = format!("images.{name}");
        if name == BUILTIN || name.is_empty() {
            return Err(PolicyError::invalid_input(format!(
                "{field}: the name {name:?} is reserved"
            )));
        }
        let (reference, function, priority) = match spec {
            ImageSpec::Ref(r) => (r, None, None),
            ImageSpec::Full(e) => (&e.image, e.function.as_ref(), e.priority),
        };
        if reference.is_empty() || reference.chars().any(char::is_whitespace) {
            return Err(PolicyError::invalid_input(format!(
                "{field}: {reference:?} is not an image reference"
            )));
        }
        if c.require_digest && !pinned_by_digest(reference) {
            return Err(PolicyError::invalid_input(format!(
                "{field}: {reference:?} is not pinned by digest (@sha256:<64 hex>); set requireDigest: false to allow tags"
            )));
        }
        if function.is_some_and(|f| f.is_empty()) {
            return Err(PolicyError::invalid_input(format!(
                "{field}.function: empty"
            )));
        }
        if let Some(p) = priority {
            check_priority(&format!("{field}.priority"), p)?;
        }
    }
    let known = |n: &str| n == BUILTIN || c.images.contains_key(n);
    if !known(&c.default) {
        return Err(PolicyError::invalid_input(format!(
            "default: {:?} is neither {BUILTIN:?} nor an entry of images",
            c.default
        )));
    }
    for n in c.allow.iter().flatten() {
        if !known(n) {
            return Err(PolicyError::invalid_input(format!(
                "allow: {n:?} is neither {BUILTIN:?} nor an entry of images"
            )));
        }
    }
    Ok(())
}

/// The program for `pod`; see the crate docs.
pub fn choose(c: &Config, pod: &Pod) -> Result<ProgramChoice, PolicyError> {
    let name = match pod.label(&c.label) {
        None => c.default.as_str(),
        Some(v) => {
            let allowed = match &c.allow {
                Some(list) => list.iter().any(|a| a == v),
                None => v == BUILTIN || c.images.contains_key(v),
            };
            if !allowed {
                let mut names: Vec<&str> = match &c.allow {
                    Some(list) => list.iter().map(String::as_str).collect(),
                    None => c
                        .images
                        .keys()
                        .map(String::as_str)
                        .chain([BUILTIN])
                        .collect(),
                };
                names.sort_unstable();
                return Err(PolicyError::denied(format!(
                    "pod {}: label {}={v:?} is not allowed (allowed: {})",
                    pod.display_name(),
                    c.label,
                    names.join(", ")
                )));
            }
            v
        }
    };
    let base = ProgramChoice::builtin()
        .with_mode(c.mode)
        .with_priority(c.priority);
    if name == BUILTIN {
        return Ok(base);
    }
    match c.images.get(name) {
        Some(ImageSpec::Ref(r)) => Ok(ProgramChoice {
            source: ProgramSource::Image(r.clone()),
            ..base
        }),
        Some(ImageSpec::Full(e)) => Ok(ProgramChoice {
            source: ProgramSource::Image(e.image.clone()),
            function: e.function.clone(),
            mode: e.mode.unwrap_or(c.mode),
            priority: e.priority.unwrap_or(c.priority),
        }),
        // validate() makes every allowed name and the default known.
        None => Err(PolicyError::internal(format!("no image named {name:?}"))),
    }
}

impl Policy for ImageByLabel {
    type Config = Config;

    fn metadata() -> Metadata {
        Metadata::new(
            "image-by-label",
            env!("CARGO_PKG_VERSION"),
            "pick the XDP program (bytecode image) from a pod label, with an allow-list",
            &[decision::SELECT_PROGRAM],
        )
    }

    fn validate(config: &Config) -> Result<(), PolicyError> {
        validate(config)
    }

    fn select_program(
        ctx: &Ctx<Config>,
        _: &Netdev,
        pod: &Pod,
    ) -> Result<ProgramChoice, PolicyError> {
        choose(&ctx.config, pod)
    }
}

afxdp_policy_sdk::export_policy!(ImageByLabel);

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn fast() -> String {
        format!("registry.example/xdp-fast@sha256:{D1}")
    }

    fn filter() -> String {
        format!("registry.example/xdp-filter@sha256:{D1}")
    }

    fn config_json() -> String {
        format!(
            r#"{{
                "images": {{
                    "fast": "{}",
                    "filter": {{ "image": "{}", "function": "xdp_filter", "mode": "generic", "priority": 40 }},
                    "spare": "{}"
                }},
                "allow": ["fast", "filter", "builtin"],
                "default": "fast"
            }}"#,
            fast(),
            filter(),
            fast()
        )
    }

    fn pod(label: Option<&str>) -> Pod {
        let p = Pod::new("ns", "app");
        match label {
            Some(v) => p.with_label(DEFAULT_LABEL, v),
            None => p,
        }
    }

    #[test]
    fn select_table() {
        let pool = Pool::new("p", config_json());
        let dev = Netdev::new("eth0", 4);
        // (label value, expected choice or error code)
        let cases: Vec<(Option<&str>, Result<ProgramChoice, ErrorCode>)> = vec![
            (None, Ok(ProgramChoice::image(fast()))),
            (Some("fast"), Ok(ProgramChoice::image(fast()))),
            (
                Some("filter"),
                Ok(ProgramChoice::image(filter())
                    .with_function("xdp_filter")
                    .with_mode(XdpMode::Generic)
                    .with_priority(40)),
            ),
            (Some("builtin"), Ok(ProgramChoice::builtin())),
            // Known image, but not in the allow-list.
            (Some("spare"), Err(ErrorCode::Denied)),
            (Some("unknown"), Err(ErrorCode::Denied)),
            (Some(""), Err(ErrorCode::Denied)),
        ];
        for (label, want) in cases {
            let got = runtime::select_program::<ImageByLabel>(&pool, &dev, &pod(label));
            assert_eq!(got.map_err(|e| e.code), want, "label {label:?}");
        }
        let e = runtime::select_program::<ImageByLabel>(&pool, &dev, &pod(Some("spare")))
            .expect_err("denied");
        assert!(e.message.contains("afxdp.io/program=\"spare\""), "{e}");
        assert!(e.message.contains("allowed: builtin, fast, filter"), "{e}");
    }

    #[test]
    fn without_allow_list_every_entry_is_allowed() {
        let c = Config {
            label: "team/xdp".into(),
            images: [("fast".to_string(), ImageSpec::Ref(fast()))].into(),
            mode: XdpMode::Auto,
            priority: 10,
            ..Config::default()
        };
        assert!(validate(&c).is_ok());
        let p = |v: &str| Pod::new("ns", "a").with_label("team/xdp", v);
        assert_eq!(
            choose(&c, &p("fast")),
            Ok(ProgramChoice::image(fast())
                .with_mode(XdpMode::Auto)
                .with_priority(10))
        );
        assert_eq!(
            choose(&c, &p("builtin")),
            Ok(ProgramChoice::builtin()
                .with_mode(XdpMode::Auto)
                .with_priority(10))
        );
        assert_eq!(
            choose(&c, &p("slow")).map_err(|e| e.code),
            Err(ErrorCode::Denied)
        );
        // The default label is not read when another is configured.
        assert_eq!(
            choose(&c, &pod(Some("slow"))),
            Ok(ProgramChoice::builtin()
                .with_mode(XdpMode::Auto)
                .with_priority(10))
        );
        // An empty allow-list denies every labelled pod; unlabelled ones get the default.
        let none = Config {
            allow: Some(vec![]),
            ..c
        };
        assert_eq!(
            choose(&none, &p("fast")).map_err(|e| e.code),
            Err(ErrorCode::Denied)
        );
        assert!(choose(&none, &Pod::new("ns", "a")).is_ok());
    }

    #[test]
    fn config_table() {
        let img = fast();
        let cases: Vec<(String, Result<(), &str>)> = vec![
            (String::new(), Ok(())),
            (config_json(), Ok(())),
            (
                format!(r#"{{"images": {{"fast": "{img}"}}, "default": "fast"}}"#),
                Ok(()),
            ),
            (
                r#"{"images": {"t": "registry/x:latest"}, "requireDigest": false}"#.into(),
                Ok(()),
            ),
            (
                r#"{"images": {"t": "registry/x:latest"}}"#.into(),
                Err("images.t"),
            ),
            (
                r#"{"images": {"t": "registry/x@sha256:abc"}}"#.into(),
                Err("images.t"),
            ),
            (
                format!(r#"{{"images": {{"t": "{}"}}}}"#, img.to_uppercase()),
                Err("images.t"),
            ),
            (
                r#"{"images": {"t": ""}, "requireDigest": false}"#.into(),
                Err("images.t"),
            ),
            (
                r#"{"images": {"t": "a b"}, "requireDigest": false}"#.into(),
                Err("images.t"),
            ),
            (
                format!(r#"{{"images": {{"builtin": "{img}"}}}}"#),
                Err("reserved"),
            ),
            (r#"{"default": "fast"}"#.into(), Err("default")),
            (r#"{"allow": ["fast"]}"#.into(), Err("allow")),
            (r#"{"label": " "}"#.into(), Err("label")),
            (r#"{"priority": 0}"#.into(), Err("priority")),
            (
                format!(r#"{{"images": {{"f": {{"image": "{img}", "priority": 2000}}}}}}"#),
                Err("images.f.priority"),
            ),
            (
                format!(r#"{{"images": {{"f": {{"image": "{img}", "function": ""}}}}}}"#),
                Err("images.f.function"),
            ),
            (
                format!(r#"{{"images": {{"f": {{"image": "{img}", "bogus": 1}}}}}}"#),
                Err("images.f"),
            ),
            (r#"{"images": {"f": 7}}"#.into(), Err("images.f")),
            (r#"{"mode": "turbo"}"#.into(), Err("mode")),
            (r#"{"labels": "x"}"#.into(), Err("labels")),
        ];
        for (json, want) in cases {
            let got = runtime::validate_config::<ImageByLabel>(&json);
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(text)) => {
                    assert_eq!(e.code, ErrorCode::InvalidInput, "{json}");
                    assert!(
                        e.message.contains(text),
                        "{json}: {e} should mention {text}"
                    );
                }
                (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn digest_table() {
        let cases = [
            (format!("r/x@sha256:{D1}"), true),
            (format!("registry:5000/a/b@sha256:{D1}"), true),
            (format!("@sha256:{D1}"), false),
            ("r/x@sha256:".to_string(), false),
            (format!("r/x@sha512:{D1}"), false),
            (format!("r/x@sha256:{D1}0"), false),
            ("r/x:tag".to_string(), false),
        ];
        for (r, want) in cases {
            assert_eq!(pinned_by_digest(&r), want, "{r}");
        }
    }
}
