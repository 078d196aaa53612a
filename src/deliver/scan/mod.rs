//! The scan stage: banned attachments, clamd, spamd, rspamd, bogofilter and an external
//! command hook, each returning a [`Verdict`]; [`Scanner`] runs the configured ones in
//! order and turns their verdicts into one [`Decision`] using `[scan.actions]`.
//!
//! Scanners *vote and add header lines*; none of them rewrites the message (maddy's
//! rule). The header lines are prepended by [`prepend_headers`], which leaves every
//! original byte as it was.
//!
//! Order and precedence follow amavis: banned and virus checks first (cheap and
//! decisive), then spam. The first infected or banned verdict ends the scan. A scanner
//! that is down, times out or answers nonsense is a *temporary* failure: the message is
//! not delivered (it stays at the ISP or in the queue and is retried) unless that
//! scanner is listed in `scan.fail_open`.
//!
//! This module must not touch the spool, the queue or the network beyond the scanners'
//! own addresses. The SMTP server calls [`Scanner::verdict`] before answering DATA so it
//! can reject at SMTP time.
//!
//! # Security
//! Message bytes are attacker-controlled. They are passed to scanners unchanged and
//! parsed here only by mail-parser (banned names) and the zip crate (archive member
//! names, bounded counts and sizes). Scanner replies are read with size limits; a
//! scanner's own header suggestions (rspamd milter headers, command stdout) are checked
//! to be single well-formed header lines before they are added.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::config::scan::ScanConfig;
use crate::message::Envelope;

pub mod banned;
pub mod bogofilter;
pub mod clamd;
pub mod command;
pub mod rspamd;
pub mod spamd;
pub mod stage;

/// The scanners whose verdicts are about spam (skipped for big messages).
pub const SPAM_SCANNERS: &[&str] = &["spamd", "rspamd", "bogofilter"];

/// What one scanner concluded about a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Clean,
    /// A virus, by the scanner's name for it (`Test.EICAR.NDB.UNOFFICIAL`).
    Infected(String),
    /// Spam, with the scanner's score (0 where it has none) and rule names.
    Spam {
        score: f64,
        symbols: Vec<String>,
    },
    /// A banned attachment: which part and which rule.
    Banned(String),
    /// The command hook chose an action itself (its exit code mapped to one).
    Action {
        action: Action,
        reason: String,
    },
    /// The scanner could not give an answer. `temporary` errors defer the message.
    Error {
        reason: String,
        temporary: bool,
    },
}

impl Verdict {
    pub fn temporary_error(reason: impl Into<String>) -> Verdict {
        Verdict::Error {
            reason: reason.into(),
            temporary: true,
        }
    }
    /// The word stored in the quarantine index.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Infected(_) => "infected",
            Verdict::Spam { .. } => "spam",
            Verdict::Banned(_) => "banned",
            Verdict::Action { .. } => "command",
            Verdict::Error { .. } => "error",
        }
    }
    /// A short human description (notices, logs, SMTP replies).
    pub fn describe(&self) -> String {
        match self {
            Verdict::Clean => "clean".into(),
            Verdict::Infected(n) => format!("virus {n}"),
            Verdict::Spam { score, symbols } => {
                format!("spam (score {score:.1}; {})", symbols.join(","))
            }
            Verdict::Banned(r) => format!("banned content: {r}"),
            Verdict::Action { reason, .. } => reason.clone(),
            Verdict::Error { reason, .. } => format!("scanner error: {reason}"),
        }
    }
}

/// What happens to a message (config `[scan.actions]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Deliver normally, with the scanner's headers.
    Deliver,
    /// Deliver into the recipient's Junk folder (Sieve is not run).
    Junk,
    /// Hold under `data_dir/quarantine/` and notify the postmaster.
    Quarantine,
    /// Refuse: 554 at SMTP time, a permanent failure per recipient otherwise.
    Reject,
    /// Drop silently (logged). Never a default.
    Discard,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "deliver" => Action::Deliver,
            "junk" => Action::Junk,
            "quarantine" => Action::Quarantine,
            "reject" => Action::Reject,
            "discard" => Action::Discard,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }
}

/// The stage's conclusion for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Deliver (possibly with headers saying what was found).
    Deliver,
    /// Deliver into Junk.
    Junk,
    /// Quarantine: `scanner` caught it with `verdict`.
    Quarantine {
        scanner: &'static str,
        verdict: Verdict,
    },
    /// Refuse permanently; the text is safe to show the sender.
    Reject { scanner: &'static str, text: String },
    /// Drop, with the reason for the log.
    Discard {
        scanner: &'static str,
        reason: String,
    },
    /// Try again later: a scanner was unavailable.
    TempFail {
        scanner: &'static str,
        reason: String,
    },
}

/// One scanner's answer plus the header lines it wants added.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub verdict: Verdict,
    /// `(name, value)`; the value is unfolded, without CR/LF.
    pub headers: Vec<(String, String)>,
}

impl Checked {
    pub fn new(verdict: Verdict) -> Checked {
        Checked {
            verdict,
            headers: vec![],
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Checked {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// The full result of [`Scanner::verdict`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    /// Every scanner that ran, in order, with its verdict.
    pub reports: Vec<(&'static str, Verdict)>,
    /// Header lines to prepend (in this order) when the message is stored.
    pub headers: Vec<(String, String)>,
    pub decision: Decision,
}

impl ScanResult {
    /// The spam score of the first spam scanner that gave one (for Sieve's spamtest).
    pub fn spam(&self) -> Option<(bool, f64)> {
        self.reports.iter().find_map(|(_, v)| match v {
            Verdict::Spam { score, .. } => Some((true, *score)),
            _ => None,
        })
    }
    /// For Sieve's `spamtest`: `(is_spam, score)` when a spam scanner gave an answer.
    pub fn spam_status(&self) -> Option<(bool, f64)> {
        self.spam().or_else(|| {
            self.reports
                .iter()
                .any(|(n, v)| SPAM_SCANNERS.contains(n) && *v == Verdict::Clean)
                .then_some((false, 0.0))
        })
    }
    /// For Sieve's `virustest`: `Some(infected)` when clamd gave an answer.
    pub fn virus_status(&self) -> Option<bool> {
        self.reports.iter().find_map(|(n, v)| match (n, v) {
            (&"clamd", Verdict::Infected(_)) => Some(true),
            (&"clamd", Verdict::Clean) => Some(false),
            _ => None,
        })
    }
    /// True when a virus was found (whatever the action).
    pub fn infected(&self) -> bool {
        self.reports
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Infected(_)))
    }
    /// For the SMTP server, which asks before answering DATA: `Some((code, text))` to
    /// refuse now (554 for `reject`, 451 when a scanner is unavailable), `None` to
    /// accept (the queue's local delivery then applies junk/quarantine/discard).
    pub fn smtp_reply(&self) -> Option<(u16, String)> {
        match &self.decision {
            Decision::Reject { text, .. } => Some((554, text.clone())),
            Decision::TempFail { scanner, .. } => Some((
                451,
                format!("4.7.1 content scanner ({scanner}) unavailable, try again later"),
            )),
            _ => None,
        }
    }
    /// The message with this result's header lines in front.
    pub fn apply(&self, message: &[u8]) -> Vec<u8> {
        prepend_headers(message, &self.headers)
    }
}

/// One scanner.
#[async_trait::async_trait]
pub trait Check: Send + Sync {
    /// Its name (`clamd`, …), as in `scan.fail_open` and the quarantine index.
    fn name(&self) -> &'static str;
    /// Spam scanners are skipped for messages over `scan.spam_max_size`.
    fn is_spam_check(&self) -> bool {
        false
    }
    async fn check(&self, message: &[u8], envelope: &Envelope) -> Checked;
}

/// Errors building the scanners from the config.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("scan.{key}: {message}")]
    Config { key: &'static str, message: String },
}

/// The configured scanners, run in order, and what to do with each verdict.
#[derive(Clone)]
pub struct Scanner {
    checks: Vec<Arc<dyn Check>>,
    actions: Actions,
    fail_open: HashSet<String>,
    timeout: Duration,
    spam_max_size: u64,
    hostname: String,
}

#[derive(Debug, Clone, Copy)]
struct Actions {
    infected: Action,
    banned: Action,
    spam: Action,
}

impl Scanner {
    /// Builds every scanner `[scan]` names, in amavis order: banned, clamd, spamd,
    /// rspamd, bogofilter, command.
    pub fn from_config(cfg: &Config) -> Result<Scanner, ScanError> {
        let sc = &cfg.scan;
        let mut checks: Vec<Arc<dyn Check>> = Vec::new();
        if sc.banned {
            checks.push(Arc::new(banned::Banned::from_config(sc)));
        }
        if let Some(a) = &sc.clamd {
            let c = clamd::Clamd::parse(a, sc.clamd_max_size).ok_or(ScanError::Config {
                key: "clamd",
                message: format!("`{a}`: want unix:PATH or tcp:HOST:PORT"),
            })?;
            checks.push(Arc::new(c));
        }
        if let Some(a) = &sc.spamd {
            checks.push(Arc::new(spamd::Spamd::new(a, sc.spamd_user.clone())));
        }
        if let Some(a) = &sc.rspamd {
            let r = rspamd::Rspamd::parse(a).ok_or(ScanError::Config {
                key: "rspamd",
                message: format!("`{a}`: want http://HOST:PORT"),
            })?;
            checks.push(Arc::new(r));
        }
        if sc.bogofilter {
            checks.push(Arc::new(bogofilter::Bogofilter::new(
                &sc.bogofilter_path,
                cfg.data_dir.join("bogofilter"),
            )));
        }
        if let Some(argv) = &sc.command {
            checks.push(Arc::new(
                command::CommandHook::from_config(argv, sc).map_err(|m| ScanError::Config {
                    key: "command",
                    message: m,
                })?,
            ));
        }
        Self::with_checks(checks, sc, &cfg.hostname)
    }

    /// A scanner from explicit checks (tests, benchmarks, fakes).
    pub fn with_checks(
        checks: Vec<Arc<dyn Check>>,
        sc: &ScanConfig,
        hostname: &str,
    ) -> Result<Scanner, ScanError> {
        let act = |key: &'static str, s: &str| {
            Action::parse(s).ok_or(ScanError::Config {
                key,
                message: format!("unknown action `{s}`"),
            })
        };
        Ok(Scanner {
            checks,
            actions: Actions {
                infected: act("actions.infected", &sc.actions.infected)?,
                banned: act("actions.banned", &sc.actions.banned)?,
                spam: act("actions.spam", &sc.actions.spam)?,
            },
            fail_open: sc.fail_open.iter().cloned().collect(),
            timeout: Duration::from_secs(sc.timeout.max(1)),
            spam_max_size: sc.spam_max_size,
            hostname: hostname.to_string(),
        })
    }

    /// Overrides `scan.timeout` (tests, benchmarks).
    pub fn with_timeout(mut self, timeout: Duration) -> Scanner {
        self.timeout = timeout;
        self
    }

    /// The same scanner without the named check (quarantine release: re-run delivery
    /// without the scanner that caught the message).
    pub fn without(&self, name: &str) -> Scanner {
        let mut s = self.clone();
        s.checks.retain(|c| c.name() != name);
        s
    }

    /// No scanner configured: [`Scanner::verdict`] always says Deliver.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Names of the configured checks, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Runs the configured scanners over `bytes` and decides. Safe to call before
    /// answering SMTP DATA (`Decision::Reject` → 554, `TempFail` → 451).
    #[tracing::instrument(name = "scan", skip_all, fields(size = bytes.len()))]
    pub async fn verdict(&self, bytes: &[u8], envelope: &Envelope) -> ScanResult {
        let mut reports: Vec<(&'static str, Verdict)> = Vec::new();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut decisive: Option<(&'static str, Verdict)> = None;
        let mut spam: Option<(&'static str, Verdict)> = None;
        let mut command_action: Option<(&'static str, Action, String)> = None;
        let mut spam_checked = false;
        for check in &self.checks {
            let name = check.name();
            if check.is_spam_check() && bytes.len() as u64 > self.spam_max_size {
                debug!(scanner = name, "skipped: message over scan.spam_max_size");
                continue;
            }
            let started = std::time::Instant::now();
            let checked =
                match tokio::time::timeout(self.timeout, check.check(bytes, envelope)).await {
                    Ok(c) => c,
                    Err(_) => Checked::new(Verdict::temporary_error(format!(
                        "no answer within {} ms",
                        self.timeout.as_millis()
                    ))),
                };
            debug!(scanner = name, verdict = ?checked.verdict, ms = started.elapsed().as_millis() as u64, "scanned");
            headers.extend(checked.headers.iter().cloned());
            if check.is_spam_check() && !matches!(checked.verdict, Verdict::Error { .. }) {
                spam_checked = true;
            }
            reports.push((name, checked.verdict.clone()));
            match checked.verdict {
                Verdict::Clean => {}
                Verdict::Infected(_) | Verdict::Banned(_) => {
                    decisive = Some((name, checked.verdict));
                    break;
                }
                Verdict::Spam { .. } => {
                    if spam.is_none() {
                        spam = Some((name, checked.verdict));
                    }
                }
                Verdict::Action { action, reason } => {
                    command_action = Some((name, action, reason));
                }
                Verdict::Error { reason, temporary } => {
                    if self.fail_open.contains(name) {
                        warn!(scanner = name, %reason, "scanner failed; fail_open: not scanned by it");
                        headers.push((
                            "X-Zolder-Scan".into(),
                            format!("{name} unavailable, not checked ({})", one_line(&reason)),
                        ));
                    } else if temporary {
                        warn!(scanner = name, %reason, "scanner failed: message deferred");
                        return ScanResult {
                            reports,
                            headers,
                            decision: Decision::TempFail {
                                scanner: name,
                                reason,
                            },
                        };
                    } else {
                        warn!(scanner = name, %reason, "scanner cannot check this message");
                        headers.push((
                            "X-Zolder-Scan".into(),
                            format!(
                                "{name} could not check this message ({})",
                                one_line(&reason)
                            ),
                        ));
                    }
                }
            }
        }

        // Summary headers a filter (Sieve, a mail client) keys on.
        if let Some((_, v)) = &decisive {
            let (what, detail) = match v {
                Verdict::Infected(n) => ("INFECTED", format!("virus {n}")),
                Verdict::Banned(r) => ("BANNED", r.clone()),
                _ => unreachable!("only infected/banned are decisive"),
            };
            headers.push((
                "X-Zolder-Alert".into(),
                format!("{what}, message contains {}", one_line(&detail)),
            ));
        }
        if self.checks.iter().any(|c| c.name() == "clamd")
            && reports.iter().any(|(n, _)| *n == "clamd")
        {
            let status = match reports.iter().find(|(n, _)| *n == "clamd") {
                Some((_, Verdict::Infected(n))) => format!("Infected ({})", one_line(n)),
                Some((_, Verdict::Clean)) => "Clean".into(),
                _ => "Not scanned".into(),
            };
            headers.push(("X-Virus-Status".into(), status));
            headers.push((
                "X-Virus-Scanned".into(),
                format!("ClamAV via zolder on {}", self.hostname),
            ));
        }
        if spam_checked {
            let flag = if spam.is_some() { "YES" } else { "NO" };
            headers.push(("X-Spam-Flag".into(), flag.into()));
        }

        let decision = if let Some((name, v)) = decisive {
            let action = match v {
                Verdict::Infected(_) => self.actions.infected,
                _ => self.actions.banned,
            };
            self.decide(action, name, v)
        } else if let Some((name, action, reason)) = command_action {
            let v = Verdict::Action { action, reason };
            self.decide(action, name, v)
        } else if let Some((name, v)) = spam {
            self.decide(self.actions.spam, name, v)
        } else {
            Decision::Deliver
        };
        if decision != Decision::Deliver {
            info!(?decision, "scan decision");
        }
        ScanResult {
            reports,
            headers,
            decision,
        }
    }

    fn decide(&self, action: Action, scanner: &'static str, verdict: Verdict) -> Decision {
        match action {
            Action::Deliver => Decision::Deliver,
            Action::Junk => Decision::Junk,
            Action::Quarantine => Decision::Quarantine { scanner, verdict },
            Action::Reject => Decision::Reject {
                scanner,
                text: match &verdict {
                    Verdict::Infected(n) => format!("5.7.1 message contains a virus ({n})"),
                    Verdict::Banned(r) => format!("5.7.1 message contains banned content ({r})"),
                    Verdict::Spam { .. } => "5.7.1 message looks like spam".into(),
                    _ => "5.7.1 message refused by content filter".into(),
                },
            },
            Action::Discard => Decision::Discard {
                scanner,
                reason: verdict.describe(),
            },
        }
    }
}

/// Reads at most `cap` bytes of a child's pipe (and stops there).
pub(crate) async fn read_capped(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: u64,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    r.take(cap).read_to_end(&mut out).await?;
    Ok(out)
}

/// Feeds `message` to a child's stdin while reading its stdout (at most `stdout_cap`
/// bytes) and stderr (4 KiB), so a full pipe never deadlocks either side, then waits
/// for it. A child that exits without reading everything is fine (EPIPE is ignored).
pub(crate) async fn feed_and_collect(
    child: &mut tokio::process::Child,
    message: &[u8],
    stdout_cap: u64,
) -> (
    std::io::Result<Vec<u8>>,
    std::io::Result<Vec<u8>>,
    std::io::Result<std::process::ExitStatus>,
) {
    use tokio::io::AsyncWriteExt;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let e = || std::io::Error::other("child spawned without piped stdio");
        return (Err(e()), Err(e()), Err(e()));
    };
    let msg = message.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&msg).await;
        let _ = stdin.shutdown().await;
    });
    let (out, err) = tokio::join!(
        read_capped(&mut stdout, stdout_cap),
        read_capped(&mut stderr, 4096)
    );
    let status = child.wait().await;
    let _ = writer.await;
    (out, err, status)
}

/// Replaces CR, LF and other control characters so a value fits on one header line.
pub fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.truncate(out.trim_end().len());
    if out.len() > 900 {
        let mut cut = 900;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// True when `name` is a valid header field name (RFC 5322: printable ASCII but ':').
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Puts `headers` in front of `message`, using the message's own line ending (CRLF
/// unless its first line ends in a bare LF). The original bytes follow unchanged.
pub fn prepend_headers(message: &[u8], headers: &[(String, String)]) -> Vec<u8> {
    if headers.is_empty() {
        return message.to_vec();
    }
    let eol: &[u8] = match message.iter().position(|&b| b == b'\n') {
        Some(i) if i == 0 || message[i - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    };
    let mut out = Vec::with_capacity(message.len() + headers.len() * 64);
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(one_line(v).as_bytes());
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;

    struct Fake(&'static str, Verdict, bool);
    #[async_trait::async_trait]
    impl Check for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn is_spam_check(&self) -> bool {
            self.2
        }
        async fn check(&self, _: &[u8], _: &Envelope) -> Checked {
            Checked::new(self.1.clone())
        }
    }
    struct Hang;
    #[async_trait::async_trait]
    impl Check for Hang {
        fn name(&self) -> &'static str {
            "clamd"
        }
        async fn check(&self, _: &[u8], _: &Envelope) -> Checked {
            std::future::pending().await
        }
    }

    fn env() -> Envelope {
        Envelope::new(
            Some("a@example.org".into()),
            vec!["bouke@zolder.thuis".into()],
            Source::Import,
        )
    }

    fn scanner(checks: Vec<Arc<dyn Check>>, cfg: &ScanConfig) -> Scanner {
        Scanner::with_checks(checks, cfg, "zolder.test").unwrap()
    }

    #[tokio::test]
    async fn precedence_and_default_actions() {
        let cfg = ScanConfig::default();
        let s = scanner(
            vec![
                Arc::new(Fake(
                    "spamd",
                    Verdict::Spam {
                        score: 9.0,
                        symbols: vec!["X".into()],
                    },
                    true,
                )),
                Arc::new(Fake("clamd", Verdict::Infected("Eicar".into()), false)),
            ],
            &cfg,
        );
        let r = s.verdict(b"Subject: x\r\n\r\nhi\r\n", &env()).await;
        match r.decision {
            Decision::Quarantine { scanner, verdict } => {
                assert_eq!(scanner, "clamd");
                assert_eq!(verdict, Verdict::Infected("Eicar".into()));
            }
            d => panic!("{d:?}"),
        }
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n == "X-Virus-Status" && v.contains("Eicar"))
        );
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n == "X-Spam-Flag" && v == "YES")
        );

        let spam_only = scanner(
            vec![Arc::new(Fake(
                "spamd",
                Verdict::Spam {
                    score: 9.0,
                    symbols: vec![],
                },
                true,
            ))],
            &cfg,
        );
        assert_eq!(
            spam_only.verdict(b"x", &env()).await.decision,
            Decision::Junk
        );
    }

    #[tokio::test]
    async fn failures_defer_unless_fail_open() {
        let mut cfg = ScanConfig {
            timeout: 1,
            ..Default::default()
        };
        let s = scanner(vec![Arc::new(Hang)], &cfg).with_timeout(Duration::from_millis(20));
        let r = s.verdict(b"x", &env()).await;
        assert!(
            matches!(
                r.decision,
                Decision::TempFail {
                    scanner: "clamd",
                    ..
                }
            ),
            "{r:?}"
        );
        cfg.fail_open = vec!["clamd".into()];
        let s = scanner(vec![Arc::new(Hang)], &cfg).with_timeout(Duration::from_millis(20));
        let r = s.verdict(b"x", &env()).await;
        assert_eq!(r.decision, Decision::Deliver);
        assert!(r.headers.iter().any(|(n, _)| n == "X-Zolder-Scan"));
        assert!(s.without("clamd").is_empty());
    }

    #[tokio::test]
    async fn spam_checks_skip_big_messages_and_actions_are_configurable() {
        let mut cfg = ScanConfig {
            spam_max_size: 4,
            ..Default::default()
        };
        cfg.actions.spam = "reject".into();
        let s = scanner(
            vec![Arc::new(Fake(
                "spamd",
                Verdict::Spam {
                    score: 9.0,
                    symbols: vec![],
                },
                true,
            ))],
            &cfg,
        );
        assert_eq!(
            s.verdict(b"12345", &env()).await.decision,
            Decision::Deliver
        );
        assert!(matches!(
            s.verdict(b"123", &env()).await.decision,
            Decision::Reject {
                scanner: "spamd",
                ..
            }
        ));
    }

    #[test]
    fn prepend_keeps_bytes_and_line_endings() {
        let h = vec![("X-A".to_string(), "1\r\nX-Evil: 2".to_string())];
        assert_eq!(
            prepend_headers(b"S: x\r\n\r\nb", &h),
            b"X-A: 1  X-Evil: 2\r\nS: x\r\n\r\nb"
        );
        assert_eq!(
            prepend_headers(b"S: x\n\nb", &h),
            b"X-A: 1  X-Evil: 2\nS: x\n\nb"
        );
        assert!(valid_header_name("X-Spam-Flag"));
        assert!(!valid_header_name("X Spam"));
        assert!(!valid_header_name(""));
    }
}
