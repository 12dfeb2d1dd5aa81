//! Validation of edge config: the `cors` and `ip_filter` route policies (their `ValidatePolicy`
//! impls, with their order rules), the listener's `ip_filter`, and a route's `upgrades` and
//! `tunnel_idle_timeout`.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). What compilation relies on (origin patterns, CIDRs, tokens) is
//! refused here, so compiling cannot fail. Credentials are never combined with `*`.

use super::policy::{PolicyScope, ValidatePolicy};
use super::Validator;
use crate::net::{is_token, Cidr};
use crate::origin::OriginPattern;
use crate::types::{Cors, IpFilter, Policy, Route};
use crate::yaml::{join_index, join_key};

/// Upgrade protocols that are never tunnelled: `h2c` over an HTTP/1.1 upgrade lets a client talk
/// HTTP/2 straight to the upstream past every per-request rule (h2c smuggling).
const REFUSED_UPGRADES: &[&str] = &["h2c"];

impl ValidatePolicy for Cors {
    fn validate(&self, v: &mut Validator<'_>, scope: &PolicyScope<'_>, p: &str) {
        // A preflight carries no credentials: a `cors` after an identity check would never see
        // one (the check refuses it first).
        if scope.identity_checked() {
            v.err(
                p,
                "`cors` must come before `auth`, `authorize` and `external_auth` (preflights carry no credentials)",
            );
        }
        if scope.before.iter().any(|b| matches!(b, Policy::Cors(_))) {
            v.err(p, "a route has at most one `cors` policy");
        }
        v.cors(self, p);
    }
}

impl ValidatePolicy for IpFilter {
    fn validate(&self, v: &mut Validator<'_>, _: &PolicyScope<'_>, p: &str) {
        v.ip_filter(self, p);
    }
}

impl Validator<'_> {
    fn cors(&mut self, c: &Cors, p: &str) {
        let op = join_key(p, "allow_origins");
        if c.allow_origins.is_empty() {
            self.err(op.clone(), "list at least one origin (or `*`)");
        }
        for (k, o) in c.allow_origins.iter().enumerate() {
            match OriginPattern::parse(o) {
                Err(e) => self.err(join_index(&op, k), e),
                Ok(OriginPattern::Any) if c.allow_credentials => self.err(
                    join_index(&op, k),
                    "`*` cannot be combined with `allow_credentials: true`: any site could read responses with the user's cookies; list the origins instead",
                ),
                Ok(_) => {}
            }
        }
        for (field, list) in [
            ("allow_methods", &c.allow_methods),
            ("allow_headers", &c.allow_headers),
            ("expose_headers", &c.expose_headers),
        ] {
            let fp = join_key(p, field);
            for (k, v) in list.iter().enumerate() {
                if v == "*" {
                    // The wildcard's meaning differs with credentials and across browsers: be explicit.
                    self.err(join_index(&fp, k), "list the names; `*` is not supported here");
                } else if !is_token(v) {
                    self.err(
                        join_index(&fp, k),
                        format!(
                            "{v:?} is not a valid {}",
                            if field == "allow_methods" { "method" } else { "header name" }
                        ),
                    );
                }
            }
        }
        if let Some(m) = &c.max_age {
            if m.0.as_secs() > 86_400 {
                self.err(join_key(p, "max_age"), "at most 24h (browsers cap it lower anyway)");
            }
        }
    }

    pub(super) fn ip_filter(&mut self, f: &IpFilter, p: &str) {
        if f.allow.is_empty() && f.deny.is_empty() {
            self.err(p.to_string(), "give `allow`, `deny` or both");
        }
        for (field, list) in [("allow", &f.allow), ("deny", &f.deny)] {
            let fp = join_key(p, field);
            for (k, c) in list.iter().enumerate() {
                if let Err(e) = Cidr::parse(c) {
                    self.err(join_index(&fp, k), e);
                }
            }
        }
    }

    pub(super) fn upgrades(&mut self, r: &Route, p: &str) {
        let up = join_key(p, "upgrades");
        for (k, u) in r.upgrades.iter().enumerate() {
            if !is_token(u) || u.contains('/') {
                self.err(join_index(&up, k), format!("{u:?} is not a protocol name (e.g. `websocket`)"));
            } else if REFUSED_UPGRADES.iter().any(|x| u.eq_ignore_ascii_case(x)) {
                self.err(
                    join_index(&up, k),
                    format!("`{u}` upgrades are never tunnelled (they would bypass the gateway's per-request checks)"),
                );
            }
        }
        if r.tunnel_idle_timeout.0.is_zero() {
            self.err(join_key(p, "tunnel_idle_timeout"), "must be greater than 0");
        }
    }
}
