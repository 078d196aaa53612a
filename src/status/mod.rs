//! The status report: what every part of zolder is doing, read from the database so it
//! is the same whether the daemon runs or not. `zolder status` prints it; the daemon
//! serves it over HTTP on `[listen] status` ([`http`]).
//!
//! Reads only; writes nothing.

use serde::Serialize;

use crate::config::Config;
use crate::db::{self, Connection};

pub mod http;

/// Everything `zolder status` and the status page show.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hostname: String,
    pub version: &'static str,
    pub generated: i64,
    pub accounts: Vec<AccountStatus>,
    pub queue: QueueStatus,
    pub quarantine: QuarantineStatus,
    pub mailboxes: Vec<MailboxStatus>,
    pub events: Vec<db::status::EventRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub name: String,
    /// "pop3 user@host, idle" for a configured account.
    pub kind: Option<String>,
    pub configured: bool,
    pub last_poll: Option<i64>,
    pub result: Option<String>,
    pub fetched: i64,
    pub next_poll: Option<i64>,
    pub last_error: Option<String>,
    /// A poll in progress since then (or one that could not record its end).
    pub running_since: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Messages with recipients still waiting.
    pub messages: i64,
    /// Recipients still waiting.
    pub recipients: i64,
    /// Waiting recipients with the reason they wait.
    pub deferred: Vec<Deferred>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deferred {
    pub id: String,
    pub sender: Option<String>,
    pub recipient: String,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineStatus {
    pub held: usize,
    pub newest: Vec<Held>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub id: i64,
    pub created: i64,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub verdict: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub user: String,
    pub mailbox: String,
    pub messages: i64,
    pub unseen: i64,
}

/// Gathers the report.
pub fn gather(cfg: &Config, conn: &Connection) -> db::Result<Report> {
    let rows = db::fetch::statuses(conn)?;
    let running = db::fetch::running(conn)?;
    // zolder.toml's accounts and the fetchmailrc's (when it reads; a broken fetchmailrc
    // leaves the running accounts, whose rows still show below).
    let configured = crate::config::fetchmailrc::load_accounts(cfg)
        .map(|(a, _)| a)
        .unwrap_or_else(|_| cfg.accounts.clone());
    let mut names: Vec<String> = configured.iter().map(|a| a.name.clone()).collect();
    for r in &rows {
        if !names.contains(&r.account) {
            names.push(r.account.clone());
        }
    }
    let accounts = names
        .into_iter()
        .map(|n| {
            let r = rows.iter().find(|r| r.account == n);
            let acc = configured.iter().find(|a| a.name == n);
            let running_since = running.iter().find(|(a, _)| *a == n).map(|(_, t)| *t);
            AccountStatus {
                running_since,
                kind: acc.map(|a| {
                    format!(
                        "{} {}@{}{}{}{}",
                        match a.protocol {
                            crate::config::account::Protocol::Pop3 => "pop3",
                            crate::config::account::Protocol::Imap => "imap",
                        },
                        a.username,
                        a.host,
                        if a.idle { ", idle" } else { "" },
                        if a.schedule.as_deref() == Some("manual") {
                            ", manual: `zolder fetch` or SIGUSR1"
                        } else {
                            ""
                        },
                        if a.disabled { ", disabled" } else { "" }
                    )
                }),
                name: n,
                configured: acc.is_some(),
                last_poll: r.and_then(|r| r.last_poll),
                result: r.and_then(|r| r.result.clone()),
                fetched: r.map(|r| r.fetched).unwrap_or(0),
                next_poll: r.and_then(|r| r.next_poll),
                last_error: r.and_then(|r| r.last_error.clone()),
            }
        })
        .collect();

    let (messages, recipients) = db::queue::counts(conn)?;
    let mut deferred = Vec::new();
    for (m, rcpts) in db::queue::list(conn)? {
        for r in rcpts
            .into_iter()
            .filter(|r| r.state == "queued" || r.state == "inflight")
        {
            deferred.push(Deferred {
                id: m.id.clone(),
                sender: m.sender.clone(),
                recipient: r.rcpt,
                attempts: r.attempts,
                next_attempt: r.next_attempt,
                last_error: r.last_error,
            });
        }
    }
    deferred.truncate(100);

    let held_rows = db::quarantine::list(conn, false)?;
    let quarantine = QuarantineStatus {
        held: held_rows.len(),
        newest: held_rows
            .iter()
            .rev()
            .take(20)
            .map(|q| Held {
                id: q.id,
                created: q.created,
                sender: q.sender.clone(),
                recipients: q.recipients.clone(),
                verdict: q.verdict.clone(),
                reason: q.reason.clone(),
            })
            .collect(),
    };

    let mailboxes = db::status::mailbox_counts(conn)?
        .into_iter()
        .map(|(user, mailbox, messages, unseen)| MailboxStatus {
            user,
            mailbox,
            messages,
            unseen,
        })
        .collect();

    Ok(Report {
        hostname: cfg.hostname.clone(),
        version: env!("CARGO_PKG_VERSION"),
        generated: db::now(),
        accounts,
        queue: QueueStatus {
            messages,
            recipients,
            deferred,
        },
        quarantine,
        mailboxes,
        events: db::status::recent_events(conn, 30)?,
    })
}

/// "2026-01-01 10:00:00 (5 min ago)" / "(in 3 min)"; "-" for never.
pub fn when(t: Option<i64>, now: i64) -> String {
    let Some(t) = t else { return "-".into() };
    let abs = chrono::DateTime::from_timestamp(t, 0)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| t.to_string());
    let d = t - now;
    let rel = match d.abs() {
        0..=59 => format!("{} s", d.abs()),
        60..=5999 => format!("{} min", d.abs() / 60),
        _ => format!("{} h", d.abs() / 3600),
    };
    if d < 0 {
        format!("{abs} ({rel} ago)")
    } else {
        format!("{abs} (in {rel})")
    }
}

impl Report {
    /// The plain-text form (`zolder status`, and the page's body).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let now = self.generated;
        let mut o = String::new();
        let _ = writeln!(o, "zolder {} on {}", self.version, self.hostname);
        let _ = writeln!(o, "\nFetch accounts");
        if self.accounts.is_empty() {
            let _ = writeln!(o, "  (none configured)");
        }
        for a in &self.accounts {
            let _ = writeln!(
                o,
                "  {}: {}",
                a.name,
                a.kind.as_deref().unwrap_or("(no longer configured)")
            );
            if let Some(t) = a.running_since {
                let _ = writeln!(o, "    polling now (started {})", when(Some(t), now));
            }
            if a.last_poll.is_none() && a.result.is_none() {
                let _ = writeln!(o, "    never polled");
                continue;
            }
            let _ = writeln!(
                o,
                "    last poll:  {}  result: {}  fetched: {}",
                when(a.last_poll, now),
                a.result.as_deref().unwrap_or("-"),
                a.fetched
            );
            let _ = writeln!(o, "    next poll:  {}", when(a.next_poll, now));
            if let Some(e) = &a.last_error {
                let _ = writeln!(o, "    last error: {e}");
            }
        }
        let _ = writeln!(
            o,
            "\nOutgoing queue: {} message(s), {} recipient(s) waiting",
            self.queue.messages, self.queue.recipients
        );
        for d in &self.queue.deferred {
            let _ = writeln!(
                o,
                "  {} {} → {}: {} attempt(s), next {}{}",
                d.id,
                d.sender
                    .as_deref()
                    .map(|s| format!("<{s}>"))
                    .unwrap_or_else(|| "<>".into()),
                d.recipient,
                d.attempts,
                when(Some(d.next_attempt), now),
                d.last_error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(o, "\nQuarantine: {} message(s) held", self.quarantine.held);
        for h in &self.quarantine.newest {
            let _ = writeln!(
                o,
                "  #{} {} from {} to {}: {} ({})",
                h.id,
                when(Some(h.created), now),
                h.sender.as_deref().unwrap_or("<>"),
                h.recipients.join(", "),
                h.verdict,
                h.reason
            );
        }
        let _ = writeln!(o, "\nMailboxes");
        for m in &self.mailboxes {
            let _ = writeln!(
                o,
                "  {}/{}: {} message(s), {} unseen",
                m.user, m.mailbox, m.messages, m.unseen
            );
        }
        if !self.events.is_empty() {
            let _ = writeln!(o, "\nRecent events");
            for e in &self.events {
                let _ = writeln!(
                    o,
                    "  {} {} {}: {}",
                    when(Some(e.time), now),
                    e.kind,
                    e.subject,
                    e.text
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn accounts_show_rows_and_unpolled_ones() {
        let cfg = Config::from_str_at(
            "[[accounts]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"imap.x\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"b\"]\n\n[[accounts]]\nname = \"c\"\nprotocol = \"pop3\"\nhost = \"pop.x\"\nusername = \"v\"\npassword = \"p\"\ndeliver_to = [\"b\"]\n",
            Path::new("/tmp/z.toml"),
            false,
        )
        .unwrap();
        let c = db::open_memory().unwrap();
        db::fetch::set_status(
            &c,
            &db::fetch::Status {
                account: "a".into(),
                last_poll: Some(db::now() - 120),
                result: Some("tempfail".into()),
                fetched: 7,
                next_poll: Some(db::now() + 600),
                last_error: Some("connect: imap.x:993: Connection refused".into()),
            },
        )
        .unwrap();
        let s = gather(&cfg, &c).unwrap().to_text();
        assert!(s.contains("a: imap u@imap.x"), "{s}");
        assert!(s.contains("result: tempfail  fetched: 7"), "{s}");
        assert!(
            s.contains("(2 min ago)") && s.contains("(in 10 min)"),
            "{s}"
        );
        assert!(s.contains("Connection refused"), "{s}");
        assert!(s.contains("c: pop3 v@pop.x"), "{s}");
        assert!(s.contains("never polled"), "{s}");

        // A poll that starts and cannot record its end (disk full) leaves the last
        // result and its reason in view.
        db::fetch::set_running(&c, "a").unwrap();
        let s = gather(&cfg, &c).unwrap().to_text();
        assert!(s.contains("polling now (started"), "{s}");
        assert!(s.contains("result: tempfail"), "{s}");
        assert!(s.contains("Connection refused"), "{s}");
        assert!(!s.contains("result: running"), "{s}");
    }
}
