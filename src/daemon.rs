//! The composition root for `zolder serve`: opens the database, builds every service
//! named in the config, hands each its dependencies, runs them, and shuts them down.
//!
//! Shutdown: SIGTERM/SIGINT cancel one token; listeners stop accepting, sessions
//! finish their current command, fetchers finish the message in hand, and `run`
//! returns once every task has ended. SIGHUP reloads the config.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;

/// What every service gets: the config, where it came from, and the shutdown token.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub config_path: PathBuf,
    pub shutdown: CancellationToken,
}

pub async fn run(cfg: Config, config_path: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.data_dir.display()))?;
    // Opening applies migrations once, before any service races to do it.
    drop(crate::db::open(&cfg.db_path())?);
    let ctx = Context {
        config: Arc::new(cfg),
        config_path,
        shutdown: CancellationToken::new(),
    };
    let tasks = TaskTracker::new();

    // Services register here, each with its own task.
    // (imapd, pop3d, submit, fetch scheduler, queue runner, status page)

    tasks.close();
    info!(data_dir = %ctx.config.data_dir.display(), "zolder running");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                match Config::load(&ctx.config_path) {
                    Ok(_) => info!("SIGHUP: config re-read; services pick up changes on their next cycle"),
                    Err(e) => error!("SIGHUP: config not reloaded: {e}"),
                }
            }
        }
    }
    ctx.shutdown.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(30), tasks.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 30 s; exiting anyway");
    }
    info!("stopped");
    Ok(())
}
