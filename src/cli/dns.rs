//! `zolder dns DOMAIN`: the DNS records an own domain needs for this config (MX, SPF,
//! DKIM for each `[[dkim]]` key of DOMAIN, DMARC, optionally MTA-STS), each with
//! whether it is published as it should be — asked through `[dns]`.
//! Exit 0 when every needed record is published, 1 when one is missing or differs.

use std::path::Path;

use super::dkim::zone_quoted;
use super::{EX_OK, load_config};
use crate::config::Config;
use crate::config::inbound::RelayMode;
use crate::net::dns::{Dns, DnsError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The own domain (one of local_domains).
    pub domain: String,
}

/// One record: where, what, and what DNS has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: &'static str,
    pub name: String,
    pub rtype: &'static str,
    pub want: String,
    pub required: bool,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Published,
    Missing,
    Differs(String),
    Unknown(String),
}

/// The records `cfg` needs for `domain` (state not yet known).
pub fn needed(cfg: &Config, domain: &str) -> Vec<Check> {
    let host = cfg.hostname.trim_end_matches('.');
    let mut out = vec![Check {
        what: "MX",
        name: domain.to_string(),
        rtype: "MX",
        want: format!("10 {host}."),
        required: true,
        state: State::Unknown(String::new()),
    }];
    let spf = match cfg.relay.mode {
        RelayMode::Mx => "v=spf1 mx -all".to_string(),
        RelayMode::Smarthost => {
            "v=spf1 mx include:YOUR-ISP-SPF-DOMAIN ~all (your ISP's smarthost sends for you)"
                .to_string()
        }
    };
    out.push(Check {
        what: "SPF",
        name: domain.to_string(),
        rtype: "TXT",
        want: spf,
        required: true,
        state: State::Unknown(String::new()),
    });
    for k in cfg
        .dkim
        .iter()
        .filter(|k| k.domain.eq_ignore_ascii_case(domain))
    {
        let want = crate::relay::dkim::txt_record(&k.key_file)
            .unwrap_or_else(|e| format!("(cannot read the key: {e})"));
        out.push(Check {
            what: "DKIM",
            name: format!("{}._domainkey.{domain}", k.selector),
            rtype: "TXT",
            want,
            required: true,
            state: State::Unknown(String::new()),
        });
    }
    out.push(Check {
        what: "DMARC",
        name: format!("_dmarc.{domain}"),
        rtype: "TXT",
        want: format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
        required: true,
        state: State::Unknown(String::new()),
    });
    out.push(Check {
        what: "MTA-STS",
        name: format!("_mta-sts.{domain}"),
        rtype: "TXT",
        want:
            "v=STSv1; id=20260101 (optional; needs https://mta-sts.DOMAIN/.well-known/mta-sts.txt)"
                .replace("DOMAIN", domain),
        required: false,
        state: State::Unknown(String::new()),
    });
    out
}

/// Compares what DNS has with what is wanted.
pub fn judge(c: &Check, found: Result<Vec<String>, DnsError>) -> State {
    let found = match found {
        Ok(f) => f,
        Err(DnsError::NotFound) => return State::Missing,
        Err(e) => return State::Unknown(e.to_string()),
    };
    match c.what {
        "MX" => {
            let host = c
                .want
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_end_matches('.');
            if found.iter().any(|f| {
                f.split_whitespace()
                    .nth(1)
                    .is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
            }) {
                State::Published
            } else {
                State::Differs(found.join(", "))
            }
        }
        "DKIM" => {
            let key = |s: &str| {
                s.split(';')
                    .find_map(|t| t.trim().strip_prefix("p=").map(|p| p.replace(' ', "")))
            };
            let want = key(&c.want);
            match found.iter().find(|f| f.contains("p=")) {
                Some(f) if key(f) == want => State::Published,
                Some(f) => State::Differs(f.clone()),
                None => State::Missing,
            }
        }
        what => {
            let prefix = match what {
                "SPF" => "v=spf1",
                "DMARC" => "v=DMARC1",
                _ => "v=STSv1",
            };
            match found.iter().find(|f| {
                f.to_ascii_lowercase()
                    .starts_with(&prefix.to_ascii_lowercase())
            }) {
                Some(_) => State::Published,
                None => State::Missing,
            }
        }
    }
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let domain = args
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let dns = Dns::from_config(&cfg.dns).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut checks = needed(&cfg, &domain);
    rt.block_on(async {
        for c in &mut checks {
            let found = match c.rtype {
                "MX" => dns
                    .mx(&c.name)
                    .await
                    .map(|v| v.into_iter().map(|(p, h)| format!("{p} {h}")).collect()),
                _ => dns.txt(&c.name).await,
            };
            c.state = judge(c, found);
        }
    });
    let mut ok = true;
    for c in &checks {
        let (mark, note) = match &c.state {
            State::Published => ("ok", String::new()),
            State::Missing => ("MISSING", String::new()),
            State::Differs(f) => ("DIFFERS", format!("  (published: {f})")),
            State::Unknown(e) => ("UNKNOWN", format!("  ({e})")),
        };
        if c.required && c.state != State::Published {
            ok = false;
        }
        let value = if c.rtype == "TXT" {
            zone_quoted(&c.want)
        } else {
            c.want.clone()
        };
        println!(
            "{mark:<8} {:<8} {}. IN {} {value}{note}",
            c.what, c.name, c.rtype
        );
    }
    if !cfg
        .local_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
    {
        println!("note: {domain} is not in local_domains");
    }
    Ok(if ok { EX_OK } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(what: &'static str, want: &str) -> Check {
        Check {
            what,
            name: "d.example".into(),
            rtype: "TXT",
            want: want.into(),
            required: true,
            state: State::Unknown(String::new()),
        }
    }

    #[test]
    fn judging_records() {
        let mx = check("MX", "10 mx.d.example.");
        assert_eq!(
            judge(&mx, Ok(vec!["10 mx.d.example".into()])),
            State::Published
        );
        assert!(matches!(
            judge(&mx, Ok(vec!["10 other.example".into()])),
            State::Differs(_)
        ));
        assert_eq!(judge(&mx, Err(DnsError::NotFound)), State::Missing);
        let spf = check("SPF", "v=spf1 mx -all");
        assert_eq!(
            judge(&spf, Ok(vec!["v=spf1 a -all".into()])),
            State::Published
        );
        assert_eq!(
            judge(&spf, Ok(vec!["google-site-verification=x".into()])),
            State::Missing
        );
        let dk = check("DKIM", "v=DKIM1; k=ed25519; p=AAAA");
        assert_eq!(
            judge(&dk, Ok(vec!["v=DKIM1; k=ed25519; p=AAAA".into()])),
            State::Published
        );
        assert!(matches!(
            judge(&dk, Ok(vec!["v=DKIM1; p=BBBB".into()])),
            State::Differs(_)
        ));
        assert!(matches!(
            judge(&dk, Err(DnsError::Timeout)),
            State::Unknown(_)
        ));
    }
}
