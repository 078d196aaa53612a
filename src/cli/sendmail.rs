//! `zolder sendmail` — and the same binary called as `sendmail`, `mailq` or
//! `newaliases` — with Postfix's flags and exit codes (sendmail(1), sysexits.h):
//! 0 queued durably, 64 usage, 65 unreadable input, 69 unavailable, 71 no login
//! name, 75 queue unavailable (try again), 77 not permitted.
//!
//! Where the message goes: the owner of `data_dir` (the daemon's user, the quickstart
//! owner) queues it directly (file fsync, rename, folder fsync, committed row) and a
//! running daemon is poked; root first becomes that owner (so the daemon can read what
//! root queued). Anyone else — a family member's mutt, their cron jobs — hands it to
//! the maildrop through the setgid helper `zolder-postdrop` (Postfix's model: the
//! daemon picks it up and treats it as untrusted; [`crate::cli::postdrop`]). Either way
//! the message waits while the daemon is stopped, exit 0 means it is on disk, and a
//! non-zero exit means it will not be sent.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::{EX_DATAERR, EX_NOPERM, EX_OK, EX_OSERR, EX_TEMPFAIL, EX_USAGE};
use crate::config::Config;
use crate::submit::sendmail::{self as sm, Mode, Opts};

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// sendmail(1) flags and recipients, e.g. `-t -i`, `-f sender`, `-bp`, `-q`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<i32> {
    Ok(main_with(Some(config), &args.rest, None))
}

/// Called when the binary runs as `sendmail`, `mailq` or `newaliases`.
pub fn main_compat(argv0: &str) -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    super::init_logging(0);
    let forced = match argv0 {
        "mailq" => Some(Mode::ListQueue),
        "newaliases" => Some(Mode::NewAliases),
        _ => None,
    };
    main_with(None, &args, forced)
}

const USAGE: &str = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-N dsn] [-R full|hdrs] [-V envid] [--] recipient...
       sendmail -bp (= mailq)   sendmail -q [-qRsite | -qIid]   sendmail -bs

Reads a message on stdin and queues it (cron's mail, mutt's sendmail). Exit codes:
0 queued durably, 64 usage, 65 unreadable input, 71 no login name, 75 try again later
(nothing was queued), 77 not permitted.";

fn main_with(config: Option<&Path>, args: &[String], forced: Option<Mode>) -> i32 {
    // Errors name the program the caller ran.
    let prog = match forced {
        Some(Mode::ListQueue) => "mailq",
        Some(Mode::NewAliases) => "newaliases",
        _ => "sendmail",
    };
    if args.first().is_some_and(|a| a == "--help") {
        println!("{USAGE}");
        return EX_OK;
    }
    let mut o = match sm::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{prog}: {e}");
            eprintln!("{}", USAGE.lines().next().unwrap_or_default());
            return EX_USAGE;
        }
    };
    if let Some(m) = forced {
        o.mode = m;
    }
    let path = match (&o.config, config) {
        (Some(c), _) => crate::config::locate(Some(c)),
        (None, Some(c)) => c.to_path_buf(),
        (None, None) => crate::config::locate(None),
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return EX_TEMPFAIL;
        }
    };
    match o.mode {
        Mode::NewAliases => {
            println!(
                "newaliases: zolder reads [aliases] from {} directly; nothing to rebuild",
                path.display()
            );
            EX_OK
        }
        Mode::Flush(target) => super::flush::flush(&cfg, false, &target),
        Mode::ListQueue => match crate::db::open(&cfg.db_path()) {
            Ok(c) => match super::queue::mailq(&c) {
                Ok(s) => {
                    print!("{s}");
                    EX_OK
                }
                Err(e) => {
                    eprintln!("mailq: {e:#}");
                    EX_TEMPFAIL
                }
            },
            Err(e) => {
                eprintln!("mailq: {e}");
                EX_TEMPFAIL
            }
        },
        Mode::Smtp => smtp_stdio(&cfg),
        Mode::Deliver => deliver(&cfg, &o),
    }
}

/// The login name of the caller, as Postfix's sendmail finds it (uid → passwd).
fn login_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Can this process queue directly: does it own `data_dir` and can it write the
/// database and the queue folder? (Root has become the owner by now, see
/// [`crate::service::privilege::act_as_owner`].)
fn can_queue_directly(cfg: &Config) -> bool {
    use nix::unistd::{AccessFlags, access};
    use std::os::unix::fs::MetadataExt;
    // A data_dir that does not exist yet is ours if we can create it (first use).
    if !cfg.data_dir.exists() && std::fs::create_dir_all(&cfg.data_dir).is_err() {
        return false;
    }
    match std::fs::metadata(&cfg.data_dir) {
        Ok(m) if m.uid() == nix::unistd::geteuid().as_raw() => {}
        _ => return false,
    }
    let q = cfg.data_dir.join("queue");
    let db = cfg.db_path();
    let dir_ok = if q.exists() {
        access(&q, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
    } else {
        access(&cfg.data_dir, AccessFlags::W_OK).is_ok()
    };
    let db_ok = if db.exists() {
        access(&db, AccessFlags::W_OK).is_ok()
    } else {
        access(&cfg.data_dir, AccessFlags::W_OK).is_ok()
    };
    dir_ok && db_ok
}

fn deliver(cfg: &Config, o: &Opts) -> i32 {
    let Some(login) = login_name() else {
        eprintln!(
            "sendmail: no login name found for user ID {}",
            nix::unistd::getuid()
        );
        return EX_OSERR;
    };
    // Root's mail (cron) is queued as the owner of data_dir; the login stays "root".
    if let Err(e) = crate::service::privilege::act_as_owner(cfg) {
        eprintln!("sendmail: {e}");
        return EX_TEMPFAIL;
    }
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::new(stdin.lock().take(cfg.limits.message_size + 65536));
    let msg = match sm::read_message(&mut input, o.ignore_dots, cfg.limits.message_size as usize) {
        Ok(m) => m,
        Err(None) => {
            eprintln!(
                "sendmail: message is larger than the limit of {} bytes",
                cfg.limits.message_size
            );
            return EX_DATAERR;
        }
        Err(Some(e)) => {
            eprintln!("sendmail: error reading input: {e}");
            return EX_DATAERR;
        }
    };
    let id = crate::queue::new_id();
    let p = match sm::prepare(cfg, o, &login, msg, &id) {
        Ok(p) => p,
        Err((code, m)) => {
            eprintln!("sendmail: {m}");
            return code;
        }
    };
    let rcpts: Vec<crate::queue::NewRcpt> = p
        .recipients
        .iter()
        .map(|r| crate::queue::NewRcpt {
            addr: r.clone(),
            notify: o.notify.clone(),
            orcpt: None,
        })
        .collect();
    if can_queue_directly(cfg) {
        let m = crate::queue::NewMessage {
            id: Some(id),
            sender: p.sender,
            recipients: rcpts,
            bytes: p.bytes,
            source: format!("sendmail:{login}"),
            envid: o.envid.clone(),
            ret: o.ret.clone(),
            auth_user: None,
        };
        match crate::queue::enqueue_direct(cfg, m, crate::db::now()) {
            Ok(id) => {
                if o.verbose {
                    eprintln!("sendmail: queued as {id}");
                }
                let _ =
                    crate::queue::control::request(&cfg.data_dir, "wake", Duration::from_secs(5));
                EX_OK
            }
            Err(e) => {
                eprintln!("sendmail: {e}");
                EX_TEMPFAIL
            }
        }
    } else {
        let env = crate::queue::maildrop::DropEnvelope {
            sender: p.sender,
            recipients: rcpts,
            envid: o.envid.clone(),
            ret: o.ret.clone(),
        };
        match drop_off(cfg, &env, &p.bytes) {
            Ok(id) => {
                if o.verbose {
                    eprintln!("sendmail: dropped as {id}");
                }
                let _ =
                    crate::queue::control::request(&cfg.data_dir, "pickup", Duration::from_secs(5));
                EX_OK
            }
            Err(e) if e.contains("ermission denied") => {
                eprintln!("sendmail: {e}");
                EX_NOPERM
            }
            Err(e) => {
                eprintln!("sendmail: {e}");
                EX_TEMPFAIL
            }
        }
    }
}

/// Puts a message into the maildrop: directly when this process may (the folder is
/// writable and readable for the folder fsync), else through `zolder-postdrop`.
fn drop_off(
    cfg: &Config,
    env: &crate::queue::maildrop::DropEnvelope,
    msg: &[u8],
) -> Result<String, String> {
    use nix::unistd::{AccessFlags, access};
    let data = crate::queue::maildrop::encode(env, msg)?;
    let d = crate::queue::maildrop::dir(&cfg.data_dir);
    if access(
        &d,
        AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK,
    )
    .is_ok()
    {
        return crate::queue::maildrop::write_encoded(&cfg.data_dir, &data);
    }
    let Some(helper) = super::postdrop::locate() else {
        return Err(format!(
            "{}: Permission denied, and no {} is installed (install -o root -g zolder -m 2755 \
             /usr/local/bin/zolder /usr/local/libexec/{})",
            d.display(),
            super::postdrop::NAME,
            super::postdrop::NAME
        ));
    };
    let mut child = std::process::Command::new(&helper)
        .arg(&cfg.data_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", helper.display()))?;
    let wrote = {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(&data)
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", helper.display()))?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.code(), wrote) {
        (Some(0), Ok(())) if crate::queue::valid_id(&id) => Ok(id),
        (Some(c), _) if c == EX_NOPERM => Err(format!("{}: Permission denied", helper.display())),
        (code, _) => Err(format!(
            "{} failed (exit {})",
            helper.display(),
            code.map_or("by signal".into(), |c| c.to_string())
        )),
    }
}

/// `sendmail -bs`: an SMTP session on stdin/stdout, as a trusted local client.
fn smtp_stdio(cfg: &Config) -> i32 {
    if !can_queue_directly(cfg) {
        eprintln!(
            "sendmail -bs: needs write access to {}",
            cfg.data_dir.display()
        );
        return EX_NOPERM;
    }
    let Some(login) = login_name() else {
        return EX_OSERR;
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(_) => return EX_OSERR,
    };
    let cfg = std::sync::Arc::new(cfg.clone());
    let r = rt.block_on(async move {
        let queue = crate::queue::Queue::open(cfg.clone(), crate::queue::system_clock())?;
        let shared = crate::submit::session::Shared {
            cfg: cfg.clone(),
            queue,
            tls: None,
            delays: std::sync::Arc::new(crate::auth::FailureDelays::new()),
            check: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        let io = crate::submit::session::Io::Other(Box::pin(StdIo {
            r: tokio::io::stdin(),
            w: tokio::io::stdout(),
        }));
        let peer = crate::submit::session::Peer {
            addr: "127.0.0.1:0".parse().expect("addr"),
            service: "sendmail-bs",
            local_user: Some(login),
        };
        crate::submit::session::run(shared, io, peer).await;
        let _ = crate::queue::control::request(&cfg.data_dir, "wake", Duration::from_secs(5));
        anyhow::Ok(())
    });
    match r {
        Ok(()) => EX_OK,
        Err(e) => {
            eprintln!("sendmail -bs: {e:#}");
            EX_TEMPFAIL
        }
    }
}

struct StdIo {
    r: tokio::io::Stdin,
    w: tokio::io::Stdout,
}

impl tokio::io::AsyncRead for StdIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StdIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.w).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_shutdown(cx)
    }
}
