//! The YAML layer: a tree that remembers where every node came from, `${ENV}` substitution on
//! that tree, and a serde `Deserializer` over it that reports every problem with its path and
//! line:column.
//!
//! Invariants:
//! - The tree is parsed once by serde-saphyr into [`Node`]s; nothing downstream re-reads the text.
//!   Every node and every map key carries its own location, so an error can point at the exact
//!   key (unknown field) or value (wrong type, bad unit) it is about.
//! - `${VAR}` substitution rewrites string scalars in place *after* parsing, so locations keep
//!   pointing at the original text. `$${` is a literal `${`. Nothing else is interpolated.
//! - [`from_node`] never stops at the first problem inside one value: unknown fields are
//!   skipped and recorded, and a value that fails is "poisoned" and deserialization of the whole
//!   value is retried without it, until no new failure appears. Every problem is therefore
//!   reported once, with its own path, and a value is returned only if there were none.
//! - Nothing here panics on user input.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::Deserialize;

pub use serde_saphyr::{Location, Spanned};

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

    fn as_int(&self) -> Option<i128> {
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

fn error_at(path: &str, loc: &Location, message: impl Into<String>) -> ConfigError {
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

/// Replaces `${NAME}` in every string scalar of the tree (map keys excepted) using `env`.
/// `$${` stands for a literal `${`. Returns one error per unset variable or malformed reference;
/// the offending string is left as written.
pub fn substitute_env(node: &mut Node, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    substitute_walk(node, "", env, &mut errors);
    errors
}

fn substitute_walk(node: &mut Node, path: &str, env: &dyn Fn(&str) -> Option<String>, errors: &mut Vec<ConfigError>) {
    let loc = node.referenced;
    match &mut node.value {
        YValue::Str(s) if s.contains('$') => match substitute_str(s, env) {
            Ok(new) => *s = new,
            Err(msg) => errors.push(error_at(path, &loc, msg)),
        },
        YValue::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_walk(item, &join_index(path, i), env, errors);
            }
        }
        YValue::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let p = join_key(path, &k.value);
                substitute_walk(v, &p, env, errors);
            }
        }
        _ => {}
    }
}

/// Substitutes one string; see [`substitute_env`].
pub fn substitute_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(format!("unterminated `${{` in {s:?}: write `${{NAME}}`, or `$${{` for a literal `${{`"));
            };
            let name = &tail[..end];
            if !valid_env_name(name) {
                return Err(format!(
                    "invalid environment variable reference `${{{name}}}`: names are letters, \
                     digits and `_`, not starting with a digit (defaults like `:-` are not supported)"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------
// Deserializer over the tree.
// ---------------------------------------------------------------------------------------------

/// Deserializes `node` (found at `path`) into `T`, collecting every problem.
///
/// Returns `Ok` only when there was none. Each error carries the path of the offending key or
/// value and its line:column.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, Vec<ConfigError>> {
    let parsed = from_node_partial::<T>(node, path);
    match parsed.value {
        Some(v) if parsed.errors.is_empty() => Ok(v),
        _ => Err(parsed.errors),
    }
}

/// The outcome of [`from_node_partial`].
#[derive(Debug)]
pub struct Partial<T> {
    /// The value built with every failing part left out (defaults in its place); `None` when
    /// even that was impossible (a required field failed, or the node itself is wrong).
    pub value: Option<T>,
    /// Every problem found, each with its path and location.
    pub errors: Vec<ConfigError>,
    /// Paths of list items that were left out of `value` (`upstreams[0].targets[2]`): items after
    /// them in the same list have shifted indices in `value`.
    pub dropped: Vec<String>,
}

/// Like [`from_node`], but also returns the best-effort value and which list items it lacks,
/// so semantic checks can still run on everything that did parse.
pub fn from_node_partial<T: DeserializeOwned>(node: &Node, path: &str) -> Partial<T> {
    let ctx = Ctx {
        errors: RefCell::new(Vec::new()),
        poisoned: RefCell::new(HashSet::new()),
        dropped: RefCell::new(Vec::new()),
    };
    let root = node_id(node);
    let mut value = None;
    // Each pass poisons at least one new node, so this ends; the bound is a safety net.
    for _ in 0..10_000 {
        let de = NodeDe { node, path: path.to_string(), ctx: &ctx };
        match T::deserialize(de) {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(DeError::Reported { node: failed }) => {
                if failed == root || !ctx.poisoned.borrow_mut().insert(failed) {
                    break;
                }
            }
            Err(e) => {
                ctx.record(error_at(path, &node.referenced, e.message()));
                break;
            }
        }
    }
    let mut errors = ctx.errors.into_inner();
    if value.is_none() && errors.is_empty() {
        errors.push(error_at(path, &node.referenced, "invalid value"));
    }
    Partial { value, errors, dropped: ctx.dropped.into_inner() }
}

fn node_id(node: &Node) -> usize {
    node as *const Node as usize
}

struct Ctx {
    errors: RefCell<Vec<ConfigError>>,
    poisoned: RefCell<HashSet<usize>>,
    dropped: RefCell<Vec<String>>,
}

impl Ctx {
    fn record(&self, e: ConfigError) {
        let mut errors = self.errors.borrow_mut();
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    fn is_poisoned(&self, node: &Node) -> bool {
        self.poisoned.borrow().contains(&node_id(node))
    }
}

/// The deserializer's error. `Reported` means "already recorded; `node` is the value that
/// could not be produced".
#[derive(Debug)]
pub(crate) enum DeError {
    Reported { node: usize },
    Message(String),
    MissingField(&'static str),
}

impl DeError {
    fn message(&self) -> String {
        match self {
            DeError::Reported { .. } => "invalid value".to_string(),
            DeError::Message(m) => m.clone(),
            DeError::MissingField(f) => format!("missing field `{f}`"),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Message(msg.to_string())
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::Message(format!("expected {exp}, found {unexp}"))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::Message(format!("invalid value {unexp}, expected {exp}"))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::Message(format!(
            "unknown variant `{variant}`, expected {}{}",
            one_of(expected),
            did_you_mean(variant, expected)
        ))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::Message(unknown_field_message(field, expected))
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::MissingField(field)
    }
}

/// `one of `a`, `b`, `c`` or `` `a` `` for a single choice.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_string(),
        [one] => format!("`{one}`"),
        many => format!("one of {}", many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    }
}

/// ` (did you mean `x`?)` when a candidate is close to `word`, else empty.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

/// The message for a key that the target struct does not have.
pub fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    format!("unknown field `{field}`, expected {}{}", one_of(expected), did_you_mean(field, expected))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A deserializer for one node of the tree.
struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx,
}

impl<'a> NodeDe<'a> {
    /// Records `msg` against this node and returns the matching `Reported` error.
    fn fail(&self, msg: impl Into<String>) -> DeError {
        self.ctx.record(error_at(&self.path, &self.node.referenced, msg));
        DeError::Reported { node: node_id(self.node) }
    }

    /// Attributes an unlocated error from a visitor to this node.
    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        match r {
            Err(DeError::Message(m)) => Err(self.fail(m)),
            Err(DeError::MissingField(f)) => Err(self.fail(format!("missing field `{f}`"))),
            other => other,
        }
    }

    fn scalar_for_string(&self) -> Option<String> {
        match &self.node.value {
            YValue::Bool(b) => Some(b.to_string()),
            YValue::Int(i) => Some(i.to_string()),
            YValue::UInt(u) => Some(u.to_string()),
            YValue::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    fn integer<V, T>(self, visitor: V, ty: &str, min: i128, max: i128, visit: T) -> Result<V::Value, DeError>
    where
        V: Visitor<'a>,
        T: FnOnce(V, i128) -> Result<V::Value, DeError>,
    {
        match self.node.value.as_int() {
            Some(v) if v >= min && v <= max => {
                let r = visit(visitor, v);
                self.locate(r)
            }
            Some(v) => {
                let range = if min == 0 { format!("0 to {max}") } else { format!("{min} to {max}") };
                Err(self.fail(format!("{v} is out of range for this field ({ty}: {range})")))
            }
            None => {
                let hint = match &self.node.value {
                    YValue::Str(s) if s.trim().parse::<i128>().is_ok() => {
                        " (remove the quotes; environment substitution always yields a string)"
                    }
                    _ => "",
                };
                Err(self.fail(format!("expected an integer, found {}{hint}", self.node.value.describe())))
            }
        }
    }
}

macro_rules! int_method {
    ($method:ident, $ty:ty, $visit:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.integer(visitor, stringify!($ty), <$ty>::MIN as i128, <$ty>::MAX as i128, |v, n| {
                // In range by the check above.
                v.$visit(n as $ty)
            })
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            YValue::Null => visitor.visit_unit(),
            YValue::Bool(b) => visitor.visit_bool(*b),
            YValue::Int(i) => visitor.visit_i64(*i),
            YValue::UInt(u) => visitor.visit_u64(*u),
            YValue::Float(f) => visitor.visit_f64(*f),
            YValue::Str(s) => visitor.visit_str(s),
            YValue::Seq(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.ctx)),
            YValue::Map(entries) => visitor.visit_map(MapDe::new(entries, &self.path, self.ctx, None)),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            YValue::Bool(b) => {
                let r = visitor.visit_bool(*b);
                self.locate(r)
            }
            other => Err(self.fail(format!("expected `true` or `false`, found {}", other.describe()))),
        }
    }

    int_method!(deserialize_i8, i8, visit_i8);
    int_method!(deserialize_i16, i16, visit_i16);
    int_method!(deserialize_i32, i32, visit_i32);
    int_method!(deserialize_i64, i64, visit_i64);
    int_method!(deserialize_u8, u8, visit_u8);
    int_method!(deserialize_u16, u16, visit_u16);
    int_method!(deserialize_u32, u32, visit_u32);
    int_method!(deserialize_u64, u64, visit_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            YValue::Float(f) => visitor.visit_f64(*f),
            YValue::Int(i) => visitor.visit_f64(*i as f64),
            YValue::UInt(u) => visitor.visit_f64(*u as f64),
            other => return Err(self.fail(format!("expected a number, found {}", other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            YValue::Str(s) => {
                let r = visitor.visit_str(s);
                self.locate(r)
            }
            _ => match self.scalar_for_string() {
                Some(text) => Err(self.fail(format!(
                    "expected a string, found {} (quote it to make it a string: \"{text}\")",
                    self.node.value.describe()
                ))),
                None => Err(self.fail(format!("expected a string, found {}", self.node.value.describe()))),
            },
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            YValue::Null => {
                let r = visitor.visit_none();
                self.locate(r)
            }
            _ => {
                // Errors inside are located by the inner deserializer; attribute leftovers here.
                let node = self.node;
                let path = self.path.clone();
                let ctx = self.ctx;
                let r = visitor.visit_some(self);
                NodeDe { node, path, ctx }.locate(r)
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            YValue::Null => {
                let r = visitor.visit_unit();
                self.locate(r)
            }
            other => Err(self.fail(format!("expected an empty value, found {}", other.describe()))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let node = self.node;
        let path = self.path.clone();
        let ctx = self.ctx;
        let r = visitor.visit_newtype_struct(self);
        NodeDe { node, path, ctx }.locate(r)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            YValue::Seq(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.ctx)),
            YValue::Null => visitor.visit_seq(SeqDe::new(&[], &self.path, self.ctx)),
            other => return Err(self.fail(format!("expected a list, found {}", other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            YValue::Map(entries) => visitor.visit_map(MapDe::new(entries, &self.path, self.ctx, None)),
            YValue::Null => visitor.visit_map(MapDe::new(&[], &self.path, self.ctx, None)),
            other => return Err(self.fail(format!("expected a map, found {}", other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let entries: &[(Spanned<String>, Node)] = match &self.node.value {
            YValue::Map(entries) => entries,
            YValue::Null => &[],
            other => {
                return Err(self.fail(format!(
                    "expected a map with the fields {}, found {}",
                    fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
                    other.describe()
                )))
            }
        };
        let r = visitor.visit_map(MapDe::new(entries, &self.path, self.ctx, Some(fields)));
        match r {
            Err(DeError::MissingField(f)) => {
                // A field that is present but whose value failed was already reported.
                let present = entries.iter().any(|(k, _)| k.value == f);
                if present {
                    Err(DeError::Reported { node: node_id(self.node) })
                } else {
                    Err(self.fail(format!("missing field `{f}`")))
                }
            }
            other => self.locate(other),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            YValue::Str(s) => visitor.visit_enum(EnumDe {
                enum_node: self.node,
                variant: s,
                variant_loc: self.node.referenced,
                content: None,
                path: self.path.clone(),
                ctx: self.ctx,
            }),
            YValue::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor.visit_enum(EnumDe {
                    enum_node: self.node,
                    variant: &k.value,
                    variant_loc: k.referenced,
                    content: Some(v),
                    path: self.path.clone(),
                    ctx: self.ctx,
                })
            }
            YValue::Map(entries) => {
                return Err(self.fail(format!(
                    "expected {} (a single-key map for forms with a value, e.g. `{}: ...`), found a map with {} keys",
                    one_of(variants),
                    variants.first().copied().unwrap_or("name"),
                    entries.len()
                )))
            }
            other => return Err(self.fail(format!("expected {}, found {}", one_of(variants), other.describe()))),
        };
        self.locate(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Sequence access; poisoned items (failed in an earlier pass) are skipped.
struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: String,
    ctx: &'a Ctx,
}

impl<'a> SeqDe<'a> {
    fn new(items: &'a [Node], path: &str, ctx: &'a Ctx) -> Self {
        SeqDe { items: items.iter().enumerate(), path: path.to_string(), ctx }
    }
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        for (i, item) in self.items.by_ref() {
            if self.ctx.is_poisoned(item) {
                let p = join_index(&self.path, i);
                let mut dropped = self.ctx.dropped.borrow_mut();
                if !dropped.contains(&p) {
                    dropped.push(p);
                }
                continue;
            }
            let de = NodeDe { node: item, path: join_index(&self.path, i), ctx: self.ctx };
            return seed.deserialize(de).map(Some);
        }
        Ok(None)
    }
}

/// Map and struct access. For structs (`fields` is set), unknown keys are recorded and skipped,
/// and keys whose value is poisoned are skipped (so the field takes its default).
struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Spanned<String>, Node)>,
    pending: Option<&'a (Spanned<String>, Node)>,
    path: String,
    ctx: &'a Ctx,
    fields: Option<&'static [&'static str]>,
}

impl<'a> MapDe<'a> {
    fn new(
        entries: &'a [(Spanned<String>, Node)],
        path: &str,
        ctx: &'a Ctx,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        MapDe { entries: entries.iter(), pending: None, path: path.to_string(), ctx, fields }
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            let (k, v) = entry;
            if let Some(fields) = self.fields {
                if !fields.contains(&k.value.as_str()) {
                    self.ctx.record(error_at(
                        &join_key(&self.path, &k.value),
                        &k.referenced,
                        unknown_field_message(&k.value, fields),
                    ));
                    continue;
                }
            }
            if self.ctx.is_poisoned(v) {
                continue;
            }
            self.pending = Some(entry);
            let key_path = join_key(&self.path, &k.value);
            return seed.deserialize(KeyDe { key: &k.value }).map(Some).map_err(|e| match e {
                DeError::Reported { .. } => e,
                other => {
                    self.ctx.record(error_at(&key_path, &k.referenced, other.message()));
                    DeError::Reported { node: node_id(v) }
                }
            });
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((k, v)) = self.pending.take() else {
            return Err(DeError::Message("value requested before its key".to_string()));
        };
        seed.deserialize(NodeDe { node: v, path: join_key(&self.path, &k.value), ctx: self.ctx })
    }
}

/// A map key or enum variant name: always a string.
struct KeyDe<'a> {
    key: &'a str,
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.key)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Externally tagged enums: `variant` (unit) or `{variant: content}`.
struct EnumDe<'a> {
    enum_node: &'a Node,
    variant: &'a str,
    variant_loc: Location,
    content: Option<&'a Node>,
    path: String,
    ctx: &'a Ctx,
}

impl<'a> EnumDe<'a> {
    fn fail(&self, path: &str, loc: &Location, msg: impl Into<String>) -> DeError {
        self.ctx.record(error_at(path, loc, msg));
        DeError::Reported { node: node_id(self.enum_node) }
    }
}

impl<'de> de::EnumAccess<'de> for EnumDe<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        match seed.deserialize(KeyDe { key: self.variant }) {
            Ok(v) => Ok((v, self)),
            Err(DeError::Reported { .. }) => Err(DeError::Reported { node: node_id(self.enum_node) }),
            Err(e) => Err(self.fail(&self.path, &self.variant_loc, e.message())),
        }
    }
}

impl<'de> de::VariantAccess<'de> for EnumDe<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(c) if c.value == YValue::Null => Ok(()),
            Some(c) => {
                let p = join_key(&self.path, self.variant);
                Err(self.fail(&p, &c.referenced, format!("`{v}` takes no value: write just `{v}`", v = self.variant)))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let content = self.content_or_fail("...")?;
        let r = seed.deserialize(self.content_de(content));
        self.lift(content, r)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let content = self.content_or_fail("[...]")?;
        let r = de::Deserializer::deserialize_seq(self.content_de(content), visitor);
        self.lift(content, r)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        let content = self.content_or_fail("{...}")?;
        let r = de::Deserializer::deserialize_struct(self.content_de(content), "", fields, visitor);
        self.lift(content, r)
    }
}

impl<'a> EnumDe<'a> {
    /// The variant's value; poisoned content poisons the whole enum (it cannot be skipped).
    fn content_or_fail(&self, example: &str) -> Result<&'a Node, DeError> {
        match self.content {
            None => Err(self.fail(
                &self.path,
                &self.variant_loc,
                format!("`{v}` needs a value: write `{v}: {example}`", v = self.variant),
            )),
            Some(c) if self.ctx.is_poisoned(c) => Err(DeError::Reported { node: node_id(self.enum_node) }),
            Some(c) => Ok(c),
        }
    }

    fn content_de(&self, content: &'a Node) -> NodeDe<'a> {
        NodeDe { node: content, path: join_key(&self.path, self.variant), ctx: self.ctx }
    }

    /// A failure of the content itself becomes a failure of the enum node.
    fn lift<T>(&self, content: &Node, r: Result<T, DeError>) -> Result<T, DeError> {
        match r {
            Err(DeError::Reported { node }) if node == node_id(content) => {
                Err(DeError::Reported { node: node_id(self.enum_node) })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Balancer, HashOn, PathMatch, RouteMatch, Target, Upstream};
    use crate::units::{ByteSize, Dur};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(node: &Node) -> (u64, u64) {
        (node.referenced.line(), node.referenced.column())
    }

    fn tree(text: &str) -> Node {
        parse(text).expect("valid YAML")
    }

    /// `path (line, column): message` for each error, for compact assertions.
    fn errs<T: DeserializeOwned + fmt::Debug>(text: &str) -> Vec<String> {
        let node = tree(text);
        match from_node::<T>(&node, "x") {
            Ok(v) => panic!("expected errors, got {v:?}"),
            Err(es) => es.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn tree_keeps_nested_locations() {
        let text =
            "routes:\n  - name: a\n    match:\n      path: {prefix: /api}\n      methods: [GET, POST]\n  - name: b\n";
        let root = tree(text);
        let routes = root.value.get("routes").unwrap();
        assert_eq!(at(routes), (2, 3));
        let YValue::Seq(items) = &routes.value else { panic!("not a seq") };
        assert_eq!(items.len(), 2);
        assert_eq!(at(&items[0]), (2, 5));
        assert_eq!(at(items[0].value.get("name").unwrap()), (2, 11));
        let m = items[0].value.get("match").unwrap();
        let path = m.value.get("path").unwrap();
        let prefix = path.value.get("prefix").unwrap();
        assert_eq!(prefix.value, YValue::Str("/api".into()));
        assert_eq!(at(prefix), (4, 22));
        let YValue::Seq(methods) = &m.value.get("methods").unwrap().value else { panic!() };
        assert_eq!(at(&methods[1]), (5, 22));
        // Keys carry their own locations.
        let YValue::Map(entries) = &m.value else { panic!() };
        assert_eq!(
            (entries[1].0.value.as_str(), entries[1].0.referenced.line(), entries[1].0.referenced.column()),
            ("methods", 5, 7)
        );
        assert_eq!(at(items[1].value.get("name").unwrap()), (6, 11));
    }

    #[test]
    fn scalars_keep_their_types() {
        let root = tree("a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '7'\ng:\nh: text\n");
        let v = |k: &str| root.value.get(k).unwrap().value.clone();
        assert_eq!(v("a"), YValue::UInt(1));
        assert_eq!(v("b"), YValue::Int(-2));
        assert_eq!(v("c"), YValue::Float(1.5));
        assert_eq!(v("d"), YValue::Bool(true));
        assert_eq!(v("e"), YValue::Null);
        assert_eq!(v("f"), YValue::Str("7".into()));
        assert_eq!(v("g"), YValue::Null);
        assert_eq!(v("h"), YValue::Str("text".into()));
        assert_eq!(tree("").value, YValue::Null);
        assert_eq!(tree("# nothing\n").value, YValue::Null);
    }

    #[test]
    fn anchors_and_merge_keys_resolve() {
        let root = tree("base: &b\n  weight: 5\nt:\n  <<: *b\n  url: http://127.0.0.1:1\n");
        let t: Target = from_node(root.value.get("t").unwrap(), "t").unwrap();
        assert_eq!(t.weight, 5);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let e = parse("a: [1,\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(4)));
        assert!(e.message.starts_with("invalid YAML: "), "{e}");
        assert!(!e.message.contains("at line"), "{e}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("duplicate mapping key"), "{e}");
        assert!(!e.message.contains("DuplicateKeyPolicy"), "{e}");
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("exactly one YAML document"), "{e}");
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        let e = errs::<Target>("url: http://127.0.0.1:1\nwieght: 3\n");
        assert_eq!(
            e,
            vec!["x.wieght (line 2, column 1): unknown field `wieght`, expected one of `url`, `weight` (did you mean `weight`?)"]
        );
    }

    #[test]
    fn nested_unknown_field_has_full_path() {
        let e = errs::<Upstream>(
            "name: u\ntargets:\n  - url: http://127.0.0.1:1\n  - url: http://127.0.0.1:2\n    port: 3\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("x.targets[1].port (line 5, column 5): unknown field `port`"), "{e:?}");
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let e = errs::<Target>("url: [a]\n");
        assert_eq!(e, vec!["x.url (line 1, column 6): expected a string, found a list"]);
        let e = errs::<Target>("url: 5\n");
        assert!(e[0].contains("quote it"), "{e:?}");
        let e = errs::<Target>("url: http://a:1\nweight: '3'\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("x.weight (line 2, column 9): expected an integer, found string \"3\""), "{e:?}");
        let e = errs::<Target>("url: http://a:1\nweight: true\n");
        assert!(e[0].contains("expected an integer, found boolean `true`"), "{e:?}");
        let e = errs::<crate::types::Rewrite>("strip_prefix: yes please\n");
        assert!(e[0].contains("expected `true` or `false`"), "{e:?}");
    }

    #[test]
    fn integer_ranges() {
        let e = errs::<crate::types::StatusRange>("min: 70000\nmax: -1\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("x.min (line 1, column 6): 70000 is out of range for this field (u16: 0 to 65535)"),
            "{e:?}"
        );
        assert!(e[1].starts_with("x.max (line 2, column 6): -1 is out of range"), "{e:?}");
        let e = errs::<Target>("url: http://a:1\nweight: 5000000000\n");
        assert!(e[0].contains("u32"), "{e:?}");
    }

    #[test]
    fn missing_field_points_at_the_map() {
        let e = errs::<Target>("weight: 3\n");
        assert_eq!(e, vec!["x (line 1, column 1): missing field `url`"]);
    }

    #[test]
    fn every_problem_in_one_value_is_reported() {
        // Unknown key, bad unit, wrong type in a list item, and a missing field in another.
        let text = "name: u\nnmae: v\ntargets:\n  - url: http://a:1\n    weight: x\n  - weight: 2\n  - url: http://b:1\npool:\n  idle_timeout: 5 minutes\n";
        let e = errs::<Upstream>(text);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e.iter().any(|m| m.starts_with("x.nmae (line 2, column 1): unknown field")));
        assert!(e.iter().any(|m| m.starts_with("x.targets[0].weight (line 5, column 13): expected an integer")));
        assert!(e.iter().any(|m| m.starts_with("x.targets[1] (line 6, column 5): missing field `url`")));
        assert!(e.iter().any(|m| m.starts_with("x.pool.idle_timeout (line 9, column 17): invalid duration")));
    }

    #[test]
    fn partial_value_reports_dropped_items() {
        let node = tree("name: u\ntargets:\n  - url: http://a:1\n  - url: [x]\n  - url: http://c:1\n");
        let p = from_node_partial::<Upstream>(&node, "u");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.dropped, vec!["u.targets[1]".to_string()]);
        let v = p.value.expect("partial value");
        assert_eq!(v.targets.len(), 2);
        assert_eq!(v.targets[1].url, "http://c:1");
    }

    #[test]
    fn option_and_null() {
        let t: crate::types::Route = from_node(&tree("name: r\nupstream: u\nrewrite:\ntimeout: ~\n"), "r").unwrap();
        assert_eq!(t.rewrite, None);
        assert_eq!(t.timeout, None);
        // An empty value is an empty list / map / section.
        let m: RouteMatch = from_node(&tree("hosts:\nmethods: ~\n"), "m").unwrap();
        assert!(m.hosts.is_empty() && m.methods.is_empty());
        let t: crate::types::Route = from_node(&tree("name: r\nupstream: u\nrewrite: {path: /x}\n"), "r").unwrap();
        assert_eq!(t.rewrite.unwrap().path.as_deref(), Some("/x"));
    }

    #[test]
    fn enum_forms() {
        let b: Balancer = from_node(&tree("round_robin"), "b").unwrap();
        assert_eq!(b, Balancer::RoundRobin);
        let b: Balancer = from_node(&tree("peak_ewma"), "b").unwrap();
        assert_eq!(b, Balancer::PeakEwma);
        let b: Balancer = from_node(&tree("consistent_hash: {header: x-user}"), "b").unwrap();
        assert_eq!(b, Balancer::ConsistentHash(HashOn::Header("x-user".into())));
        let b: Balancer = from_node(&tree("consistent_hash: client_ip"), "b").unwrap();
        assert_eq!(b, Balancer::ConsistentHash(HashOn::ClientIp));
        let b: Balancer = from_node(&tree("{round_robin: }"), "b").unwrap();
        assert_eq!(b, Balancer::RoundRobin);
        let p: PathMatch = from_node(&tree("{prefix: /api}"), "p").unwrap();
        assert_eq!(p, PathMatch::Prefix("/api".into()));

        let e = errs::<Balancer>("random\n");
        assert!(
            e[0].starts_with("x (line 1, column 1): unknown variant `random`, expected one of `round_robin`"),
            "{e:?}"
        );
        let e = errs::<Balancer>("consistent_hsah: client_ip\n");
        assert!(e[0].contains("did you mean `consistent_hash`?"), "{e:?}");
        let e = errs::<Balancer>("consistent_hash\n");
        assert!(e[0].contains("`consistent_hash` needs a value"), "{e:?}");
        let e = errs::<Balancer>("round_robin: 3\n");
        assert!(e[0].starts_with("x.round_robin (line 1, column 14): `round_robin` takes no value"), "{e:?}");
        let e = errs::<Balancer>("consistent_hash: {header: a}\nround_robin:\n");
        assert!(e[0].contains("found a map with 2 keys"), "{e:?}");
        let e = errs::<Balancer>("consistent_hash: {headr: a}\n");
        assert!(e[0].starts_with("x.consistent_hash (line 1, column 19): unknown variant `headr`"), "{e:?}");
        let e = errs::<Balancer>("consistent_hash: {header: [a]}\n");
        assert!(e[0].starts_with("x.consistent_hash.header (line 1, column 27): expected a string"), "{e:?}");
        let e = errs::<PathMatch>("5\n");
        assert!(e[0].contains("expected one of `exact`, `prefix`, `template`, `regex`, found integer `5`"), "{e:?}");
    }

    #[test]
    fn struct_variant_and_unit_in_map() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Shape {
            Point,
            Rect { w: u32, h: u32 },
        }
        let s: Shape = from_node(&tree("rect: {w: 1, h: 2}"), "s").unwrap();
        assert_eq!(s, Shape::Rect { w: 1, h: 2 });
        let s: Shape = from_node(&tree("point"), "s").unwrap();
        assert_eq!(s, Shape::Point);
        let e = errs::<Shape>("rect: {w: 1, d: 2}\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("x.rect.d (line 1, column 14): unknown field `d`")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("missing field `h`")), "{e:?}");
    }

    #[test]
    fn json_values_and_maps() {
        let v: serde_json::Value = from_node(&tree("a: [1, -2, 1.5, x, true, ~]\nb: {c: d}\n"), "v").unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, -2, 1.5, "x", true, null], "b": {"c": "d"}}));
        let m: BTreeMap<String, String> = from_node(&tree("X-A: 1x\nx-b: two\n"), "m").unwrap();
        assert_eq!(m.get("X-A").map(String::as_str), Some("1x"));
        let e = errs::<BTreeMap<String, String>>("a: ok\nb: 2\nc: [x]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("x.b (line 2, column 4): expected a string, found integer `2`"), "{e:?}");
    }

    #[test]
    fn units_accept_strings_and_integers() {
        let d: Dur = from_node(&tree("250ms"), "d").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        let s: ByteSize = from_node(&tree("1024"), "s").unwrap();
        assert_eq!(s.0, 1024);
        let s: ByteSize = from_node(&tree("64KiB"), "s").unwrap();
        assert_eq!(s.0, 65536);
        let e = errs::<Dur>("30\n");
        assert!(e[0].starts_with("x (line 1, column 1): invalid duration `30`"), "{e:?}");
        let e = errs::<ByteSize>("[1]\n");
        assert!(e[0].contains("expected a size such as"), "{e:?}");
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_substitution() {
        assert_eq!(substitute_str("127.0.0.1:${PORT}", &env).unwrap(), "127.0.0.1:8080");
        assert_eq!(substitute_str("${PORT}${PORT}", &env).unwrap(), "80808080");
        assert_eq!(substitute_str("a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(substitute_str("$${PORT}", &env).unwrap(), "${PORT}");
        assert_eq!(substitute_str("cost: $5 $", &env).unwrap(), "cost: $5 $");
        assert_eq!(substitute_str("$$${PORT}", &env).unwrap(), "$${PORT}");
        assert!(substitute_str("${NOPE}", &env).unwrap_err().contains("`NOPE` is not set"));
        assert!(substitute_str("${PORT", &env).unwrap_err().contains("unterminated"));
        assert!(substitute_str("${1X}", &env).unwrap_err().contains("invalid environment variable"));
        assert!(substitute_str("${X:-d}", &env).unwrap_err().contains("`:-` are not supported"));
    }

    #[test]
    fn env_substitution_in_tree() {
        let mut root = tree("a: \"${PORT}\"\nlist:\n  - x: ${NOPE}\n  - $${PORT}\nn: 5\n${PORT}: key\n");
        let errors = substitute_env(&mut root, &env);
        assert_eq!(root.value.get("a").unwrap().value, YValue::Str("8080".into()));
        // Locations are those of the original text.
        assert_eq!(at(root.value.get("a").unwrap()), (1, 4));
        let YValue::Seq(items) = &root.value.get("list").unwrap().value else { panic!() };
        assert_eq!(items[1].value, YValue::Str("${PORT}".into()));
        // Keys are not substituted.
        assert!(root.value.get("${PORT}").is_some());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), "list[0].x (line 3, column 8): environment variable `NOPE` is not set");
    }
}
