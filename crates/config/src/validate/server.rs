//! Validation of the document-level and process-wide settings: `version`, the reserved
//! `policies` section, and `server` (shutdown delay, request id header).
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). A reserved section is accepted only when absent or empty, so
//! giving it a meaning later cannot change what an existing config does.

use super::{Validator, HOP_BY_HOP_HEADERS};
use crate::net::is_token;
use crate::types::Config;

impl Validator<'_> {
    pub(super) fn version(&mut self, cfg: &Config) {
        if let Some(v) = cfg.version {
            if v != 1 {
                self.err("version", format!("unsupported version {v}: this release understands version 1"));
            }
        }
    }

    pub(super) fn reserved(&mut self, cfg: &Config) {
        let (key, value) = ("policies", &cfg.policies);
        let empty = match value {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Object(m)) => m.is_empty(),
            Some(serde_json::Value::Array(a)) => a.is_empty(),
            Some(serde_json::Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if !empty {
            self.err(key, format!("`{key}` is reserved for a later release; remove it or leave it empty"));
        }
    }

    /// `server`: the shutdown delay and the request id header.
    pub(super) fn server(&mut self, cfg: &Config) {
        if cfg.server.shutdown_delay.0 > std::time::Duration::from_secs(300) {
            self.err("server.shutdown_delay", "must be at most 300s");
        }
        let rid = cfg.server.request_id.header.to_ascii_lowercase();
        if !is_token(&rid) {
            self.err("server.request_id.header", format!("invalid header name {rid:?}"));
        } else if HOP_BY_HOP_HEADERS.contains(&rid.as_str())
            || ["host", "content-length", "transfer-encoding", "authorization", "cookie"].contains(&rid.as_str())
        {
            self.err("server.request_id.header", format!("`{rid}` cannot carry the request id"));
        }
    }
}
