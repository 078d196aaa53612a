//! The composition root for `zolder serve`: opens the database, builds every service
//! named in the config, hands each its dependencies, runs them, and shuts them down.
//!
//! [`start`] binds every listener first (so a port in use is reported before anything
//! runs, and `127.0.0.1:0` resolves to a real port tests can read from
//! [`Running::addrs`]), then spawns each service as a task. [`run`] is `start` plus
//! signal handling: SIGTERM/SIGINT cancel one token; listeners stop accepting,
//! sessions finish their current command, fetchers finish the message in hand, and
//! shutdown returns once every task has ended. SIGHUP reloads the config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// A started daemon: its bound addresses per service ("imap", "pop3", "submission", …)
/// and the handle to stop it.
pub struct Running {
    pub ctx: Context,
    pub addrs: BTreeMap<&'static str, Vec<SocketAddr>>,
    tasks: TaskTracker,
}

impl Running {
    /// The first bound address of `service`; panics if it is not configured (tests).
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addrs
            .get(service)
            .and_then(|v| v.first().copied())
            .unwrap_or_else(|| panic!("service {service} is not listening"))
    }

    /// Stops every service and waits (at most 30 s) for them to finish.
    pub async fn shutdown(self) {
        self.ctx.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(30), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 30 s; exiting anyway");
        }
    }
}

/// Builds and starts every configured service.
pub async fn start(cfg: Config, config_path: PathBuf) -> anyhow::Result<Running> {
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
    let addrs: BTreeMap<&'static str, Vec<SocketAddr>> = BTreeMap::new();

    // Services register below, each binding its listeners into `addrs` and spawning
    // its loop on `tasks` (imapd, pop3d, submit, fetch scheduler, queue runner, status).

    // Fetch: the scheduler polls every account and hands mail to local delivery.
    if !ctx.config.accounts.is_empty() {
        match local_deliver(&ctx.config) {
            Ok(deliver) => {
                let db = crate::fetch::FetchDb::open(&ctx.config.db_path())?;
                let mut f = crate::fetch::Fetcher::new(ctx.config.clone(), db, deliver);
                f.progress = crate::fetch::progress::Progress::quiet();
                f.shutdown = ctx.shutdown.child_token();
                let accounts = ctx.config.accounts.clone();
                tasks.spawn(crate::fetch::scheduler::run(f, accounts));
            }
            Err(e) => error!("fetch scheduler not started: {e}"),
        }
    }

    info!(data_dir = %ctx.config.data_dir.display(), "zolder running");
    Ok(Running { ctx, addrs, tasks })
}

/// The local delivery pipeline as a [`Deliver`](crate::message::Deliver), for the
/// fetcher (`zolder serve`, `zolder fetch`) and the queue's local recipients.
pub fn local_deliver(_cfg: &Arc<Config>) -> anyhow::Result<Arc<dyn crate::message::Deliver>> {
    anyhow::bail!("the local delivery pipeline (deliver/) is not built yet")
}

/// `zolder serve`: start, then wait for signals.
pub async fn run(cfg: Config, config_path: PathBuf) -> anyhow::Result<()> {
    let running = start(cfg, config_path).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                match Config::load(&running.ctx.config_path) {
                    Ok(_) => info!("SIGHUP: config re-read; services pick up changes on their next cycle"),
                    Err(e) => error!("SIGHUP: config not reloaded: {e}"),
                }
            }
        }
    }
    running.shutdown().await;
    info!("stopped");
    Ok(())
}
