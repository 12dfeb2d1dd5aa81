//! The YAML layer: a tree that remembers where every node came from, `${ENV}` substitution on
//! that tree, and a serde `Deserializer` over it that reports every problem with its path and
//! line:column.
//!
//! Files: `tree` (the located tree, parsing, path and location helpers), `env` (`${ENV}`
//! substitution), `de` (the all-errors deserializer), `messages` (the "one of ... / did you
//! mean" wording), `source_map` (path → line:column, for errors found after deserialization).
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
//! - This layer knows YAML and serde, not the config: it depends only on [`crate::error`], never
//!   on the config types, validation or the loader (only its tests borrow a few config types as
//!   things to deserialize).

mod de;
mod env;
mod messages;
mod source_map;
mod tree;

pub use serde_saphyr::{Location, Spanned};

pub use de::{from_node, from_node_partial, Partial};
pub use env::{substitute_env, substitute_str};
pub use messages::{did_you_mean, one_of, unknown_field_message};
pub use source_map::SourceMap;
pub use tree::{join_index, join_key, line_col, parse, Node, YValue};

#[cfg(test)]
mod tests;
