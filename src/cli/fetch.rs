//! `zolder fetch [ACCOUNT…]`: poll the ISP accounts once now, then exit — the dial-up
//! and cron way (`/etc/ppp/ip-up.d/`). Progress bars on a terminal, log lines with -v
//! otherwise; one summary line per account on stdout.
//!
//! Exit codes: 0 every account polled and every message delivered; 75 (EX_TEMPFAIL)
//! when any account failed temporarily (ISP unreachable, delivery deferred: try again
//! later); 69 (EX_UNAVAILABLE) when an account needs the admin (login refused, TLS
//! certificate rejected, config); 64 for an unknown account name.

use std::path::Path;
use std::sync::Arc;

use super::{EX_CONFIG, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, load_config};
use crate::fetch::{FetchDb, Fetcher, scheduler};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Accounts to poll (by `name`); default every account not marked `disabled`.
    pub accounts: Vec<String>,
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Run by root: act as the owner of data_dir, so nothing root-owned lands in it.
    if let Err(e) = crate::service::privilege::act_as_owner(&cfg) {
        eprintln!("zolder fetch: {e}");
        return Ok(super::EX_NOPERM);
    }
    let errors: Vec<_> = cfg.validate().into_iter().filter(|p| !p.warning).collect();
    if !errors.is_empty() {
        for p in &errors {
            eprintln!("zolder: {}: key `{}`: {}", path.display(), p.key, p.message);
        }
        return Ok(EX_CONFIG);
    }
    // zolder.toml's accounts plus those of `fetchmailrc = "PATH"`.
    let all = match crate::config::fetchmailrc::load_accounts(&cfg) {
        Ok((all, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            all
        }
        Err(e) => {
            eprintln!("zolder: {e}");
            return Ok(EX_CONFIG);
        }
    };
    let accounts = if args.accounts.is_empty() {
        all.iter()
            .filter(|a| !a.disabled)
            .cloned()
            .collect::<Vec<_>>()
    } else {
        let mut v = Vec::new();
        for n in &args.accounts {
            match all.iter().find(|a| &a.name == n) {
                Some(a) => v.push(a.clone()),
                None => {
                    let known: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
                    eprintln!(
                        "zolder: no account `{n}` in {} (accounts: {})",
                        path.display(),
                        known.join(", ")
                    );
                    return Ok(EX_USAGE);
                }
            }
        }
        v
    };
    if accounts.is_empty() {
        println!("no accounts to poll");
        return Ok(EX_OK);
    }
    let cfg = Arc::new(cfg);
    crate::db::keep_wal_on_close();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(async move {
        // The delivery pipeline opens when the first message arrives.
        let opening = crate::daemon::OpeningDeliver::new(&cfg);
        let db = FetchDb::open_in_background(&cfg.db_path());
        let f = Fetcher::new(cfg.clone(), db.clone(), opening.clone());
        // Ctrl-C: finish the batch in hand (deliver, record, delete), then stop.
        let stop = f.shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("zolder: interrupted; finishing the messages in hand");
                stop.cancel();
            }
        });
        crate::fetch::seed_from_fetchids(&f, &accounts).await;
        let results = scheduler::poll_all(&f, &accounts).await;
        let mut code = EX_OK;
        for (name, out) in &results {
            let mut line = format!(
                "{name}: {} fetched ({:.1} MB), {} deleted at the ISP",
                out.fetched,
                out.bytes as f64 / 1e6,
                out.deleted
            );
            if out.skipped > 0 {
                line.push_str(&format!(", {} left (limit)", out.skipped));
            }
            if out.deferred > 0 {
                line.push_str(&format!(", {} deferred", out.deferred));
            }
            if let Some(e) = &out.error {
                line.push_str(&format!(" — FAILED: {e}"));
            }
            println!("{line}");
            match out.result() {
                "tempfail" => code = EX_TEMPFAIL,
                "permfail" if code == EX_OK => code = EX_UNAVAILABLE,
                _ => {}
            }
        }
        drop(f);
        if let Some(e) = db.open_error().await {
            eprintln!("zolder: {e}");
            return Ok(EX_CONFIG);
        }
        drop(db);
        if let Some(e) = opening.finish() {
            eprintln!("zolder: cannot open the delivery pipeline: {e}");
            return Ok(EX_CONFIG);
        }
        Ok::<i32, anyhow::Error>(code)
    });
    // A blocking-pool thread may hold the last handle of a database connection: wait
    // for them, so every connection is closed rather than cut off by the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    code
}
