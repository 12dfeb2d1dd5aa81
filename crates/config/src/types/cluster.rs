//! `cluster`: what a fleet of gateways shares, today the Redis server behind cluster-mode rate
//! limits.
//!
//! Invariants: plain data with `deny_unknown_fields`; `cluster.redis.url` is the only required
//! field. Checked in `validate/cluster.rs` (URL, timeouts, TLS files).

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::units::Dur;

/// `cluster`: what a fleet of gateways shares.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The Redis server that holds cluster-mode rate-limit state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
}

/// `cluster.redis`: one Redis server (one multiplexed, auto-reconnecting connection per gateway).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    /// TLS settings for a `rediss://` URL (without them: the system's root certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
    /// Bound on one rate-limit call (connection wait included); then the policy's `on_redis_error`.
    #[serde(default = "defaults::redis_timeout")]
    pub timeout: Dur,
    /// Bound on establishing (or re-establishing) the connection in the background.
    #[serde(default = "defaults::redis_connect_timeout")]
    pub connect_timeout: Dur,
    /// Prepended to every key the gateway writes, so several fleets can share one Redis.
    #[serde(default = "defaults::redis_key_prefix")]
    pub key_prefix: String,
    /// Connections to Redis, each multiplexed (pipelined); calls are spread over them.
    #[serde(default = "defaults::redis_pool_size")]
    pub pool_size: usize,
}

/// `cluster.redis.tls`: PEM files for TLS to Redis.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// CA certificate(s) that signed the server's certificate, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A client certificate (chain) for Redis servers that require one (`tls-auth-clients yes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// The client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}
