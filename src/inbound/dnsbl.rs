//! DNS block and allow lists (RFC 5782): the client address, reversed, under each
//! list's zone; an A answer in 127.0.0.0/8 means "listed", the TXT record beside it
//! is the reason. Results are cached for their TTL (a miss for [`NEGATIVE_TTL`]); a
//! list that does not answer in time is skipped and logged, never a reason to wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::net::dns::{Dns, DnsError, reverse_name};

/// How long a "not listed" answer is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Longest any answer is kept.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Entries kept at most (a flood of new addresses empties the cache, never grows it).
const MAX_ENTRIES: usize = 20_000;
/// Longest reason text shown to a client.
const MAX_REASON: usize = 200;

/// A list that names the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub zone: String,
    pub reason: String,
}

/// Does this A answer mean "listed"? RFC 5782: 127.0.0.2 and up; 127.0.0.1 and
/// Spamhaus's 127.255.255.x are error codes ("query refused", "open resolver"),
/// not listings.
pub fn is_listing(ips: &[IpAddr]) -> bool {
    ips.iter().any(|ip| match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 127 && !(o[1] == 255 && o[2] == 255) && *v4 != std::net::Ipv4Addr::LOCALHOST
        }
        IpAddr::V6(_) => false,
    })
}

/// The reason a client is told: the list's TXT text (one line, printable, bounded),
/// else a generic one naming the list.
pub fn reason_text(zone: &str, ip: IpAddr, txt: Option<&str>) -> String {
    let t: String = txt
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .take(MAX_REASON)
        .collect();
    let t = t.trim();
    if t.is_empty() {
        format!("Client host [{ip}] blocked using {zone}")
    } else {
        format!("Client host [{ip}] blocked using {zone}; {t}")
    }
}

/// (zone, client) → (listing or not, valid until).
type Entries = HashMap<(String, IpAddr), (Option<Listing>, Instant)>;

/// Answers per (zone, address), each until its TTL runs out.
#[derive(Default)]
pub struct Cache {
    map: Mutex<Entries>,
}

impl Cache {
    pub fn get(&self, zone: &str, ip: IpAddr, now: Instant) -> Option<Option<Listing>> {
        let m = self.map.lock().expect("dnsbl cache");
        m.get(&(zone.to_string(), ip))
            .filter(|(_, until)| *until > now)
            .map(|(l, _)| l.clone())
    }

    pub fn put(&self, zone: &str, ip: IpAddr, v: Option<Listing>, until: Instant) {
        let mut m = self.map.lock().expect("dnsbl cache");
        if m.len() >= MAX_ENTRIES {
            let now = Instant::now();
            m.retain(|_, (_, u)| *u > now);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert((zone.to_string(), ip), (v, until));
    }
}

/// Asks one list about `ip` (cache first).
pub async fn query(
    dns: &Dns,
    cache: &Cache,
    zone: &str,
    ip: IpAddr,
) -> Result<Option<Listing>, DnsError> {
    let now = Instant::now();
    if let Some(v) = cache.get(zone, ip, now) {
        return Ok(v);
    }
    let name = reverse_name(ip, zone);
    match dns.a(&name).await {
        Ok((ips, until)) if is_listing(&ips) => {
            let txt = dns.txt(&name).await.ok().and_then(|t| t.into_iter().next());
            let l = Listing {
                zone: zone.to_string(),
                reason: reason_text(zone, ip, txt.as_deref()),
            };
            cache.put(zone, ip, Some(l.clone()), until.min(now + MAX_TTL));
            Ok(Some(l))
        }
        Ok((_, until)) => {
            cache.put(zone, ip, None, until.min(now + MAX_TTL));
            Ok(None)
        }
        Err(DnsError::NotFound) => {
            cache.put(zone, ip, None, now + NEGATIVE_TTL);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every list in `zones` at once; the first listing in `zones` order, if any. A list
/// that fails or times out is skipped (logged).
pub async fn first_listing(
    dns: &Dns,
    cache: &Cache,
    zones: &[String],
    ip: IpAddr,
) -> Option<Listing> {
    let answers = futures::future::join_all(zones.iter().map(|z| query(dns, cache, z, ip))).await;
    let mut hit = None;
    for (z, a) in zones.iter().zip(answers) {
        match a {
            Ok(Some(l)) if hit.is_none() => hit = Some(l),
            Ok(_) => {}
            Err(e) => warn!(list = %z, client = %ip, "DNS list skipped: {e}"),
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_codes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_listing(&[ip("127.0.0.2")]));
        assert!(is_listing(&[ip("127.0.0.10"), ip("127.0.0.4")]));
        assert!(!is_listing(&[ip("127.0.0.1")]));
        assert!(!is_listing(&[ip("127.255.255.254")]));
        assert!(!is_listing(&[ip("192.0.2.1")]));
        assert!(!is_listing(&[]));
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            reason_text(
                "bl.test",
                ip,
                Some("Listed; see https://bl.test/q?192.0.2.9")
            ),
            "Client host [192.0.2.9] blocked using bl.test; Listed; see https://bl.test/q?192.0.2.9"
        );
        assert_eq!(
            reason_text("bl.test", ip, None),
            "Client host [192.0.2.9] blocked using bl.test"
        );
        let evil = format!("a\r\n250 ok{}", "x".repeat(1000));
        let r = reason_text("bl.test", ip, Some(&evil));
        assert!(!r.contains('\r') && !r.contains('\n'));
        assert!(r.len() < 300);
    }

    #[test]
    fn cache_honours_expiry() {
        let c = Cache::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let now = Instant::now();
        let l = Listing {
            zone: "bl.test".into(),
            reason: "r".into(),
        };
        c.put(
            "bl.test",
            ip,
            Some(l.clone()),
            now + Duration::from_secs(10),
        );
        assert_eq!(c.get("bl.test", ip, now), Some(Some(l)));
        assert_eq!(c.get("bl.test", ip, now + Duration::from_secs(11)), None);
        assert_eq!(c.get("other.test", ip, now), None);
    }
}
