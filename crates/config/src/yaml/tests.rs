//! Tests of the YAML layer: locations in the tree, the deserializer's messages and paths,
//! `${ENV}` substitution and the source map.

use super::*;
use crate::types::{Balancer, HashOn, PathMatch, RouteMatch, Target, Upstream};
use crate::units::{ByteSize, Dur};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
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
    let e =
        errs::<Upstream>("name: u\ntargets:\n  - url: http://127.0.0.1:1\n  - url: http://127.0.0.1:2\n    port: 3\n");
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
    assert!(e[0].starts_with("x (line 1, column 1): unknown variant `random`, expected one of `round_robin`"), "{e:?}");
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

#[test]
fn source_map_falls_back_to_ancestors() {
    let root = crate::yaml::parse("routes:\n  - name: a\n    match: {}\n").unwrap();
    let map = SourceMap::from_tree(&root);
    assert_eq!(map.locate("routes[0].name"), (Some(2), Some(11)));
    assert_eq!(map.locate("routes[0].match.path.exact"), map.locate("routes[0].match"));
    assert_eq!(map.locate("routes[0].upstream"), (Some(2), Some(5)));
    assert_eq!(map.locate("listeners"), (None, None));
}
