//! `ConfigError`: every configuration failure, with the path of the field it is about.
//!
//! Produced by the YAML reader (`node.rs`), the Bootstrap parsers and the filter factories that
//! read their `typed_config` with a [`Node`](super::Node); shown to the user by the CLI as
//! `path: message`, e.g.
//! `static_resources.clusters[0].lb_policy: unknown value 'MAGLEV2' (expected one of: ...)`.

use std::fmt;

/// What went wrong, for callers (and tests) that need more than the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not YAML (the message carries line and column).
    Syntax,
    /// A field that Envoy does not have either (a typo, or a field from another message).
    UnknownField,
    /// A field or value Envoy has that nuncio does not implement yet.
    NotSupported,
    /// A required field is absent.
    Missing,
    /// A value of the wrong YAML type (a list where a string belongs, ...).
    WrongType,
    /// A value of the right type that is not acceptable (bad address, out of range, duplicate,
    /// reference to a missing cluster, ...).
    Invalid,
}

/// A configuration error: the path of the offending field and what is wrong with it.
///
/// `Display` prints `path: message` (just `message` when the path is empty, e.g. for an
/// unreadable file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path from the document root, with list indexes:
    /// `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster`.
    pub path: String,
    /// What is wrong, phrased for the user.
    pub message: String,
    /// The class of the error.
    pub kind: ErrorKind,
}

/// The result type of everything that reads configuration.
pub type Result<T> = std::result::Result<T, ConfigError>;

impl ConfigError {
    /// An error of `kind` about the field at `path`.
    pub fn new(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            kind,
        }
    }

    /// An [`ErrorKind::Invalid`] error: the usual one for semantic checks
    /// (`cluster 'x' does not exist`).
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, path, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
