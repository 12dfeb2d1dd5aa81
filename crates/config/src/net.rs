//! Network vocabulary shared by validation and the data plane: socket addresses as written in the
//! config, CIDR blocks, upstream target URLs, HTTP tokens and host names.
//!
//! Invariants: every parser here is total (returns `Err(message)` for anything it does not
//! accept, never panics) and strict (no guessing: `localhost` is the only name resolved, to
//! `127.0.0.1`). Messages say what was expected so they can be shown to a user as they are.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Parses a listen address: `IP:port`, `[IPv6]:port` or `localhost:port` (→ `127.0.0.1`).
/// Port `0` (an ephemeral port) is allowed.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 =
            port.parse().map_err(|_| format!("invalid port `{port}` in `{s}`: expected a number from 0 to 65535"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // Explain the most likely mistakes.
    if s.parse::<IpAddr>().is_ok() {
        if s.contains(':') {
            return Err(format!("`{s}` has no port: write `[{s}]:8080`"));
        }
        return Err(format!("`{s}` has no port: write `{s}:8080`"));
    }
    if !s.starts_with('[') && s.matches(':').count() > 1 {
        return Err(format!("IPv6 addresses need brackets: write `[ip]:port`, not `{s}`"));
    }
    match s.rsplit_once(':') {
        None => Err(format!("`{s}` is not an address: expected `IP:port`, e.g. `127.0.0.1:8080`")),
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                Err(format!("invalid port `{port}` in `{s}`: expected a number from 0 to 65535"))
            } else if host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok() {
                Err(format!("`{s}` is not a valid address: expected `IP:port` or `[IPv6]:port`"))
            } else {
                Err(format!(
                    "`{host}` is not an IP address: listen addresses are `IP:port` or `localhost:port` \
                     (host names are not resolved)"
                ))
            }
        }
    }
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`; a bare IP is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ip/prefix` or a bare `ip`. Host bits must be zero (`10.0.0.1/8` is refused with
    /// the corrected block in the message).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (ip_s, prefix_s) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip_s.parse().map_err(|_| {
            format!("`{s}` is not a CIDR block: expected e.g. `10.0.0.0/8`, `192.168.1.7` or `fd00::/8`")
        })?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_s {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("invalid prefix length `/{p}` in `{s}`: expected 0 to {max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!(
                "`{s}` has bits set after the /{prefix} prefix: write `{network}/{prefix}` (or `{addr}` for one address)"
            ));
        }
        Ok(cidr)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as seen
    /// on dual-stack sockets) is treated as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => ip,
            },
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask32(self.prefix);
                u32::from(ip) & m == u32::from(net) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask128(self.prefix);
                u128::from(ip) & m == u128::from(net) & m
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

/// An upstream target, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    /// Lower-cased host: an IPv4 address, `localhost`, a DNS name, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// `h2c://`: HTTP/2 over plain TCP (prior knowledge).
    pub h2c: bool,
}

impl TargetUrl {
    /// `host:port` as sent in `Host` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses a target URL. Only `http://host:port` (with an optional trailing `/`) is accepted.
pub fn parse_target_url(s: &str) -> Result<TargetUrl, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("`{s}` is not a target URL: expected `http://host:port`"));
    };
    let (tls, h2c) = match scheme.to_ascii_lowercase().as_str() {
        "http" if scheme == "http" => (false, false),
        "https" if scheme == "https" => (true, false),
        "h2c" if scheme == "h2c" => (false, true),
        "http" | "https" | "h2c" => {
            return Err(format!(
                "write the scheme in lower case: `{}://`, not `{scheme}://`",
                scheme.to_ascii_lowercase()
            ))
        }
        other => {
            return Err(format!(
                "unsupported scheme `{other}`: expected `http://host:port`, `https://host:port` or `h2c://host:port`"
            ))
        }
    };
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "`{s}` has a query or fragment: a target is only `http://host:port` (rewrite paths on the route)"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return Err(format!(
            "`{s}` has a path (`{path}`): a target is only `http://host:port`; use `rewrite` on the route to change paths"
        ));
    }
    if authority.contains('@') {
        return Err(format!("`{s}` contains user information (`user@`), which is not allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return Err(format!("`{s}`: unclosed `[` in the IPv6 address"));
        };
        ip.parse::<Ipv6Addr>().map_err(|_| format!("`{ip}` is not a valid IPv6 address"))?;
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("`{s}` has no port: write `http://[{ip}]:80`"));
        };
        (ip.to_ascii_lowercase(), port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(format!("`{s}` has no port: write `http://{authority}:80` (the port is required)"));
        };
        if host.contains(':') {
            return Err(format!("IPv6 hosts need brackets: `http://[{host}]:{port}`"));
        }
        if !(host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host)) {
            return Err(format!("`{host}` is not a valid host: expected an IP address, `localhost` or a DNS name"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p >= 1 => p,
        _ => return Err(format!("invalid port `{port}` in `{s}`: expected a number from 1 to 65535")),
    };
    Ok(TargetUrl { host, port, tls, h2c })
}

/// A DNS name (or `localhost`): dot-separated labels of letters, digits, `-` and `_`, each
/// 1-63 characters not starting or ending with `-`, at most 253 characters, not all-numeric.
pub fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // `1.2.3` or `999.1.1.1` are broken IPs, not names.
    labels_ok && !s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// An HTTP token (RFC 9110 `tchar`s), as used for header names and methods.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addrs() {
        assert_eq!(parse_socket_addr("127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(parse_socket_addr("localhost:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(parse_socket_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(parse_socket_addr("0.0.0.0:0").unwrap().port(), 0);
        for (bad, needle) in [
            ("127.0.0.1", "no port"),
            ("::1:80", "[::1:80]:8080"),
            ("fe80::1%x:80", "brackets"),
            ("example.com:80", "not an IP"),
            ("127.0.0.1:99999", "invalid port"),
            ("localhost:x", "invalid port"),
            ("", "not an address"),
        ] {
            let e = parse_socket_addr(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert_eq!(Cidr::parse("::1").unwrap().prefix(), 128);
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("`10.0.0.0/8`"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("::/129").is_err());
        assert!(Cidr::parse("10.0.0.0/x").is_err());
        assert!(Cidr::parse("example.com").is_err());
        assert!(Cidr::parse("").is_err());
    }

    #[test]
    fn target_urls() {
        let t = parse_target_url("http://127.0.0.1:8081").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8081));
        assert_eq!(parse_target_url("http://LocalHost:80/").unwrap().host, "localhost");
        assert_eq!(parse_target_url("http://users.internal:80").unwrap().authority(), "users.internal:80");
        assert_eq!(parse_target_url("http://[::1]:8080").unwrap().authority(), "[::1]:8080");
        for (bad, needle) in [
            ("H2C://a:80", "lower case"),
            ("ftp://a:21", "unsupported scheme"),
            ("HTTP://a:21", "lower case"),
            ("127.0.0.1:80", "expected `http://host:port`"),
            ("http://a", "no port"),
            ("http://a:0", "1 to 65535"),
            ("http://a:70000", "1 to 65535"),
            ("http://a:80/api", "has a path"),
            ("http://a:80/?x=1", "query"),
            ("http://u:p@a:80", "user information"),
            ("http://a b:80", "not a valid host"),
            ("http://::1:80", "brackets"),
            ("http://[::1]", "no port"),
            ("http://[zz]:80", "IPv6"),
            ("http://1.2.3:80", "not a valid host"),
        ] {
            let e = parse_target_url(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn tokens_and_names() {
        assert!(is_token("X-Request-Id"));
        assert!(is_token("GET"));
        assert!(!is_token("bad header"));
        assert!(!is_token("x:y"));
        assert!(!is_token(""));
        assert!(is_dns_name("api.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("-a.com"));
        assert!(!is_dns_name("a..com"));
        assert!(!is_dns_name("1.2.3"));
    }
}
