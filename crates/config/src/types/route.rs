//! `routes[]`: a match, an upstream, and what to change on the way (rewrite, headers, limits),
//! plus the request's resilience settings (retry, deadline, hedging) and `hsts`.
//!
//! Invariants: plain data with `deny_unknown_fields` and documented defaults (from
//! [`super::defaults`]); matchers, templates, header names and conflicts between routes are
//! checked in `validate/route.rs`. The route's `policies` list is typed in [`super::policy`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{defaults, CircuitBreaker, Policy};
use crate::units::{ByteSize, Dur};

/// One route: a match, an upstream, and what to change on the way.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Send the client's `Host` upstream instead of the target's authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub request_headers: HeaderOps,
    #[serde(default)]
    pub response_headers: HeaderOps,
    /// Request body limit for this route (default: the listener's `max_body_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<ByteSize>,
    /// Override of the upstream's response-header timeout for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// The route's policies, run in this order in the request phase (see docs "Policies").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// When and how failed attempts are retried.
    #[serde(default)]
    pub retry: Retry,
    /// A total time limit over all attempts, propagated upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// Hedged requests (idempotent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// This route's own circuit breaker, used instead of the upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Protocols a client may switch to with `Upgrade` (tunnelled only after the upstream
    /// answers 101). Default: `[websocket]`; `[]` disables upgrades on the route.
    #[serde(default = "defaults::upgrades")]
    pub upgrades: Vec<String>,
    /// An upgraded tunnel with no byte in either direction for this long is closed.
    #[serde(default = "defaults::tunnel_idle_timeout")]
    pub tunnel_idle_timeout: Dur,
    /// Translate gRPC-Web requests (`application/grpc-web*`, binary and base64 text) to gRPC
    /// when the route's upstream speaks HTTP/2. Default true.
    #[serde(default = "defaults::yes")]
    pub grpc_web: bool,
    /// `Strict-Transport-Security` on this route's responses over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact hosts (`api.example.com`) or one leading wildcard label (`*.example.com`); empty = any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path matcher; absent = any path (a prefix of `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Allowed methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query: Vec<ValueMatch>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware prefix: `/api` matches `/api`, `/api/x` and `/api;v=1`, not `/apix`.
    Prefix(String),
    /// `/users/{id}`, `/files/{*rest}`.
    Template(String),
    /// A regular expression matched against the whole normalised path (anchored).
    Regex(String),
}

/// A predicate on a header or query parameter; exactly one of `exact`, `regex`, `present`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Invert the predicate.
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Remove the matched prefix (prefix routes only); `/api/x` with prefix `/api` goes up as `/x`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the path by a template using captured params: `/v2/users/{id}` (template routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Replace (or create) these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these headers, keeping existing values.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `routes[].retry`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in total, the first included; 1 = no retries.
    #[serde(default = "defaults::retry_attempts")]
    pub attempts: u32,
    /// Failures that are retried: `connect_failure`, `reset`, `timeout`, or a status (`503`).
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<RetryOn>,
    /// Also retry non-idempotent methods (POST, PATCH) whose body was buffered. Only when the
    /// upstream de-duplicates (e.g. an idempotency key): the first attempt may have been applied.
    #[serde(default)]
    pub non_idempotent: bool,
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: defaults::retry_attempts(),
            on: defaults::retry_on(),
            non_idempotent: false,
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff with full jitter: attempt n waits a random time in [0, min(max, base × 2ⁿ⁻¹)].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "defaults::backoff_base")]
    pub base: Dur,
    #[serde(default = "defaults::backoff_max")]
    pub max: Dur,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: defaults::backoff_base(), max: defaults::backoff_max() }
    }
}

/// One retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// The connection could not be opened (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The connection broke before a response head arrived.
    Reset,
    /// No response head within the per-attempt timeout.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RetryOn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`connect_failure`, `reset`, `timeout` or a status code such as 503")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RetryOn, E> {
                match v {
                    "connect_failure" => Ok(RetryOn::ConnectFailure),
                    "reset" => Ok(RetryOn::Reset),
                    "timeout" => Ok(RetryOn::Timeout),
                    other => match other.parse::<u16>() {
                        Ok(s) => Ok(RetryOn::Status(s)),
                        Err(_) => Err(E::custom(format!(
                            "unknown retry condition `{other}`: use connect_failure, reset, timeout or a status code such as 503"
                        ))),
                    },
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RetryOn, E> {
                u16::try_from(v).map(RetryOn::Status).map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RetryOn, E> {
                u16::try_from(v).map(RetryOn::Status).map_err(|_| E::custom(format!("{v} is not an HTTP status")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryOn::ConnectFailure => s.serialize_str("connect_failure"),
            RetryOn::Reset => s.serialize_str("reset"),
            RetryOn::Timeout => s.serialize_str("timeout"),
            RetryOn::Status(c) => s.serialize_u16(*c),
        }
    }
}

/// `routes[].deadline`: one time limit for the whole request, all attempts and backoffs included.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    pub timeout: Dur,
    /// Send the remaining time upstream with each attempt.
    #[serde(default = "defaults::yes")]
    pub propagate: bool,
    /// The header carrying it; default `x-request-timeout` (`grpc-timeout` for `format: grpc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default)]
    pub format: DeadlineFormat,
}

/// How the remaining time is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineFormat {
    /// Whole milliseconds: `2500`.
    #[default]
    Milliseconds,
    /// Seconds with millisecond precision: `2.500`.
    Seconds,
    /// gRPC's `grpc-timeout` form: `2500m`.
    Grpc,
}

/// `routes[].hedge`: for idempotent requests, a second attempt (another target when possible)
/// after `delay` without a response head; the first response head wins.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    pub delay: Dur,
}

/// `routes[].hsts`: the `Strict-Transport-Security` header, sent on responses over TLS only
/// (RFC 6797 §7.2: never over plain HTTP).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    #[serde(default = "defaults::hsts_max_age")]
    pub max_age: Dur,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}
