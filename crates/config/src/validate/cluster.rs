//! Validation of `cluster`: the Redis server behind cluster-mode rate limits.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). The URL is refused exactly when the data plane's Redis client
//! would refuse it, and timeouts are bounded because a rate-limit call waits for Redis on the
//! request path. TLS files are only checked to exist; their contents are the Redis client's.

use super::Validator;
use crate::net::is_dns_name;
use crate::types::{Config, Redis};
use crate::yaml::join_key;

/// Longest `cluster.redis.timeout` / `connect_timeout`: a rate-limit call waits at most this.
pub const MAX_REDIS_TIMEOUT_SECS: u64 = 10;
/// Longest `cluster.redis.key_prefix`.
pub const MAX_REDIS_KEY_PREFIX: usize = 128;

/// Checks a `cluster.redis.url`: `redis[s]://[user[:password]@]host[:port][/db]`. The data
/// plane's Redis client parses the same URL; this refuses what it would refuse.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let form = "expected `redis://host[:port][/db]` (or `rediss://` for TLS), e.g. `redis://127.0.0.1:6379/0`";
    let rest = if let Some(r) = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://")) {
        r
    } else {
        return Err(format!("unsupported Redis URL `{url}`: {form}"));
    };
    // Credentials end at the last `@`; the host part never contains one.
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (authority, db) = match host_part.split_once('/') {
        Some((a, db)) => (a, Some(db)),
        None => (host_part, None),
    };
    if let Some(db) = db {
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("invalid Redis database `{db}`: expected a number such as `/0`"));
        }
    }
    if authority.contains(['?', '#']) || db.is_some_and(|d| d.contains(['?', '#'])) {
        return Err(format!("URL parameters are not supported: {form}"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else { return Err(format!("invalid Redis host in `{url}`: {form}")) };
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("the Redis URL `{url}` has no host: {form}"));
    }
    if !(is_dns_name(host) || host.parse::<std::net::IpAddr>().is_ok()) {
        return Err(format!("invalid Redis host `{host}`: {form}"));
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("invalid Redis port `{p}`: expected 1-65535"));
        }
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn cluster(&mut self, cfg: &Config) {
        let Some(r) = cfg.cluster.as_ref().and_then(|c| c.redis.as_ref()) else { return };
        self.redis(r, "cluster.redis");
    }

    fn redis(&mut self, r: &Redis, p: &str) {
        if let Err(e) = check_redis_url(&r.url) {
            self.err(join_key(p, "url"), e);
        }
        for (field, d) in [("timeout", &r.timeout), ("connect_timeout", &r.connect_timeout)] {
            if d.0.is_zero() {
                self.err(join_key(p, field), "must be greater than 0");
            } else if d.0 > std::time::Duration::from_secs(MAX_REDIS_TIMEOUT_SECS) {
                self.err(join_key(p, field), format!("must be at most {MAX_REDIS_TIMEOUT_SECS}s"));
            }
        }
        if let Some(tls) = &r.tls {
            let tp = join_key(p, "tls");
            if !r.url.starts_with("rediss://") {
                self.err(&tp, "TLS settings need a `rediss://` URL");
            }
            for (field, file) in [("ca_file", &tls.ca_file), ("cert_file", &tls.cert_file), ("key_file", &tls.key_file)]
            {
                if let Some(f) = file {
                    if let Err(e) = std::fs::metadata(f) {
                        self.err(join_key(&tp, field), format!("cannot read `{f}`: {e}"));
                    }
                }
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                self.err(&tp, "`cert_file` and `key_file` go together (a client certificate and its key)");
            }
        }
        if !(1..=64).contains(&r.pool_size) {
            self.err(join_key(p, "pool_size"), format!("must be between 1 and 64, got {}", r.pool_size));
        }
        if r.key_prefix.len() > MAX_REDIS_KEY_PREFIX {
            self.err(join_key(p, "key_prefix"), format!("must be at most {MAX_REDIS_KEY_PREFIX} bytes"));
        } else if r.key_prefix.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            self.err(join_key(p, "key_prefix"), "must not contain spaces or control characters");
        }
    }
}
