//! Who a request is, once an `auth` policy verified it: the `Identity` in the request's context
//! (read by `authorize`, limits keyed on `consumer` or a claim, the access log, metrics), and the
//! consumer it maps to. Plain data: the auth policies (`auth/`) make it, everyone else reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A consumer as the data plane sees it.
#[derive(Debug)]
pub struct ConsumerRt {
    pub name: String,
    pub groups: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Who the request is, once authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The consumer's name, or the token's subject when it maps to no consumer.
    pub name: String,
    pub consumer: Option<Arc<ConsumerRt>>,
    pub groups: Vec<String>,
    /// The verified token's (or introspection answer's) claims.
    pub claims: Option<Arc<Map<String, Value>>>,
    /// The policy's `anonymous` consumer (no credential was sent).
    pub anonymous: bool,
    /// `jwt`, `api_key`, `basic`, `introspection`, `mtls` or `anonymous`.
    pub method: &'static str,
}

impl Identity {
    /// A claim by name; dots reach into nested objects (`realm_access.roles`).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        let claims = self.claims.as_deref()?;
        if let Some(v) = claims.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut cur = claims.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_object()?.get(p)?;
        }
        Some(cur)
    }
}
