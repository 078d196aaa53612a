//! `[[accounts]]`: one ISP mailbox that zolder polls (the fetchmail `poll` entry).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, Problem, resolve_against};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Pop3,
    Imap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (POP3S 995, IMAPS 993).
    #[default]
    Implicit,
    /// Plain connect, then STLS / STARTTLS (required: refused if the server lacks it).
    Starttls,
    /// No TLS at all (loopback tests, or an ISP that offers nothing better).
    None,
}

/// OAuth2 for XOAUTH2 / OAUTHBEARER: a refresh token traded at `token_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// `xoauth2` (Google, Microsoft) or `oauthbearer` (RFC 7628).
    #[serde(default = "default_mech")]
    pub mechanism: String,
}

fn default_mech() -> String {
    "xoauth2".into()
}

/// Multidrop: one ISP mailbox for several people, split by envelope headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultidropConfig {
    /// Header that carries the envelope recipient (`X-Original-To`, `Delivered-To`,
    /// `Envelope-To`, `Received`); absent = try them in that order.
    #[serde(default)]
    pub envelope: Option<String>,
    /// Skip this many occurrences of the envelope header (fetchmail's `envelope N`).
    #[serde(default)]
    pub envelope_skip: usize,
    /// Domains that count as this mailbox's own (fetchmail `localdomains`).
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Other names of the ISP host (fetchmail `aka`).
    #[serde(default)]
    pub aka: Vec<String>,
    /// Remote name → local user (fetchmail `is` mapping). `"*"` maps everyone by name.
    #[serde(default)]
    pub map: std::collections::BTreeMap<String, String>,
    /// Where mail for nobody we know goes; default the postmaster.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Strip this prefix from the envelope recipient's local part before matching
    /// (fetchmail `qvirtual`: qmail virtual domains prepend e.g. `mbox-userstr-`).
    #[serde(default)]
    pub qvirtual: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub protocol: Protocol,
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: String,
    /// Inline password: only allowed when the config file is mode 600.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Program (argv list, no shell) whose first output line is the password.
    #[serde(default)]
    pub password_command: Option<Vec<String>>,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// POP3 authentication: `auto` (default), `user`, `apop`, `plain`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub deliver_to: Vec<String>,
    #[serde(default)]
    pub multidrop: Option<MultidropConfig>,
    /// Leave messages on the server.
    #[serde(default)]
    pub keep: bool,
    /// Fetch everything, not only new messages.
    #[serde(default)]
    pub fetchall: bool,
    /// IMAP folders to poll; default INBOX.
    #[serde(default)]
    pub folders: Vec<String>,
    /// Skip messages larger than this many bytes (left on the server).
    #[serde(default)]
    pub limit: Option<u64>,
    /// At most this many messages per poll.
    #[serde(default)]
    pub fetchlimit: Option<u32>,
    /// With `keep`: delete at the ISP once fetched and older than this many days.
    #[serde(default)]
    pub delete_after_days: Option<u32>,
    /// IMAP IDLE: fetch as soon as the server reports new mail.
    #[serde(default)]
    pub idle: bool,
    /// Cron expression with seconds (`"0 0 * * * *"` hourly).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Seconds between polls (alternative to `schedule`).
    #[serde(default)]
    pub interval: Option<u64>,
    /// Program run before / after a poll (argv list, no shell).
    #[serde(default)]
    pub preconnect: Option<Vec<String>>,
    #[serde(default)]
    pub postconnect: Option<Vec<String>>,
    /// Pin the server certificate: SHA-256 (or MD5, as fetchmail writes it) hex digest.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.0"`, `"1.1"`, `"1.2"` or `"1.3"` (fetchmail
    /// `sslproto tls1.2+`); absent = the TLS library's default floor.
    #[serde(default)]
    pub tls_min_version: Option<String>,
    /// Seconds without an answer from the ISP before the poll is given up (fetchmail
    /// `timeout`); absent = the fetcher's default.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Skip this account (fetchmail `skip`).
    #[serde(default)]
    pub disabled: bool,
    /// The fetchmailrc this account came from (not a key): its inline password is
    /// guarded by that file's permissions, and logs can name it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl AccountConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match (self.protocol, self.tls) {
            (Protocol::Pop3, TlsMode::Implicit) => 995,
            (Protocol::Pop3, _) => 110,
            (Protocol::Imap, TlsMode::Implicit) => 993,
            (Protocol::Imap, _) => 143,
        })
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &self.password_file {
            self.password_file = Some(resolve_against(base, p));
        }
        if let Some(p) = &self.ca_file {
            self.ca_file = Some(resolve_against(base, p));
        }
        if let Some(o) = &mut self.oauth2 {
            if let Some(p) = &o.refresh_token_file {
                o.refresh_token_file = Some(resolve_against(base, p));
            }
            if let Some(p) = &o.client_secret_file {
                o.client_secret_file = Some(resolve_against(base, p));
            }
        }
    }

    pub fn validate(&self, key: &str, cfg: &Config) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() {
            out.push(Problem::error(format!("{key}.name"), "account has no name"));
        }
        if self.host.trim().is_empty() {
            out.push(Problem::error(format!("{key}.host"), "no host"));
        }
        let secrets = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_command.is_some(),
            self.oauth2.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if secrets == 0 {
            out.push(
                Problem::error(
                    key.to_string(),
                    format!("account `{}` has no credentials", self.name),
                )
                .hint("set password_file = \"secrets/NAME\" (mode 600)"),
            );
        } else if secrets > 1 {
            out.push(Problem::error(
                key.to_string(),
                "give only one of password, password_file, password_command, oauth2",
            ));
        }
        if self.password.is_some() {
            let holder = self.source.as_deref().unwrap_or(&cfg.path);
            if let Err(e) = super::check_secret_file(holder) {
                out.push(Problem::error(format!("{key}.password"), e));
            }
        }
        // Every inline secret, not only `password` (issue 13): OAuth2 ones too.
        if let Some(o) = &self.oauth2 {
            let holder = self.source.as_deref().unwrap_or(&cfg.path);
            for (name, set) in [
                ("client_secret", o.client_secret.is_some()),
                ("refresh_token", o.refresh_token.is_some()),
            ] {
                if set && let Err(e) = super::check_secret_file(holder) {
                    out.push(Problem::error(format!("{key}.oauth2.{name}"), e));
                }
            }
        }
        if let Some(p) = &self.password_file {
            // A missing secret is a warning: the examples name files that a fresh clone
            // lacks, and the poll fails (temporarily) until someone creates it.
            if !p.exists() {
                out.push(
                    Problem::warning(
                        format!("{key}.password_file"),
                        format!("{} does not exist yet", p.display()),
                    )
                    .hint(format!(
                        "create it: (umask 077; mkdir -p {}; printf '%s\\n' 'PASSWORD' > {})",
                        p.parent().map_or(".".into(), |d| d.display().to_string()),
                        p.display()
                    )),
                );
            } else if let Err(e) = super::check_secret_file(p) {
                out.push(Problem::error(format!("{key}.password_file"), e));
            }
        }
        if self.deliver_to.is_empty() && self.multidrop.is_none() {
            out.push(
                Problem::error(format!("{key}.deliver_to"), "no local user to deliver to")
                    .hint("deliver_to = [\"user\"], or a multidrop table"),
            );
        }
        for u in &self.deliver_to {
            if cfg.user(u).is_none() && !cfg.aliases.contains_key(u) {
                out.push(Problem::error(
                    format!("{key}.deliver_to"),
                    format!("`{u}` is not a [[users]] name or alias"),
                ));
            }
        }
        if let Some(s) = &self.schedule
            && s != "manual"
            && let Err(e) = s.parse::<cron::Schedule>()
        {
            out.push(
                Problem::error(format!("{key}.schedule"), format!("`{s}`: {e}"))
                    .hint("six fields with seconds, e.g. \"0 0 * * * *\" for hourly"),
            );
        }
        if self.schedule.is_some() && self.interval.is_some() {
            out.push(Problem::error(
                key.to_string(),
                "give `schedule` or `interval`, not both",
            ));
        }
        out
    }
}
