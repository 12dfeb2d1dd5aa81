//! What every forwarded request passes before and between attempts, whatever the protocols:
//! admission (the breaker, the upstream's request cap, the retry budget's count, a first
//! target), the choice of a target for a retry or a hedged attempt, passive-health feedback, the
//! retry decision after a failed attempt, and how an attempt's failure becomes a `GatewayError`.
//!
//! Invariants:
//! - An open breaker, a full request cap or an upstream without a healthy target answer before
//!   the request body is read: nothing reaches a backend.
//! - Every attempt's outcome feeds its target's passive health exactly once; the breaker hears
//!   once per request, how it ended (`Admission::record`).
//! - A request goes out again only when `retry.rs` says re-sending is safe, attempts, the deadline
//!   and the upstream's retry budget allow it; an upgrade is never re-sent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::ctx::RequestCtx;
use crate::downstream::Fail;
use crate::error::GatewayError;
use crate::http1::headers::trim;
use crate::http1::RequestHead;
use crate::retry::AttemptFailure;
use crate::snapshot::Route;
use crate::trace::{ClientSpan, ServerSpan};
use crate::upstream::balancer::rand_u64;
use crate::upstream::{mono_ns, outlier, HashKey, Target, Upstream};

/// Holds a target's in-flight count (least-request and peak-EWMA read it) for one attempt.
pub(crate) struct InflightGuard<'a>(pub(crate) &'a Target);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.state.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one attempt ended without a usable response head.
pub(crate) enum AttemptErr {
    /// No connection (refused, unreachable, connect timeout): nothing reached the upstream.
    Connect { timed_out: bool },
    /// `max_pending` connects were already in progress.
    Overloaded,
    /// The connection broke before a response head.
    Reset,
    /// No response head in time (the attempt's timeout or the route's deadline).
    Timeout,
    /// The upstream's answer was not valid HTTP.
    Protocol(&'static str),
    /// The TLS handshake with an `https://` target failed (e.g. its certificate is not trusted).
    Tls,
    /// The client side failed while its body streamed upstream.
    Client(Fail),
}

impl AttemptErr {
    /// `error.type` of the attempt's CLIENT span.
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            AttemptErr::Connect { timed_out: true } => "connect_timeout",
            AttemptErr::Connect { timed_out: false } => "connect_error",
            AttemptErr::Overloaded => "upstream_overloaded",
            AttemptErr::Reset => "upstream_reset",
            AttemptErr::Timeout => "upstream_timeout",
            AttemptErr::Protocol(_) => "upstream_invalid_response",
            AttemptErr::Tls => "upstream_tls_failed",
            AttemptErr::Client(_) => "client_error",
        }
    }

    pub(crate) fn failure(&self) -> Option<AttemptFailure> {
        match self {
            AttemptErr::Connect { .. } | AttemptErr::Tls => Some(AttemptFailure::Connect),
            AttemptErr::Reset => Some(AttemptFailure::Reset),
            AttemptErr::Timeout => Some(AttemptFailure::Timeout),
            AttemptErr::Protocol(_) | AttemptErr::Overloaded | AttemptErr::Client(_) => None,
        }
    }

    /// Whether this says something about the target's health (passive health, breaker).
    pub(crate) fn target_failed(&self) -> bool {
        !matches!(self, AttemptErr::Overloaded | AttemptErr::Client(_))
    }

    pub(crate) fn into_fail(self, upstream: &str, deadline_passed: bool) -> Fail {
        let upstream = upstream.to_string();
        Fail::Before(match self {
            AttemptErr::Client(f) => return f,
            AttemptErr::Timeout | AttemptErr::Connect { timed_out: true } if deadline_passed => {
                GatewayError::DeadlineExceeded { upstream }
            }
            AttemptErr::Connect { timed_out: true } | AttemptErr::Timeout => GatewayError::UpstreamTimeout { upstream },
            AttemptErr::Connect { timed_out: false } => GatewayError::UpstreamConnect { upstream },
            AttemptErr::Overloaded => GatewayError::UpstreamOverloaded { upstream },
            AttemptErr::Reset => GatewayError::UpstreamReset { upstream },
            AttemptErr::Protocol(detail) => GatewayError::UpstreamProtocol { upstream, detail },
            AttemptErr::Tls => GatewayError::UpstreamTls { upstream },
        })
    }
}

pub(crate) fn tried_bit(i: usize) -> u64 {
    1 << (i % 64)
}

/// A target for a retry or a hedged attempt: a healthy one this request has not tried yet (from
/// a random start, so retries spread), else the balancer's choice. The balancer is asked only
/// when everything was tried, so retries do not shift its round-robin sequence.
pub(crate) fn pick_target(u: &Upstream, key: Option<&[u8]>, tried: u64) -> Option<usize> {
    let n = u.targets.len();
    let s = (rand_u64() % n.max(1) as u64) as usize;
    (0..n)
        .map(|k| (s + k) % n)
        .find(|&i| tried & tried_bit(i) == 0 && u.targets[i].state.is_healthy())
        .or_else(|| u.balancer.pick(&u.targets, key))
}

/// Records one attempt's outcome for passive health; logs an ejection.
pub(crate) fn observe_target(upstream: &Upstream, ti: usize, failed: bool) {
    let Some(oc) = &upstream.outlier else { return };
    if let Some(reason) = outlier::observe(oc, &upstream.targets, ti, failed, mono_ns()) {
        upstream.state.note_ejection();
        let t = &upstream.targets[ti];
        let secs = t.state.outlier.ejected_until().saturating_sub(mono_ns()) as f64 / 1e9;
        tracing::warn!(upstream = %upstream.name, target = %t.url, reason = reason.as_str(), seconds = secs, "target ejected");
    }
}

/// The hedging race, whatever the protocols: `first` (to target `ti`) runs alone for `delay`;
/// without a response head by then, `second(tj)` goes to another target (if the retry budget
/// allows) and the first head wins, the other attempt being dropped. A failed attempt counts
/// against its target and the other one decides. Returns the winning target's index.
pub(crate) async fn race_hedge<T, F, G, S>(
    upstream: &Upstream,
    ti: usize,
    key: Option<&[u8]>,
    delay: Duration,
    first: F,
    second: G,
) -> (usize, Result<T, AttemptErr>)
where
    F: std::future::Future<Output = Result<T, AttemptErr>>,
    G: FnOnce(usize) -> S,
    S: std::future::Future<Output = Result<T, AttemptErr>>,
{
    tokio::pin!(first);
    tokio::select! {
        biased;
        r = &mut first => return (ti, r),
        _ = tokio::time::sleep(delay) => {}
    }
    let pick = pick_target(upstream, key, tried_bit(ti)).filter(|&j| j != ti);
    let Some(tj) = pick.filter(|_| upstream.state.budget.try_retry(mono_ns())) else {
        return (ti, first.await);
    };
    upstream.state.note_hedge();
    let t2 = &upstream.targets[tj];
    t2.state.inflight.fetch_add(1, Ordering::Relaxed);
    let _inflight = InflightGuard(t2);
    let second = second(tj);
    tokio::pin!(second);
    tokio::select! {
        r1 = &mut first => match r1 {
            Ok(_) => (ti, r1),
            Err(e) => {
                if e.target_failed() {
                    observe_target(upstream, ti, true);
                }
                (tj, second.await)
            }
        },
        r2 = &mut second => match r2 {
            Ok(_) => (tj, r2),
            Err(e) => {
                if e.target_failed() {
                    observe_target(upstream, tj, true);
                }
                (ti, first.await)
            }
        },
    }
}

/// What every forwarded request passes first, whatever the protocols: the breaker (fail fast),
/// the upstream's request cap, the retry budget's count, a first target. Dropping it frees the
/// request slot.
pub(crate) struct Admission<'r> {
    pub started: Instant,
    breaker: Option<&'r crate::upstream::breaker::CircuitBreaker>,
    admit: Option<crate::upstream::breaker::Admit>,
    _slot: crate::upstream::Slot<'r>,
    /// The consistent-hash key (owned: only hash balancers pay for it).
    pub key: Option<Vec<u8>>,
    pub first_pick: usize,
    /// The client's Host to send instead of the target's authority (`preserve_host`, or a Host
    /// set by a policy).
    pub fixed_host: Option<Bytes>,
    pub response_timeout: Duration,
    pub deadline: Option<Instant>,
}

impl<'r> Admission<'r> {
    pub(crate) fn begin(route: &'r Route, ctx: &RequestCtx, head: &mut RequestHead, path: &str) -> Result<Self, Fail> {
        let upstream: &Upstream = &route.upstream;
        let ust = &upstream.state;
        let started = Instant::now();
        // Fail fast: an open breaker answers before anything else happens.
        let breaker = route.breaker();
        let admit = match breaker {
            None => None,
            Some(b) => match b.admit(mono_ns()) {
                Ok(a) => Some(a),
                Err(retry_after) => {
                    return Err(Fail::Before(GatewayError::CircuitOpen {
                        upstream: upstream.name.clone(),
                        retry_after,
                    }))
                }
            },
        };
        let Some(slot) = ust.request_slot(upstream.max_requests) else {
            return Err(Fail::Before(GatewayError::UpstreamOverloaded { upstream: upstream.name.clone() }));
        };
        ust.budget.on_request(mono_ns());
        if let Some(h) = route.deadline.as_ref().and_then(|d| d.header.as_ref()) {
            // The gateway states the remaining time; a client's own value is replaced.
            head.headers.remove(std::str::from_utf8(h).unwrap_or(""));
        }
        let key = match upstream.balancer.hash_key() {
            Some(HashKey::ClientIp) => {
                let ip_s = ctx.client_ip.to_string();
                hash_key(&HashKey::ClientIp, head, path, &ip_s).map(<[u8]>::to_vec)
            }
            Some(k) => hash_key(k, head, path, "").map(<[u8]>::to_vec),
            None => None,
        };
        // Fail before reading the body when nothing can take the request.
        let Some(first_pick) = upstream.balancer.pick(&upstream.targets, key.as_deref()) else {
            return Err(Fail::Before(GatewayError::NoHealthyUpstream { upstream: upstream.name.clone() }));
        };
        let fixed_host: Option<Bytes> = match head.headers.get_known(crate::http1::Known::Host) {
            Some(h) => Some(Bytes::copy_from_slice(h)),
            None if route.preserve_host => head.authority.clone(),
            None => None,
        };
        Ok(Admission {
            started,
            breaker,
            admit,
            _slot: slot,
            key,
            first_pick,
            fixed_host,
            response_timeout: route.timeout.unwrap_or(upstream.response_timeout),
            deadline: route.deadline.as_ref().map(|d| started + d.timeout),
        })
    }

    /// May the request go out again after attempt `n`? Attempts, time and the upstream's retry
    /// budget must allow it; never when `once` (an upgrade: a second attempt could open a second
    /// session; a streamed body that is gone).
    pub(crate) fn retry_wait(&self, route: &Route, n: u32, once: bool) -> Option<Duration> {
        if n >= route.retry.attempts || once {
            return None;
        }
        let wait = route.retry.backoff(n);
        if self.deadline.is_some_and(|d| Instant::now() + wait >= d) {
            return None;
        }
        route.upstream.state.budget.try_retry(mono_ns()).then_some(wait)
    }

    /// After a failed attempt on target `ti`: `Ok((wait, error))` to retry after `wait` (the
    /// error answers if no later attempt does better), or `Err` with the answer now. Feeds
    /// passive health and, when the request ends here, the breaker.
    pub(crate) fn attempt_failed(
        &self,
        e: AttemptErr,
        route: &Route,
        ti: usize,
        may_resend: bool,
        attempt: u32,
        once: bool,
    ) -> Result<(Duration, Fail), Fail> {
        let upstream = &route.upstream;
        if let AttemptErr::Client(f) = e {
            return Err(f);
        }
        if e.target_failed() {
            observe_target(upstream, ti, true);
        }
        let retryable = e.failure().is_some_and(|f| route.retry.retries(f))
            && (matches!(e, AttemptErr::Connect { .. }) || may_resend);
        let deadline_passed = self.deadline.is_some_and(|d| Instant::now() >= d);
        let failed_target = e.target_failed();
        let fail = e.into_fail(&upstream.name, deadline_passed);
        if retryable && !deadline_passed {
            if let Some(wait) = self.retry_wait(route, attempt, once) {
                tracing::debug!(upstream = %upstream.name, attempt, "retrying");
                return Ok((wait, fail));
            }
        }
        if failed_target {
            self.record(true);
        }
        Err(fail)
    }

    /// Tells the breaker how the request ended (`failed`, and slow by the breaker's measure).
    pub(crate) fn record(&self, failed: bool) {
        if let (Some(b), Some(a)) = (self.breaker, self.admit) {
            let slow = b.cfg.slow_call_ns.is_some_and(|ns| self.started.elapsed().as_nanos() as u64 >= ns);
            b.record(a, failed, slow, mono_ns());
        }
    }
}

fn hash_key<'a>(key: &HashKey, head: &'a RequestHead, path: &'a str, ip: &'a str) -> Option<&'a [u8]> {
    match key {
        HashKey::Header(h) => head.headers.get(h),
        HashKey::Cookie(name) => head.headers.get_all("cookie").find_map(|v| {
            v.split(|&b| b == b';').find_map(|kv| {
                let kv = trim(kv);
                let eq = kv.iter().position(|&b| b == b'=')?;
                (kv[..eq] == *name.as_bytes()).then(|| &kv[eq + 1..])
            })
        }),
        HashKey::ClientIp => Some(ip.as_bytes()),
        HashKey::Path => Some(path.as_bytes()),
    }
}

/// A CLIENT span for one upstream attempt to `target` (when the request is traced).
pub(crate) fn client_span(server: Option<&ServerSpan>, method: &[u8], target: &Target) -> Option<ClientSpan> {
    let mut span = server?.child_client();
    if span.context().is_sampled() {
        let m = std::str::from_utf8(method).unwrap_or("_OTHER");
        let authority = std::str::from_utf8(&target.authority).unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (h, p.parse().unwrap_or(80)),
            _ => (authority, 80),
        };
        span.set_request(m, host.trim_start_matches('[').trim_end_matches(']'), port, Some(&target.url));
    }
    Some(span)
}
