//! `zolder queue [list|show ID|retry ID|delete ID]` and the `mailq` listing.

use std::path::Path;

use clap::Subcommand;

use super::{EX_OK, EX_TEMPFAIL, EX_USAGE, load_config};
use crate::config::Config;
use crate::db::{self, queue as q};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<QueueCommand>,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Every queued message with its waiting recipients (the default).
    List,
    /// One message: envelope, every recipient's state, attempts and last error.
    Show { id: String },
    /// Make a message's waiting recipients due now (`all` = every message).
    Retry { id: String },
    /// Remove a message from the queue without sending or bouncing it.
    Delete { id: String },
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut conn = match db::open(&cfg.db_path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zolder queue: {e}");
            return Ok(EX_TEMPFAIL);
        }
    };
    match args.cmd.unwrap_or(QueueCommand::List) {
        QueueCommand::List => {
            print!("{}", mailq(&conn)?);
            Ok(EX_OK)
        }
        QueueCommand::Show { id } => {
            let Some(m) = q::message(&conn, &id)? else {
                eprintln!("zolder queue: no message {id}");
                return Ok(EX_USAGE);
            };
            println!("id:         {}", m.id);
            println!("sender:     <{}>", m.sender.clone().unwrap_or_default());
            println!("arrival:    {}", fmt_time(m.arrival));
            println!("size:       {}", m.size);
            println!("source:     {}", m.source);
            if let Some(x) = &m.message_id {
                println!("message-id: {x}");
            }
            if let Some(x) = &m.envid {
                println!("envid:      {x}");
            }
            if let Some(x) = &m.ret {
                println!("ret:        {x}");
            }
            println!(
                "file:       {}",
                crate::queue::Store::new(&cfg.data_dir)
                    .path(&m.id)
                    .display()
            );
            for r in q::recipients(&conn, &id)? {
                println!(
                    "  {} [{}] {} attempts={} next={}{}",
                    r.rcpt,
                    if r.local { "local" } else { "smarthost" },
                    r.state,
                    r.attempts,
                    fmt_time(r.next_attempt),
                    r.last_error
                        .map(|e| format!("\n      last error: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(EX_OK)
        }
        QueueCommand::Retry { id } => {
            let n = q::retry_now(&conn, (id != "all").then_some(id.as_str()), db::now())?;
            println!("{n} recipient(s) due now");
            poke(&cfg);
            Ok(EX_OK)
        }
        QueueCommand::Delete { id } => {
            let n = q::delete_messages(&mut conn, std::slice::from_ref(&id))?;
            if n == 0 {
                eprintln!("zolder queue: no message {id}");
                return Ok(EX_USAGE);
            }
            crate::queue::Store::new(&cfg.data_dir).remove(&id)?;
            println!("deleted {id}");
            Ok(EX_OK)
        }
    }
}

fn poke(cfg: &Config) {
    let _ =
        crate::queue::control::request(&cfg.data_dir, "wake", std::time::Duration::from_secs(5));
}

fn fmt_time(t: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_opt(t, 0)
        .single()
        .map(|d| d.format("%a %b %e %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Postfix-style `mailq` output: id (with `*` while in flight), size, arrival, sender,
/// then each waiting recipient with its last error.
pub fn mailq(conn: &db::Connection) -> anyhow::Result<String> {
    let list = q::list(conn)?;
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("Mail queue is empty\n");
        return Ok(out);
    }
    out.push_str("-Queue ID-            --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut n = 0;
    let mut bytes = 0i64;
    for (m, rcpts) in &list {
        let pending: Vec<_> = rcpts.iter().filter(|r| r.is_pending()).collect();
        if pending.is_empty() {
            continue;
        }
        n += 1;
        bytes += m.size;
        let active = if pending.iter().any(|r| r.state == "inflight") {
            "*"
        } else {
            " "
        };
        out.push_str(&format!(
            "{:<20}{} {:>8} {:>20} {}\n",
            m.id,
            active,
            m.size,
            fmt_time(m.arrival),
            m.sender.clone().unwrap_or("MAILER-DAEMON".into())
        ));
        for r in pending {
            if let Some(e) = &r.last_error {
                out.push_str(&format!("    ({e})\n"));
            }
            out.push_str(&format!(
                "                                         {}\n",
                r.rcpt
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "-- {} Kbytes in {n} Request{}.\n",
        bytes / 1024,
        if n == 1 { "" } else { "s" }
    ));
    Ok(out)
}
