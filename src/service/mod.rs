//! Running zolder as a service: the process around [`crate::daemon`].
//!
//! [`Supervisor`] owns the listening sockets for the life of the process (bound once,
//! as root if need be, see [`crate::net::listener::prebind`]) and one started daemon.
//! SIGHUP re-reads the config; when the new file parses and validates, the running
//! services are stopped (listeners stop accepting — the kernel keeps queueing new
//! connections on the kept sockets — sessions finish their command, fetchers the
//! message in hand) and started again from the new config: users, aliases,
//! `[smarthost]`, `[scan]`, limits, Sieve settings and the accounts all change together,
//! and listeners named or dropped under `[listen]` are opened or closed. A file that
//! does not parse or validate changes nothing: the old config keeps running and the
//! log says why, with file and line. A new config that fails to start (a certificate
//! that does not load) is logged and the old one started again.
//!
//! `privilege` decides who the daemon runs as.

pub mod backup;
pub mod privilege;

use std::path::PathBuf;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::daemon::{Hooks, Running};

/// Every `[listen]` address, by service name (the names [`crate::net::Listener::bind`]
/// is called with).
pub fn listen_addrs(cfg: &Config) -> Vec<(&'static str, String)> {
    let l = &cfg.listen;
    let mut out = Vec::new();
    for (name, list) in [
        ("imap", &l.imap),
        ("imaps", &l.imaps),
        ("pop3", &l.pop3),
        ("pop3s", &l.pop3s),
        ("submission", &l.submission),
        ("smtp", &l.smtp),
        ("status", &l.status),
        ("web", &l.web),
        ("webs", &l.webs),
        ("managesieve", &l.managesieve),
    ] {
        for a in list.list() {
            if !out.iter().any(|(n, x)| *n == name && *x == a) {
                out.push((name, a));
            }
        }
    }
    out
}

/// The errors of a config, as log lines naming the file (and key).
fn config_errors(cfg: &Config) -> Vec<String> {
    cfg.validate()
        .into_iter()
        .filter(|p| !p.warning)
        .map(|p| format!("{}: key `{}`: {}", cfg.path.display(), p.key, p.message))
        .collect()
}

/// Notes a reload in the event log (`zolder status`).
fn log_event(cfg: &Config, text: &str) {
    if let Ok(c) = crate::db::open(&cfg.db_path()) {
        let _ = crate::db::log_event(&c, "config", &cfg.path.display().to_string(), text);
    }
}

/// The kept sockets and the daemon started on them.
pub struct Supervisor {
    running: Option<Running>,
    path: PathBuf,
    hooks: Hooks,
}

impl Supervisor {
    /// Binds every listener (kept for reloads), then starts the daemon.
    pub async fn start(cfg: Config, path: PathBuf, hooks: Hooks) -> anyhow::Result<Supervisor> {
        crate::net::listener::prebind(&listen_addrs(&cfg))?;
        let running = crate::daemon::start_with(cfg, path.clone(), hooks.clone()).await?;
        Ok(Supervisor {
            running: Some(running),
            path,
            hooks,
        })
    }

    /// The daemon now running.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("a daemon runs between calls")
    }

    /// SIGHUP: re-reads the config file and restarts the services from it. `Err` (also
    /// logged) when the file was refused and the old config keeps running.
    pub async fn reload(&mut self) -> Result<(), String> {
        let cfg = self.running().ctx.config.clone();
        let refuse = |why: String| {
            error!("SIGHUP: config not reloaded, the running one stays: {why}");
            log_event(&cfg, &format!("not reloaded: {why}"));
            Err(why)
        };
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => return refuse(e.to_string()),
        };
        let errs = config_errors(&new);
        if !errs.is_empty() {
            return refuse(errs.join("; "));
        }
        let old = self.running().ctx.config.clone();
        if new.user != old.user || new.data_dir != old.data_dir {
            warn!("SIGHUP: `user` and `data_dir` take effect at the next start, not on reload");
        }
        let mut new = new;
        new.user.clone_from(&old.user);
        new.data_dir.clone_from(&old.data_dir);
        // Open what was added before anything stops (a port in use refuses the reload).
        if let Err(e) = crate::net::listener::prebind(&listen_addrs(&new)) {
            return refuse(e.to_string());
        }
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        match crate::daemon::start_with(new.clone(), self.path.clone(), self.hooks.clone()).await {
            Ok(r) => {
                self.running = Some(r);
                crate::net::listener::release_except(&listen_addrs(&new));
                info!(config = %self.path.display(), "SIGHUP: config reloaded; every service runs on it");
                log_event(&new, "config reloaded");
                Ok(())
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "SIGHUP: the new config did not start; starting the previous one again");
                let r = crate::daemon::start_with(
                    (*old).clone(),
                    self.path.clone(),
                    self.hooks.clone(),
                )
                .await
                .map_err(|e2| {
                    format!("{e:#}; and the previous config did not start again: {e2:#}")
                })?;
                self.running = Some(r);
                Err(format!("{e:#}"))
            }
        }
    }

    /// Stops the daemon (SIGTERM).
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// `zolder serve` after the identity is settled: start, then act on signals until
/// SIGTERM/SIGINT. SIGHUP reloads ([`Supervisor::reload`]); SIGUSR1 polls and
/// flushes now.
pub async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up is a shutdown, not a kill.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut sup = Supervisor::start(cfg, path, Hooks::default()).await?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = usr1.recv() => {
                info!("SIGUSR1: the line is up — polling every account and flushing the queue now");
                sup.running().wake_up();
            }
            _ = hup.recv() => { let _ = sup.reload().await; }
        }
    }
    sup.shutdown().await;
    info!("stopped");
    Ok(())
}
