//! Loading a config: text → located YAML tree → `${ENV}` substitution → typed `Config` →
//! semantic validation, with every problem collected.
//!
//! Invariants:
//! - `load_*` returns `Ok` only for a config that passed every check, so the data plane can
//!   compile it without failing.
//! - Every top-level section and every item of `listeners`, `upstreams` and `routes` is
//!   deserialized on its own, so a problem in one never hides a problem in another; inside an
//!   item, [`crate::yaml::from_node`] keeps going past bad fields and list entries. Semantic
//!   validation then runs on the items that parsed, keeping their original indices in paths.
//! - Errors are sorted by line (then column); problems without a location come first.

use std::path::Path;

use serde::de::DeserializeOwned;

// Re-exported so `load::ConfigError` keeps naming the loader's error type.
pub use crate::error::ConfigError;
use crate::types::{Config, Listener, Route, Upstream};
use crate::validate::{self, Items, SourceMap};
use crate::yaml::{self, join_index, line_col, Node, YValue};

/// The top-level sections, in documentation order.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "listeners",
    "admin",
    "upstreams",
    "routes",
    "server",
    "consumers",
    "policies",
    "cluster",
    "access_log",
    "tracing",
    "metrics",
];

/// Loads a config from text. `env` resolves `${NAME}` references (return `None` for unset).
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
    let mut root = yaml::parse(text).map_err(|e| vec![e])?;
    let env_errors = yaml::substitute_env(&mut root, env);
    let map = SourceMap::from_tree(&root);

    let mut errors: Vec<ConfigError> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut cfg = Config::default();
    let mut items = Items::default();

    let entries = match &root.value {
        YValue::Null => &[][..],
        YValue::Map(entries) => entries.as_slice(),
        other => {
            let (line, column) = line_col(&root.referenced);
            return Err(vec![ConfigError {
                path: String::new(),
                line,
                column,
                message: format!(
                    "expected a map with the sections {}, found {}",
                    TOP_LEVEL_KEYS.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
                    other.describe()
                ),
            }]);
        }
    };
    let mut parts = Parts { errors: &mut errors, dropped: &mut dropped };
    for (key, value) in entries {
        let k = key.value.as_str();
        match k {
            "version" => parts.set(&mut cfg.version, value, k),
            "admin" => parts.set(&mut cfg.admin, value, k),
            "server" => parts.set(&mut cfg.server, value, k),
            "consumers" => parts.set(&mut cfg.consumers, value, k),
            "policies" => parts.set(&mut cfg.policies, value, k),
            "cluster" => parts.set(&mut cfg.cluster, value, k),
            "access_log" => parts.set(&mut cfg.access_log, value, k),
            "tracing" => parts.set(&mut cfg.tracing, value, k),
            "metrics" => parts.set(&mut cfg.metrics, value, k),
            "listeners" => {
                let list = parts.list::<Listener>(value, k);
                items.listener_items = list.len();
                for (i, (l, _)) in list.into_iter().enumerate() {
                    if let Some(l) = l {
                        cfg.listeners.push(l);
                        items.listener_ix.push(i);
                    }
                }
            }
            "upstreams" => {
                for (i, (u, _)) in parts.list::<Upstream>(value, k).into_iter().enumerate() {
                    match u {
                        Some(u) => {
                            items.upstream_names.push(u.name.clone());
                            cfg.upstreams.push(u);
                            items.upstream_ix.push(i);
                        }
                        // Keep the name so routes naming it are not reported too.
                        None => items.upstream_names.extend(raw_name(value, i)),
                    }
                }
            }
            "routes" => {
                for (i, (r, clean)) in parts.list::<Route>(value, k).into_iter().enumerate() {
                    if let Some(r) = r {
                        cfg.routes.push(r);
                        items.route_ix.push(i);
                        if !clean {
                            items.tainted_routes.insert(i);
                        }
                    }
                }
            }
            other => {
                let (line, column) = line_col(&key.referenced);
                errors.push(ConfigError {
                    path: other.to_string(),
                    line,
                    column,
                    message: yaml::unknown_field_message(other, TOP_LEVEL_KEYS),
                });
            }
        }
        parts = Parts { errors: &mut errors, dropped: &mut dropped };
    }

    // Semantic checks run on everything that parsed, with failed parts left out. Drop what they
    // say about places that already have a parse error (or an unresolved `${VAR}`, left as
    // written): that would only repeat the problem, or describe a default standing in for it.
    let semantic = validate::validate_items(&cfg, &items, &map);
    let semantic: Vec<ConfigError> = semantic
        .into_iter()
        .filter(|e| {
            !errors.iter().chain(env_errors.iter()).any(|d| related(&d.path, &e.path))
                && !dropped.iter().any(|d| shifted_by(d, &e.path))
        })
        .collect();
    errors.extend(env_errors);
    errors.extend(semantic);

    if errors.is_empty() {
        Ok(cfg)
    } else {
        errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
        Err(errors)
    }
}

/// [`load_str`] with the process environment.
pub fn load_str_env(text: &str) -> Result<Config, Vec<ConfigError>> {
    load_str(text, &|name| std::env::var(name).ok())
}

/// Reads and loads a config file with the process environment.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![ConfigError::new("", format!("cannot read {}: {e}", path.display()))])?;
    load_str_env(&text)
}

/// Whether `a` and `b` are the same path or one contains the other.
fn related(a: &str, b: &str) -> bool {
    fn under(child: &str, parent: &str) -> bool {
        parent.is_empty()
            || child == parent
            || (child.starts_with(parent) && matches!(child.as_bytes().get(parent.len()), Some(b'.' | b'[')))
    }
    under(a, b) || under(b, a)
}

/// Whether `path` lies in a list item at or after the `dropped` one (`a.list[2]`): such items
/// moved up by one in the parsed value, so what validation says about them names the wrong index.
fn shifted_by(dropped: &str, path: &str) -> bool {
    let Some(open) = dropped.rfind('[') else { return false };
    let (list, index) = (&dropped[..open + 1], &dropped[open + 1..dropped.len() - 1]);
    let Ok(dropped_ix) = index.parse::<usize>() else { return false };
    if related(&dropped[..open], path) && !path.starts_with(list) {
        // The list itself (e.g. "needs at least one target"): it is missing an item.
        return path.len() <= open;
    }
    let Some(rest) = path.strip_prefix(list) else { return false };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().is_ok_and(|i| i >= dropped_ix)
}

/// Collects the errors and dropped items of the sections deserialized one by one.
struct Parts<'a> {
    errors: &'a mut Vec<ConfigError>,
    dropped: &'a mut Vec<String>,
}

impl Parts<'_> {
    fn set<T: DeserializeOwned>(&mut self, slot: &mut T, node: &Node, path: &str) {
        let parsed = yaml::from_node_partial::<T>(node, path);
        if let Some(v) = parsed.value {
            *slot = v;
        }
        self.errors.extend(parsed.errors);
        self.dropped.extend(parsed.dropped);
    }

    /// Deserializes each item of a top-level list on its own: `(best-effort value, clean)`.
    fn list<T: DeserializeOwned>(&mut self, node: &Node, path: &str) -> Vec<(Option<T>, bool)> {
        match &node.value {
            YValue::Null => Vec::new(),
            YValue::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let parsed = yaml::from_node_partial::<T>(item, &join_index(path, i));
                    let clean = parsed.errors.is_empty();
                    self.errors.extend(parsed.errors);
                    self.dropped.extend(parsed.dropped);
                    (parsed.value, clean)
                })
                .collect(),
            other => {
                let (line, column) = line_col(&node.referenced);
                self.errors.push(ConfigError {
                    path: path.to_string(),
                    line,
                    column,
                    message: format!("expected a list (items start with `- `), found {}", other.describe()),
                });
                Vec::new()
            }
        }
    }
}

/// The `name` of item `i` of a list node, if it is a string.
fn raw_name(list: &Node, i: usize) -> Option<String> {
    match &list.value {
        YValue::Seq(items) => match items.get(i).and_then(|item| item.value.get("name")) {
            Some(n) => match &n.value {
                YValue::Str(s) => Some(s.clone()),
                _ => None,
            },
            None => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str = "listeners:\n  - address: 127.0.0.1:8080\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = load_str(MINIMAL, &no_env).unwrap();
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.listeners[0].limits, crate::types::ListenerLimits::default());
        assert_eq!(cfg.server, crate::types::Server::default());
        assert!(cfg.routes.is_empty() && cfg.admin.is_none());
    }

    #[test]
    fn empty_document_needs_a_listener() {
        for text in ["", "# nothing here\n", "listeners: []\n", "listeners:\n"] {
            let e = load_str(text, &no_env).unwrap_err();
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert_eq!(e[0].path, "listeners");
            assert_eq!(e[0].message, "at least one listener is required");
        }
    }

    #[test]
    fn root_must_be_a_map() {
        let e = load_str("- a\n- b\n", &no_env).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string().starts_with("<root> (line 1, column 1): expected a map with the sections"),
            "{}",
            e[0]
        );
        let e = load_str("listeners: 5\n", &no_env).unwrap_err();
        assert!(e[0].to_string().starts_with("listeners (line 1, column 12): expected a list"), "{}", e[0]);
    }

    #[test]
    fn syntax_error_is_one_error() {
        let e = load_str("listeners:\n  - address: [\n", &no_env).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "");
        assert!(e[0].line.is_some());
    }

    #[test]
    fn io_error_is_one_error() {
        let e = load_file(Path::new("/nonexistent/gatehouse.yaml")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].message.starts_with("cannot read /nonexistent/gatehouse.yaml"), "{}", e[0]);
    }

    #[test]
    fn file_loading_uses_the_process_environment() {
        // `PATH` is set in any test environment; substitution of it must succeed.
        let dir = std::env::temp_dir().join(format!("gatehouse-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, format!("{MINIMAL}server:\n  drain_timeout: 5s\npolicies: \"${{PATH}}\"\n")).unwrap();
        let e = load_file(&file).unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("reserved for a later release"), "{}", e[0]);
    }

    #[test]
    fn env_values_are_substituted() {
        let env = |k: &str| (k == "PORT").then(|| "9000".to_string());
        let cfg = load_str("listeners:\n  - address: \"127.0.0.1:${PORT}\"\n", &env).unwrap();
        assert_eq!(cfg.listeners[0].address, "127.0.0.1:9000");
    }

    #[test]
    fn unset_env_is_reported_once() {
        let e = load_str("listeners:\n  - address: 127.0.0.1:${PORT}\n", &no_env).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].to_string(),
            "listeners[0].address (line 2, column 14): environment variable `PORT` is not set"
        );
    }

    #[test]
    fn unknown_top_level_key() {
        let e = load_str(&format!("{MINIMAL}route:\n  - name: x\n"), &no_env).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "route");
        assert_eq!((e[0].line, e[0].column), (Some(3), Some(1)));
        assert!(e[0].message.contains("did you mean `routes`?"), "{}", e[0]);
    }

    #[test]
    fn five_problems_in_five_places_are_all_reported() {
        let text = "\
version: 1
listeners:
  - address: 127.0.0.1:8080
    timeouts:
      idle: 10 seconds
upstreams:
  - name: users
    targets:
      - url: http://127.0.0.1:9001
        weight: 0
routes:
  - name: a
    upstream: users
    matcj:
      path: {prefix: /a}
  - name: b
    upstream: users
    match: {path: {exact: /b}}
  - name: c
    upstream: users
    match: {path: {exact: /c}}
  - name: d
    upstream: userz
extra: true
";
        let errors = load_str(text, &no_env).unwrap_err();
        let got: Vec<(String, Option<u64>)> = errors.iter().map(|e| (e.path.clone(), e.line)).collect();
        assert_eq!(
            got,
            vec![
                ("listeners[0].timeouts.idle".to_string(), Some(5)),
                ("upstreams[0].targets[0].weight".to_string(), Some(10)),
                ("routes[0].matcj".to_string(), Some(14)),
                ("routes[3].upstream".to_string(), Some(23)),
                ("extra".to_string(), Some(24)),
            ],
            "{errors:#?}"
        );
        assert_eq!(
            errors[3].to_string(),
            "routes[3].upstream (line 23, column 15): unknown upstream \"userz\" (known: users)"
        );
    }

    #[test]
    fn failed_items_do_not_cause_follow_up_errors() {
        // The upstream fails to parse; the route naming it is not also reported, and the
        // listener that failed does not trigger "at least one listener is required".
        let text = "\
listeners:
  - adress: 127.0.0.1:8080
upstreams:
  - name: users
    targets: 5
routes:
  - name: r
    upstream: users
";
        let errors = load_str(text, &no_env).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["listeners[0].adress", "listeners[0]", "upstreams[0].targets"], "{errors:#?}");
    }

    #[test]
    fn dropped_list_items_do_not_shift_indices() {
        // targets[1] fails to parse; the duplicate of targets[0] at index 2 must not be reported
        // under a wrong index.
        let text = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  - name: users
    targets:
      - url: http://127.0.0.1:1
      - url: [x]
      - url: http://127.0.0.1:1
        weight: 0
";
        let errors = load_str(text, &no_env).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["upstreams[0].targets[1].url"], "{errors:#?}");
    }

    #[test]
    fn errors_are_sorted_by_line() {
        let text = "routes:\n  - name: r\n    upstream: nope\nlisteners:\n  - address: nowhere\n";
        let errors = load_str(text, &no_env).unwrap_err();
        let lines: Vec<Option<u64>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(3), Some(5)], "{errors:#?}");
    }
}
