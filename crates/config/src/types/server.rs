//! `server`: process-wide settings (workers, draining and shutdown, the request id header,
//! config file watching).
//!
//! Invariants: plain data with `deny_unknown_fields`; every field has a default, so an absent
//! `server` section is the same as an empty one. Checked in `validate/server.rs`.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::units::Dur;

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads; 0 means one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// How long SIGTERM/SIGINT waits for in-flight requests before exiting anyway.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Dur,
    /// On SIGTERM/SIGINT, how long to keep serving normally with `/readyz` answering 503 before
    /// the listeners close, so load balancers stop sending new connections first.
    #[serde(default = "defaults::zero")]
    pub shutdown_delay: Dur,
    /// The request id: which header carries it, and whether a client's (valid) id is kept.
    #[serde(default)]
    pub request_id: RequestId,
    /// Reload when the config file (or its directory, for symlink swaps) changes.
    #[serde(default = "defaults::yes")]
    pub watch_config: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            workers: 0,
            drain_timeout: defaults::drain_timeout(),
            shutdown_delay: defaults::zero(),
            request_id: RequestId::default(),
            watch_config: true,
        }
    }
}

/// `server.request_id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestId {
    /// The header that carries the id to the upstream and back to the client.
    #[serde(default = "defaults::request_id_header")]
    pub header: String,
    /// Keep a client's id when it is valid (1 to 128 of `A-Z a-z 0-9 - _ . :`); `false`: always
    /// generate one (for gateways facing untrusted clients that should not choose log keys).
    #[serde(default = "defaults::yes")]
    pub trust_incoming: bool,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId { header: defaults::request_id_header(), trust_incoming: true }
    }
}
