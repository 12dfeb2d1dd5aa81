//! Validation of where the gateway listens: `listeners[]` (names, addresses, trusted proxies,
//! limits, timeouts, TLS shape, the https redirect, HTTP/2 settings) and the `admin` listener.
//!
//! Invariants: the same rules as the rest of `validate/` (every problem collected with its
//! path, nothing stops early). Addresses are parsed as the data plane binds them, and no two
//! listeners (the admin one included) may bind the same port (0 excepted) on overlapping
//! addresses. The certificate files themselves are read by the data plane's TLS module.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Items, Validator};
use crate::net::{is_dns_name, parse_socket_addr, Cidr};
use crate::types::{Config, Listener};
use crate::yaml::{join_index, join_key};

/// The name a listener is known by: its `name`, or `listener-N` for the N-th listener.
pub fn listener_name(listener: &Listener, index: usize) -> String {
    listener.name.clone().unwrap_or_else(|| format!("listener-{index}"))
}

impl Validator<'_> {
    pub(super) fn listeners(&mut self, cfg: &Config, partial: &Items) -> Vec<(SocketAddr, String)> {
        if cfg.listeners.is_empty() && partial.listener_items == 0 {
            self.err("listeners", "at least one listener is required");
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
        for (pos, l) in cfg.listeners.iter().enumerate() {
            let i = partial.listener_ix.get(pos).copied().unwrap_or(pos);
            let p = join_index("listeners", i);
            if let Some(n) = &l.name {
                self.name(&join_key(&p, "name"), "listener", n);
            }
            let name = listener_name(l, i);
            if let Some(first) = names.get(&name) {
                let how = if l.name.is_none() { " (an unnamed listener defaults to `listener-N`)" } else { "" };
                self.err(join_key(&p, "name"), format!("duplicate listener name `{name}` (also {first}){how}"));
            } else {
                names.insert(name, p.clone());
            }
            match parse_socket_addr(&l.address) {
                Err(e) => self.err(join_key(&p, "address"), e),
                Ok(addr) => {
                    if let Some(other) = clash(&addrs, addr) {
                        self.err(join_key(&p, "address"), other);
                    }
                    addrs.push((addr, p.clone()));
                }
            }
            for (k, c) in l.trusted_proxies.iter().enumerate() {
                if let Err(e) = Cidr::parse(c) {
                    self.err(join_index(&join_key(&p, "trusted_proxies"), k), e);
                }
            }
            if let Some(f) = &l.ip_filter {
                self.ip_filter(f, &join_key(&p, "ip_filter"));
            }
            let lim = &l.limits;
            let lp = join_key(&p, "limits");
            for (field, value) in [
                ("max_header_bytes", lim.max_header_bytes.0),
                ("max_headers", lim.max_headers as u64),
                ("max_uri_bytes", lim.max_uri_bytes.0),
                ("max_body_bytes", lim.max_body_bytes.0),
            ] {
                if value == 0 {
                    self.err(join_key(&lp, field), "must be greater than 0");
                }
            }
            if lim.max_uri_bytes.0 > lim.max_header_bytes.0 {
                self.err(
                    join_key(&lp, "max_uri_bytes"),
                    format!(
                        "max_uri_bytes ({}) cannot exceed max_header_bytes ({}): the request line is part of the head",
                        lim.max_uri_bytes, lim.max_header_bytes
                    ),
                );
            }
            let tp = join_key(&p, "timeouts");
            self.positive_dur(join_key(&tp, "header_read"), &l.timeouts.header_read);
            self.positive_dur(join_key(&tp, "body_read"), &l.timeouts.body_read);
            self.positive_dur(join_key(&tp, "idle"), &l.timeouts.idle);
            self.listener_tls(l, &p);
            self.http2(&l.http2, &join_key(&p, "http2"));
        }
        addrs
    }

    /// `listeners[].http2`: values inside what RFC 9113 allows (windows up to 2^31-1 bytes).
    fn http2(&mut self, h: &crate::types::Http2, p: &str) {
        const MAX_WINDOW: u64 = (1 << 31) - 1;
        if h.max_concurrent_streams == 0 {
            self.err(join_key(p, "max_concurrent_streams"), "must be at least 1");
        }
        for (field, v) in [
            ("initial_stream_window", h.initial_stream_window.0),
            ("initial_connection_window", h.initial_connection_window.0),
        ] {
            if !(65_535..=MAX_WINDOW).contains(&v) {
                self.err(join_key(p, field), format!("must be between 65535 bytes and 2 GiB - 1 (RFC 9113), got {v}"));
            }
        }
        if h.max_resets == 0 {
            self.err(join_key(p, "max_resets"), "must be at least 1");
        }
        self.positive_dur(join_key(p, "reset_window"), &h.reset_window);
    }

    /// The shape of `listeners[].tls` and `redirect_https`; the files themselves (PEM, key
    /// match, expiry) are read by the data plane's TLS module (`gatehouse validate` runs both).
    fn listener_tls(&mut self, l: &crate::types::Listener, p: &str) {
        if let Some(r) = &l.redirect_https {
            let rp = join_key(p, "redirect_https");
            if l.tls.is_some() {
                self.err(&rp, "a TLS listener cannot redirect to https (it already is); set it on the plain listener");
            }
            if !matches!(r.status, 301 | 308) {
                self.err(join_key(&rp, "status"), format!("status {} is not 301 or 308", r.status));
            }
            if r.port == Some(0) {
                self.err(join_key(&rp, "port"), "port must be from 1 to 65535");
            }
        }
        let Some(tls) = &l.tls else { return };
        let tp = join_key(p, "tls");
        if tls.certificates.is_empty() {
            self.err(join_key(&tp, "certificates"), "at least one certificate is required");
        }
        if !matches!(tls.min_version.as_str(), "1.2" | "1.3") {
            self.err(join_key(&tp, "min_version"), format!("`{}` is not \"1.2\" or \"1.3\"", tls.min_version));
        }
        let mut default_at: Option<String> = None;
        for (k, c) in tls.certificates.iter().enumerate() {
            let cp = join_index(&join_key(&tp, "certificates"), k);
            for (field, v) in [("cert", &c.cert), ("key", &c.key)] {
                if v.trim().is_empty() {
                    self.err(join_key(&cp, field), "a file path is required");
                }
            }
            for (n, name) in c.names.iter().enumerate() {
                let bare = name.strip_prefix("*.").unwrap_or(name);
                if !is_dns_name(bare) || bare.contains('*') {
                    self.err(
                        join_index(&join_key(&cp, "names"), n),
                        format!("`{name}` is not a DNS name or a `*.example.com` wildcard"),
                    );
                }
            }
            if c.default {
                if let Some(first) = &default_at {
                    self.err(
                        join_key(&cp, "default"),
                        format!("only one default certificate per listener (also {first})"),
                    );
                } else {
                    default_at = Some(cp.clone());
                }
            }
        }
        if let Some(ca) = &tls.client_auth {
            if ca.ca.trim().is_empty() {
                self.err(join_key(&join_key(&tp, "client_auth"), "ca"), "a file path is required");
            }
        }
    }

    pub(super) fn admin(&mut self, cfg: &Config, listeners: &[(SocketAddr, String)]) {
        let Some(admin) = &cfg.admin else { return };
        match parse_socket_addr(&admin.address) {
            Err(e) => self.err("admin.address", e),
            Ok(addr) => {
                if let Some(msg) = clash(listeners, addr) {
                    self.err("admin.address", msg);
                }
            }
        }
        if let Some(t) = &admin.token {
            if t.len() < 16 {
                self.err("admin.token", "must be at least 16 characters (it guards config changes)");
            } else if !t.bytes().all(|b| b.is_ascii_graphic()) {
                self.err("admin.token", "must be printable ASCII without spaces");
            }
        }
        if !(1..=1000).contains(&admin.history) {
            self.err("admin.history", "must be between 1 and 1000");
        }
    }
}

/// Describes where `addr` collides with an already used address, if it does.
fn clash(used: &[(SocketAddr, String)], addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 {
        return None;
    }
    for (other, path) in used {
        if other.port() != addr.port() {
            continue;
        }
        if *other == addr {
            return Some(format!("address `{addr}` is already used by {path}"));
        }
        let same_family = other.is_ipv4() == addr.is_ipv4();
        if same_family && (other.ip().is_unspecified() || addr.ip().is_unspecified()) {
            return Some(format!(
                "address `{addr}` overlaps with `{other}` of {path} (same port, one binds every address)"
            ));
        }
    }
    None
}
