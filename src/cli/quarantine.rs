//! `zolder quarantine list|show|release|delete`: the messages the scan stage held.
//!
//! `release` re-runs local delivery for the held message without the scanner that
//! caught it (the other scanners and the recipients' Sieve scripts still run).

use std::path::Path;

use clap::Subcommand;

use super::{EX_NOUSER, EX_OK, EX_TEMPFAIL, load_config};
use crate::config::Config;
use crate::db;
use crate::db::quarantine as qdb;
use crate::deliver::quarantine::{Quarantine, QuarantineError};
use crate::message::{DeliveryReport, Incoming};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<QuarantineCommand>,
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// List held messages (default).
    #[command(after_help = "Example:\n  zolder quarantine list\n  zolder quarantine list --all")]
    List {
        /// Also list released messages.
        #[arg(long)]
        all: bool,
    },
    /// Show one held message: envelope, verdict and header (or the whole message).
    #[command(
        after_help = "Example:\n  zolder quarantine show 12\n  zolder quarantine show 12 --raw > held.eml"
    )]
    Show {
        id: i64,
        /// Print the stored message exactly, nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Deliver a held message to its recipients, skipping the scanner that caught it.
    #[command(after_help = "Example:\n  zolder quarantine release 12")]
    Release { id: i64 },
    /// Delete a held message for good.
    #[command(after_help = "Example:\n  zolder quarantine delete 12")]
    Delete { id: i64 },
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string())
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let conn = db::open(&cfg.db_path())?;
    let q = Quarantine::new(&cfg.data_dir);
    match args
        .command
        .unwrap_or(QuarantineCommand::List { all: false })
    {
        QuarantineCommand::List { all } => {
            let rows = qdb::list(&conn, all)?;
            if rows.is_empty() {
                println!("the quarantine is empty");
                return Ok(EX_OK);
            }
            println!(
                "{:>5}  {:<16}  {:<10}  {:<28}  {:<24}  reason",
                "id", "held", "scanner", "from", "to"
            );
            for r in rows {
                let mut to = r.recipients.join(",");
                if to.len() > 24 {
                    to.truncate(21);
                    to.push_str("...");
                }
                let mut from = r.sender.clone().unwrap_or_else(|| "<>".into());
                if from.len() > 28 {
                    from.truncate(25);
                    from.push_str("...");
                }
                let status = if r.released.is_some() {
                    " (released)"
                } else {
                    ""
                };
                println!(
                    "{:>5}  {:<16}  {:<10}  {:<28}  {:<24}  {}{status}",
                    r.id,
                    when(r.created),
                    r.scanner,
                    from,
                    to,
                    r.reason
                );
            }
            Ok(EX_OK)
        }
        QuarantineCommand::Show { id, raw } => {
            let Some(r) = qdb::get(&conn, id)? else {
                eprintln!("zolder: no quarantined message {id}");
                return Ok(EX_NOUSER);
            };
            let bytes = q.read(&r)?;
            if raw {
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
                return Ok(EX_OK);
            }
            println!("id:          {}", r.id);
            println!("held:        {}", when(r.created));
            if let Some(t) = r.released {
                println!("released:    {}", when(t));
            }
            println!("verdict:     {} ({})", r.verdict, r.reason);
            println!("scanner:     {}", r.scanner);
            println!("source:      {}", r.source);
            println!("sender:      <{}>", r.sender.as_deref().unwrap_or(""));
            println!("recipients:  {}", r.recipients.join(", "));
            println!("size:        {} bytes", r.size);
            println!("file:        {}", q.path_of(&r.file).display());
            println!();
            let head = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .or_else(|| bytes.windows(2).position(|w| w == b"\n\n"))
                .unwrap_or(bytes.len());
            println!("{}", String::from_utf8_lossy(&bytes[..head]));
            Ok(EX_OK)
        }
        QuarantineCommand::Release { id } => {
            let (row, incoming) = match q.release_incoming(&conn, id) {
                Ok(x) => x,
                Err(e @ (QuarantineError::NotFound(_) | QuarantineError::Released(_))) => {
                    eprintln!("zolder: {e}");
                    return Ok(EX_NOUSER);
                }
                Err(e) => return Err(e.into()),
            };
            drop(conn);
            let report = deliver_released(&cfg, &row.scanner, incoming)?;
            for (rcpt, outcome) in &report.outcomes {
                println!("{rcpt}: {outcome:?}");
            }
            let conn = db::open(&cfg.db_path())?;
            if report.is_final() {
                q.finish_release(&conn, &row)?;
                println!("released {id}");
                Ok(EX_OK)
            } else {
                eprintln!("zolder: {id} stays in the quarantine; try again later");
                Ok(EX_TEMPFAIL)
            }
        }
        QuarantineCommand::Delete { id } => match q.delete(&conn, id) {
            Ok(()) => {
                println!("deleted {id}");
                Ok(EX_OK)
            }
            Err(e @ QuarantineError::NotFound(_)) => {
                eprintln!("zolder: {e}");
                Ok(EX_NOUSER)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// Runs local delivery for a released message with every scanner but `skip`, and
/// queues the mail that delivery generates (vacation replies, notices).
pub fn deliver_released(cfg: &Config, skip: &str, msg: Incoming) -> anyhow::Result<DeliveryReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = rt.block_on(crate::deliver::scan::stage::redeliver(cfg, skip, msg))?;
    for g in std::mem::take(&mut report.generated) {
        let what = format!("{} for {}", g.reason, g.recipients.join(", "));
        let m = crate::queue::NewMessage::new(
            g.sender,
            g.recipients,
            g.bytes,
            &format!("generated:{}", g.reason),
        );
        match crate::queue::enqueue_direct(cfg, m, db::now()) {
            Ok(qid) => println!("queued {what} as {qid}"),
            Err(e) => eprintln!("zolder: could not queue {what}: {e}"),
        }
    }
    Ok(report)
}
