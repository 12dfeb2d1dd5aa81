//! `${ENV}` substitution on the located tree.
//!
//! Invariants: substitution rewrites string scalars in place *after* parsing, so locations keep
//! pointing at the original text; map keys are never substituted. `$${` is a literal `${`, and
//! nothing else is interpolated (no defaults, no nesting). A string with an unset variable or a
//! malformed reference is left as written and reported once, at its own path.

use super::tree::{error_at, join_index, join_key, Node, YValue};
use crate::error::ConfigError;

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
