//! Receiving for an own domain (issue 17): the checks `[listen] smtp` applies to every
//! client that is not in `lan_networks` and did not authenticate — loopback included
//! unless `lan_networks` names it. Submission keeps its AUTH rules and is not checked.
//!
//! * [`dnsbl`]: DNS block/allow lists, cached for their TTL.
//! * [`client`]: HELO sanity, forward-confirmed reverse DNS, per-client rate, and the
//!   address a backup MX got a message from.
//! * [`auth`]: SPF, DKIM, DMARC, the `Authentication-Results:` header and the policy.
//! * [`greylist`]: optional greylisting in SQLite.
//!
//! Each check is a pure decision function tested on its own; [`Client`] strings them
//! along one SMTP session: the DNS work for the client address starts at connect and
//! is awaited at the first command that needs it, so the greeting is never late.
//! Uses config, net (DNS), db and submit's reply type; never the daemon.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::SpfOutput;
use tracing::{info, warn};

use crate::config::Config;
use crate::config::inbound::RejectAt;
use crate::net::dns::Dns;
use crate::submit::proto::Reply;

pub mod auth;
pub mod client;
pub mod dnsbl;
pub mod greylist;

/// The inbound checks of one `[listen] smtp` server. Shared by its sessions.
pub struct Inbound {
    cfg: Arc<Config>,
    dns: Dns,
    dnsbl: dnsbl::Cache,
    rate: client::RateLimiter,
}

/// Do the checks apply to this client? Port 25 (`smtp`) only; not for `lan_networks`
/// nor a local `sendmail -bs`. (Authenticated clients are exempted by the session.)
pub fn applies(cfg: &Config, service: &str, ip: IpAddr, local: bool) -> bool {
    service == "smtp" && !local && !crate::submit::policy::in_lan(cfg, ip)
}

impl Inbound {
    /// Built when `[listen] smtp` is configured.
    pub fn from_config(cfg: &Arc<Config>) -> Result<Option<Arc<Inbound>>, String> {
        if cfg.listen.smtp.list().is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Inbound {
            cfg: cfg.clone(),
            dns: Dns::from_config(&cfg.dns)?,
            dnsbl: dnsbl::Cache::default(),
            rate: client::RateLimiter::default(),
        })))
    }

    /// Starts the connect-time look-ups for a new client.
    pub fn client(self: &Arc<Self>, ip: IpAddr) -> Client {
        let me = self.clone();
        let pending = tokio::spawn(async move { me.connect_facts(ip).await });
        Client {
            inb: self.clone(),
            ip,
            facts: None,
            pending: Some(pending),
            refused: None,
            helo: String::new(),
            spf: None,
        }
    }

    async fn connect_facts(&self, ip: IpAddr) -> Facts {
        let c = &self.cfg.inbound;
        let backup = self.is_backup(ip).await;
        let (listed, allowed, rdns) = tokio::join!(
            async {
                if backup {
                    None
                } else {
                    dnsbl::first_listing(&self.dns, &self.dnsbl, &c.dnsbl, ip).await
                }
            },
            dnsbl::first_listing(&self.dns, &self.dnsbl, &c.dnswl, ip),
            async {
                if c.require_rdns && !backup {
                    client::fcrdns(&self.dns, ip).await
                } else {
                    client::Rdns::Fail
                }
            },
        );
        Facts {
            listed,
            allowlisted: allowed.is_some(),
            rdns,
            backup,
        }
    }

    /// Is `ip` one of `backup_mx` (an address, or a name whose A/AAAA has it)?
    async fn is_backup(&self, ip: IpAddr) -> bool {
        for b in &self.cfg.inbound.backup_mx {
            if let Ok(a) = b.parse::<IpAddr>() {
                if a == ip {
                    return true;
                }
                continue;
            }
            match self.dns.ips(b).await {
                Ok(ips) if ips.contains(&ip) => return true,
                Ok(_) => {}
                Err(e) => warn!(backup_mx = %b, "cannot resolve backup MX: {e}"),
            }
        }
        false
    }
}

/// What the connect-time look-ups found.
#[derive(Debug, Clone)]
pub struct Facts {
    pub listed: Option<dnsbl::Listing>,
    pub allowlisted: bool,
    pub rdns: client::Rdns,
    pub backup: bool,
}

/// The checks along one session.
pub struct Client {
    inb: Arc<Inbound>,
    ip: IpAddr,
    facts: Option<Facts>,
    pending: Option<tokio::task::JoinHandle<Facts>>,
    /// A refusal that stands for the rest of the session (DNSBL, rDNS).
    refused: Option<Reply>,
    helo: String,
    spf: Option<(SpfOutput, SpfOutput)>,
}

/// The DNSBL/DNSWL verdict: a listed client not on an allow list is refused.
pub fn dnsbl_verdict(f: &Facts) -> Option<Reply> {
    if f.allowlisted || f.backup {
        return None;
    }
    f.listed
        .as_ref()
        .map(|l| Reply::new(554, "5.7.1", l.reason.clone()))
}

impl Client {
    async fn facts(&mut self) -> &Facts {
        if self.facts.is_none() {
            let f = match self.pending.take() {
                Some(h) => h.await.ok(),
                None => None,
            };
            self.facts = Some(f.unwrap_or(Facts {
                listed: None,
                allowlisted: false,
                rdns: client::Rdns::TempError,
                backup: false,
            }));
        }
        self.facts.as_ref().expect("set")
    }

    fn cfg(&self) -> &Config {
        &self.inb.cfg
    }

    /// Is the client one of our backup MX hosts?
    pub async fn is_backup(&mut self) -> bool {
        self.facts().await.backup
    }

    /// HELO/EHLO: the DNSBL (when answered at HELO), reverse DNS, HELO sanity.
    pub async fn helo(&mut self, helo: &str) -> Option<Reply> {
        let ip = self.ip;
        let f = self.facts().await.clone();
        if self.refused.is_none() {
            self.refused =
                client::rdns_verdict(self.cfg().inbound.require_rdns && !f.backup, &f.rdns, ip);
        }
        if self.refused.is_none()
            && let Some(r) = dnsbl_verdict(&f)
        {
            info!(client = %ip, reason = %r.lines.join(" "), "DNSBL listed");
            self.refused = Some(r);
        }
        if self.cfg().inbound.dnsbl_reject_at == RejectAt::Helo
            && let Some(r) = &self.refused
        {
            return Some(r.clone());
        }
        if self.cfg().inbound.helo_checks
            && let Some(r) = client::helo_verdict(self.cfg(), helo, ip)
        {
            info!(client = %ip, helo, "HELO refused");
            return Some(r);
        }
        self.helo = helo.trim().to_string();
        None
    }

    /// MAIL FROM: the per-client rate, SPF. (A standing refusal is answered at HELO
    /// or, with `dnsbl_reject_at = "rcpt"`, at each RCPT.)
    pub async fn mail(&mut self, sender: Option<&str>) -> Option<Reply> {
        self.spf = None;
        if self.refused.is_some() {
            return None;
        }
        let f = self.facts().await.clone();
        if f.backup {
            return None; // judged at DATA, on the address the backup got it from
        }
        let max = self.cfg().inbound.max_messages_per_minute;
        if !self.inb.rate.allow(self.ip, Instant::now(), max) {
            info!(client = %self.ip, "message rate limit");
            return Some(Reply::new(
                421,
                "4.7.0",
                format!("Too many messages from [{}]; try again later", self.ip),
            ));
        }
        if !self.cfg().inbound.auth {
            return None;
        }
        let out = auth::spf(
            &self.inb.dns,
            self.ip,
            &self.helo,
            sender,
            &self.inb.cfg.hostname,
        )
        .await;
        let domain = sender
            .and_then(|s| s.rsplit_once('@'))
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| self.helo.clone());
        let r = auth::spf_verdict(&self.cfg().inbound, &out.1.result(), &domain);
        if let Some(r) = &r {
            info!(client = %self.ip, sender = ?sender, "SPF fail");
            return Some(r.clone());
        }
        self.spf = Some(out);
        None
    }

    /// RCPT TO (after the recipient was verified): the standing refusal when answered
    /// at RCPT, and the recipient limit (`accepted` = recipients so far).
    pub async fn rcpt(&mut self, accepted: usize) -> Option<Reply> {
        if let Some(r) = &self.refused {
            return Some(r.clone());
        }
        if self.facts().await.backup {
            return None;
        }
        if accepted >= self.cfg().inbound.max_recipients {
            return Some(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        None
    }

    /// After DATA: for a backup MX, the DNSBL and SPF on the address it received the
    /// message from; DKIM and DMARC; the policy; greylisting. `Ok((results header,
    /// message without forged results))` or the reply that refuses it.
    pub async fn data(
        &mut self,
        msg: Vec<u8>,
        sender: Option<&str>,
        rcpts: &[String],
    ) -> Result<(String, Vec<u8>), Reply> {
        let hostname = self.inb.cfg.hostname.clone();
        let msg = auth::strip_ours(&msg, &hostname).unwrap_or(msg);
        let f = self.facts().await.clone();
        let (mut ip, mut helo) = (self.ip, self.helo.clone());
        if f.backup {
            match client::received_from(&msg) {
                Some((orig, h)) => {
                    if let Some(l) = dnsbl::first_listing(
                        &self.inb.dns,
                        &self.inb.dnsbl,
                        &self.cfg().inbound.dnsbl,
                        orig,
                    )
                    .await
                    {
                        info!(client = %self.ip, origin = %orig, "DNSBL listed (via backup MX)");
                        return Err(Reply::new(554, "5.7.1", l.reason));
                    }
                    ip = orig;
                    helo = h;
                }
                None => {
                    warn!(client = %self.ip, "backup MX message without a Received: from [address]")
                }
            }
            self.spf = None;
        }
        if !self.cfg().inbound.auth {
            return Ok((String::new(), msg));
        }
        let budget = self.inb.dns.timeout() * 4 + Duration::from_secs(1);
        let dns = self.inb.dns.clone();
        let spf = match self.spf.take() {
            Some(s) => s,
            None => {
                match tokio::time::timeout(budget, auth::spf(&dns, ip, &helo, sender, &hostname))
                    .await
                {
                    Ok(s) => s,
                    Err(_) => {
                        warn!(client = %ip, "SPF check timed out");
                        return Ok((format!("Authentication-Results: {hostname}; none\r\n"), msg));
                    }
                }
            }
        };
        if f.backup {
            let domain = sender
                .and_then(|s| s.rsplit_once('@'))
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| helo.clone());
            if let Some(r) = auth::spf_verdict(&self.cfg().inbound, &spf.1.result(), &domain) {
                return Err(r);
            }
        }
        let header = match tokio::time::timeout(
            budget,
            auth::results_header(&dns, &hostname, ip, &helo, sender, &spf, &msg),
        )
        .await
        {
            Ok(h) => h,
            Err(_) => {
                warn!(client = %ip, "DKIM/DMARC checks timed out");
                format!("Authentication-Results: {hostname}; none\r\n")
            }
        };
        let summary = auth::Summary::parse(header.split_once(':').map(|x| x.1).unwrap_or(""));
        if let auth::Action::Reject(r) = auth::decide(&self.cfg().inbound, &summary) {
            info!(client = %ip, from = ?summary.dmarc_from, "refused by DMARC policy");
            return Err(r);
        }
        let c = &self.cfg().inbound;
        if c.greylist && !f.allowlisted && !f.backup && summary.dkim_pass.is_empty() {
            let db = self.inb.cfg.db_path();
            let (delay, expire) = (
                c.greylist_delay as i64,
                (c.greylist_expire_days * 86400) as i64,
            );
            let s = sender.unwrap_or("").to_string();
            let rcpts = rcpts.to_vec();
            let r = tokio::task::spawn_blocking(move || -> rusqlite::Result<bool> {
                let conn = crate::db::open(&db).map_err(|e| {
                    rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
                        e.to_string(),
                    )))
                })?;
                let now = chrono::Utc::now().timestamp();
                let mut all = true;
                for r in &rcpts {
                    all &= greylist::check(&conn, ip, &s, r, now, delay, expire)?;
                }
                Ok(all)
            })
            .await;
            match r {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    info!(client = %ip, sender = ?sender, "greylisted");
                    return Err(Reply::new(
                        451,
                        "4.7.1",
                        "Greylisted: please try again later",
                    ));
                }
                Ok(Err(e)) => warn!("greylist database: {e}; not greylisting"),
                Err(e) => warn!("greylist task: {e}; not greylisting"),
            }
        }
        Ok((header, msg))
    }
}
