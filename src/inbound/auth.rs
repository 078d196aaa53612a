//! SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) with mail-auth, the one
//! `Authentication-Results:` header (RFC 8601) that records them, and the policy that
//! turns the results into accept / Junk / reject.
//!
//! The header is the record: the session writes it with `hostname` as authserv-id
//! (removing any incoming one that claims that id), the policy decision reads it back
//! ([`Summary::parse`]) — so Sieve rules, the scanners and the delivery pipeline's Junk
//! choice ([`junk_marked`]) all see the same results.

use std::net::IpAddr;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, SpfOutput, SpfResult};

use super::client::fields;
use crate::config::Config;
use crate::config::inbound::{FailAction, InboundConfig};
use crate::net::dns::Dns;
use crate::submit::proto::Reply;

/// SPF for the HELO and the MAIL FROM identities.
pub async fn spf(
    dns: &Dns,
    ip: IpAddr,
    helo: &str,
    sender: Option<&str>,
    hostname: &str,
) -> (SpfOutput, SpfOutput) {
    let a = dns.authenticator();
    let helo_out = a
        .verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
        .await;
    let mf = match sender {
        Some(s) if s.contains('@') => {
            a.verify_spf(SpfParameters::verify_mail_from(ip, helo, hostname, s))
                .await
        }
        // RFC 7208 §2.4: for the null sender the HELO identity is the MAIL FROM one.
        _ => helo_out.clone(),
    };
    (helo_out, mf)
}

/// The reply for an SPF result at MAIL FROM: only `fail` (`-all`) with
/// `spf_fail = "reject"` refuses.
pub fn spf_verdict(cfg: &InboundConfig, mail_from: &SpfResult, domain: &str) -> Option<Reply> {
    if *mail_from == SpfResult::Fail && cfg.spf_fail == FailAction::Reject {
        return Some(Reply::new(
            550,
            "5.7.1",
            format!("SPF: {domain} does not designate this host as a permitted sender"),
        ));
    }
    None
}

/// DKIM for every signature and DMARC for the From: domain; the complete
/// `Authentication-Results:` field (CRLF-terminated).
pub async fn results_header(
    dns: &Dns,
    hostname: &str,
    ip: IpAddr,
    helo: &str,
    sender: Option<&str>,
    spf: &(SpfOutput, SpfOutput),
    msg: &[u8],
) -> String {
    let a = dns.authenticator();
    let mut ar = AuthenticationResults::new(hostname);
    let Some(parsed) = AuthenticatedMessage::parse(msg) else {
        ar = ar
            .with_spf_ehlo_result(&spf.0, ip, helo)
            .with_spf_mailfrom_result(&spf.1, ip, sender.unwrap_or(""), helo);
        return ar.to_header();
    };
    let dkim = a.verify_dkim(&parsed).await;
    let from_domain = parsed
        .from()
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let mail_from_domain = sender
        .and_then(|s| s.rsplit_once('@'))
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| helo.to_string());
    ar = ar
        .with_dkim_results(&dkim, parsed.from())
        .with_spf_ehlo_result(&spf.0, ip, helo)
        .with_spf_mailfrom_result(&spf.1, ip, sender.unwrap_or(""), helo);
    let mut header = ar.to_header();
    if !from_domain.is_empty() {
        let dmarc = a
            .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
                &parsed,
                &dkim,
                &mail_from_domain,
                &spf.1,
            ))
            .await;
        // Our own clause: mail-auth writes `dmarc=none` for a domain with a record
        // and no aligned pass, where RFC 7489 says `fail`.
        let clause = dmarc_clause(
            dmarc.dmarc_record().is_some(),
            dmarc.spf_result(),
            dmarc.dkim_result(),
            dmarc.policy(),
            &from_domain,
        );
        let trimmed = header.trim_end_matches(['\r', '\n']).len();
        header.truncate(trimmed);
        header.push_str(&clause);
        header.push_str("\r\n");
    }
    header
}

/// The `dmarc=` clause: `pass` needs an aligned SPF or DKIM pass (mail-auth checks
/// alignment), `fail` is a published policy without one.
pub fn dmarc_clause(
    has_record: bool,
    spf: &DmarcResult,
    dkim: &DmarcResult,
    policy: Policy,
    from_domain: &str,
) -> String {
    let pass = *spf == DmarcResult::Pass || *dkim == DmarcResult::Pass;
    let temp =
        matches!(spf, DmarcResult::TempError(_)) || matches!(dkim, DmarcResult::TempError(_));
    let result = match (has_record, pass, temp) {
        (_, true, _) => "pass",
        (_, false, true) => "temperror",
        (false, false, false) => "none",
        (true, false, false) => "fail",
    };
    let policy = match policy {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    };
    let d: String = from_domain
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(255)
        .collect();
    format!(";\r\n\tdmarc={result} header.from={d} policy.dmarc={policy}")
}

/// One result of a method in an `Authentication-Results:` field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// `spf=` for `smtp.mailfrom`.
    pub spf_mailfrom: Option<String>,
    /// `spf=` for `smtp.helo`.
    pub spf_helo: Option<String>,
    /// `header.d=` of every `dkim=pass`.
    pub dkim_pass: Vec<String>,
    /// `dmarc=` result and `policy.dmarc=`.
    pub dmarc: Option<(String, String)>,
    pub dmarc_from: Option<String>,
}

/// The authserv-id of an `Authentication-Results:` field value.
fn authserv_id(value: &str) -> String {
    let v = strip_comments(value);
    v.trim()
        .split([';', ' ', '\t', '\r', '\n'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Removes `( … )` comments (nesting bounded); quoted strings are kept as they are.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c)
            }
            '(' if !quoted => depth = (depth + 1).min(64),
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

impl Summary {
    /// Reads the results out of one field value (after `Authentication-Results:`).
    pub fn parse(value: &str) -> Summary {
        let v = strip_comments(value);
        let mut s = Summary::default();
        for clause in v.split(';').skip(1).take(64) {
            let mut toks = clause.split_whitespace();
            let Some(first) = toks.next() else { continue };
            let Some((method, result)) = first.split_once('=') else {
                continue;
            };
            let method = method.to_ascii_lowercase();
            let result = result.to_ascii_lowercase();
            let props: Vec<(String, String)> = toks
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
                .collect();
            let prop = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            match method.as_str() {
                "spf" => {
                    if prop("smtp.mailfrom").is_some() {
                        s.spf_mailfrom = Some(result);
                    } else if prop("smtp.helo").is_some() {
                        s.spf_helo = Some(result);
                    }
                }
                "dkim" if result == "pass" => {
                    if let Some(d) = prop("header.d") {
                        s.dkim_pass.push(d.to_ascii_lowercase());
                    }
                }
                "dmarc" => {
                    s.dmarc = Some((result, prop("policy.dmarc").unwrap_or_default()));
                    s.dmarc_from = prop("header.from");
                }
                _ => {}
            }
        }
        s
    }
}

/// What the policy does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Junk,
    Reject(Reply),
}

fn apply(a: FailAction, reply: Reply) -> Action {
    match a {
        FailAction::Reject => Action::Reject(reply),
        FailAction::Junk => Action::Junk,
        FailAction::Accept => Action::Accept,
    }
}

/// The policy: a DMARC failure of a `p=reject` domain → `dmarc_reject`, of a
/// `p=quarantine` domain → `dmarc_quarantine`; an SPF `fail` → `spf_fail` (its reject
/// happens at MAIL FROM; here only its Junk counts). The harsher outcome wins.
pub fn decide(cfg: &InboundConfig, s: &Summary) -> Action {
    let mut out = Action::Accept;
    let mut take = |a: Action| {
        let rank = |a: &Action| match a {
            Action::Accept => 0,
            Action::Junk => 1,
            Action::Reject(_) => 2,
        };
        if rank(&a) > rank(&out) {
            out = a;
        }
    };
    if let Some((result, policy)) = &s.dmarc
        && result == "fail"
    {
        let from = s.dmarc_from.clone().unwrap_or_default();
        let reply = Reply::new(
            550,
            "5.7.1",
            format!("DMARC policy of {from} rejects this message (no aligned SPF or DKIM pass)"),
        );
        match policy.as_str() {
            "reject" => take(apply(cfg.dmarc_reject, reply)),
            "quarantine" => take(apply(cfg.dmarc_quarantine, reply)),
            _ => {}
        }
    }
    if s.spf_mailfrom.as_deref() == Some("fail") && cfg.spf_fail == FailAction::Junk {
        take(Action::Junk);
    }
    out
}

/// The value of every `Authentication-Results:` field in `msg` whose authserv-id is
/// `hostname` (ours).
pub fn our_results(msg: &[u8], hostname: &str) -> Vec<String> {
    let id = hostname.to_ascii_lowercase();
    fields(msg)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"Authentication-Results"))
        .filter_map(|(_, f)| {
            let t = String::from_utf8_lossy(f);
            let v = t.split_once(':')?.1.to_string();
            (authserv_id(&v) == id).then_some(v)
        })
        .collect()
}

/// `msg` without the `Authentication-Results:` fields that claim our authserv-id
/// (RFC 8601 §5: a forged one must not pass for ours). `None` = nothing to remove.
pub fn strip_ours(msg: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let id = hostname.to_ascii_lowercase();
    let fs = fields(msg);
    let header_len: usize = fs.iter().map(|(_, f)| f.len()).sum();
    let drop: Vec<bool> = fs
        .iter()
        .map(|(n, f)| {
            n.eq_ignore_ascii_case(b"Authentication-Results")
                && String::from_utf8_lossy(f)
                    .split_once(':')
                    .is_some_and(|(_, v)| authserv_id(v) == id)
        })
        .collect();
    if !drop.iter().any(|d| *d) {
        return None;
    }
    let mut out = Vec::with_capacity(msg.len());
    for ((_, f), d) in fs.iter().zip(drop) {
        if !d {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(&msg[header_len..]);
    Some(out)
}

/// Does our own `Authentication-Results:` header send this message to Junk? (The
/// delivery pipeline asks; a forged header could only junk the forger's own mail.)
pub fn junk_marked(cfg: &Config, msg: &[u8]) -> bool {
    our_results(msg, &cfg.hostname)
        .iter()
        .any(|v| decide(&cfg.inbound, &Summary::parse(v)) == Action::Junk)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AR: &str = " mx.zolder.test;\r\n\tdkim=pass header.d=good.example header.s=s1 header.b=abc;\r\n\tspf=pass (mx.zolder.test: domain of a@good.example designates 127.0.0.5 as permitted sender) smtp.mailfrom=\"a@good.example\";\r\n\tspf=none smtp.helo=h.example;\r\n\tdmarc=pass header.from=good.example policy.dmarc=reject\r\n";

    #[test]
    fn parses_results() {
        let s = Summary::parse(AR);
        assert_eq!(s.spf_mailfrom.as_deref(), Some("pass"));
        assert_eq!(s.spf_helo.as_deref(), Some("none"));
        assert_eq!(s.dkim_pass, vec!["good.example"]);
        assert_eq!(s.dmarc, Some(("pass".into(), "reject".into())));
        assert_eq!(authserv_id(AR), "mx.zolder.test");
        assert_eq!(
            authserv_id(" (comment) Other.Example; none"),
            "other.example"
        );
    }

    fn summary(dmarc: &str, policy: &str, spf: &str) -> Summary {
        Summary {
            spf_mailfrom: Some(spf.into()),
            dmarc: Some((dmarc.into(), policy.into())),
            dmarc_from: Some("d.example".into()),
            ..Summary::default()
        }
    }

    #[test]
    fn policy_decisions() {
        let c = InboundConfig::default();
        // p=reject failure → 550 5.7.1; aligned pass from a p=reject domain → accept.
        match decide(&c, &summary("fail", "reject", "softfail")) {
            Action::Reject(r) => assert_eq!((r.code, r.status), (550, Some("5.7.1"))),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            decide(&c, &summary("pass", "reject", "fail")),
            Action::Accept
        );
        assert_eq!(
            decide(&c, &summary("fail", "quarantine", "none")),
            Action::Junk
        );
        assert_eq!(decide(&c, &summary("fail", "none", "none")), Action::Accept);
        assert_eq!(decide(&c, &summary("none", "", "none")), Action::Accept);
        // Configurable: reject → junk, quarantine → accept, SPF fail → junk.
        let c2 = InboundConfig {
            dmarc_reject: FailAction::Junk,
            dmarc_quarantine: FailAction::Accept,
            spf_fail: FailAction::Junk,
            ..InboundConfig::default()
        };
        assert_eq!(
            decide(&c2, &summary("fail", "reject", "none")),
            Action::Junk
        );
        assert_eq!(
            decide(&c2, &summary("fail", "quarantine", "none")),
            Action::Accept
        );
        assert_eq!(decide(&c2, &summary("none", "", "fail")), Action::Junk);
        // SPF fail with the default (reject) is answered at MAIL FROM, not here.
        assert_eq!(decide(&c, &summary("none", "", "fail")), Action::Accept);
    }

    #[test]
    fn dmarc_clauses() {
        let e = || DmarcResult::Fail(mail_auth::Error::NotAligned);
        let c = dmarc_clause(true, &e(), &DmarcResult::None, Policy::Reject, "d.example");
        assert_eq!(
            c,
            ";\r\n\tdmarc=fail header.from=d.example policy.dmarc=reject"
        );
        let c = dmarc_clause(true, &e(), &DmarcResult::Pass, Policy::Reject, "d.example");
        assert!(c.contains("dmarc=pass"));
        let c = dmarc_clause(
            false,
            &DmarcResult::None,
            &DmarcResult::None,
            Policy::None,
            "d.example",
        );
        assert!(c.contains("dmarc=none"));
        let t = DmarcResult::TempError(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
            "x".into(),
        )));
        assert!(
            dmarc_clause(true, &t, &DmarcResult::None, Policy::Reject, "d").contains("temperror")
        );
        // A hostile From: domain cannot add clauses.
        let c = dmarc_clause(true, &e(), &e(), Policy::Quarantine, "x;dkim=pass");
        assert!(c.ends_with("header.from=xdkimpass policy.dmarc=quarantine"));
        let s = Summary::parse(&format!(" mx.zolder.test{c}"));
        assert_eq!(s.dmarc, Some(("fail".into(), "quarantine".into())));
    }

    #[test]
    fn spf_reply() {
        let c = InboundConfig::default();
        assert_eq!(
            spf_verdict(&c, &SpfResult::Fail, "d.example").unwrap().code,
            550
        );
        assert_eq!(spf_verdict(&c, &SpfResult::SoftFail, "d.example"), None);
        let junk = InboundConfig {
            spf_fail: FailAction::Junk,
            ..InboundConfig::default()
        };
        assert_eq!(spf_verdict(&junk, &SpfResult::Fail, "d.example"), None);
    }

    #[test]
    fn strips_only_ours() {
        let m = b"Authentication-Results: MX.zolder.test; dkim=pass\r\n header.d=forged.example\r\nAuthentication-Results: isp.example; spf=pass smtp.mailfrom=x@y\r\nSubject: s\r\n\r\nAuthentication-Results: mx.zolder.test; body\r\n";
        let out = strip_ours(m, "mx.zolder.test").unwrap();
        assert_eq!(
            out,
            b"Authentication-Results: isp.example; spf=pass smtp.mailfrom=x@y\r\nSubject: s\r\n\r\nAuthentication-Results: mx.zolder.test; body\r\n"
        );
        assert_eq!(strip_ours(&out, "mx.zolder.test"), None);
        assert_eq!(our_results(&out, "mx.zolder.test"), Vec::<String>::new());
        assert_eq!(our_results(m, "mx.zolder.test").len(), 1);
    }

    #[test]
    fn junk_mark_follows_config() {
        let mut cfg = Config::from_str_at(
            "hostname = \"mx.zolder.test\"\n",
            std::path::Path::new("/tmp/z/zolder.toml"),
            false,
        )
        .unwrap();
        let q = b"Authentication-Results: mx.zolder.test;\r\n\tdmarc=fail header.from=q.example policy.dmarc=quarantine\r\nSubject: s\r\n\r\nbody";
        assert!(junk_marked(&cfg, q));
        let other = b"Authentication-Results: isp.example; dmarc=fail header.from=q.example policy.dmarc=quarantine\r\n\r\n";
        assert!(!junk_marked(&cfg, other));
        cfg.inbound.dmarc_quarantine = FailAction::Accept;
        assert!(!junk_marked(&cfg, q));
    }
}
