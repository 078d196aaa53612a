//! `[dns]`, `[inbound]` and `[[dkim]]`: the own-domain keys (issue 17). The receiving
//! checks on `[listen] smtp` (port 25) for clients outside `lan_networks` that did not
//! authenticate, the resolver they (and direct delivery) use, and the signing keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, Problem};

/// `[dns]`: the resolver. No `servers` = the system's (`/etc/resolv.conf`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Nameservers as `ip:port` (or `ip`, port 53), asked over UDP with TCP fallback.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Seconds one query may take (all attempts) before it counts as timed out.
    #[serde(default = "d_dns_timeout")]
    pub timeout: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: vec![],
            timeout: d_dns_timeout(),
        }
    }
}

/// When a DNSBL listing is answered.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RejectAt {
    /// After HELO/EHLO: the client sees the reason on its first command that counts.
    #[default]
    Helo,
    /// At each `RCPT TO` (so `postmaster@` could be let through by a later change).
    Rcpt,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailAction {
    /// `550 5.7.1` (at the stage the check belongs to).
    Reject,
    /// Deliver into the recipients' Junk folder.
    Junk,
    /// Deliver; the result is only in `Authentication-Results:`.
    Accept,
}

/// `[inbound]`: the checks on port 25 (`[listen] smtp`) for clients outside
/// `lan_networks` that did not authenticate. Submission (587) is not affected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// DNS block lists (`zen.spamhaus.org`): a listed client gets `554 5.7.1`.
    #[serde(default)]
    pub dnsbl: Vec<String>,
    /// DNS allow lists: a listed client skips the DNSBL and greylisting.
    #[serde(default)]
    pub dnswl: Vec<String>,
    /// When a DNSBL listing is answered: "helo" (default) or "rcpt".
    #[serde(default)]
    pub dnsbl_reject_at: RejectAt,
    /// Our backup MX hosts (names or addresses): mail they pass on is judged by the
    /// address they received it from (their `Received:` header), and they are exempt
    /// from the per-client limits.
    #[serde(default)]
    pub backup_mx: Vec<String>,
    /// SPF, DKIM and DMARC on, with an `Authentication-Results:` header.
    #[serde(default = "d_true")]
    pub auth: bool,
    /// A DMARC failure of a `p=reject` domain (default "reject": 550 5.7.1 at DATA).
    #[serde(default = "d_reject")]
    pub dmarc_reject: FailAction,
    /// A DMARC failure of a `p=quarantine` domain (default "junk").
    #[serde(default = "d_junk")]
    pub dmarc_quarantine: FailAction,
    /// An SPF `fail` (`-all`) of the MAIL FROM (or HELO) domain (default "reject":
    /// 550 5.7.1 at MAIL FROM). A DMARC-aligned DKIM pass is not waited for.
    #[serde(default = "d_reject")]
    pub spf_fail: FailAction,
    /// HELO sanity: refuse a HELO that claims to be us, or an address literal that is
    /// not the client's (550 5.7.1).
    #[serde(default = "d_true")]
    pub helo_checks: bool,
    /// Refuse (450 4.7.25) clients whose address has no forward-confirmed reverse DNS
    /// name (Postfix `reject_unknown_client_hostname`). Off by default: many small
    /// senders lack one.
    #[serde(default)]
    pub require_rdns: bool,
    /// Recipients per message from one Internet client (452 4.5.3 beyond).
    #[serde(default = "d_max_rcpt")]
    pub max_recipients: usize,
    /// Messages one Internet client address may send per minute (421 4.7.0 beyond).
    #[serde(default = "d_rate")]
    pub max_messages_per_minute: u32,
    /// Greylisting (off by default).
    #[serde(default)]
    pub greylist: bool,
    /// Seconds a first-time (client /24, sender, recipient) triple is refused for.
    #[serde(default = "d_grey_delay")]
    pub greylist_delay: u64,
    /// Days a triple that got through is remembered.
    #[serde(default = "d_grey_days")]
    pub greylist_expire_days: u64,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            dnsbl: vec![],
            dnswl: vec![],
            dnsbl_reject_at: RejectAt::Helo,
            backup_mx: vec![],
            auth: true,
            dmarc_reject: FailAction::Reject,
            dmarc_quarantine: FailAction::Junk,
            spf_fail: FailAction::Reject,
            helo_checks: true,
            require_rdns: false,
            max_recipients: d_max_rcpt(),
            max_messages_per_minute: d_rate(),
            greylist: false,
            greylist_delay: d_grey_delay(),
            greylist_expire_days: d_grey_days(),
        }
    }
}

/// `[[dkim]]`: a signing key for one own domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    pub domain: String,
    pub selector: String,
    /// PEM private key (PKCS#8 or PKCS#1 RSA, PKCS#8 Ed25519); relative = against
    /// the config file's folder. Must not be group- or world-readable.
    pub key_file: PathBuf,
}

fn d_true() -> bool {
    true
}
fn d_reject() -> FailAction {
    FailAction::Reject
}
fn d_junk() -> FailAction {
    FailAction::Junk
}
fn d_max_rcpt() -> usize {
    50
}
fn d_rate() -> u32 {
    30
}
fn d_grey_delay() -> u64 {
    300
}
fn d_grey_days() -> u64 {
    36
}
fn d_dns_timeout() -> u64 {
    5
}

/// How `[relay]` sends mail for remote recipients.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// Everything through `[smarthost]` (the default).
    #[default]
    Smarthost,
    /// Straight to each recipient domain's MX (a fixed address with good reputation).
    Mx,
}

/// `[relay]`: the way out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    #[serde(default)]
    pub mode: RelayMode,
    /// Port of the MX hosts in `mode = "mx"` (25; tests use another).
    #[serde(default = "d_mx_port")]
    pub mx_port: u16,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            mode: RelayMode::Smarthost,
            mx_port: d_mx_port(),
        }
    }
}

fn d_mx_port() -> u16 {
    25
}

/// The own-domain keys' problems, for `zolder check`.
pub fn validate(cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, s) in cfg.dns.servers.iter().enumerate() {
        if crate::net::dns::parse_server(s).is_none() {
            out.push(
                Problem::error(
                    format!("dns.servers[{i}]"),
                    format!("`{s}` is not an address"),
                )
                .hint("e.g. servers = [\"127.0.0.1:53\"]"),
            );
        }
    }
    for (i, k) in cfg.dkim.iter().enumerate() {
        if let Err(e) = crate::relay::dkim::txt_record(&k.key_file) {
            out.push(
                Problem::error(format!("dkim[{i}].key_file"), e)
                    .hint("make one with `zolder dkim keygen DOMAIN --selector S`"),
            );
        }
        if k.selector.trim().is_empty() || k.domain.trim().is_empty() {
            out.push(Problem::error(
                format!("dkim[{i}]"),
                "needs `domain` and `selector`",
            ));
        }
    }
    for (i, b) in cfg.inbound.backup_mx.iter().enumerate() {
        if b.trim().is_empty() {
            out.push(Problem::error(format!("inbound.backup_mx[{i}]"), "empty"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn keys_parse_and_check_names_problems() {
        let cfg = Config::from_str_at(
            r#"
[dns]
servers = ["127.0.0.1:5353", "resolver.example"]
[inbound]
dnsbl = ["zen.spamhaus.org"]
dnsbl_reject_at = "rcpt"
dmarc_quarantine = "accept"
[[dkim]]
domain = "zolder.example"
selector = "s"
key_file = "missing.key"
[relay]
mode = "mx"
mx_port = 2525
"#,
            Path::new("/tmp/zz/zolder.toml"),
            false,
        )
        .unwrap();
        assert_eq!(cfg.inbound.dnsbl_reject_at, RejectAt::Rcpt);
        assert_eq!(cfg.inbound.dmarc_quarantine, FailAction::Accept);
        assert_eq!(cfg.relay.mode, RelayMode::Mx);
        assert_eq!(cfg.relay.mx_port, 2525);
        assert_eq!(cfg.dkim[0].key_file, Path::new("/tmp/zz/missing.key"));
        let p = validate(&cfg);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["dns.servers[1]", "dkim[0].key_file"], "{p:?}");
        assert!(
            Config::from_str_at(
                "[inbound]\ndnsbl_reject_at = \"data\"\n",
                Path::new("/tmp/zz/z.toml"),
                false
            )
            .is_err()
        );
    }

    use super::*;
}
