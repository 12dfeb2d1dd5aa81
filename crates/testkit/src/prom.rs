//! Parses a Prometheus text exposition with the reference parser (`prometheus_client.parser`
//! from the official Python client, installed by `.ci/run`), so metric tests check the gateway's
//! output against an independent implementation. A parse error fails the test.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample: its name (with `_bucket`/`_sum`/`_count`/`_total` as exposed), labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Every sample of `text`; panics (with the parser's error) if the text is not valid.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the Prometheus parser is installed by .ci/run)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write exposition");
    let out = child.wait_with_output().expect("parser finishes");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap_or_default().to_string(),
            labels: s["labels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include every pair of `labels`
/// (0 when there is none: counters are only exposed once non-zero).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} matches {} samples: {found:?}", found.len());
    found.first().map_or(0.0, |s| s.value)
}
