//! The path-tracking, all-errors serde `Deserializer` over the located tree.
//!
//! Invariants:
//! - [`from_node`] never stops at the first problem inside one value: unknown fields are
//!   skipped and recorded, and a value that fails is "poisoned" and deserialization of the whole
//!   value is retried without it, until no new failure appears. Every problem is therefore
//!   reported once, with its own path and line:column, and a value is returned only if there
//!   were none.
//! - Each error points at the exact key (unknown field) or value (wrong type, bad unit) it is
//!   about; a missing field points at the map that lacks it.
//! - `DeError` never leaves this module: it is the deserializer's own signal ("already recorded,
//!   this node failed") for the poison-and-retry loop, not an error callers see.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde_saphyr::{Location, Spanned};

use super::messages::{did_you_mean, one_of, unknown_field_message};
use super::tree::{error_at, join_index, join_key, Node, YValue};
use crate::error::ConfigError;

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
