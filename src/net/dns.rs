//! The DNS resolver from `[dns]`: hickory-resolver with the configured nameservers (or
//! the system's), wrapped in mail-auth's [`MessageAuthenticator`] so SPF/DKIM/DMARC
//! and our own look-ups (DNSBL, PTR, MX) share one resolver and its TTL cache.
//!
//! # Security
//! Answers come from the network. Every look-up is bounded by `[dns] timeout` on top of
//! the resolver's own, so a silent nameserver never holds a session longer than that.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::MessageAuthenticator;

use crate::config::inbound::DnsConfig;

/// Why a look-up gave no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name or the record type does not exist (NXDOMAIN / NODATA).
    NotFound,
    /// No answer within `[dns] timeout`.
    Timeout,
    /// SERVFAIL, refused, unreachable …
    Failed(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NotFound => write!(f, "no such record"),
            DnsError::Timeout => write!(f, "timed out"),
            DnsError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Records of one answer and how long they may be kept.
#[derive(Debug, Clone)]
pub struct Answer {
    pub records: Vec<RData>,
    pub valid_until: Instant,
}

/// The resolver. Cheap to clone.
#[derive(Clone)]
pub struct Dns {
    auth: Arc<MessageAuthenticator>,
    timeout: Duration,
}

/// `"127.0.0.1:5353"`, `"127.0.0.1"`, `"[::1]:53"`, `"::1"`.
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

impl Dns {
    /// From `[dns]`: the listed servers, or `/etc/resolv.conf` when none are listed.
    pub fn from_config(cfg: &DnsConfig) -> Result<Dns, String> {
        let timeout = Duration::from_secs(cfg.timeout.clamp(1, 60));
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout / 2;
        opts.attempts = 1;
        opts.edns0 = true;
        let auth = if cfg.servers.is_empty() {
            let (conf, mut sys) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("dns: cannot read the system resolver config: {e}"))?;
            sys.timeout = opts.timeout;
            sys.attempts = 1;
            MessageAuthenticator::new(conf, sys)
        } else {
            let mut servers = Vec::new();
            for (i, s) in cfg.servers.iter().enumerate() {
                let a = parse_server(s).ok_or_else(|| {
                    format!("dns.servers[{i}]: `{s}` is not an address (ip or ip:port)")
                })?;
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                servers.push(ns);
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
        }
        .map_err(|e| format!("dns: cannot set up the resolver: {e}"))?;
        Ok(Dns {
            auth: Arc::new(auth),
            timeout,
        })
    }

    /// mail-auth's authenticator (SPF, DKIM, DMARC) on this resolver.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The per-query bound.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One look-up of `name` (absolute; a trailing dot is added) for `rtype`.
    pub async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let r = tokio::time::timeout(self.timeout, self.auth.resolver().lookup(fqdn, rtype)).await;
        match r {
            Err(_) => Err(DnsError::Timeout),
            Ok(Ok(l)) => {
                let records: Vec<RData> = l
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if records.is_empty() {
                    return Err(DnsError::NotFound);
                }
                Ok(Answer {
                    records,
                    valid_until: l.valid_until(),
                })
            }
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Err(DnsError::NotFound),
            Ok(Err(e)) => {
                let t = e.to_string();
                if t.contains("timed out") || t.contains("timeout") {
                    Err(DnsError::Timeout)
                } else {
                    Err(DnsError::Failed(t))
                }
            }
        }
    }

    /// A records (IPv4).
    pub async fn a(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), DnsError> {
        let a = self.lookup(name, RecordType::A).await?;
        let ips = a
            .records
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        Ok((ips, a.valid_until))
    }

    /// A and AAAA records together (either may be missing).
    pub async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let (v4, v6) = tokio::join!(
            self.lookup(name, RecordType::A),
            self.lookup(name, RecordType::AAAA)
        );
        let mut out = Vec::new();
        let mut err = None;
        for r in [v4, v6] {
            match r {
                Ok(a) => out.extend(a.records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => {
                    if err.is_none() || e != DnsError::NotFound {
                        err = Some(e)
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(err.unwrap_or(DnsError::NotFound));
        }
        Ok(out)
    }

    /// TXT records, each one string (its parts joined).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let a = self.lookup(name, RecordType::TXT).await?;
        Ok(a.records
            .iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// MX records as (preference, exchange without the trailing dot).
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let a = self.lookup(domain, RecordType::MX).await?;
        Ok(a.records
            .iter()
            .filter_map(|r| match r {
                RData::MX(m) => Some((
                    m.preference,
                    m.exchange
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                )),
                _ => None,
            })
            .collect())
    }

    /// PTR names of `ip` (without the trailing dot).
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = reverse_name(
            ip,
            if ip.is_ipv4() {
                "in-addr.arpa"
            } else {
                "ip6.arpa"
            },
        );
        let a = self.lookup(&name, RecordType::PTR).await?;
        Ok(a.records
            .iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect())
    }
}

/// `ip` in reversed form under `zone`: `2.0.0.127.zen.example` for 127.0.0.2, the 32
/// reversed nibbles for IPv6 (RFC 5782 §2.4). An IPv4-mapped IPv6 address is treated
/// as the IPv4 address.
pub fn reverse_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64 + zone.len());
            for b in v6.octets().iter().rev() {
                s.push(char::from_digit((b & 0xf) as u32, 16).expect("nibble"));
                s.push('.');
                s.push(char::from_digit((b >> 4) as u32, 16).expect("nibble"));
                s.push('.');
            }
            s.push_str(zone);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_forms() {
        assert_eq!(
            reverse_name("192.0.2.99".parse().unwrap(), "zen.example."),
            "99.2.0.192.zen.example"
        );
        assert_eq!(
            reverse_name("::ffff:127.0.0.2".parse().unwrap(), "bl.test"),
            "2.0.0.127.bl.test"
        );
        // RFC 5782's example: 2001:db8:1:2:3:4:567:89ab.
        assert_eq!(
            reverse_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example.com"
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
    }

    #[test]
    fn server_forms() {
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_server("10.0.0.1"),
            Some("10.0.0.1:53".parse().unwrap())
        );
        assert_eq!(parse_server("[::1]:53"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("dns.example"), None);
        assert!(
            Dns::from_config(&DnsConfig {
                servers: vec!["nonsense".into()],
                timeout: 1
            })
            .is_err()
        );
    }
}
