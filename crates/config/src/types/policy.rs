//! Route policies (`routes[].policies[]`): the one list of policies ([`for_each_policy!`]) and
//! the [`Policy`] enum built from it, rate and concurrency limits with their keys and the
//! `<count>/<period>` rate syntax, and the edge policies `cors` and `ip_filter` (`IpFilter` is
//! also a listener's). The identity policies (`auth`, `authorize`, `external_auth`) are typed in
//! [`super::identity`].
//!
//! Invariants: plain data with `deny_unknown_fields`; the hand-written `Deserialize` impls
//! (`LimitKey`, `Rate`) accept exactly the documented forms and say what was expected otherwise.
//! `for_each_policy!` names every policy exactly once; everything that has one case per policy
//! (this enum, the dispatch of its checks, the data plane's compiled policies) is generated
//! from it, so no other list of policies exists to forget. Order rules and ranges are checked
//! by each policy's `ValidatePolicy` impl (`validate/policy.rs`, `identity.rs`, `edge.rs`).

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::units::Dur;

/// The one list of route policies: `for_each_policy!(m)` expands to
/// `m! { $(#[doc] "name" Variant(ConfigType),)* }`, one entry per policy in list order, with
/// `name` its key in the config (`- rate_limit: {...}`) and `ConfigType` a `$crate::types` path.
///
/// Every per-policy dispatch is generated from it, so a policy is added by its entry here, its
/// config type, that type's `ValidatePolicy` impl (this crate's `validate/`), and in the data
/// plane its runtime module with the `CompilePolicy` impl for the config type. This crate builds
/// [`Policy`] from it (below) and the dispatch of the checks (`validate/policy.rs`);
/// `gatehouse-core` builds `RoutePolicy`, its hooks and its compilation
/// (`policy/stack.rs`). The list names config types only, never data-plane types, so this
/// crate stays independent of the data plane.
#[macro_export]
macro_rules! for_each_policy {
    ($m:ident) => {
        $m! {
            /// Requests per period per key (GCRA), refused with 429 past the limit.
            "rate_limit" RateLimit($crate::types::RateLimit),
            /// Requests in flight per key, with a bounded wait queue; 503 past it.
            "concurrency_limit" ConcurrencyLimit($crate::types::ConcurrencyLimit),
            /// Authenticate the request (methods tried in order); sets the request's identity.
            "auth" Auth($crate::types::Auth),
            /// Allow only some identities (consumers, groups, scopes, claim conditions); 403 otherwise.
            "authorize" Authorize($crate::types::Authorize),
            /// Ask an HTTP service whether the request may pass.
            "external_auth" ExternalAuth($crate::types::ExternalAuth),
            /// Cross-origin resource sharing: preflights answered at the gateway, allow headers added.
            "cors" Cors($crate::types::Cors),
            /// Client-address allow and deny lists (CIDR), after trusted proxies.
            "ip_filter" IpFilter($crate::types::IpFilter),
        }
    };
}

/// Declares [`Policy`] from the list: the serde names are the list's names, so the YAML shape
/// (and every message that lists the expected keys) is the list's, in its order.
macro_rules! declare_policy {
    ($($(#[$doc:meta])* $name:literal $variant:ident($ty:ty),)*) => {
        /// One route policy, written as a one-key map: `- <name>: {...}` (the names and types
        /// are those of [`for_each_policy!`]).
        #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
        pub enum Policy {
            $($(#[$doc])* #[serde(rename = $name)] $variant($ty),)*
        }
    };
}

crate::for_each_policy!(declare_policy);

/// `cors`: which browser origins may call the route, and how.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Exact origins (`https://app.example.com`), patterns with a leftmost wildcard label
    /// (`https://*.example.com`), or `*` (any origin, never with credentials).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for; default GET, HEAD, POST.
    #[serde(default = "defaults::cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers the browser lets scripts read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (refused together with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Dur>,
}

/// `ip_filter`: client addresses (CIDR) refused (`deny`) or the only ones admitted (`allow`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpFilter {
    /// When not empty, only these addresses are admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Always refused, even when also in `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// A GCRA rate limit: `limit` requests per period, `burst` extra at once, per `key`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `<count>/<period>`: `100/s`, `1000/min`, `10000/day`, `500/10s`.
    pub limit: Rate,
    /// Requests admitted at once on top of the steady one (GCRA tolerance = burst × period/count).
    #[serde(default)]
    pub burst: u64,
    /// What is counted separately; default: the client IP.
    #[serde(default = "defaults::rate_limit_key")]
    pub key: LimitKey,
    /// Units one request uses.
    #[serde(default = "defaults::cost")]
    pub cost: u64,
    /// Which response headers report the limit.
    #[serde(default)]
    pub headers: RateLimitHeaders,
    /// Policy name in the `RateLimit`/`RateLimit-Policy` headers; default: the route's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the state lives: this process (`local`) or the fleet's Redis (`cluster`).
    #[serde(default)]
    pub mode: RateLimitMode,
    /// Cluster mode only: what to do when Redis fails or is slower than `cluster.redis.timeout`
    /// (default `local`). Refused on a local-mode limit, where it would mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_redis_error: Option<OnRedisError>,
    /// Cluster mode only: reserve up to this many units per Redis call and admit from the
    /// reservation locally (fewer round trips, a bounded error; see docs/configuration.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
}

/// Where a rate limit's state lives.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitMode {
    /// In this gateway's memory: the limit is per gateway process.
    #[default]
    Local,
    /// In `cluster.redis`: one limit shared by every gateway using that Redis.
    Cluster,
}

/// A cluster-mode rate limit's behaviour when Redis errs or times out.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Admit the request (unlimited while Redis is down).
    FailOpen,
    /// Refuse the request with 503 `rate_limit_unavailable`.
    FailClosed,
    /// Decide with this gateway's local limiter, same limit and burst (per-process limit).
    #[default]
    Local,
}

/// At most `max` requests in flight per key; more wait in a bounded queue or get 503.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    pub max: u32,
    /// What is counted separately; default: the whole route.
    #[serde(default = "defaults::concurrency_key")]
    pub key: LimitKey,
    /// Requests that may wait for a slot (per key); 0 = answer 503 at once.
    #[serde(default)]
    pub queue: u32,
    /// How long a queued request waits for a slot before it gets 503.
    #[serde(default = "defaults::queue_timeout")]
    pub queue_timeout: Dur,
}

/// The response headers of a rate limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    /// IETF draft: `RateLimit-Policy` and `RateLimit`.
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    None,
}

/// One part of a limit key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    /// The client address after trusted proxies.
    ClientIp,
    /// One counter for the whole route.
    Route,
    /// The value of a request header (absent: one shared "absent" key).
    Header(String),
    /// The authenticated consumer (an `auth` policy must run first; unauthenticated: one key).
    Consumer,
    /// The value of a claim of the verified token (absent: one shared "absent" key).
    Claim(String),
}

/// A limit key: one part (`client_ip`, `route`, `{header: X-Api-Key}`) or a list of parts that are
/// combined (`[client_ip, {header: x-tenant}]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey(pub Vec<KeyPart>);

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LimitKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`client_ip`, `route`, `{header: NAME}` or a list of these")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LimitKey, E> {
                KeyPart::deserialize(serde::de::value::StrDeserializer::<E>::new(v)).map(|p| LimitKey(vec![p]))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LimitKey, A::Error> {
                KeyPart::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|p| LimitKey(vec![p]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<LimitKey, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<KeyPart>()? {
                    parts.push(p);
                }
                Ok(LimitKey(parts))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for LimitKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

/// A rate: `count` per `period_secs` seconds, written `<count>/<period>` (`100/s`, `1000/10s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u64,
    pub period_secs: u64,
}

impl Rate {
    /// Parses `<count>/<n?><unit>` with unit `s|sec|second|m|min|minute|h|hour|d|day` (plurals
    /// accepted) and an optional multiplier: `100/s`, `1000/10s`, `5/min`, `10000/day`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || {
            format!(
                "invalid rate `{s}`: expected `<count>/<period>` such as `100/s`, `1000/min`, `10000/day` or `500/10s`"
            )
        };
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let count: u64 = count.parse().map_err(|_| format!("invalid rate `{s}`: count too large"))?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
        let (n, unit) = period.split_at(split);
        let n: u64 = if n.is_empty() { 1 } else { n.parse().map_err(|_| bad())? };
        let unit_secs = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "" => {
                return Err(format!(
                    "invalid rate `{s}`: the period needs a unit (s, min, h or day), e.g. `{count}/{n}s`"
                ))
            }
            other => {
                return Err(format!(
                    "invalid rate `{s}`: unknown period unit `{other}` (use s, sec, second, m, min, minute, h, hour, d or day)"
                ))
            }
        };
        let period_secs = n.checked_mul(unit_secs).ok_or_else(|| format!("invalid rate `{s}`: period too long"))?;
        Ok(Rate { count, period_secs })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.period_secs {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            86_400 => write!(f, "{}/day", self.count),
            p => write!(f, "{}/{p}s", self.count),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a rate such as `100/s`, `1000/min` or `500/10s`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                Rate::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_parse() {
        use crate::types::Rate;
        let r = |s: &str| Rate::parse(s).map(|r| (r.count, r.period_secs));
        assert_eq!(r("100/s"), Ok((100, 1)));
        assert_eq!(r("100/sec"), Ok((100, 1)));
        assert_eq!(r("100/second"), Ok((100, 1)));
        assert_eq!(r("1000/10s"), Ok((1000, 10)));
        assert_eq!(r("5/min"), Ok((5, 60)));
        assert_eq!(r("5/m"), Ok((5, 60)));
        assert_eq!(r("5/2minutes"), Ok((5, 120)));
        assert_eq!(r("7/h"), Ok((7, 3600)));
        assert_eq!(r("10000/day"), Ok((10000, 86400)));
        assert_eq!(r("1/d"), Ok((1, 86400)));
        assert!(r("/s").is_err() && r("10").is_err() && r("-1/s").is_err() && r("1.5/s").is_err());
        assert_eq!(Rate::parse("1000/10s").unwrap().to_string(), "1000/10s");
        assert_eq!(Rate::parse("5/minute").unwrap().to_string(), "5/min");
    }
}
