//! `authorize`: decides whether the authenticated identity may use the route.
//!
//! Invariants: runs after `auth` (validation refuses it otherwise); no identity → 401, an
//! identity that fails any rule → 403. Rules: `consumers`/`groups` (either list admits when
//! both are given), every required scope (from `scope`, space-separated, or `scp`, a list or a
//! string), every claim condition. An identity without claims (API key, basic) has no scopes
//! and no claims, so scope and claim rules refuse it.

use std::sync::Arc;

use bytes::Bytes;
use gatehouse_config as cfg;
use serde_json::Value;

use super::{AuthState, Denial, Identity};
use crate::ctx::RequestCtx;
use crate::error::{CompileError, GatewayError};
use crate::policy::{CompilePolicy, PolicyEnv, StateId};

#[derive(Debug)]
enum Op {
    Equals(Value),
    OneOf(Vec<Value>),
    Contains(Value),
}

#[derive(Debug)]
struct Condition {
    claim: String,
    op: Op,
}

/// A compiled `authorize` policy.
#[derive(Debug)]
pub struct AuthorizePolicy {
    consumers: Vec<String>,
    groups: Vec<String>,
    scopes: Vec<String>,
    claims: Vec<Condition>,
    state: Arc<AuthState>,
}

/// Loose equality: a string claim equals a number or bool written in YAML as its text form.
fn same(a: &Value, b: &Value) -> bool {
    a == b
        || match (a, b) {
            (Value::String(s), other) | (other, Value::String(s)) => match other {
                Value::Number(n) => n.to_string() == *s,
                Value::Bool(x) => x.to_string() == *s,
                _ => false,
            },
            _ => false,
        }
}

fn contains(claim: &Value, want: &Value) -> bool {
    match claim {
        Value::Array(items) => items.iter().any(|i| same(i, want)),
        Value::String(s) => want.as_str().is_some_and(|w| s.split(' ').any(|x| x == w)),
        _ => false,
    }
}

impl AuthorizePolicy {
    pub fn compile(a: &cfg::Authorize, state: &Arc<AuthState>) -> AuthorizePolicy {
        AuthorizePolicy {
            consumers: a.consumers.clone(),
            groups: a.groups.clone(),
            scopes: a.scopes.clone(),
            claims: a
                .claims
                .iter()
                .filter_map(|c| {
                    let op = if let Some(v) = &c.equals {
                        Op::Equals(v.clone())
                    } else if let Some(v) = &c.one_of {
                        Op::OneOf(v.clone())
                    } else {
                        Op::Contains(c.contains.clone()?)
                    };
                    Some(Condition { claim: c.claim.clone(), op })
                })
                .collect(),
            state: state.clone(),
        }
    }

    /// Whether `id` passes every rule.
    pub fn allows(&self, id: &Identity) -> bool {
        if !(self.consumers.is_empty() && self.groups.is_empty()) {
            let by_name = self.consumers.contains(&id.name);
            let by_group = self.groups.iter().any(|g| id.groups.contains(g));
            if !(by_name || by_group) {
                return false;
            }
        }
        if !self.scopes.is_empty() {
            let granted: Vec<&str> = match (id.claim("scope"), id.claim("scp")) {
                (Some(Value::String(s)), _) => s.split(' ').collect(),
                (_, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
                (_, Some(Value::String(s))) => s.split(' ').collect(),
                _ => Vec::new(),
            };
            if !self.scopes.iter().all(|s| granted.contains(&s.as_str())) {
                return false;
            }
        }
        self.claims.iter().all(|c| match (id.claim(&c.claim), &c.op) {
            (None, _) => false,
            (Some(v), Op::Equals(want)) => same(v, want),
            (Some(v), Op::OneOf(list)) => list.iter().any(|w| same(v, w)),
            (Some(v), Op::Contains(want)) => contains(v, want),
        })
    }

    /// The request phase: 401 without identity, 403 when not allowed.
    pub fn check(&self, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        let denial = match ctx.identity.as_deref() {
            None => Denial::Missing,
            Some(id) if self.allows(id) => return Ok(()),
            Some(_) => Denial::Forbidden,
        };
        self.state.stats.deny(denial);
        ctx.error_kind = Some(denial.kind());
        Err(denial.error(&Bytes::from_static(b"Bearer realm=\"gatehouse\"")))
    }
}

/// An `authorize` counts its refusals in the shared `AuthState`.
impl CompilePolicy for cfg::Authorize {
    type Runtime = AuthorizePolicy;

    fn fingerprint(&self) -> String {
        "authorize".into()
    }

    fn compile(&self, env: &mut PolicyEnv<'_>, _: &cfg::Route, _: &StateId) -> Result<AuthorizePolicy, CompileError> {
        Ok(AuthorizePolicy::compile(self, &env.limiters.auth))
    }
}

/// Authorization's side of the policy contract: 401 without an identity, 403 when it is not
/// allowed.
impl crate::policy::Policy for AuthorizePolicy {
    async fn on_request(
        &self,
        ctx: &mut RequestCtx,
        _: usize,
        _: &mut crate::http1::Headers,
        _: &crate::ctx::RequestInfo<'_>,
    ) -> crate::policy::Flow {
        match self.check(ctx) {
            Ok(()) => crate::policy::Flow::Continue,
            Err(e) => crate::policy::Flow::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(claims: Value, groups: &[&str]) -> Identity {
        Identity {
            name: "alice".into(),
            consumer: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims: claims.as_object().cloned().map(Arc::new),
            anonymous: false,
            method: "jwt",
        }
    }

    fn policy(yaml: Value) -> AuthorizePolicy {
        let a: cfg::Authorize = serde_json::from_value(yaml).unwrap();
        AuthorizePolicy::compile(&a, &Arc::new(AuthState::default()))
    }

    #[test]
    fn consumers_groups_scopes_claims() {
        let p = policy(json!({"consumers": ["bob"], "groups": ["admins"]}));
        assert!(!p.allows(&id(json!({}), &[])));
        assert!(p.allows(&id(json!({}), &["admins"])));
        let p = policy(json!({"consumers": ["alice"]}));
        assert!(p.allows(&id(json!({}), &[])));

        let p = policy(json!({"scopes": ["read", "write"]}));
        assert!(p.allows(&id(json!({"scope": "read write x"}), &[])));
        assert!(p.allows(&id(json!({"scp": ["write", "read"]}), &[])));
        assert!(!p.allows(&id(json!({"scope": "read"}), &[])));
        assert!(!p.allows(&id(json!({"scope": "readwrite"}), &[])));

        let p = policy(json!({"claims": [
            {"claim": "tenant", "equals": "acme"},
            {"claim": "level", "one_of": [1, 2]},
            {"claim": "realm_access.roles", "contains": "admin"}
        ]}));
        let good = json!({"tenant": "acme", "level": 2, "realm_access": {"roles": ["user", "admin"]}});
        assert!(p.allows(&id(good.clone(), &[])));
        let mut bad = good.clone();
        bad["tenant"] = json!("evil");
        assert!(!p.allows(&id(bad, &[])));
        let mut bad = good.clone();
        bad["level"] = json!(3);
        assert!(!p.allows(&id(bad, &[])));
        let mut bad = good;
        bad["realm_access"]["roles"] = json!(["administrator"]);
        assert!(!p.allows(&id(bad, &[])));
        assert!(!p.allows(&id(json!({}), &[])), "missing claims refuse");
    }
}
