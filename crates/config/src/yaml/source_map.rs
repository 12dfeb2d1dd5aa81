//! Where each path of the document is written: `routes[2].upstream` → line:column, so that
//! errors found later (by validation, on the typed `Config`) can still point into the text.
//!
//! Invariants: built from the located tree alone (`${ENV}` substitution never moves a node); a
//! path that is not written (a defaulted field) resolves to its nearest written ancestor, and
//! the document root itself is never used as a location.

use std::collections::HashMap;

use super::tree::{join_index, join_key, line_col, Node, YValue};

/// Where each path of the document is in the text: `routes[2].upstream` → (line, column) of the value.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    locations: HashMap<String, (u64, u64)>,
}

impl SourceMap {
    /// Records the location of every node of the tree under its path.
    pub fn from_tree(root: &Node) -> SourceMap {
        let mut map = SourceMap::default();
        map.walk(root, "");
        map
    }

    fn walk(&mut self, node: &Node, path: &str) {
        if let (Some(l), Some(c)) = line_col(&node.referenced) {
            self.locations.insert(path.to_string(), (l, c));
        }
        match &node.value {
            YValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &join_index(path, i));
                }
            }
            YValue::Map(entries) => {
                for (k, v) in entries {
                    self.walk(v, &join_key(path, &k.value));
                }
            }
            _ => {}
        }
    }

    /// The location of `path`, or of its nearest ancestor that is written in the document
    /// (a defaulted field points at the map that omits it). The root itself is not used.
    pub fn locate(&self, path: &str) -> (Option<u64>, Option<u64>) {
        let mut p = path;
        while !p.is_empty() {
            if let Some(&(l, c)) = self.locations.get(p) {
                return (Some(l), Some(c));
            }
            p = match (p.rfind('.'), p.ends_with(']')) {
                (_, true) => p.rfind('[').map_or("", |i| &p[..i]),
                (Some(i), false) => &p[..i],
                (None, false) => "",
            };
        }
        (None, None)
    }
}
