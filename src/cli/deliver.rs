//! `zolder deliver --user NAME [--from ADDR] [--folder F]`: the local delivery agent.
//! One message on stdin goes through the delivery pipeline to a user (or alias); the
//! exit code tells the caller (fetchmail's `mda`, procmail, a cron job) what happened,
//! as sendmail's delivery agents do (sysexits): 0 delivered, 65 unusable input,
//! 67 unknown user, 73 can't create the mailbox, 75 try again later.
//!
//! A leading mbox `From ` line (what procmail and `formail` hand over) is the envelope
//! sender unless `--from` is given, and is not stored as part of the message.
//!
//! # Security
//! stdin is untrusted: it is read up to `limits.message_size` and no further. This
//! command writes into data_dir directly, so it must run as the user that owns
//! data_dir (the maildrop path for other users is the daemon's).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{EX_CANTCREAT, EX_DATAERR, EX_NOUSER, EX_OK, EX_TEMPFAIL};
use crate::deliver::{LocalDelivery, route};
use crate::message::{Deliver, Envelope, Incoming, RawMessage, RcptOutcome, Source};
use crate::spool::Spool;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The local user (or alias) to deliver to.
    #[arg(long, short = 'u', value_name = "NAME")]
    pub user: String,
    /// The envelope sender (`Return-Path:`); "<>" or "" for none.
    #[arg(long, short = 'f', value_name = "ADDR")]
    pub from: Option<String>,
    /// Deliver into this folder instead of INBOX (created if missing), e.g. "Lists.Rust".
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
    /// Exactly-once key: a second delivery with the same key to the same user is a
    /// no-op that still exits 0.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<i32> {
    // A config problem is the admin's to fix; exit 75 so the caller keeps the message.
    let cfg = match super::load_config(config) {
        Ok(c) => c,
        Err(_) => return Ok(EX_TEMPFAIL),
    };
    // Run by root (fetchmail as root with `mda`): deliver as the owner of data_dir.
    if let Err(e) = crate::service::privilege::act_as_owner(&cfg) {
        eprintln!("zolder deliver: {e}");
        return Ok(EX_TEMPFAIL);
    }
    let limit = cfg.limits.message_size;
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("zolder deliver: reading stdin: {e}");
        return Ok(EX_TEMPFAIL);
    }
    if bytes.len() as u64 > limit {
        eprintln!("zolder deliver: message larger than limits.message_size ({limit} bytes)");
        return Ok(EX_DATAERR);
    }
    let (from_line_sender, body) = split_from_line(bytes);
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        eprintln!("zolder deliver: empty message on stdin");
        return Ok(EX_DATAERR);
    }
    // The envelope sender: -f, else the mbox `From ` line, else the message's own
    // Return-Path (what the MTA that handed it over recorded).
    let sender = match args
        .from
        .or(from_line_sender)
        .or_else(|| return_path(&body))
    {
        Some(s) if s.trim_matches(['<', '>', ' ']).is_empty() => None,
        Some(s) => Some(
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        ),
        None => None,
    };

    // Unknown user before touching anything.
    let targets = match route::resolve(&cfg, &args.user) {
        Ok(t) => t,
        Err(o) => {
            eprintln!("zolder deliver: {}: {}", args.user, describe(&o));
            return Ok(code_for(&o));
        }
    };
    let spool = match Spool::open(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zolder deliver: {e}");
            return Ok(if e.is_cant_create() {
                EX_CANTCREAT
            } else {
                EX_TEMPFAIL
            });
        }
    };
    for t in &targets {
        if let route::Target::Local { user, .. } = t
            && let Err(e) = spool.prepare_user(user)
        {
            eprintln!("zolder deliver: {user}: {e}");
            return Ok(if e.is_cant_create() {
                EX_CANTCREAT
            } else {
                EX_TEMPFAIL
            });
        }
    }

    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string());
    let mut envelope = Envelope::new(sender, vec![args.user.clone()], Source::Local { user: me });
    envelope.folder = args.folder;
    envelope.idempotency_key = args.idempotency_key;
    let msg = Incoming {
        envelope,
        message: RawMessage::new(body),
    };
    let cfg = Arc::new(cfg);
    // The scanners and Sieve, as in the daemon ([scan], data_dir/sieve).
    let pipeline = crate::deliver::scan::stage::wire(&cfg, LocalDelivery::new(cfg.clone(), spool))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(pipeline.deliver(msg));
    // Mail the delivery generated (a Sieve redirect, a vacation reply, a quarantine
    // notice, a forward to a remote alias target) goes into the queue, as the daemon
    // does it; the daemon, when running, is woken to relay it now.
    let mut queued = 0;
    for g in report.generated.iter().cloned() {
        let reason = g.reason.clone();
        let m = crate::queue::NewMessage::from(g);
        let to = m
            .recipients
            .iter()
            .map(|r| r.addr.clone())
            .collect::<Vec<_>>()
            .join(", ");
        match crate::queue::enqueue_direct(&cfg, m, crate::db::now()) {
            Ok(id) => {
                queued += 1;
                tracing::info!(queue_id = %id, %reason, "queued mail generated during delivery");
            }
            Err(e) => {
                // The delivery itself stands; say what was not sent.
                eprintln!("zolder deliver: cannot queue the {reason} message for {to}: {e}");
            }
        }
    }
    if queued > 0 {
        let _ = crate::queue::control::request(
            &cfg.data_dir,
            "wake",
            std::time::Duration::from_secs(5),
        );
    }
    let Some((rcpt, outcome)) = report.outcomes.first() else {
        return Ok(EX_TEMPFAIL);
    };
    if !outcome.is_delivered() {
        eprintln!("zolder deliver: {rcpt}: {}", describe(outcome));
    }
    Ok(code_for(outcome))
}

/// Splits off a leading mbox `From ` line, returning its sender address.
fn split_from_line(mut bytes: Vec<u8>) -> (Option<String>, Vec<u8>) {
    if !bytes.starts_with(b"From ") {
        return (None, bytes);
    }
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = String::from_utf8_lossy(&bytes[5..end]).into_owned();
    let sender = line.split_whitespace().next().map(str::to_string);
    bytes.drain(..(end + 1).min(bytes.len()));
    let sender = sender.filter(|s| s != "MAILER-DAEMON");
    (sender.or(Some(String::new())), bytes)
}

/// The address in the message's first `Return-Path:` header, if the header block has one.
fn return_path(msg: &[u8]) -> Option<String> {
    for line in msg.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let v = String::from_utf8_lossy(&line[12..]);
            let v = v.trim();
            let v = v.strip_prefix('<').unwrap_or(v);
            let v = v.split('>').next().unwrap_or("").trim();
            return Some(v.to_string());
        }
    }
    None
}

fn describe(o: &RcptOutcome) -> String {
    match o {
        RcptOutcome::Delivered => "delivered".into(),
        RcptOutcome::TempFail(r) => format!("temporary failure: {r}"),
        RcptOutcome::PermFail(c, r) => format!("{c} {r}"),
    }
}

/// sysexits for an outcome.
fn code_for(o: &RcptOutcome) -> i32 {
    match o {
        RcptOutcome::Delivered => EX_OK,
        RcptOutcome::TempFail(_) => EX_TEMPFAIL,
        RcptOutcome::PermFail(550 | 553, t) if t.starts_with("5.1.") => EX_NOUSER,
        RcptOutcome::PermFail(..) => EX_DATAERR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_is_the_sender() {
        let (s, b) =
            split_from_line(b"From alice@x Wed Nov 25 14:46:27 2026\nA: b\n\nc\n".to_vec());
        assert_eq!(s.as_deref(), Some("alice@x"));
        assert_eq!(b, b"A: b\n\nc\n");
        let (s, b) = split_from_line(b"A: b\n".to_vec());
        assert_eq!((s, b), (None, b"A: b\n".to_vec()));
        let (s, _) = split_from_line(b"From MAILER-DAEMON Wed Nov 25 14:46:27 2026\n\n".to_vec());
        assert_eq!(s.as_deref(), Some(""));
    }

    #[test]
    fn return_path_is_the_fallback_sender() {
        assert_eq!(
            return_path(
                b"Received: x\r\nReturn-Path: <bob@isp.example>\r\n\r\nReturn-Path: <no>\r\n"
            )
            .as_deref(),
            Some("bob@isp.example")
        );
        assert_eq!(return_path(b"return-path: <>\n\n").as_deref(), Some(""));
        assert_eq!(return_path(b"Subject: x\n\nReturn-Path: <a@b>\n"), None);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            code_for(&RcptOutcome::PermFail(
                550,
                "5.1.1 <x>: no such user here".into()
            )),
            EX_NOUSER
        );
        assert_eq!(
            code_for(&RcptOutcome::PermFail(554, "5.4.6 loop".into())),
            EX_DATAERR
        );
        assert_eq!(code_for(&RcptOutcome::TempFail("disk".into())), EX_TEMPFAIL);
    }
}
