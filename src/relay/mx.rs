//! Direct delivery (`[relay] mode = "mx"`): each recipient domain's MX hosts, by
//! preference (the domain's own A/AAAA when it has no MX, RFC 5321 §5.1; a null MX
//! `.` refuses, RFC 7505), opportunistic STARTTLS, one connection per domain carrying
//! every recipient of that domain in the run. The SMTP conversation, per-recipient
//! outcomes, DKIM signing and masquerading are the smarthost relay's ([`Relay`]), so
//! the queue's retries, DSNs and `zolder flush` behave the same.
//!
//! `[smarthost]`, when present, still gives the relay timer (`schedule`) and
//! `masquerade`; its host and login are not used in this mode.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{ConnFailure, Relay, RelayError, VecSource, all_deferred};
use crate::config::Config;
use crate::config::SmarthostConfig;
use crate::config::account::TlsMode;
use crate::message::{Deliver, DeliveryReport, EnvelopeDsn, Incoming, MessageSource, RcptOutcome};
use crate::net::dns::{Dns, DnsError};

/// Messages taken from the queue per round (their outcomes are recorded together).
const BATCH: usize = 50;
/// MX hosts (and addresses per host) tried per domain at most.
const MAX_HOSTS: usize = 8;

pub struct MxRelay {
    template: SmarthostConfig,
    hostname: String,
    port: u16,
    timeout: Duration,
    dns: Dns,
    dkim: Option<Arc<super::dkim::Signer>>,
}

/// Where mail for a domain goes: hosts in order, or why nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Hosts(Vec<String>),
    /// Permanent: a null MX or no such domain.
    Refuse(String),
    /// Temporary: DNS trouble.
    Defer(String),
}

/// The route from an MX answer: hosts by preference (ties in the order given), the
/// domain itself when there is no MX, a refusal for a null MX.
pub fn route(domain: &str, mx: Result<Vec<(u16, String)>, DnsError>) -> Route {
    match mx {
        Ok(mut v) => {
            if v.iter().any(|(_, h)| h.is_empty() || h == ".") {
                return Route::Refuse(format!("550 5.1.10 {domain} accepts no mail (null MX)"));
            }
            v.sort_by_key(|(p, _)| *p);
            let mut hosts: Vec<String> = Vec::new();
            for (_, h) in v {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            Route::Hosts(hosts)
        }
        Err(DnsError::NotFound) => Route::Hosts(vec![domain.to_string()]),
        Err(e) => Route::Defer(format!("4.4.3 MX lookup for {domain}: {e}")),
    }
}

fn domain_of(rcpt: &str) -> String {
    rcpt.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

impl MxRelay {
    pub fn new(cfg: &Config) -> Result<MxRelay, RelayError> {
        let mut template = cfg.smarthost.clone().unwrap_or(SmarthostConfig {
            host: String::new(),
            port: None,
            tls: TlsMode::Starttls,
            username: None,
            password: None,
            password_file: None,
            oauth2: None,
            ca_file: None,
            tls_fingerprint: None,
            schedule: "manual".into(),
            masquerade: Default::default(),
            timeout: 300,
        });
        template.username = None;
        template.password = None;
        template.password_file = None;
        template.oauth2 = None;
        template.ca_file = None;
        template.tls_fingerprint = None;
        template.tls = TlsMode::Starttls;
        let timeout = Duration::from_secs(template.timeout.max(1));
        Ok(MxRelay {
            template,
            hostname: cfg.hostname.clone(),
            port: cfg.relay.mx_port,
            timeout,
            dns: Dns::from_config(&cfg.dns).map_err(RelayError::Config)?,
            dkim: super::dkim::Signer::from_config(cfg)
                .map_err(RelayError::Config)?
                .map(Arc::new),
        })
    }

    fn relay_for(&self, ip: IpAddr) -> Relay {
        let mut cfg = self.template.clone();
        cfg.host = ip.to_string();
        cfg.port = Some(self.port);
        Relay {
            cfg,
            hostname: self.hostname.clone(),
            password: None,
            timeout: self.timeout,
            tokens: Default::default(),
            dkim: self.dkim.clone(),
            opportunistic: true,
        }
    }

    /// Delivers `msgs` (all recipients in `domain`) over one connection to the first
    /// MX host that answers.
    async fn deliver_domain(&self, domain: &str, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        let refuse = |msgs: &[Incoming], text: &str| -> Vec<DeliveryReport> {
            msgs.iter()
                .map(|m| DeliveryReport {
                    outcomes: m
                        .envelope
                        .recipients
                        .iter()
                        .map(|r| (r.clone(), RcptOutcome::PermFail(550, text.to_string())))
                        .collect(),
                    ..Default::default()
                })
                .collect()
        };
        let hosts = match route(domain, self.dns.mx(domain).await) {
            Route::Hosts(h) => h,
            Route::Refuse(t) => return refuse(&msgs, &t),
            Route::Defer(t) => return msgs.iter().map(|m| all_deferred(m, &t)).collect(),
        };
        let mut last = format!("4.4.4 no MX host of {domain} answered");
        let mut tried = 0;
        for host in hosts {
            let ips = match self.dns.ips(&host).await {
                Ok(ips) => ips,
                Err(DnsError::NotFound) if host == domain => {
                    return refuse(&msgs, &format!("5.1.2 {domain}: no such domain"));
                }
                Err(e) => {
                    last = format!("4.4.3 address of {host}: {e}");
                    continue;
                }
            };
            for ip in ips {
                tried += 1;
                if tried > MAX_HOSTS {
                    break;
                }
                let relay = self.relay_for(ip);
                let connected = tokio::time::timeout(self.timeout * 3, relay.connect())
                    .await
                    .unwrap_or_else(|_| Err(ConnFailure(format!("no answer from {host} [{ip}]"))));
                match connected {
                    Ok(sess) => {
                        info!(domain, mx = %host, %ip, tls = sess.conn.is_encrypted(), messages = msgs.len(), "delivering to MX");
                        let mut src = VecSource {
                            msgs: msgs.into_iter(),
                            reports: Vec::new(),
                        };
                        relay.deliver_stream_on(&mut src, Some(sess)).await;
                        return src.reports;
                    }
                    Err(ConnFailure(e)) => {
                        warn!(domain, mx = %host, %ip, "MX host unavailable: {e}");
                        last = format!("4.4.1 {host} [{ip}]: {e}");
                    }
                }
            }
        }
        msgs.iter().map(|m| all_deferred(m, &last)).collect()
    }
}

/// `m` with only the recipients at `idx` (and their DSN parameters).
fn subset(m: &Incoming, idx: &[usize]) -> Incoming {
    let mut s = m.clone();
    s.envelope.recipients = idx
        .iter()
        .map(|&i| m.envelope.recipients[i].clone())
        .collect();
    if let Some(d) = &m.envelope.dsn {
        let pick = |v: &Vec<Option<String>>| {
            idx.iter()
                .map(|&i| v.get(i).cloned().flatten())
                .collect::<Vec<_>>()
        };
        s.envelope.dsn = Some(EnvelopeDsn {
            ret: d.ret.clone(),
            envid: d.envid.clone(),
            notify: pick(&d.notify),
            orcpt: pick(&d.orcpt),
        });
    }
    s
}

#[async_trait::async_trait]
impl Deliver for MxRelay {
    /// Groups the recipients of all `msgs` by domain; one connection per domain.
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        let mut groups: BTreeMap<String, Vec<(usize, Vec<usize>)>> = BTreeMap::new();
        let mut results: Vec<Vec<Option<RcptOutcome>>> = msgs
            .iter()
            .map(|m| vec![None; m.envelope.recipients.len()])
            .collect();
        let mut passed_on: Vec<bool> = vec![true; msgs.len()];
        for (mi, m) in msgs.iter().enumerate() {
            for (ri, r) in m.envelope.recipients.iter().enumerate() {
                let d = domain_of(r);
                if d.is_empty() {
                    results[mi][ri] =
                        Some(RcptOutcome::PermFail(550, format!("5.1.3 {r}: no domain")));
                    continue;
                }
                let g = groups.entry(d).or_default();
                match g.iter_mut().find(|(i, _)| *i == mi) {
                    Some((_, v)) => v.push(ri),
                    None => g.push((mi, vec![ri])),
                }
            }
        }
        for (domain, items) in groups {
            let subs: Vec<Incoming> = items
                .iter()
                .map(|(mi, ris)| subset(&msgs[*mi], ris))
                .collect();
            let reports = self.deliver_domain(&domain, subs).await;
            for ((mi, ris), rep) in items.iter().zip(reports) {
                passed_on[*mi] &= rep.dsn_passed_on;
                for (ri, (_, o)) in ris.iter().zip(rep.outcomes) {
                    results[*mi][*ri] = Some(o);
                }
            }
        }
        msgs.iter()
            .zip(results)
            .zip(passed_on)
            .map(|((m, rs), p)| DeliveryReport {
                outcomes: m
                    .envelope
                    .recipients
                    .iter()
                    .zip(rs)
                    .map(|(r, o)| {
                        (
                            r.clone(),
                            o.unwrap_or_else(|| {
                                RcptOutcome::TempFail("4.4.0 not attempted".into())
                            }),
                        )
                    })
                    .collect(),
                dsn_passed_on: p,
                ..Default::default()
            })
            .collect()
    }

    /// Takes up to [`BATCH`] messages at a time so recipients of one domain across
    /// messages share a connection; each batch's outcomes are recorded before the
    /// next is taken (a crash re-sends at most one batch).
    async fn deliver_stream(&self, source: &mut dyn MessageSource) {
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match source.next().await {
                    Some(m) => batch.push(m),
                    None => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let full = batch.len() == BATCH;
            for r in self.deliver_batch(batch).await {
                source.done(r).await;
            }
            if !full {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(
                "d.example",
                Ok(vec![
                    (20, "b.d.example".into()),
                    (10, "a.d.example".into()),
                    (20, "a.d.example".into())
                ])
            ),
            Route::Hosts(vec!["a.d.example".into(), "b.d.example".into()])
        );
        assert_eq!(
            route("d.example", Err(DnsError::NotFound)),
            Route::Hosts(vec!["d.example".into()])
        );
        assert!(matches!(
            route("d.example", Ok(vec![(0, ".".into())])),
            Route::Refuse(_)
        ));
        assert!(matches!(
            route("d.example", Ok(vec![(0, "".into())])),
            Route::Refuse(_)
        ));
        assert!(matches!(
            route("d.example", Err(DnsError::Timeout)),
            Route::Defer(_)
        ));
    }

    #[test]
    fn subsets_keep_dsn_per_recipient() {
        let mut m = Incoming {
            envelope: crate::message::Envelope::new(
                Some("a@x".into()),
                vec!["1@a".into(), "2@b".into(), "3@a".into()],
                crate::message::Source::Import,
            ),
            message: crate::message::RawMessage::new(b"x".to_vec()),
        };
        m.envelope.dsn = Some(EnvelopeDsn {
            ret: None,
            envid: Some("e".into()),
            notify: vec![Some("NEVER".into()), None, Some("FAILURE".into())],
            orcpt: vec![None, None, None],
        });
        let s = subset(&m, &[0, 2]);
        assert_eq!(s.envelope.recipients, ["1@a", "3@a"]);
        let d = s.envelope.dsn.unwrap();
        assert_eq!(d.notify, [Some("NEVER".into()), Some("FAILURE".into())]);
        assert_eq!(domain_of("X@Mail.Example."), "mail.example");
    }
}
