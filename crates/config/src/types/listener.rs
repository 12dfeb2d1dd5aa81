//! Where the gateway accepts connections: `listeners[]` (address, trusted proxies, limits,
//! timeouts, TLS termination, the https redirect, HTTP/2 from clients) and the `admin` listener.
//!
//! Invariants: as for every config type, plain data with `deny_unknown_fields` and documented
//! defaults (from [`super::defaults`]); what the values must satisfy is checked in
//! `validate/listener.rs`, and the certificate files themselves are read by the data plane.

use serde::{Deserialize, Serialize};

use super::{defaults, IpFilter};
use crate::units::{ByteSize, Dur};

/// A traffic listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Stable name; defaults to `listener-N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host:port`, e.g. `0.0.0.0:8080` or `[::1]:8080`.
    pub address: String,
    /// Client addresses (CIDRs) whose `X-Forwarded-*`/`Forwarded` headers are trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Also send the RFC 7239 `Forwarded` header upstream (X-Forwarded-* are always sent).
    #[serde(default)]
    pub forwarded_header: bool,
    #[serde(default)]
    pub limits: ListenerLimits,
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    /// Client addresses (after trusted proxies) refused or admitted before routing (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<IpFilter>,
    /// Terminate TLS on this listener (certificates by SNI, optional client certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Answer every request on this (plain) listener with a redirect to `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<RedirectHttps>,
    /// HTTP/2 from clients: `h2` by ALPN on TLS listeners, prior-knowledge `h2c` on plain ones.
    #[serde(default)]
    pub http2: Http2,
    /// Request header names with `_`: CGI/WSGI-style backends read `_` and `-` alike, so
    /// `X_Forwarded_For` would walk around the stripping of forged `X-Forwarded-*`.
    #[serde(default)]
    pub headers_with_underscores: UnderscoreHeaders,
    /// `%2F` and `%5C` (an encoded `/` or `\`) in a request path: a backend that decodes them
    /// would serve a path the gateway did not route by.
    #[serde(default)]
    pub escaped_slashes: EscapedSlashes,
}

/// What to do with request header names that contain `_`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Remove them before anything reads the request (nginx's default).
    #[default]
    Drop,
    /// Answer 400.
    Reject,
    /// Keep them (only behind backends that never fold `_` into `-`).
    Allow,
}

/// What to do with `%2F` / `%5C` in a request path.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Answer 400.
    #[default]
    Reject,
    /// Redirect (308) to the path with them decoded to `/` and normalised.
    UnescapeAndRedirect,
    /// Decode them to `/`, normalise, then route and forward that path.
    UnescapeAndForward,
    /// Keep them as data: route and forward the path as it is (unsafe behind decoding backends).
    Keep,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Largest request head (request line + headers); over it: 431.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Most header fields in one request; over it: 431.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// Longest request target (path + query); over it: 414.
    #[serde(default = "defaults::max_uri_bytes")]
    pub max_uri_bytes: ByteSize,
    /// Default request body limit for routes that set none; over it: 413.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: ByteSize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_header_bytes: defaults::max_header_bytes(),
            max_headers: defaults::max_headers(),
            max_uri_bytes: defaults::max_uri_bytes(),
            max_body_bytes: defaults::max_body_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeouts {
    /// Whole request head must arrive within this (slowloris guard); then 408 and close.
    #[serde(default = "defaults::header_read")]
    pub header_read: Dur,
    /// Whole request body must arrive within this (slow-POST guard); then 408 and close.
    #[serde(default = "defaults::body_read")]
    pub body_read: Dur,
    /// An idle keep-alive connection is closed after this.
    #[serde(default = "defaults::idle")]
    pub idle: Dur,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        ListenerTimeouts {
            header_read: defaults::header_read(),
            body_read: defaults::body_read(),
            idle: defaults::idle(),
        }
    }
}

/// `listeners[].tls`: certificates chosen by SNI; TLS 1.2 and 1.3; ALPN `h2` then `http/1.1`
/// (`http/1.1` only with `http2.enabled: false`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// At least one. A client's SNI picks the certificate whose names match it exactly, then by
    /// wildcard (`*.example.com`); without a match (or without SNI) the `default: true` one, else
    /// the first.
    pub certificates: Vec<TlsCertificate>,
    /// Oldest protocol version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default = "defaults::tls_min_version")]
    pub min_version: String,
    /// Ask clients for a certificate and verify it against a CA bundle (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// A certificate chain and its private key, both PEM files, re-read on every reload and when
/// either file changes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// PEM file: the leaf certificate first, then intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names served by this certificate; default: the certificate's DNS subject alt names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Served when no name matches (or the client sent no SNI). At most one per listener.
    #[serde(default)]
    pub default: bool,
}

/// `listeners[].tls.client_auth`: client certificates verified against `ca`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca: String,
    /// Refuse the handshake without a valid client certificate (default). `false`: a certificate
    /// is optional, but one that is sent must verify.
    #[serde(default = "defaults::yes")]
    pub required: bool,
}

/// `listeners[].redirect_https`: every request gets a redirect to the same host and path on https.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    /// 308 (default, keeps the method and body) or 301.
    #[serde(default = "defaults::redirect_status")]
    pub status: u16,
    /// Port of the https URL; default 443 (left out of the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `listeners[].http2`: HTTP/2 from clients and its protections. The header list is bounded by
/// `limits.max_header_bytes` (and `limits.max_headers`), like an HTTP/1.1 head.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Http2 {
    /// Offer `h2` in ALPN (TLS) and accept the HTTP/2 preface (plain). Default true.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused.
    #[serde(default = "defaults::h2_max_streams")]
    pub max_concurrent_streams: u32,
    /// Flow-control window per stream: how much request body a client may send ahead.
    #[serde(default = "defaults::h2_stream_window")]
    pub initial_stream_window: ByteSize,
    /// Flow-control window of the whole connection.
    #[serde(default = "defaults::h2_connection_window")]
    pub initial_connection_window: ByteSize,
    /// Streams reset (by the client, or by the gateway for a protocol error) allowed within
    /// `reset_window`; one more and the connection ends with GOAWAY `ENHANCE_YOUR_CALM`
    /// (the rapid-reset attack, CVE-2023-44487).
    #[serde(default = "defaults::h2_max_resets")]
    pub max_resets: u32,
    #[serde(default = "defaults::h2_reset_window")]
    pub reset_window: Dur,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            enabled: true,
            max_concurrent_streams: defaults::h2_max_streams(),
            initial_stream_window: defaults::h2_stream_window(),
            initial_connection_window: defaults::h2_connection_window(),
            max_resets: defaults::h2_max_resets(),
            reset_window: defaults::h2_reset_window(),
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "defaults::admin_address")]
    pub address: String,
    /// Bearer token required by the endpoints that change state (`PUT /config`, `POST /reload`,
    /// rollback). Without one those endpoints answer 403. Use `${ENV}` to keep it out of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How many applied configs the admin API keeps for `GET /config/history` and rollback.
    #[serde(default = "defaults::admin_history")]
    pub history: usize,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { address: defaults::admin_address(), token: None, history: defaults::admin_history() }
    }
}
