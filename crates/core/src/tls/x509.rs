//! Just enough X.509 (DER) reading for what the gateway shows and forwards: a certificate's
//! `notAfter`, its subject as an RFC 4514 string, and its DNS subject alternative names.
//!
//! Invariants: this never decides trust (rustls/webpki verify chains and signatures); it only
//! reads fields of certificates that were loaded from our own files or already verified by
//! rustls. Every read is bounds-checked and returns `None` on anything unexpected, never panics.

/// One DER TLV: (tag, content, rest after it).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&l0, d) = d.split_first()?;
    let (len, d) = if l0 < 0x80 {
        (l0 as usize, d)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let len = d[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &d[n..])
    };
    if d.len() < len {
        return None;
    }
    Some((tag, &d[..len], &d[len..]))
}

/// The fields of a certificate we use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CertFields {
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// RFC 4514 order (most specific first), e.g. `CN=client,O=Example`.
    pub subject: String,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
}

/// Reads a DER certificate.
pub fn parse(der: &[u8]) -> Option<CertFields> {
    let (0x30, cert, _) = tlv(der)? else { return None };
    let (0x30, tbs, _) = tlv(cert)? else { return None };
    let mut rest = tbs;
    let (mut tag, mut body, mut next) = tlv(rest)?;
    if tag == 0xa0 {
        rest = next; // explicit version
        (tag, body, next) = tlv(rest)?;
    }
    let _ = (tag, body); // serial number
    let (_, _, next) = tlv(next)?; // signature algorithm
    let (_, _, next) = tlv(next)?; // issuer
    let (0x30, validity, next) = tlv(next)? else { return None };
    let (_, _, after_nb) = tlv(validity)?;
    let (t_tag, t, _) = tlv(after_nb)?;
    let not_after = parse_time(t_tag, t)?;
    let (0x30, subject, mut next) = tlv(next)? else { return None };
    let (subject_text, common_name) = render_name(subject);
    let (_, _, n) = tlv(next)?; // subjectPublicKeyInfo
    next = n;
    let mut dns_names = Vec::new();
    while let Some((tag, body, n)) = tlv(next) {
        next = n;
        if tag == 0xa3 {
            dns_names = san_dns_names(body).unwrap_or_default();
        }
    }
    Some(CertFields { not_after, subject: subject_text, common_name, dns_names })
}

const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

fn san_dns_names(ext_wrapper: &[u8]) -> Option<Vec<String>> {
    let (0x30, mut exts, _) = tlv(ext_wrapper)? else { return None };
    while let Some((_, ext, n)) = tlv(exts) {
        exts = n;
        let (0x06, oid, mut rest) = tlv(ext)? else { continue };
        if oid != OID_SAN {
            continue;
        }
        let (mut tag, mut value, r) = tlv(rest)?;
        if tag == 0x01 {
            rest = r; // critical flag
            (tag, value, _) = tlv(rest)?;
        }
        if tag != 0x04 {
            return None;
        }
        let (0x30, mut names, _) = tlv(value)? else { return None };
        let mut out = Vec::new();
        while let Some((tag, v, n)) = tlv(names) {
            names = n;
            if tag == 0x82 {
                out.push(String::from_utf8_lossy(v).to_ascii_lowercase());
            }
        }
        return Some(out);
    }
    Some(Vec::new())
}

fn attr_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 string (RDNs in reverse order); values escaped, and anything that is not printable
/// ASCII replaced by `?` so the result is always a safe header value.
fn render_name(name: &[u8]) -> (String, Option<String>) {
    let mut rdns = Vec::new();
    let mut cn = None;
    let mut rest = name;
    while let Some((0x31, set, n)) = tlv(rest) {
        rest = n;
        let mut parts = Vec::new();
        let mut s = set;
        while let Some((0x30, atv, n)) = tlv(s) {
            s = n;
            let Some((0x06, oid, r)) = tlv(atv) else { continue };
            let Some((_, value, _)) = tlv(r) else { continue };
            let value = String::from_utf8_lossy(value);
            if oid == [0x55, 0x04, 0x03] && cn.is_none() {
                cn = Some(value.to_string());
            }
            let Some(key) = attr_name(oid) else { continue };
            let mut v = String::with_capacity(value.len());
            for (i, ch) in value.chars().enumerate() {
                match ch {
                    ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                        v.push('\\');
                        v.push(ch);
                    }
                    '#' | ' ' if i == 0 => {
                        v.push('\\');
                        v.push(ch);
                    }
                    c if c.is_ascii_graphic() || c == ' ' => v.push(c),
                    _ => v.push('?'),
                }
            }
            parts.push(format!("{key}={v}"));
        }
        if !parts.is_empty() {
            rdns.push(parts.join("+"));
        }
    }
    rdns.reverse();
    (rdns.join(","), cn)
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |a, &b| b.is_ascii_digit().then(|| a * 10 + (b - b'0') as i64))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn parse_time(tag: u8, t: &[u8]) -> Option<i64> {
    let (year, rest) = match (tag, t.len()) {
        (0x17, 13) => {
            let y = digits(&t[..2])?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, &t[2..])
        }
        (0x18, 15) => (digits(&t[..4])?, &t[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    let (mo, d, h, mi, s) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-28T07:00:00Z` for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::access_log::civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(rfc3339(2_147_483_648), "2038-01-19T03:14:08Z");
        assert_eq!(parse_time(0x17, b"7001010000Z"), None);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(parse(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
