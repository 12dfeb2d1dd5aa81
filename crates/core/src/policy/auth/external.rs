//! `external_auth`: an HTTP service decides whether a request may pass.
//!
//! Invariants: the service gets the request's method, its path (appended to the configured
//! URL's path) and query (credential parameters already stripped by an earlier `auth`), the
//! selected headers, and `X-Forwarded-For` with the client address — never the body. A 2xx
//! admits, copying the listed headers of the answer onto the upstream request (replacing any
//! client-sent copy); any other status is relayed to the client (status, `content-type`,
//! `www-authenticate`, `location` and up to 64 KiB of body). No answer within `timeout`, or an
//! unusable one, refuses with 503 (fail closed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_config as cfg;

use super::client::{self, ServiceUrl};
use super::{AuthState, Denial};
use crate::ctx::{RequestCtx, RequestInfo};
use crate::error::{CompileError, GatewayError, LocalResponse};
use crate::http1::Headers;
use crate::policy::{CompilePolicy, PolicyEnv, StateId};

const MAX_BODY: usize = 64 * 1024;
const RELAYED: &[&str] = &["content-type", "www-authenticate", "location"];

/// A compiled `external_auth` policy.
#[derive(Debug)]
pub struct ExternalAuthPolicy {
    url: ServiceUrl,
    /// Lower-cased names.
    headers: Vec<String>,
    copy: Vec<String>,
    timeout: Duration,
    state: Arc<AuthState>,
}

impl ExternalAuthPolicy {
    pub fn compile(e: &cfg::ExternalAuth, state: &Arc<AuthState>) -> Result<ExternalAuthPolicy, String> {
        Ok(ExternalAuthPolicy {
            url: ServiceUrl::parse(&e.url)?,
            headers: e.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            copy: e.copy_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            timeout: e.timeout.0,
            state: state.clone(),
        })
    }

    /// Asks the service; `Err` is the response for the client.
    pub async fn check(
        &self,
        ctx: &mut RequestCtx,
        headers: &mut Headers,
        req: &RequestInfo<'_>,
    ) -> Result<(), LocalResponse> {
        let base = self.url.path.split('?').next().unwrap_or("/").trim_end_matches('/');
        let mut path = format!("{base}{}", req.path);
        if let Some(q) = ctx.forward_query.as_deref().or(req.query).filter(|q| !q.is_empty()) {
            path.push('?');
            path.push_str(q);
        }
        let method = std::str::from_utf8(req.method).unwrap_or("GET");
        let ip = ctx.client_ip.to_string();
        let mut sent: Vec<(&str, &[u8])> = vec![("x-forwarded-for", ip.as_bytes())];
        for name in &self.headers {
            for v in headers.get_all(name) {
                sent.push((name.as_str(), v));
            }
        }
        let reply = client::call(&self.url, method, &path, &sent, b"", self.timeout, MAX_BODY).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "external auth failed; refusing (fail closed)");
                return Err(self.refuse(ctx, Denial::Unavailable));
            }
        };
        if (200..300).contains(&reply.status) {
            for name in &self.copy {
                if let Some(v) = reply.header(name) {
                    headers.set(Bytes::from(name.clone()), Bytes::copy_from_slice(v));
                }
            }
            self.state.stats.allow(false);
            return Ok(());
        }
        self.state.stats.deny(Denial::External);
        ctx.error_kind = Some(Denial::External.kind());
        let mut resp =
            LocalResponse { status: reply.status, headers: Vec::new(), body: reply.body.clone(), close: false };
        if !(400..600).contains(&reply.status) && !(300..400).contains(&reply.status) {
            // 1xx or nonsense: do not relay, refuse plainly.
            return Err(GatewayError::Forbidden.to_response(ctx.request_id_str()));
        }
        for name in RELAYED {
            if let Some(v) = reply.header(name) {
                resp.headers.push((Bytes::from_static(name.as_bytes()), Bytes::copy_from_slice(v)));
            }
        }
        Err(resp)
    }

    fn refuse(&self, ctx: &mut RequestCtx, d: Denial) -> LocalResponse {
        self.state.stats.deny(d);
        ctx.error_kind = Some(d.kind());
        d.error(&Bytes::new()).to_response(ctx.request_id_str())
    }
}

/// An `external_auth` counts its refusals in the shared `AuthState`.
impl CompilePolicy for cfg::ExternalAuth {
    type Runtime = Box<ExternalAuthPolicy>;

    fn fingerprint(&self) -> String {
        "external_auth".into()
    }

    fn compile(&self, env: &mut PolicyEnv<'_>, r: &cfg::Route, _: &StateId) -> Result<Self::Runtime, CompileError> {
        ExternalAuthPolicy::compile(self, &env.limiters.auth)
            .map(Box::new)
            .map_err(|e| CompileError(format!("route `{}`: {e}", r.name)))
    }
}

/// External authorization's side of the policy contract: the service's verdict; its refusal is
/// relayed as the answer (status, body and the headers in `RELAYED`).
impl crate::policy::Policy for ExternalAuthPolicy {
    async fn on_request(
        &self,
        ctx: &mut RequestCtx,
        _: usize,
        headers: &mut Headers,
        req: &RequestInfo<'_>,
    ) -> crate::policy::Flow {
        match self.check(ctx, headers, req).await {
            Ok(()) => crate::policy::Flow::Continue,
            Err(resp) => crate::policy::Flow::Respond(resp),
        }
    }
}
