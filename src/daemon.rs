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
    /// The mail store (imapd, pop3d read it; delivery writes it).
    pub spool: crate::spool::Spool,
    /// The local delivery pipeline: the `Deliver` fetch and the queue hand local mail to.
    pub local_delivery: Arc<crate::deliver::LocalDelivery>,
    /// Wakes the fetch scheduler: every account polls now (SIGUSR1, [`Running::wake_up`]).
    pub poll_now: Arc<tokio::sync::Notify>,
}

/// A started daemon: its bound addresses per service ("imap", "pop3", "submission", …)
/// and the handle to stop it.
pub struct Running {
    pub ctx: Context,
    pub addrs: BTreeMap<&'static str, Vec<SocketAddr>>,
    /// The outgoing queue (tests enqueue and flush through it).
    pub queue: Option<crate::queue::Queue>,
    /// SIGHUP for the fetch scheduler: it re-reads the config file's accounts.
    pub fetch_reload: Arc<tokio::sync::Notify>,
    tasks: TaskTracker,
}

/// What `start_with` lets a caller (tests, or a future composition) supply instead of
/// the defaults: the local delivery pipeline, the clock the queue uses, and the
/// content check the SMTP server runs before answering DATA.
#[derive(Default, Clone)]
pub struct Hooks {
    pub local: Option<Arc<dyn crate::message::Deliver>>,
    pub clock: Option<crate::queue::Clock>,
    pub data_check: Option<Arc<dyn crate::submit::DataCheck>>,
}

/// Wraps a `Deliver` so that mail a delivery generates (vacation replies, redirects,
/// notices) is queued — whoever called the delivery (style.md: delivery never queues
/// on its own). The generated list is handed on emptied: it has been taken care of.
pub struct EnqueueGenerated {
    pub inner: Arc<dyn crate::message::Deliver>,
    pub queue: crate::queue::Queue,
}

#[async_trait::async_trait]
impl crate::message::Deliver for EnqueueGenerated {
    async fn deliver_batch(
        &self,
        msgs: Vec<crate::message::Incoming>,
    ) -> Vec<crate::message::DeliveryReport> {
        let mut reports = self.inner.deliver_batch(msgs).await;
        for r in &mut reports {
            for g in std::mem::take(&mut r.generated) {
                let reason = g.reason.clone();
                let m = crate::queue::NewMessage::from(g);
                if let Err(e) = self.queue.enqueue(m).await {
                    error!(%reason, error = %e, "cannot queue mail generated during delivery");
                }
            }
        }
        reports
    }
}

/// The local delivery pipeline the queue hands local recipients to.
fn local_pipeline(ctx: &Context) -> Option<Arc<dyn crate::message::Deliver>> {
    Some(ctx.local_delivery.clone() as Arc<dyn crate::message::Deliver>)
}

/// The SMTP server's content check: the scanners answer before `250` when a verdict
/// can refuse there (an action is `reject`, or a command hook may say so). Otherwise
/// scanning happens once, in local delivery, and nothing is asked at DATA time.
struct ScanDataCheck(crate::deliver::scan::Scanner);

#[async_trait::async_trait]
impl crate::submit::DataCheck for ScanDataCheck {
    async fn check(
        &self,
        message: &[u8],
        envelope: &crate::message::Envelope,
    ) -> crate::submit::DataVerdict {
        // The session adds the enhanced status code itself.
        let bare = |t: String| match t.split_once(' ') {
            Some((code, rest)) if code.split('.').count() == 3 => rest.to_string(),
            _ => t,
        };
        match self.0.verdict(message, envelope).await.smtp_reply() {
            Some((451, text)) => crate::submit::DataVerdict::TempFail(bare(text)),
            Some((code, text)) => crate::submit::DataVerdict::Reject(code, bare(text)),
            None => crate::submit::DataVerdict::Accept,
        }
    }
}

fn scan_data_check(cfg: &Config) -> anyhow::Result<Option<Arc<dyn crate::submit::DataCheck>>> {
    let a = &cfg.scan.actions;
    let can_reject = [&a.infected, &a.banned, &a.spam]
        .iter()
        .any(|x| *x == "reject")
        || cfg.scan.command.is_some();
    if !cfg.scan.any() || !can_reject {
        return Ok(None);
    }
    let scanner = crate::deliver::scan::Scanner::from_config(cfg)?;
    Ok(Some(Arc::new(ScanDataCheck(scanner))))
}

/// Takes `queue/runner.lock` for as long as the returned guard lives: one queue
/// runner per data_dir (the daemon, or `zolder flush` when no daemon runs).
pub fn runner_lock(data_dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let p = data_dir.join("queue").join("runner.lock");
    std::fs::create_dir_all(data_dir.join("queue"))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "{}: {e}: another zolder is already running this queue",
            p.display()
        )
    })
}

impl Running {
    /// The line is up (SIGUSR1, an `ip-up` script): every fetch account polls now, and
    /// the queue is flushed to the smarthost regardless of back-off, like `zolder flush`.
    pub fn wake_up(&self) {
        self.ctx.poll_now.notify_waiters();
        if let Some(q) = self.queue.clone() {
            tokio::spawn(async move {
                if let Some(s) = q.flush().await {
                    info!(summary = ?s, "flush after wake-up done");
                }
            });
        }
    }

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
    start_with(cfg, config_path, Hooks::default()).await
}

/// [`start`] with some parts supplied by the caller.
pub async fn start_with(
    cfg: Config,
    config_path: PathBuf,
    hooks: Hooks,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.data_dir.display()))?;
    // Opening applies migrations once, before any service races to do it.
    drop(crate::db::open(&cfg.db_path())?);
    let config = Arc::new(cfg);
    let spool = crate::spool::Spool::open(&config)?;
    // The scan stage and Sieve plug into the pipeline's seams ([scan], data_dir/sieve).
    let local_delivery = Arc::new(crate::deliver::scan::stage::wire(
        &config,
        crate::deliver::LocalDelivery::new(config.clone(), spool.clone()),
    )?);
    let ctx = Context {
        config,
        config_path,
        shutdown: CancellationToken::new(),
        spool,
        local_delivery,
        poll_now: Arc::new(tokio::sync::Notify::new()),
    };
    let tasks = TaskTracker::new();
    let mut addrs: BTreeMap<&'static str, Vec<SocketAddr>> = BTreeMap::new();

    // Services register below, each binding its listeners into `addrs` and spawning
    // its loop on `tasks` (imapd, pop3d, submit, fetch scheduler, queue runner, status).

    // One mail store for the whole process (ctx.spool, shared with the delivery
    // pipeline), so a change made by one service (a delivery, an IMAP session) wakes
    // the others at once.
    let spool = ctx.spool.clone();

    // The LAN certificate, loaded (or generated) once for imapd, pop3d and submit —
    // only when one of them listens.
    let l = &ctx.config.listen;
    let lan_tls: Result<async_native_tls::TlsAcceptor, String> = if [
        &l.imap,
        &l.imaps,
        &l.pop3,
        &l.pop3s,
        &l.submission,
        &l.smtp,
        &l.webs,
        &l.managesieve,
    ]
    .iter()
    .any(|v| !v.list().is_empty())
    {
        crate::net::tls::acceptor(&ctx.config)
    } else {
        Err("no TLS listener configured".into())
    };

    // imapd: `[listen] imap` (STARTTLS) and `imaps`.
    let imap_backend: Arc<dyn crate::imapd::backend::Backend> =
        Arc::new(if ctx.config.scan.bogofilter {
            crate::imapd::store::SpoolBackend::new(spool.clone())
                .with_training(ctx.config.db_path())
        } else {
            crate::imapd::store::SpoolBackend::new(spool.clone())
        });
    for (name, bound) in crate::imapd::server::start(
        ctx.config.clone(),
        imap_backend.clone(),
        ctx.shutdown.clone(),
        &tasks,
        lan_tls.clone(),
    )
    .await?
    {
        addrs.insert(name, bound);
    }

    // The status page: `[listen] status`.
    crate::status::http::start(&ctx.config, &ctx.shutdown, &tasks, &mut addrs).await?;

    // pop3d: `[listen] pop3` (STLS) and `pop3s`, serving each user's INBOX.
    crate::pop3d::server::start(
        ctx.config.clone(),
        ctx.shutdown.clone(),
        Arc::new(spool.clone()),
        &tasks,
        &mut addrs,
        lan_tls.clone(),
    )
    .await?;

    // Outgoing: the queue and its runner (local pipeline + smarthost relay), the
    // maildrop pickup, the control socket (`zolder flush`), the SMTP listeners.
    let queue = {
        let data_dir = ctx.config.data_dir.clone();
        let clock = hooks
            .clock
            .clone()
            .unwrap_or_else(crate::queue::system_clock);
        let queue = crate::queue::Queue::open(ctx.config.clone(), clock)?;
        let lock = runner_lock(&data_dir)?;
        crate::queue::maildrop::create(&data_dir).map_err(|e| {
            anyhow::anyhow!("{}: {e}", crate::queue::maildrop::dir(&data_dir).display())
        })?;
        let relay: Option<Arc<dyn crate::message::Deliver>> =
            crate::relay::Relay::new(&ctx.config)?.map(|r| Arc::new(r) as _);
        let local = hooks
            .local
            .clone()
            .or_else(|| local_pipeline(&ctx))
            .map(|inner| {
                Arc::new(EnqueueGenerated {
                    inner,
                    queue: queue.clone(),
                }) as Arc<dyn crate::message::Deliver>
            });
        let mut runner = crate::queue::Runner::new(queue.clone(), local, relay)?;
        runner.recover()?;
        let sd = ctx.shutdown.clone();
        tasks.spawn(async move {
            let _lock = lock;
            runner.run(sd).await
        });
        let poke = Arc::new(tokio::sync::Notify::new());
        tasks.spawn(crate::queue::maildrop::run(
            queue.clone(),
            poke.clone(),
            ctx.shutdown.clone(),
        ));
        let ctl = crate::queue::control::bind(&data_dir)?;
        tasks.spawn(crate::queue::control::serve(
            ctl,
            queue.clone(),
            poke,
            ctx.shutdown.clone(),
        ));

        let listeners = crate::submit::server::bind(&ctx.config).await?;
        if !listeners.is_empty() {
            let tls = match lan_tls.clone() {
                Ok(a) => Some(a),
                Err(e) => {
                    warn!(error = %e, "no TLS for SMTP: STARTTLS and AUTH (except from loopback) are off");
                    None
                }
            };
            let shared = crate::submit::session::Shared {
                cfg: ctx.config.clone(),
                queue: queue.clone(),
                tls,
                delays: crate::auth::FailureDelays::shared(&ctx.config),
                check: hooks.data_check.clone().or(scan_data_check(&ctx.config)?),
                shutdown: ctx.shutdown.clone(),
            };
            for (service, l) in listeners {
                addrs.entry(service).or_default().push(l.local_addr());
                tasks.spawn(crate::submit::server::serve(
                    service,
                    l,
                    shared.clone(),
                    ctx.shutdown.clone(),
                ));
            }
        }
        queue
    };

    // The web server: `[listen] web` / `webs` (webmail, /admin).
    crate::web::server::start(
        crate::web::Services {
            config: ctx.config.clone(),
            backend: imap_backend.clone(),
            queue: queue.clone(),
            check: hooks.data_check.clone().or(scan_data_check(&ctx.config)?),
            tls: lan_tls.clone(),
            shutdown: ctx.shutdown.clone(),
        },
        &tasks,
        &mut addrs,
    )
    .await?;

    // ManageSieve: `[listen] managesieve`.
    crate::managesieve::server::start(
        ctx.config.clone(),
        lan_tls.clone(),
        ctx.shutdown.clone(),
        &tasks,
        &mut addrs,
    )
    .await?;

    // Fetch: the scheduler polls every account (zolder.toml and the fetchmailrc) and
    // hands the mail to the local pipeline; mail a delivery generates is queued.
    let fetch_reload = Arc::new(tokio::sync::Notify::new());
    {
        let (accounts, warnings) = match crate::config::fetchmailrc::load_accounts(&ctx.config) {
            Ok(v) => v,
            Err(e) => {
                error!("fetchmailrc: {e}; polling the zolder.toml accounts only");
                (ctx.config.accounts.clone(), Vec::new())
            }
        };
        for w in warnings {
            warn!("{w}");
        }
        // Always running, even without accounts: SIGHUP may bring some.
        let deliver: Arc<dyn crate::message::Deliver> = Arc::new(EnqueueGenerated {
            inner: hooks
                .local
                .clone()
                .unwrap_or_else(|| ctx.local_delivery.clone()),
            queue: queue.clone(),
        });
        let db = crate::fetch::FetchDb::open(&ctx.config.db_path())?;
        let mut f = crate::fetch::Fetcher::new(ctx.config.clone(), db, deliver);
        f.progress = crate::fetch::progress::Progress::quiet();
        f.shutdown = ctx.shutdown.child_token();
        f.reload = fetch_reload.clone();
        tasks.spawn(crate::fetch::scheduler::run(
            f,
            accounts,
            ctx.poll_now.clone(),
        ));
    }

    // Spam training from the family's Junk moves (the IMAP server fills the queue).
    if ctx.config.scan.bogofilter {
        let (cfg, spool, sd) = (ctx.config.clone(), ctx.spool.clone(), ctx.shutdown.clone());
        tasks.spawn(async move {
            crate::deliver::scan::bogofilter::run_trainer(&cfg, spool, sd, Duration::from_secs(60))
                .await
        });
    }

    info!(data_dir = %ctx.config.data_dir.display(), "zolder running");
    Ok(Running {
        ctx,
        addrs,
        queue: Some(queue),
        fetch_reload,
        tasks,
    })
}

/// The local delivery pipeline for a process without the daemon (`zolder fetch`):
/// the spool, the pipeline, and the queue for the mail a delivery generates.
pub fn local_deliver(cfg: &Arc<Config>) -> anyhow::Result<Arc<dyn crate::message::Deliver>> {
    let spool = crate::spool::Spool::open(cfg)?;
    // The same pipeline as the daemon's: scanners and Sieve included, so a one-shot
    // `zolder fetch` never delivers unscanned mail.
    let inner = Arc::new(crate::deliver::scan::stage::wire(
        cfg,
        crate::deliver::LocalDelivery::new(cfg.clone(), spool),
    )?);
    let queue = crate::queue::Queue::open(cfg.clone(), crate::queue::system_clock())?;
    Ok(Arc::new(EnqueueGenerated { inner, queue }))
}

/// The local delivery pipeline, opened when the first message arrives: a `zolder
/// fetch` that finds nothing new never opens the spool's and the queue's database
/// connections (nor starts the queue's committer thread). If the opening fails, every
/// recipient is deferred (the ISP keeps the mail) and [`OpeningDeliver::finish`] says
/// why.
pub struct OpeningDeliver {
    cfg: Arc<Config>,
    ready: tokio::sync::OnceCell<Result<Arc<dyn crate::message::Deliver>, String>>,
}

impl OpeningDeliver {
    pub fn new(cfg: &Arc<Config>) -> Arc<OpeningDeliver> {
        Arc::new(OpeningDeliver {
            cfg: cfg.clone(),
            ready: tokio::sync::OnceCell::new(),
        })
    }

    /// The opened pipeline (opening it now if needed), or why it could not be opened.
    pub async fn get(&self) -> Result<Arc<dyn crate::message::Deliver>, String> {
        self.ready
            .get_or_init(|| async {
                let cfg = self.cfg.clone();
                match tokio::task::spawn_blocking(move || local_deliver(&cfg)).await {
                    Ok(Ok(d)) => Ok(d),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("opening the delivery pipeline: {e}")),
                }
            })
            .await
            .clone()
    }

    /// Why the pipeline could not be opened, if it was needed and failed.
    pub fn finish(&self) -> Option<String> {
        self.ready.get().and_then(|r| r.as_ref().err().cloned())
    }
}

#[async_trait::async_trait]
impl crate::message::Deliver for OpeningDeliver {
    async fn deliver_batch(
        &self,
        msgs: Vec<crate::message::Incoming>,
    ) -> Vec<crate::message::DeliveryReport> {
        match self.get().await {
            Ok(d) => d.deliver_batch(msgs).await,
            Err(e) => msgs
                .iter()
                .map(|m| crate::message::DeliveryReport {
                    outcomes: m
                        .envelope
                        .recipients
                        .iter()
                        .map(|r| (r.clone(), crate::message::RcptOutcome::TempFail(e.clone())))
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// `zolder serve`: start, then act on signals; see [`crate::service::run`] (SIGHUP
/// restarts every service from the re-read config on the kept sockets).
pub async fn run(cfg: Config, config_path: PathBuf) -> anyhow::Result<()> {
    crate::service::run(cfg, config_path).await
}
