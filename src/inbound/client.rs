//! Client checks that need no message: HELO sanity, forward-confirmed reverse DNS,
//! the per-client message rate, and where a backup MX got a message from.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::dns::{Dns, DnsError};
use crate::submit::proto::Reply;

/// HELO/EHLO sanity for an Internet client: not our own name, an address literal only
/// for the client's own address, otherwise a dotted host name.
pub fn helo_verdict(cfg: &Config, helo: &str, client: IpAddr) -> Option<Reply> {
    let h = helo.trim().trim_end_matches('.');
    if h.is_empty() {
        return Some(Reply::new(501, "5.5.2", "HELO/EHLO needs a host name"));
    }
    if let Some(lit) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let lit = lit
            .strip_prefix("IPv6:")
            .or(lit.strip_prefix("ipv6:"))
            .unwrap_or(lit);
        return match lit.parse::<IpAddr>() {
            Ok(ip) if canonical(ip) == canonical(client) => None,
            Ok(_) => Some(Reply::new(
                550,
                "5.7.1",
                format!("HELO address literal [{lit}] is not your address"),
            )),
            Err(_) => Some(Reply::new(501, "5.5.2", "Invalid HELO address literal")),
        };
    }
    if h.parse::<IpAddr>().is_ok() {
        return Some(Reply::new(
            501,
            "5.5.2",
            "HELO address needs brackets: [address]",
        ));
    }
    if h.eq_ignore_ascii_case(&cfg.hostname)
        || cfg.local_domains.iter().any(|d| d.eq_ignore_ascii_case(h))
    {
        return Some(Reply::new(
            550,
            "5.7.1",
            format!("HELO {h} is my name, not yours"),
        ));
    }
    if !h.contains('.')
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Some(Reply::new(
            504,
            "5.5.2",
            format!("HELO {h}: need a fully-qualified host name"),
        ));
    }
    None
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Forward-confirmed reverse DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdns {
    /// A PTR name whose A/AAAA records include the client.
    Pass(String),
    /// No PTR, or none that points back.
    Fail,
    /// DNS did not answer.
    TempError,
}

/// Looks up `ip`'s PTR names (at most 5) and confirms one of them forward.
pub async fn fcrdns(dns: &Dns, ip: IpAddr) -> Rdns {
    let ip = canonical(ip);
    let names = match dns.ptr(ip).await {
        Ok(n) => n,
        Err(DnsError::NotFound) => return Rdns::Fail,
        Err(_) => return Rdns::TempError,
    };
    let mut temp = false;
    for n in names.into_iter().take(5) {
        match dns.ips(&n).await {
            Ok(ips) if ips.iter().any(|a| canonical(*a) == ip) => return Rdns::Pass(n),
            Ok(_) | Err(DnsError::NotFound) => {}
            Err(_) => temp = true,
        }
    }
    if temp { Rdns::TempError } else { Rdns::Fail }
}

/// The reply for a client whose reverse DNS is not confirmed, when `require_rdns`.
pub fn rdns_verdict(require: bool, r: &Rdns, ip: IpAddr) -> Option<Reply> {
    if !require {
        return None;
    }
    match r {
        Rdns::Pass(_) => None,
        Rdns::Fail => Some(Reply::new(
            450,
            "4.7.25",
            format!("Client host rejected: cannot find your hostname, [{ip}]"),
        )),
        Rdns::TempError => Some(Reply::new(
            450,
            "4.7.25",
            format!("Client host rejected: reverse DNS lookup of [{ip}] failed"),
        )),
    }
}

/// Messages per client per minute. IPv6 clients count per /64.
#[derive(Default)]
pub struct RateLimiter {
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

const WINDOW: Duration = Duration::from_secs(60);
const MAX_CLIENTS: usize = 50_000;

fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

impl RateLimiter {
    /// Counts one message for `ip` at `now`; false when it is over `max` this minute
    /// (that attempt is not counted).
    pub fn allow(&self, ip: IpAddr, now: Instant, max: u32) -> bool {
        if max == 0 {
            return true;
        }
        let mut m = self.seen.lock().expect("rate limiter");
        if m.len() >= MAX_CLIENTS {
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let q = m.entry(rate_key(ip)).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= max as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// The header part of a message (through the empty line), at most 256 KiB.
pub fn header_part(msg: &[u8]) -> &[u8] {
    let lim = &msg[..msg.len().min(256 * 1024)];
    match memchr::memmem::find(lim, b"\n\r\n").or(memchr::memmem::find(lim, b"\n\n")) {
        Some(i) => &lim[..i + 1],
        None => lim,
    }
}

/// The header fields of `msg` as (name, whole field including folded lines).
pub fn fields(msg: &[u8]) -> Vec<(&[u8], &[u8])> {
    let h = header_part(msg);
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < h.len() {
        let end = memchr::memchr(b'\n', &h[i..])
            .map(|p| i + p + 1)
            .unwrap_or(h.len());
        let next_folded = end < h.len() && (h[end] == b' ' || h[end] == b'\t');
        if !next_folded {
            let f = &h[start..end];
            let name = f
                .iter()
                .position(|&c| c == b':')
                .map(|p| &f[..p])
                .unwrap_or(b"");
            out.push((name, f));
            start = end;
        }
        i = end;
    }
    out
}

/// The client a backup MX received the message from: the address literal in the
/// `from` clause of the topmost `Received:` header (the backup's), and its HELO.
pub fn received_from(msg: &[u8]) -> Option<(IpAddr, String)> {
    let (_, f) = fields(msg)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(b"Received"))?;
    let text = String::from_utf8_lossy(f);
    let body = text.split_once(':')?.1;
    let unfolded: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let from = unfolded.strip_prefix("from ")?;
    let helo = from.split_whitespace().next().unwrap_or("").to_string();
    // The part up to " by " holds "(name [addr])" or "([addr])".
    let upto = from.split(" by ").next().unwrap_or(from);
    let mut rest = upto;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else { break };
        let lit = &after[..j];
        let lit = lit
            .strip_prefix("IPv6:")
            .or(lit.strip_prefix("ipv6:"))
            .unwrap_or(lit);
        if let Ok(ip) = lit.parse::<IpAddr>() {
            return Some((canonical(ip), helo));
        }
        rest = &after[j + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> Config {
        Config::from_str_at(
            "hostname = \"mx.zolder.test\"\nlocal_domains = [\"zolder.test\"]\n",
            Path::new("/tmp/z/zolder.toml"),
            false,
        )
        .unwrap()
    }

    #[test]
    fn helo_rules() {
        let c = cfg();
        let ip: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(helo_verdict(&c, "mail.example.org", ip), None);
        assert_eq!(helo_verdict(&c, "[192.0.2.5]", ip), None);
        assert_eq!(helo_verdict(&c, "[192.0.2.6]", ip).unwrap().code, 550);
        assert_eq!(helo_verdict(&c, "192.0.2.5", ip).unwrap().code, 501);
        assert_eq!(helo_verdict(&c, "MX.Zolder.Test", ip).unwrap().code, 550);
        assert_eq!(helo_verdict(&c, "zolder.test", ip).unwrap().code, 550);
        assert_eq!(helo_verdict(&c, "localhost", ip).unwrap().code, 504);
        assert_eq!(helo_verdict(&c, "bad!name.example", ip).unwrap().code, 504);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(helo_verdict(&c, "[IPv6:2001:db8::1]", v6), None);
    }

    #[test]
    fn rdns_rules() {
        let ip: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(rdns_verdict(false, &Rdns::Fail, ip), None);
        assert_eq!(
            rdns_verdict(true, &Rdns::Pass("a.example".into()), ip),
            None
        );
        assert_eq!(rdns_verdict(true, &Rdns::Fail, ip).unwrap().code, 450);
        assert_eq!(rdns_verdict(true, &Rdns::TempError, ip).unwrap().code, 450);
    }

    #[test]
    fn rate_per_minute_and_per_64() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.5".parse().unwrap();
        for _ in 0..3 {
            assert!(r.allow(a, t0, 3));
        }
        assert!(!r.allow(a, t0, 3));
        assert!(r.allow("192.0.2.6".parse().unwrap(), t0, 3));
        assert!(r.allow(a, t0 + Duration::from_secs(61), 3));
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert!(r.allow(v6a, t0, 1));
        assert!(!r.allow(v6b, t0, 1));
        assert!(r.allow(a, t0, 0));
    }

    #[test]
    fn backup_received_clause() {
        let m = b"Received: from mail.spam.example (spam.example [198.51.100.7])\r\n\tby mx2.example.net with ESMTP id 1;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\nReceived: from x ([10.0.0.1]) by y;\r\nSubject: hi\r\n\r\nReceived: from body ([1.1.1.1])\r\n";
        assert_eq!(
            received_from(m),
            Some(("198.51.100.7".parse().unwrap(), "mail.spam.example".into()))
        );
        let v6 = b"Received: from h.example ([IPv6:2001:db8::7]) by mx2;\nX: y\n\n";
        assert_eq!(
            received_from(v6),
            Some(("2001:db8::7".parse().unwrap(), "h.example".into()))
        );
        assert_eq!(received_from(b"Subject: none\r\n\r\nbody"), None);
        let f = fields(b"A: 1\r\n\tcont\r\nB: 2\r\n\r\nC: 3\r\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].1, b"A: 1\r\n\tcont\r\n");
    }
}
