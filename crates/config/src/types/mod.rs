//! The configuration file's shape, as plain serde types.
//!
//! Invariants: these types carry no behaviour and no derived state; every field a user can write is
//! here with `deny_unknown_fields`, so a typo is an error, never silently ignored. Semantic checks
//! (references, ranges, conflicts) live in `validate/`; the data plane compiles these types into
//! its own typed snapshot and never reads them per request.
//!
//! Files, one per config section: `listener` (`listeners`, `admin`), `server`, `upstream`,
//! `route`, `policy` (route policies, except the identity ones), `identity` (`consumers`,
//! `auth`, `authorize`, `external_auth`), `cluster`, `observability` (`access_log`, `tracing`,
//! `metrics`), and `defaults` (every default value). Each is re-exported here, so `crate::types::X` names every
//! type wherever it lives. Types depend only on each other and on [`crate::units`].

use serde::{Deserialize, Serialize};

mod cluster;
pub mod defaults;
mod identity;
mod listener;
mod observability;
mod policy;
mod route;
mod server;
mod upstream;

pub use cluster::*;
pub use identity::*;
pub use listener::*;
pub use observability::*;
pub use policy::*;
pub use route::*;
pub use server::*;
pub use upstream::*;

/// The whole configuration document.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional format version; only `1` is understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Process-wide settings.
    #[serde(default)]
    pub server: Server,
    /// Who may call the gateway: names, groups, metadata and (hashed) credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// Reserved for named, reusable policy sets; must be absent or empty for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<serde_json::Value>,
    /// State shared by a fleet of gateways (Redis for cluster-mode rate limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// One JSON line per request.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Distributed tracing (W3C trace context, OTLP/HTTP export). Off unless enabled.
    #[serde(default)]
    pub tracing: Tracing,
    /// What `/metrics` exports beyond the defaults.
    #[serde(default)]
    pub metrics: Metrics,
}
