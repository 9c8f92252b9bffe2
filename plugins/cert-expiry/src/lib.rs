//! Certificate expiry check: TLS handshake with host:port through the host's `net` interface,
//! reads the leaf certificate's notAfter and subject CN, and reports
//! critical when it expires within `critical_days` (default 7) or is expired, warning within
//! `warn_days` (default 30), else passing.
//!
//! Args: host (required), port (default 443), server_name (SNI, default host), warn_days,
//! critical_days, timeout_ms.

use legate_plugin::{export_check, host, net, Check, CheckContext, CheckResult, Config};

struct CertExpiry;

/// One DER TLV: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr + len)?;
    Some((tag, content, &b[hdr + len..]))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// UTCTime / GeneralizedTime to Unix seconds.
fn der_time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    let n = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (year, rest) = match tag {
        0x17 => {
            let yy = n(0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        0x18 => (n(0, 4)?, 4),
        _ => return None,
    };
    let (mo, d, h, mi, se) = (
        n(rest, rest + 2)?,
        n(rest + 2, rest + 4)?,
        n(rest + 4, rest + 6)?,
        n(rest + 6, rest + 8)?,
        n(rest + 8, rest + 10).unwrap_or(0),
    );
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// (notAfter as Unix seconds, subject CN) of a DER certificate.
fn parse_cert(der: &[u8]) -> Option<(i64, String)> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // version
    }
    let (_, _, r) = tlv(rest)?; // serial
    let (_, _, r) = tlv(r)?; // signature algorithm
    let (_, _, r) = tlv(r)?; // issuer
    let (_, validity, r) = tlv(r)?;
    let (_, subject, _) = tlv(r)?;
    let (_, _, v) = tlv(validity)?; // notBefore
    let (t, not_after, _) = tlv(v)?;
    let not_after = der_time(t, not_after)?;
    let cn_oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let cn = subject
        .windows(cn_oid.len())
        .position(|w| w == cn_oid)
        .and_then(|i| tlv(&subject[i + cn_oid.len()..]))
        .map(|(_, v, _)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    Some((not_after, cn))
}

impl Check for CertExpiry {
    fn validate(config: &Config) -> Result<(), String> {
        config.only(&["host", "port", "server_name", "warn_days", "critical_days", "timeout_ms"])?;
        config.require("host")?;
        config.parse::<u16>("port")?;
        config.parse::<u32>("timeout_ms")?;
        let warn = config.parse_or::<i64>("warn_days", 30)?;
        let crit = config.parse_or::<i64>("critical_days", 7)?;
        if crit > warn {
            return Err(format!("critical_days ({crit}) must not exceed warn_days ({warn})"));
        }
        Ok(())
    }

    fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
        let h = config.require("host")?;
        let port = config.parse_or("port", 443u16)?;
        let sni = config.get("server_name").unwrap_or("");
        let chain = net::tls_certificates(h, port, sni, config.parse_or("timeout_ms", 0)?)
            .map_err(|e| format!("{h}:{port}: {}", net::describe(&e)))?;
        let leaf = chain.first().ok_or_else(|| format!("{h}:{port}: no certificate presented"))?;
        let (not_after, cn) = parse_cert(leaf).ok_or_else(|| format!("{h}:{port}: cannot parse the certificate"))?;
        let now = (host::now_ms() / 1000) as i64;
        let days = (not_after - now).div_euclid(86400);
        let warn = config.parse_or::<i64>("warn_days", 30)?;
        let crit = config.parse_or::<i64>("critical_days", 7)?;
        let who = if cn.is_empty() { format!("{h}:{port}") } else { format!("{h}:{port} (CN={cn})") };
        Ok(if not_after <= now {
            CheckResult::critical(format!("{who}: certificate expired {} days ago", -days))
        } else if days < crit {
            CheckResult::critical(format!("{who}: certificate expires in {days} days"))
        } else if days < warn {
            CheckResult::warning(format!("{who}: certificate expires in {days} days"))
        } else {
            CheckResult::passing(format!("{who}: certificate valid for {days} more days"))
        })
    }
}

export_check!(CertExpiry);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"20000301000000Z"), Some(11017 * 86400));
    }
}
