//! The located YAML tree: [`Node`]s that remember where they came from, parsed once from the
//! text, plus the helpers that name a place in it (`routes[2].upstream`, line:column).
//!
//! Invariants: the text is parsed exactly once, by serde-saphyr; every node and every map key
//! carries its own location, and map keys are always strings. A syntax error is one
//! `ConfigError` at the document root, with the parser's line:column when it has one.

use std::fmt;

use serde::de::{self, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::error::ConfigError;

/// One YAML node with its location (`referenced` is where it appears in the text).
pub type Node = Spanned<YValue>;

/// The value of a YAML node. Map keys are always strings (YAML allows more; a config never needs it).
#[derive(Debug, Clone, PartialEq)]
pub enum YValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Spanned<String>, Node)>),
}

impl YValue {
    /// A short description for error messages: `string "abc"`, `integer 5`, `a list`.
    pub fn describe(&self) -> String {
        match self {
            YValue::Null => "an empty value (null)".to_string(),
            YValue::Bool(b) => format!("boolean `{b}`"),
            YValue::Int(i) => format!("integer `{i}`"),
            YValue::UInt(u) => format!("integer `{u}`"),
            YValue::Float(f) => format!("number `{f}`"),
            YValue::Str(s) => format!("string {s:?}"),
            YValue::Seq(_) => "a list".to_string(),
            YValue::Map(_) => "a map".to_string(),
        }
    }

    /// The entry for `key` if this is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            YValue::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn as_int(&self) -> Option<i128> {
        match self {
            YValue::Int(i) => Some(i128::from(*i)),
            YValue::UInt(u) => Some(i128::from(*u)),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for YValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TreeVisitor;

        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = YValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<YValue, E> {
                Ok(YValue::Null)
            }
            fn visit_none<E>(self) -> Result<YValue, E> {
                Ok(YValue::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<YValue, D::Error> {
                YValue::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<YValue, E> {
                Ok(YValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<YValue, E> {
                Ok(YValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<YValue, E> {
                Ok(YValue::UInt(v))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<YValue, E> {
                i64::try_from(v).map(YValue::Int).map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<YValue, E> {
                u64::try_from(v).map(YValue::UInt).map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<YValue, E> {
                Ok(YValue::Float(v))
            }
            fn visit_char<E>(self, v: char) -> Result<YValue, E> {
                Ok(YValue::Str(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<YValue, E> {
                Ok(YValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<YValue, E> {
                Ok(YValue::Str(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<YValue, E> {
                String::from_utf8(v.to_vec()).map(YValue::Str).map_err(|_| E::custom("binary values are not supported"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<YValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(YValue::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<YValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Node>()? {
                    entries.push(entry);
                }
                Ok(YValue::Map(entries))
            }
        }

        d.deserialize_any(TreeVisitor)
    }
}

/// `(line, column)` of a location, `None` when the parser did not know it.
pub fn line_col(loc: &Location) -> (Option<u64>, Option<u64>) {
    if loc.line() == 0 {
        (None, None)
    } else {
        (Some(loc.line()), Some(loc.column()))
    }
}

/// `parent.key`, or `key` at the root.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A `ConfigError` at `path`, located at `loc`.
pub(super) fn error_at(path: &str, loc: &Location, message: impl Into<String>) -> ConfigError {
    let (line, column) = line_col(loc);
    ConfigError { path: path.to_string(), line, column, message: message.into() }
}

/// Parses one YAML document into a located tree. An empty document is a `Null` node.
pub fn parse(text: &str) -> Result<Node, ConfigError> {
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let (line, column) = e.location().map(|l| line_col(&l)).unwrap_or((None, None));
        let raw = e.without_snippet().to_string();
        // The plain rendering ends with " at line L, column C"; we carry those separately.
        let mut message = match raw.rfind(" at line ") {
            Some(i) if line.is_some() => raw[..i].to_string(),
            _ => raw,
        };
        if message.contains("multiple YAML documents") {
            message = "a config file holds exactly one YAML document; remove the extra `---`".into();
        } else if let Some(i) = message.find(", set DuplicateKeyPolicy") {
            message.truncate(i);
        }
        ConfigError { path: String::new(), line, column, message: format!("invalid YAML: {message}") }
    })
}
