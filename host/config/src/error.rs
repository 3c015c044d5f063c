//! Errors and warnings produced while loading a configuration.

use std::fmt;
use std::path::PathBuf;

use crate::json::JsonPath;

/// One problem found in a configuration.
///
/// Every variant except [`ConfigError::Io`] and [`ConfigError::Syntax`]
/// carries the JSON path of the offending value, printed first:
/// `pools[1].drivers[0].excludeDevices[2].pci: invalid PCI address "xyz" ...`.
/// Paths use the key spelling found in the file; keys that are missing are
/// named in their documented spelling.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// File that was being read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid JSON.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser reported.
        message: String,
    },
    /// A key that the schema does not define.
    #[error("{path}: unknown key; expected one of: {}", expected.join(", "))]
    UnknownKey {
        /// Path of the unknown key itself.
        path: JsonPath,
        /// Keys that are valid at that place.
        expected: Vec<&'static str>,
    },
    /// The same key appears more than once in one object (in the upstream
    /// form, keys that differ only in case are the same key).
    #[error("{path}: duplicate key (also given as {})", others.join(", "))]
    DuplicateKey {
        /// Path of the last occurrence (the one a Go decoder would keep).
        path: JsonPath,
        /// The other spellings found, quoted.
        others: Vec<String>,
    },
    /// A value of the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Path of the value.
        path: JsonPath,
        /// What the schema wants, e.g. `"an integer"`.
        expected: &'static str,
        /// A short description of what was found.
        found: String,
    },
    /// A required value is missing or empty.
    #[error("{path}: {message}")]
    Missing {
        /// Path where the value was expected.
        path: JsonPath,
        /// Why it is needed.
        message: String,
    },
    /// A value that has the right type but is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// Path of the value.
        path: JsonPath,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// The JSON path of the problem, when it has one.
    pub fn path(&self) -> Option<&JsonPath> {
        match self {
            ConfigError::Io { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { path, .. }
            | ConfigError::DuplicateKey { path, .. }
            | ConfigError::WrongType { path, .. }
            | ConfigError::Missing { path, .. }
            | ConfigError::Invalid { path, .. } => Some(path),
        }
    }
}

/// Every problem found in a configuration, grouped by the object they are
/// in (top level, then pool by pool), in schema order within an object.
///
/// `Display` prints one error per line, ready for `afxdpctl config check`.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no error (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors rendered one per string (same text as the `Display` lines).
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A problem that does not stop the configuration from loading: a legacy
/// key that is accepted but ignored, a setting that has no effect in the
/// chosen mode, a default filled in for an older upstream file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// JSON path the warning is about.
    pub path: JsonPath,
    /// Explanation for the operator.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
