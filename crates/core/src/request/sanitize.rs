//! What the gateway changes in a request's head before anyone upstream sees it, and the facts
//! it derives from the head: the request id, the client address behind trusted proxies, the
//! host key for routing, an allowed upgrade, the path after the route's rewrite.
//!
//! Invariants:
//! - Hop-by-hop fields (and those named in `Connection`) never cross the proxy; forwarding
//!   headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) from untrusted peers are dropped and
//!   replaced by the gateway's own, never trusted.
//! - One pass over the headers, one length-bucketed match per field.

use std::net::IpAddr;

use bytes::Bytes;

use crate::downstream::Conn;
use crate::http1::headers::{connection_options, trim};
use crate::http1::{self, BodyKind, Headers, Known, RequestHead};
use crate::snapshot::{Rewrite, Route, TplPart};
use crate::upstream::balancer::rand_u64;

/// A new random request id: 32 lower-case hex digits.
pub fn new_request_id() -> Bytes {
    let mut v = [0u8; 32];
    hex_into(&mut v[..16], rand_u64());
    hex_into(&mut v[16..], rand_u64());
    Bytes::copy_from_slice(&v)
}

/// The 16 lower-case hex digits of `x` into `out` (16 bytes), a byte (two digits) per step.
fn hex_into(out: &mut [u8], x: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(x.to_be_bytes()) {
        pair[0] = HEX[(byte >> 4) as usize];
        pair[1] = HEX[(byte & 0xf) as usize];
    }
}

pub(crate) fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|&b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The client address after trusted proxies: walk `X-Forwarded-For` right to left while the hop is
/// trusted; the first untrusted address is the client.
pub fn client_ip(peer: IpAddr, headers: &Headers, trusted: &[gatehouse_config::Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        for part in v.split(|&b| b == b',') {
            match std::str::from_utf8(trim(part)).ok().and_then(|s| s.parse::<IpAddr>().ok()) {
                Some(ip) => hops.push(ip),
                None => return peer,
            }
        }
    }
    let mut ip = peer;
    for hop in hops.into_iter().rev() {
        ip = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    ip
}

/// The method a CORS preflight asks about: `OPTIONS` with `Origin` and a token-valued
/// `Access-Control-Request-Method`.
pub(crate) fn preflight_method<'h>(method: &[u8], headers: &'h Headers) -> Option<&'h [u8]> {
    if method != b"OPTIONS" || !headers.contains("origin") {
        return None;
    }
    let m = trim(headers.get("access-control-request-method")?);
    let token = !m.is_empty() && m.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token.then_some(m)
}

/// Lower-cased host without port, borrowed when already lower-case.
pub(crate) fn host_key(authority: &[u8]) -> std::borrow::Cow<'_, str> {
    let a = std::str::from_utf8(authority).unwrap_or("");
    let host =
        if a.starts_with('[') { a.find(']').map_or(a, |e| &a[..=e]) } else { a.rsplit_once(':').map_or(a, |(h, _)| h) };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// The path sent upstream for `path` on `route` (its `rewrite` applied to the normalised path).
pub fn rewrite_path(route: &Route, path: &str, params: &[(String, String)]) -> String {
    match &route.rewrite {
        Rewrite::None => path.to_string(),
        Rewrite::StripPrefix(p) => {
            let rest = &path[p.len().min(path.len())..];
            if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        }
        Rewrite::Template(parts) => {
            let mut out = String::with_capacity(path.len());
            for part in parts {
                match part {
                    TplPart::Lit(s) => out.push_str(s),
                    TplPart::Param(name) => {
                        if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
                            out.push_str(v);
                        }
                    }
                }
            }
            out
        }
    }
}

/// The `Upgrade` value to forward when `head` asks to switch protocols and `route` allows every
/// protocol it names. Only HTTP/1.1, bodiless requests (RFC 9110 §7.8 lets a server ignore an
/// upgrade; with a body, the switch would have to wait for the whole body), and WebSocket only
/// with GET (RFC 6455 §4.1). Otherwise `None`: the request goes on as a plain one, with
/// `Upgrade` stripped as the hop-by-hop field it is.
pub(crate) fn upgrade_request(head: &RequestHead, route: &Route) -> Option<Bytes> {
    upgrade_request_with(head, &route.upgrades)
}

pub(crate) fn upgrade_request_with(head: &RequestHead, upgrades: &[String]) -> Option<Bytes> {
    if upgrades.is_empty() || head.minor != 1 || head.body != BodyKind::Empty {
        return None;
    }
    if !head.headers.get_all_known(Known::Connection).any(|v| http1::headers::has_token(v, "upgrade")) {
        return None;
    }
    let mut values = head.headers.get_all_known(Known::Upgrade);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let mut any = false;
    for proto in value.split(|&b| b == b',').map(trim).filter(|p| !p.is_empty()) {
        let name = proto.split(|&b| b == b'/').next().unwrap_or(proto);
        if !upgrades.iter().any(|u| u.as_bytes().eq_ignore_ascii_case(name)) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"websocket") && &head.method[..] != b"GET" {
            return None;
        }
        any = true;
    }
    any.then(|| head.headers.slice_of(value))
}

/// Is this request header dropped before forwarding? One length-bucketed match per header.
pub(crate) fn drop_on_forward(n: &[u8], peer_trusted: bool) -> bool {
    drop_field(Known::of(n), n, peer_trusted)
}

/// `drop_on_forward` for a field whose name was recognised already.
fn drop_field(k: Known, n: &[u8], peer_trusted: bool) -> bool {
    match k {
        Known::Host | Known::Expect | Known::XRequestId | Known::XClientCertSubject => true,
        Known::Forwarded
        | Known::XRealIp
        | Known::XForwardedFor
        | Known::XForwardedHost
        | Known::XForwardedPort
        | Known::XForwardedProto => !peer_trusted,
        Known::Other => n.len() > 11 && n[..11].eq_ignore_ascii_case(b"x-consumer-"),
        k => k.is_hop_by_hop(),
    }
}

/// Removes what must not be forwarded (hop-by-hop fields, the client's Host, request id,
/// expectations and identity headers, forwarding headers from untrusted peers) and returns the
/// other names the client listed in `Connection`, removed later (`drop_connection_named`).
pub(crate) fn sanitize_request(h: &mut Headers, peer_trusted: bool) -> Vec<Vec<u8>> {
    let mut named: Vec<Vec<u8>> = Vec::new();
    for t in h.get_all_known(Known::Connection).flat_map(connection_options) {
        if !drop_on_forward(t, peer_trusted) {
            named.push(t.to_ascii_lowercase());
        }
    }
    h.remove_fields(|k, n| drop_field(k, n, peer_trusted));
    named
}

pub(crate) fn drop_connection_named(h: &mut Headers, named: &[Vec<u8>]) {
    for n in named {
        h.remove_received(n);
    }
}

/// `X-Forwarded-For` and `Forwarded` values sent by a trusted proxy, to extend.
pub(crate) fn prior_forwarding(h: &Headers) -> (Vec<u8>, Vec<u8>) {
    let join = |name| h.get_all(name).collect::<Vec<_>>().join(&b", "[..]);
    (join("x-forwarded-for"), join("forwarded"))
}

pub(crate) fn add_forwarding(
    head: &mut RequestHead,
    c: &Conn,
    peer_trusted: bool,
    prior: (Vec<u8>, Vec<u8>),
    rfc7239: bool,
) {
    let h = &mut head.headers;
    let orig_host = head.authority.clone().unwrap_or_default();
    let (prior_xff, prior_fwd) = prior;
    if peer_trusted {
        let xff = if prior_xff.is_empty() {
            c.peer_ip.clone()
        } else {
            [&prior_xff[..], b", ", &c.peer_ip[..]].concat().into()
        };
        h.set(Bytes::from_static(b"x-forwarded-for"), xff);
        if !h.contains_known(Known::XForwardedProto) {
            h.append_known(Known::XForwardedProto, b"x-forwarded-proto", c.proto());
        }
        if !h.contains_known(Known::XForwardedHost) && !orig_host.is_empty() {
            h.append_known(Known::XForwardedHost, b"x-forwarded-host", orig_host.clone());
        }
    } else {
        h.append_known(Known::XForwardedFor, b"x-forwarded-for", c.peer_ip.clone());
        h.append_known(Known::XForwardedProto, b"x-forwarded-proto", c.proto());
        if !orig_host.is_empty() {
            h.append_known(Known::XForwardedHost, b"x-forwarded-host", orig_host.clone());
        }
    }
    if !rfc7239 {
        // Without the option, a trusted proxy's `Forwarded` passes through untouched and an
        // untrusted one was removed by `sanitize_request`.
        return;
    }
    // RFC 7239: `for=` (IPv6 quoted and bracketed), `proto=`, `host=` quoted.
    let mut fwd = Vec::with_capacity(prior_fwd.len() + c.forwarded_for.len() + orig_host.len() + 12);
    if !prior_fwd.is_empty() {
        fwd.extend_from_slice(&prior_fwd);
        fwd.extend_from_slice(b", ");
    }
    fwd.extend_from_slice(&c.forwarded_for);
    if !orig_host.is_empty() {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(&orig_host);
        fwd.push(b'"');
    }
    if peer_trusted {
        h.set(Bytes::from_static(b"forwarded"), Bytes::from(fwd));
    } else {
        h.append_known(Known::Forwarded, b"forwarded", Bytes::from(fwd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, push_u64};
    use bytes::BytesMut;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)));
        assert_ne!(a, b);
        let mut out = [0u8; 16];
        hex_into(&mut out, 0x0123_4567_89ab_cdef);
        assert_eq!(&out, b"0123456789abcdef");
    }

    #[test]
    fn hosts() {
        assert_eq!(host_key(b"Api.Example.com:8080"), "api.example.com");
        assert_eq!(host_key(b"[::1]:80"), "[::1]");
        assert_eq!(host_key(b"x"), "x");
    }

    fn head(raw: &[u8]) -> RequestHead {
        let mut b = BytesMut::from(raw);
        let limits = http1::HeadLimits { max_head: 8192, max_headers: 32, max_uri: 1024 };
        parse_request(&mut b, limits).ok().flatten().expect("valid head")
    }

    #[test]
    fn upgrade_rules() {
        let allowed = |raw: &[u8], upgrades: &[&str]| -> Option<Bytes> {
            let h = head(raw);
            let names: Vec<String> = upgrades.iter().map(|u| u.to_string()).collect();
            upgrade_request_with(&h, &names)
        };
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(allowed(ws, &["websocket"]).as_deref(), Some(&b"websocket"[..]));
        assert_eq!(allowed(ws, &[]), None);
        assert_eq!(allowed(ws, &["foo"]), None);
        // Not asked in `Connection`, HTTP/1.0, POST websocket, a body, two fields, one listed
        // protocol not allowed: all plain requests.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        ] {
            assert_eq!(allowed(raw, &["websocket"]), None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn preflight_methods() {
        let h =
            head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), Some(&b"PUT"[..]));
        let h = head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
        let h =
            head(b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\nAccess-Control-Request-Method: P T\r\n\r\n");
        assert_eq!(preflight_method(&h.method, &h.headers), None);
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123"));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(&[b'a'; 200]));
        assert_eq!(new_request_id().len(), 32);
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        push_u64(&mut v, 1234567);
        assert_eq!(v, b"01234567");
    }
}
