//! Schema-walking helpers shared by both config forms: they read typed values
//! out of the [`Json`] tree and collect every problem instead of stopping at
//! the first one.

use crate::error::{ConfigError, ConfigWarning};
use crate::json::{Json, JsonPath};

/// Errors and warnings collected during one parse.
#[derive(Default)]
pub(crate) struct Ctx {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl Ctx {
    pub fn invalid(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            path: path.clone(),
            message: message.into(),
        });
    }

    pub fn missing(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.errors.push(ConfigError::Missing {
            path: path.clone(),
            message: message.into(),
        });
    }

    pub fn wrong_type(&mut self, path: &JsonPath, expected: &'static str, found: &Json) {
        self.errors.push(ConfigError::WrongType {
            path: path.clone(),
            expected,
            found: found.describe(),
        });
    }

    pub fn warn(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            path: path.clone(),
            message: message.into(),
        });
    }
}

/// How object keys are matched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Exact, case-sensitive keys; `null` is a type error (richer form).
    Exact,
    /// Go `encoding/json` rules: keys match case-insensitively (Unicode
    /// simple folding) and `null` means "not set" (upstream form).
    GoFold,
}

/// Case folding as Go's `encoding/json` does it (`bytes.EqualFold`): every
/// character is mapped through upper then lower case, so `ſ` matches `s`
/// and the Kelvin sign matches `k`.
pub(crate) fn go_fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Reads the keys of one JSON object, remembering which were consumed so
/// that the rest can be reported as unknown.
pub(crate) struct ObjReader<'a> {
    path: JsonPath,
    entries: &'a [(String, Json)],
    /// With [`Keys::GoFold`], each entry's key folded once (a lookup folds
    /// only the key asked for); empty with [`Keys::Exact`].
    folded: Vec<String>,
    consumed: Vec<bool>,
    keys: Keys,
    known: Vec<&'static str>,
}

impl<'a> ObjReader<'a> {
    /// Starts reading `value` as an object; reports a type error and returns
    /// `None` when it is not one.
    pub fn new(value: &'a Json, path: &JsonPath, keys: Keys, ctx: &mut Ctx) -> Option<Self> {
        match value {
            Json::Object(entries) => Some(ObjReader {
                path: path.clone(),
                entries,
                folded: match keys {
                    Keys::Exact => Vec::new(),
                    Keys::GoFold => entries.iter().map(|(k, _)| go_fold(k)).collect(),
                },
                consumed: vec![false; entries.len()],
                keys,
                known: Vec::new(),
            }),
            other => {
                ctx.wrong_type(path, "an object", other);
                None
            }
        }
    }

    pub fn path(&self) -> &JsonPath {
        &self.path
    }

    /// Path of `canonical` in this object, for messages about a missing key.
    pub fn child_path(&self, canonical: &str) -> JsonPath {
        self.path.key(canonical)
    }

    /// Whether entry `i` has the key `canonical` (an ASCII schema key).
    fn is_key(&self, i: usize, canonical: &str) -> bool {
        match self.keys {
            Keys::Exact => self.entries[i].0 == canonical,
            // The folded key is lower case, and folding an ASCII key is
            // ASCII lower-casing: no allocation per lookup.
            Keys::GoFold => self.folded[i].eq_ignore_ascii_case(canonical),
        }
    }

    /// Indices of the entries whose key is `canonical`, in file order.
    fn hits<'s>(&'s self, canonical: &'s str) -> impl DoubleEndedIterator<Item = usize> + 's {
        (0..self.entries.len()).filter(move |&i| self.is_key(i, canonical))
    }

    /// True when the object has `canonical` among its keys (without
    /// consuming it).
    pub fn has(&self, canonical: &str) -> bool {
        self.hits(canonical).next().is_some()
    }

    /// Number of elements of the array under `canonical` (0 when absent or
    /// not an array), without consuming the key.
    pub fn array_len(&self, canonical: &str) -> usize {
        self.hits(canonical)
            .next_back()
            .map_or(0, |i| match &self.entries[i].1 {
                Json::Array(a) => a.len(),
                _ => 0,
            })
    }

    /// Takes the value of `canonical`. When the key occurs several times, a
    /// duplicate-key error is reported and the last occurrence is used (as
    /// Go does). With [`Keys::GoFold`], `null` is treated as absent.
    pub fn take(&mut self, canonical: &'static str, ctx: &mut Ctx) -> Option<(JsonPath, &'a Json)> {
        self.known.push(canonical);
        let mut last = None;
        let mut others = Vec::new();
        for i in 0..self.entries.len() {
            if self.is_key(i, canonical) {
                self.consumed[i] = true;
                if let Some(prev) = last.replace(i) {
                    others.push(format!("{:?}", self.entries[prev].0));
                }
            }
        }
        let (key, value) = &self.entries[last?];
        let path = self.path.key(key);
        if !others.is_empty() {
            ctx.errors.push(ConfigError::DuplicateKey {
                path: path.clone(),
                others,
            });
        }
        if self.keys == Keys::GoFold && *value == Json::Null {
            return None;
        }
        Some((path, value))
    }

    /// Reports every key that was never taken.
    pub fn finish(self, ctx: &mut Ctx) {
        for (i, (key, _)) in self.entries.iter().enumerate() {
            if !self.consumed[i] {
                ctx.errors.push(ConfigError::UnknownKey {
                    path: self.path.key(key),
                    expected: self.known.clone(),
                });
            }
        }
    }

    // Typed accessors. Each returns `None` when the key is absent or the
    // value has the wrong type (the latter reported).

    pub fn string(&mut self, k: &'static str, ctx: &mut Ctx) -> Option<(JsonPath, &'a str)> {
        let (p, v) = self.take(k, ctx)?;
        match v {
            Json::String(s) => Some((p, s.as_str())),
            other => {
                ctx.wrong_type(&p, "a string", other);
                None
            }
        }
    }

    pub fn bool(&mut self, k: &'static str, ctx: &mut Ctx) -> Option<(JsonPath, bool)> {
        let (p, v) = self.take(k, ctx)?;
        match v {
            Json::Bool(b) => Some((p, *b)),
            other => {
                ctx.wrong_type(&p, "a boolean", other);
                None
            }
        }
    }

    pub fn int(&mut self, k: &'static str, ctx: &mut Ctx) -> Option<(JsonPath, i64)> {
        let (p, v) = self.take(k, ctx)?;
        match as_int(v) {
            Some(n) => Some((p, n)),
            None => {
                ctx.wrong_type(&p, "an integer", v);
                None
            }
        }
    }

    pub fn array(&mut self, k: &'static str, ctx: &mut Ctx) -> Option<(JsonPath, &'a [Json])> {
        let (p, v) = self.take(k, ctx)?;
        match v {
            Json::Array(a) => Some((p, a.as_slice())),
            other => {
                ctx.wrong_type(&p, "an array", other);
                None
            }
        }
    }
}

/// An integral JSON number that fits in `i64` (`30.0` and `1e3` are not
/// integers, as in Go).
pub(crate) fn as_int(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::go_fold;

    #[test]
    fn folding_matches_go_equal_fold() {
        assert_eq!(go_fold("ExcludeDevices"), go_fold("excludedevices"));
        assert_eq!(go_fold("UDSTIMEOUT"), "udstimeout");
        assert_eq!(go_fold("\u{17f}"), "s");
        assert_eq!(go_fold("\u{212a}"), "k");
        assert_ne!(go_fold("pools"), go_fold("pool"));
    }
}
