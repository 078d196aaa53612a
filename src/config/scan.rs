//! `[scan]`: virus, spam and banned-attachment checks in the delivery pipeline, and
//! `[sieve]`-free knobs the scanners share (timeouts, size limits, fail-open).
//!
//! Only the shape and validation live here; the scanners are in `deliver::scan`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problem;

/// Scanner names as used in `fail_open`, logs, the quarantine index and headers.
pub const SCANNERS: &[&str] = &[
    "banned",
    "clamd",
    "spamd",
    "rspamd",
    "bogofilter",
    "command",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// `"unix:/run/clamav/clamd.ctl"` or `"tcp:127.0.0.1:3310"`.
    #[serde(default)]
    pub clamd: Option<String>,
    /// Most bytes sent to clamd (keep at or below clamd's `StreamMaxLength`). A larger
    /// message is scanned up to this size and marked `X-Virus-Scanned: truncated`.
    #[serde(default = "default_clamd_max")]
    pub clamd_max_size: u64,
    /// `"127.0.0.1:783"`.
    #[serde(default)]
    pub spamd: Option<String>,
    /// spamd `User:` header (per-user rules); absent = spamd's default user.
    #[serde(default)]
    pub spamd_user: Option<String>,
    /// `"http://127.0.0.1:11333"`.
    #[serde(default)]
    pub rspamd: Option<String>,
    /// Run bogofilter with its word lists under `data_dir/bogofilter`.
    #[serde(default)]
    pub bogofilter: bool,
    /// The bogofilter program (absolute path or a name found on `PATH`).
    #[serde(default = "default_bogofilter_path")]
    pub bogofilter_path: String,
    /// Amavis' default banned extensions and types.
    #[serde(default)]
    pub banned: bool,
    /// Extra banned file-name extensions (without the dot), on top of the defaults.
    #[serde(default)]
    pub banned_extensions: Vec<String>,
    /// Extra banned MIME types (`application/x-foo`).
    #[serde(default)]
    pub banned_types: Vec<String>,
    /// Extensions to allow although the defaults ban them (`["bat"]`).
    #[serde(default)]
    pub allowed_extensions: Vec<String>,
    /// An external hook: argv, no shell. Placeholders `{sender}`, `{rcpts}` (one argument
    /// per recipient), `{source}` (fetch/submit/local/…).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Exit code of `command` → action; defaults: 0 deliver, 1 reject, 2 quarantine,
    /// anything else is a temporary failure.
    #[serde(default)]
    pub command_exit: BTreeMap<String, String>,
    /// Seconds one scanner may take before it counts as down (temporary failure).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Messages larger than this (bytes) are not sent to the spam scanners
    /// (spamc's default is 500 KB for the same reason: big mail is rarely spam).
    #[serde(default = "default_spam_max")]
    pub spam_max_size: u64,
    /// Scanners whose failure lets mail through unscanned (with a header saying so)
    /// instead of deferring it. Default: none.
    #[serde(default)]
    pub fail_open: Vec<String>,
    /// Also send the quarantine notice to the local recipients (amavis' `warnvirusrecip`).
    #[serde(default)]
    pub notify_recipients: bool,
    #[serde(default)]
    pub actions: ScanActions,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            clamd: None,
            clamd_max_size: default_clamd_max(),
            spamd: None,
            spamd_user: None,
            rspamd: None,
            bogofilter: false,
            bogofilter_path: default_bogofilter_path(),
            banned: false,
            banned_extensions: vec![],
            banned_types: vec![],
            allowed_extensions: vec![],
            command: None,
            command_exit: BTreeMap::new(),
            timeout: default_timeout(),
            spam_max_size: default_spam_max(),
            fail_open: vec![],
            notify_recipients: false,
            actions: ScanActions::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanActions {
    #[serde(default = "quarantine")]
    pub infected: String,
    #[serde(default = "quarantine")]
    pub banned: String,
    #[serde(default = "junk")]
    pub spam: String,
}

impl Default for ScanActions {
    fn default() -> Self {
        ScanActions {
            infected: quarantine(),
            banned: quarantine(),
            spam: junk(),
        }
    }
}

fn quarantine() -> String {
    "quarantine".into()
}
fn junk() -> String {
    "junk".into()
}
fn default_clamd_max() -> u64 {
    25 * 1024 * 1024
}
fn default_bogofilter_path() -> String {
    "bogofilter".into()
}
fn default_timeout() -> u64 {
    60
}
fn default_spam_max() -> u64 {
    512 * 1024
}

pub const ACTIONS: &[&str] = &["deliver", "junk", "quarantine", "reject", "discard"];

impl ScanConfig {
    /// True when at least one scanner is configured.
    pub fn any(&self) -> bool {
        self.clamd.is_some()
            || self.spamd.is_some()
            || self.rspamd.is_some()
            || self.bogofilter
            || self.banned
            || self.command.is_some()
    }

    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let hint = || format!("one of {}", ACTIONS.join(", "));
        for (k, v) in [
            ("infected", &self.actions.infected),
            ("banned", &self.actions.banned),
            ("spam", &self.actions.spam),
        ] {
            if !ACTIONS.contains(&v.as_str()) {
                out.push(
                    Problem::error(
                        format!("{key}.actions.{k}"),
                        format!("unknown action `{v}`"),
                    )
                    .hint(hint()),
                );
            }
        }
        for (code, v) in &self.command_exit {
            if code.parse::<u8>().is_err() {
                out.push(
                    Problem::error(
                        format!("{key}.command_exit.{code}"),
                        "not an exit code (0-255)",
                    )
                    .hint("e.g. command_exit = { \"3\" = \"junk\" }"),
                );
            }
            if !ACTIONS.contains(&v.as_str()) && v != "tempfail" {
                out.push(
                    Problem::error(
                        format!("{key}.command_exit.{code}"),
                        format!("unknown action `{v}`"),
                    )
                    .hint(format!("{} or tempfail", hint())),
                );
            }
        }
        if let Some(c) = &self.clamd
            && !(c.starts_with("unix:") || c.starts_with("tcp:"))
        {
            out.push(
                Problem::error(format!("{key}.clamd"), format!("`{c}`"))
                    .hint("\"unix:/run/clamav/clamd.ctl\" or \"tcp:127.0.0.1:3310\""),
            );
        }
        if let Some(r) = &self.rspamd
            && !r.starts_with("http://")
        {
            out.push(
                Problem::error(format!("{key}.rspamd"), format!("`{r}`"))
                    .hint("\"http://127.0.0.1:11333\" (plain HTTP on loopback)"),
            );
        }
        if let Some(c) = &self.command
            && c.is_empty()
        {
            out.push(Problem::error(format!("{key}.command"), "empty command"));
        }
        for f in &self.fail_open {
            if !SCANNERS.contains(&f.as_str()) {
                out.push(
                    Problem::error(format!("{key}.fail_open"), format!("unknown scanner `{f}`"))
                        .hint(format!("one of {}", SCANNERS.join(", "))),
                );
            }
        }
        if self.timeout == 0 {
            out.push(Problem::error(
                format!("{key}.timeout"),
                "must be at least 1 second",
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_bad_keys() {
        let mut c = ScanConfig {
            clamd: Some("localhost:3310".into()),
            fail_open: vec!["clamdd".into()],
            ..Default::default()
        };
        c.actions.spam = "bin".into();
        c.command_exit.insert("x".into(), "junk".into());
        let p = c.validate("scan");
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"scan.clamd"));
        assert!(keys.contains(&"scan.fail_open"));
        assert!(keys.contains(&"scan.actions.spam"));
        assert!(keys.contains(&"scan.command_exit.x"));
        assert!(ScanConfig::default().validate("scan").is_empty());
    }
}
