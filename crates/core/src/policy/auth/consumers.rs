//! The consumers of a snapshot, with the indexes each credential method looks them up by, and
//! how a verified credential becomes an `Identity` (`crate::identity`).
//!
//! Invariants: compiled once per snapshot; lookups are hash-map reads; secrets are stored as
//! hashes only (`keys.rs`, `basic.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_config as cfg;
use serde_json::{Map, Value};

use super::{basic, keys};
use crate::identity::{ConsumerRt, Identity};

/// Every consumer of a snapshot with the indexes the methods look them up by.
#[derive(Debug, Default)]
pub struct Consumers {
    pub list: Vec<Arc<ConsumerRt>>,
    pub(crate) api_keys: keys::ApiKeyTable,
    pub(crate) basic: basic::BasicTable,
    /// (issuer or none, subject) → consumer index.
    jwt: HashMap<(Option<String>, String), usize>,
    /// Client-certificate subject → consumer index.
    pub(crate) mtls: HashMap<String, usize>,
}

impl Consumers {
    pub fn compile(list: &[cfg::Consumer]) -> Consumers {
        let mut c = Consumers::default();
        for (i, k) in list.iter().enumerate() {
            c.list.push(Arc::new(ConsumerRt {
                name: k.name.clone(),
                groups: k.groups.clone(),
                metadata: k.metadata.clone(),
            }));
            for key in &k.credentials.api_keys {
                c.api_keys.insert(&key.sha256.to_ascii_lowercase(), i);
            }
            for b in &k.credentials.basic {
                c.basic.insert(&b.username, i, &b.password_hash);
            }
            for j in &k.credentials.jwt {
                c.jwt.insert((j.issuer.clone(), j.subject.clone()), i);
            }
            for m in &k.credentials.mtls {
                c.mtls.insert(m.subject.clone(), i);
            }
        }
        c
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<ConsumerRt>> {
        self.list.iter().find(|c| c.name == name).cloned()
    }

    /// The consumer a verified token maps to: `(iss, sub)` first, then `sub` alone.
    pub fn for_claims(&self, claims: &Map<String, Value>) -> Option<Arc<ConsumerRt>> {
        let sub = claims.get("sub").and_then(Value::as_str)?;
        let iss = claims.get("iss").and_then(Value::as_str).map(str::to_string);
        let i = iss
            .and_then(|iss| self.jwt.get(&(Some(iss), sub.to_string())))
            .or_else(|| self.jwt.get(&(None, sub.to_string())))?;
        self.list.get(*i).cloned()
    }
}

impl Identity {
    pub(crate) fn from_claims(
        consumers: &Consumers,
        claims: Arc<Map<String, Value>>,
        method: &'static str,
    ) -> Identity {
        let consumer = consumers.for_claims(&claims);
        let name = match &consumer {
            Some(c) => c.name.clone(),
            None => ["sub", "username", "client_id"]
                .iter()
                .find_map(|k| claims.get(*k).and_then(Value::as_str))
                .unwrap_or_default()
                .to_string(),
        };
        let groups = consumer.as_ref().map(|c| c.groups.clone()).unwrap_or_default();
        Identity { name, consumer, groups, claims: Some(claims), anonymous: false, method }
    }

    pub(crate) fn of_consumer(c: Arc<ConsumerRt>, method: &'static str) -> Identity {
        Identity {
            name: c.name.clone(),
            groups: c.groups.clone(),
            consumer: Some(c),
            claims: None,
            anonymous: method == "anonymous",
            method,
        }
    }
}
