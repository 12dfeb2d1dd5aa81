//! The crate's error types: [`ConfigError`], one problem in a config file, and [`PathError`],
//! why a path cannot be normalised.
//!
//! Invariants: this module depends on nothing else in the crate, so every layer (the YAML
//! reader, validation, loading, the path rules) can report errors without importing another
//! layer. A `ConfigError` is plain data: its `path` is the dotted path of the offending key or
//! value (`routes[2].upstream`, empty for the whole document), `line`/`column` are 1-based and
//! present only when the text is known, and its `Display` form is what users see.

use std::fmt;

/// One problem in a config: where (path and line:column) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// `routes[2].upstream`; empty for document-level problems (shown as `<root>`).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column (in characters), when known.
    pub column: Option<u64>,
    pub message: String,
}

impl ConfigError {
    /// An error without a location.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), line: None, column: None, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "<root>" } else { &self.path };
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{path} (line {l}, column {c}): {}", self.message),
            (Some(l), None) => write!(f, "{path} (line {l}): {}", self.message),
            _ => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Why a path cannot be normalised (a request with such a path gets 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    MalformedEscape,
    EncodedNul,
    Backslash,
    /// A character that must be percent-encoded (space, `"`, `{`, non-ASCII, ...).
    InvalidChar(char),
    /// A `.` or `..` segment carrying path parameters (`/..;/`): origins disagree on it.
    DotSegmentParams,
    /// An empty segment carrying path parameters (`/;/admin`, `/;x/admin`): Tomcat and Spring
    /// drop the parameters and then the empty segment, serving `/admin`.
    EmptySegmentParams,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("must start with `/`"),
            PathError::MalformedEscape => f.write_str("contains a malformed percent-escape"),
            PathError::EncodedNul => f.write_str("contains `%00`, which requests are refused for"),
            PathError::Backslash => f.write_str("contains `\\`, which requests are refused for"),
            PathError::EmptySegmentParams => {
                f.write_str("contains an empty segment with path parameters (`/;`), which requests are refused for")
            }
            PathError::DotSegmentParams => {
                f.write_str("contains a dot segment with path parameters (`..;`), which requests are refused for")
            }
            PathError::InvalidChar(c) => {
                let mut buf = [0u8; 4];
                let enc: String = c.encode_utf8(&mut buf).bytes().map(|b| format!("%{b:02X}")).collect();
                write!(f, "contains `{}`, which must be percent-encoded (`{enc}`)", c.escape_debug())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        let e = ConfigError {
            path: "routes[2].upstream".into(),
            line: Some(14),
            column: Some(15),
            message: "unknown upstream \"userz\"".into(),
        };
        assert_eq!(e.to_string(), "routes[2].upstream (line 14, column 15): unknown upstream \"userz\"");
        assert_eq!(ConfigError::new("", "bad").to_string(), "<root>: bad");
        assert_eq!(ConfigError::new("listeners", "x").to_string(), "listeners: x");
    }
}
