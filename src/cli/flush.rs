//! `zolder flush`: send the outgoing queue now, ignoring backoff (what `sendmail -q`,
//! `postqueue -f` and a dial-up `ip-up` script do). Asks the running daemon through
//! its control socket and waits for the run to end; without a daemon it takes the
//! queue's runner lock and runs the relay itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{EX_OK, EX_TEMPFAIL, load_config};
use crate::config::Config;
use crate::queue::FlushTarget;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Don't wait for the run to finish (only with a running daemon).
    #[arg(long)]
    pub no_wait: bool,
    /// Only this message (a queue id from `zolder queue list`); `sendmail -qIID`.
    #[arg(long, conflicts_with = "site")]
    pub id: Option<String>,
    /// Only messages with a recipient at this domain or its subdomains;
    /// `sendmail -qRsite`.
    #[arg(long)]
    pub site: Option<String>,
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Run by root: act as the owner of data_dir, so nothing root-owned lands in it.
    if let Err(e) = crate::service::privilege::act_as_owner(&cfg) {
        eprintln!("zolder flush: {e}");
        return Ok(super::EX_NOPERM);
    }
    let cmd = match (&args.id, &args.site) {
        (Some(i), _) => format!("flush id {i}"),
        (_, Some(d)) => format!("flush site {d}"),
        _ => "flush".into(),
    };
    let Some(target) = FlushTarget::parse(&cmd) else {
        let v = args.id.or(args.site).unwrap_or_default();
        eprintln!("zolder flush: `{v}` is not a queue id or a domain name");
        return Ok(super::EX_USAGE);
    };
    Ok(flush(&cfg, args.no_wait, &target))
}

/// Shared with `sendmail -q`/`-qR`/`-qI`. Returns the exit code.
pub fn flush(cfg: &Config, no_wait: bool, target: &FlushTarget) -> i32 {
    // `--no-wait` starts the same run (also under `schedule = "manual"`) and returns.
    let cmd = if no_wait {
        target.command().replacen("flush", "start", 1)
    } else {
        target.command()
    };
    match crate::queue::control::request(&cfg.data_dir, &cmd, Duration::from_secs(6 * 3600)) {
        Ok(line) if line.starts_with("ok") => {
            println!("{}", line.trim_start_matches("ok").trim());
            return if line.contains("deferred=0") || no_wait {
                EX_OK
            } else {
                EX_TEMPFAIL
            };
        }
        Ok(line) => {
            eprintln!("zolder flush: daemon says: {line}");
            return EX_TEMPFAIL;
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Err(e) => {
            eprintln!(
                "zolder flush: {}: {e}",
                crate::queue::control::socket_path(&cfg.data_dir).display()
            );
            return EX_TEMPFAIL;
        }
    }
    // No daemon: run the queue here, under the same lock the daemon holds.
    let lock = match crate::daemon::runner_lock(&cfg.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("zolder flush: {e:#}");
            return EX_TEMPFAIL;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zolder flush: {e}");
            return super::EX_OSERR;
        }
    };
    let cfg = Arc::new(cfg.clone());
    let res = rt.block_on(async move {
        let queue = crate::queue::Queue::open(cfg.clone(), crate::queue::system_clock())?;
        let relay: Option<Arc<dyn crate::message::Deliver>> =
            crate::relay::Relay::new(&cfg)?.map(|r| Arc::new(r) as _);
        // Local recipients go through the same pipeline the daemon uses; mail it
        // generates is queued (and relayed in this same run when remote).
        let spool = crate::spool::Spool::open(&cfg)?;
        let pipeline: Arc<dyn crate::message::Deliver> =
            Arc::new(crate::deliver::LocalDelivery::new(cfg.clone(), spool));
        let local: Arc<dyn crate::message::Deliver> = Arc::new(crate::daemon::EnqueueGenerated {
            inner: pipeline,
            queue: queue.clone(),
        });
        let mut runner = crate::queue::Runner::new(queue, Some(local), relay)?;
        runner.recover()?;
        anyhow::Ok(runner.flush_target(target).await)
    });
    drop(lock);
    match res {
        Ok(s) => {
            println!("{}", s.line());
            if s.deferred == 0 { EX_OK } else { EX_TEMPFAIL }
        }
        Err(e) => {
            eprintln!("zolder flush: {e:#}");
            EX_TEMPFAIL
        }
    }
}
