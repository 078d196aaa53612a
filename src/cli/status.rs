//! `zolder status`: what every part is doing, one section per part, read from the
//! database (works whether or not the daemon runs). Sections so far: fetch accounts.
//! Each section is a function returning its text, so queue and scanners add theirs
//! beside it.

use std::path::Path;

use super::{EX_OK, load_config};
use crate::config::Config;
use crate::db::{self, Connection};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(path: &Path, _args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let conn = db::open(&cfg.db_path())?;
    let sections: Vec<(&str, String)> = vec![("Fetch accounts", fetch_section(&cfg, &conn)?)];
    for (title, body) in sections {
        println!("{title}");
        print!("{body}");
        println!();
    }
    Ok(EX_OK)
}

/// When, relative to now: "2026-01-01 10:00:00 (5 min ago)".
fn when(t: Option<i64>, now: i64) -> String {
    let Some(t) = t else { return "-".into() };
    let abs = chrono::DateTime::from_timestamp(t, 0)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| t.to_string());
    let d = t - now;
    if d.abs() < 2 {
        return format!("{abs} (just now)");
    }
    let rel = match d.abs() {
        0..=59 => format!("{}s", d.abs()),
        60..=5999 => format!("{} min", d.abs() / 60),
        _ => format!("{} h", d.abs() / 3600),
    };
    if d < 0 {
        format!("{abs} ({rel} ago)")
    } else {
        format!("{abs} (in {rel})")
    }
}

/// Per account: last poll, result, messages fetched, next poll, last error.
pub fn fetch_section(cfg: &Config, conn: &Connection) -> anyhow::Result<String> {
    let rows = db::fetch::statuses(conn)?;
    let now = db::now();
    let mut out = String::new();
    if cfg.accounts.is_empty() && rows.is_empty() {
        out.push_str("  (no accounts configured)\n");
        return Ok(out);
    }
    // zolder.toml's accounts and the fetchmailrc's (if it reads).
    let accounts = crate::config::fetchmailrc::load_accounts(cfg)
        .map(|(a, _)| a)
        .unwrap_or_else(|_| cfg.accounts.clone());
    let mut names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    for r in &rows {
        if !names.contains(&r.account) {
            names.push(r.account.clone());
        }
    }
    for n in names {
        let r = rows.iter().find(|r| r.account == n);
        let acc = accounts.iter().find(|a| a.name == n);
        let kind = match acc {
            Some(a) => format!(
                "{} {}@{}{}{}",
                match a.protocol {
                    crate::config::account::Protocol::Pop3 => "pop3",
                    crate::config::account::Protocol::Imap => "imap",
                },
                a.username,
                a.host,
                if a.idle { ", idle" } else { "" },
                if a.disabled { ", disabled" } else { "" }
            ),
            None => "(no longer configured)".into(),
        };
        out.push_str(&format!("  {n}: {kind}\n"));
        match r {
            None => out.push_str("    never polled\n"),
            Some(r) => {
                out.push_str(&format!(
                    "    last poll:  {}  result: {}  fetched: {}\n",
                    when(r.last_poll, now),
                    r.result.as_deref().unwrap_or("-"),
                    r.fetched
                ));
                out.push_str(&format!("    next poll:  {}\n", when(r.next_poll, now)));
                if let Some(e) = &r.last_error {
                    out.push_str(&format!("    last error: {e}\n"));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_section_shows_rows_and_unpolled_accounts() {
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
        let s = fetch_section(&cfg, &c).unwrap();
        assert!(s.contains("a: imap u@imap.x"), "{s}");
        assert!(s.contains("result: tempfail  fetched: 7"), "{s}");
        assert!(
            s.contains("(2 min ago)") && s.contains("(in 10 min)"),
            "{s}"
        );
        assert!(
            s.contains("last error: connect: imap.x:993: Connection refused"),
            "{s}"
        );
        assert!(s.contains("c: pop3 v@pop.x\n    never polled"), "{s}");
    }
}
