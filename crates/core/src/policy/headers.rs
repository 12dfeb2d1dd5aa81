//! The route's `request_headers` and `response_headers` edits, as policies: request edits run
//! after the route's other request policies (so a limit keyed on a header reads it as the client
//! sent it); response edits run first on the upstream's answer (before CORS and the rate-limit
//! report, which own their fields).
//!
//! Invariants: names are lower-cased and values turned into `Bytes` at compile time; an edit is
//! remove, then set, then add.

use bytes::Bytes;

use super::{Flow, Policy};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::http1::Headers;

/// Compiled header edits: remove, then set, then add.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub remove: Vec<String>,
    pub set: Vec<(Bytes, Bytes)>,
    pub add: Vec<(Bytes, Bytes)>,
}

impl HeaderEdits {
    pub fn compile(ops: &gatehouse_config::HeaderOps) -> HeaderEdits {
        let b = |s: &String| Bytes::from(s.clone());
        HeaderEdits {
            remove: ops.remove.iter().map(|s| s.to_ascii_lowercase()).collect(),
            set: ops.set.iter().map(|(k, v)| (Bytes::from(k.to_ascii_lowercase()), b(v))).collect(),
            add: ops.add.iter().map(|(k, v)| (Bytes::from(k.to_ascii_lowercase()), b(v))).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub fn apply(&self, h: &mut Headers) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.set(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }
}

/// `request_headers`: edits the request on its way upstream.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders(pub HeaderEdits);

/// `response_headers`: edits the upstream's answer on its way to the client.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders(pub HeaderEdits);

impl Policy for RequestHeaders {
    async fn on_request(&self, _: &mut RequestCtx, _: usize, headers: &mut Headers, _: &RequestInfo<'_>) -> Flow {
        self.0.apply(headers);
        Flow::Continue
    }
}

impl Policy for ResponseHeaders {
    fn on_response(&self, _: &mut RequestCtx, _: usize, _: &mut u16, headers: &mut Headers) {
        self.0.apply(headers);
    }
}
