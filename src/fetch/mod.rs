//! Fetching from the ISP: POP3 ([`pop3`]) and IMAP ([`imap`]) clients, OAuth2 token
//! refresh ([`oauth2`]), multidrop splitting ([`multidrop`]) and the [`scheduler`] that
//! polls each account on its schedule. Every fetched message is handed to the
//! [`Deliver`] the daemon gives us; this module never touches `spool/` or `queue/`.
//!
//! # The commit order (design.md rules 1 and 2)
//! 1. Download a batch of messages (pipelined RETR / one `UID FETCH`).
//! 2. `Deliver::deliver_batch`: returns once every `Delivered` message is durable
//!    (fsync, rename, dir fsync, index row + delivery key committed). The next batch
//!    downloads meanwhile.
//! 3. Record the batch as seen in `fetch_seen` / `fetch_state` (one SQLite commit).
//! 4. Only now delete at the ISP (POP3 DELE + a QUIT every [`pop3::COMMIT_EVERY`];
//!    IMAP `UID STORE +FLAGS.SILENT (\Deleted)` + `UID EXPUNGE` per batch).
//!
//! A crash between 2 and 3 re-downloads the batch; the delivery key
//! (`pop3:<account>:<uidl>`, `imap:<account>:<folder>:<uidvalidity>:<uid>`) makes the
//! second delivery a no-op. A message whose outcome is temporary is neither recorded
//! nor deleted, so the next poll tries it again.
//!
//! # Security
//! Everything the ISP sends is untrusted: status lines are bounded ([`pop3`]), message
//! sizes are bounded by `limits.message_size` (and IMAP responses by a byte budget per
//! command), and headers are read only for routing decisions, never rewritten.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::config::Config;
use crate::config::account::{AccountConfig, Protocol};
use crate::db::{self, Connection};
use crate::message::{Deliver, DeliveryReport, Envelope, Incoming, RawMessage, Source};

pub mod conn;
pub mod imap;
pub mod multidrop;
pub mod oauth2;
pub mod pop3;
pub mod progress;
pub mod scheduler;

/// Why a poll failed. [`FetchError::is_temporary`] decides between retrying later
/// (exit 75) and reporting a problem the admin must fix.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("config: {0}")]
    Config(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login refused: {0}")]
    Auth(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("I/O: {0}")]
    Io(String),
    /// The text names the database already (`database: …`).
    #[error("{0}")]
    Db(String),
    #[error("delivery: {0}")]
    Delivery(String),
    #[error("shut down")]
    Shutdown,
}

impl FetchError {
    /// Temporary: the next poll may well succeed (network, server, disk, delivery).
    /// Config, TLS verification and refused logins need the admin.
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            FetchError::Config(_) | FetchError::Tls(_) | FetchError::Auth(_)
        )
    }
}

impl From<db::DbError> for FetchError {
    fn from(e: db::DbError) -> Self {
        FetchError::Db(e.to_string())
    }
}

/// The database as the fetcher uses it: one connection, SQL run off the async threads.
#[derive(Clone)]
pub struct FetchDb {
    inner: Arc<DbCell>,
}

/// The connection, or why it could not be opened; opened at most once.
struct DbCell {
    path: Option<std::path::PathBuf>,
    conn: std::sync::OnceLock<Result<Mutex<Connection>, String>>,
}

impl DbCell {
    fn get(&self) -> &Result<Mutex<Connection>, String> {
        self.conn.get_or_init(|| match &self.path {
            Some(p) => db::open(p).map(Mutex::new).map_err(|e| e.to_string()),
            None => Err("no database".into()),
        })
    }
}

impl FetchDb {
    pub fn open(path: &std::path::Path) -> Result<FetchDb, FetchError> {
        Ok(FetchDb::from_conn(db::open(path)?))
    }

    /// Opens the database on a blocking thread while the caller goes on (`zolder
    /// fetch` connects to the ISP meanwhile); the first [`run`](Self::run) waits for
    /// it. An open that failed fails every `run`, and [`open_error`](Self::open_error)
    /// says why.
    pub fn open_in_background(path: &std::path::Path) -> FetchDb {
        let inner = Arc::new(DbCell {
            path: Some(path.to_path_buf()),
            conn: std::sync::OnceLock::new(),
        });
        let warm = inner.clone();
        tokio::task::spawn_blocking(move || {
            warm.get();
        });
        FetchDb { inner }
    }

    pub fn from_conn(c: Connection) -> FetchDb {
        let conn = std::sync::OnceLock::new();
        let _ = conn.set(Ok(Mutex::new(c)));
        FetchDb {
            inner: Arc::new(DbCell { path: None, conn }),
        }
    }

    /// Why the database could not be opened (waits for the opening).
    pub async fn open_error(&self) -> Option<String> {
        let c = self.inner.clone();
        tokio::task::spawn_blocking(move || c.get().as_ref().err().cloned())
            .await
            .unwrap_or_else(|e| Some(e.to_string()))
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> db::Result<T> + Send + 'static,
    ) -> Result<T, FetchError> {
        let c = self.inner.clone();
        tokio::task::spawn_blocking(move || match c.get() {
            Ok(m) => {
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut g).map_err(FetchError::from)
            }
            Err(e) => Err(FetchError::Db(e.clone())),
        })
        .await
        .map_err(|e| FetchError::Db(format!("database: {e}")))?
    }
}

/// What one poll of one account did.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// Messages delivered (newly or found already delivered).
    pub fetched: u64,
    pub bytes: u64,
    /// Messages deleted at the ISP.
    pub deleted: u64,
    /// Messages left alone: over `limit`/`limits.message_size`, or beyond `fetchlimit`.
    pub skipped: u64,
    /// Messages whose delivery failed temporarily (left on the server for next time).
    pub deferred: u64,
    /// The error that ended the poll early, if any.
    pub error: Option<FetchError>,
    /// What did not stop the poll but needs the admin (a configured folder missing).
    pub warnings: Vec<String>,
}

impl PollOutcome {
    /// "ok", "tempfail" or "permfail", as `fetch_status.result` stores it.
    pub fn result(&self) -> &'static str {
        match &self.error {
            None if self.deferred == 0 => "ok",
            None => "tempfail",
            Some(e) if e.is_temporary() => "tempfail",
            Some(_) => "permfail",
        }
    }
}

/// Everything a poll needs, shared by all accounts of a process.
#[derive(Clone)]
pub struct Fetcher {
    pub config: Arc<Config>,
    pub db: FetchDb,
    pub deliver: Arc<dyn Deliver>,
    pub tokens: Arc<oauth2::TokenCache>,
    pub progress: progress::Progress,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Notified on SIGHUP: the scheduler re-reads the config file's accounts.
    pub reload: Arc<tokio::sync::Notify>,
}

/// How one downloaded message fared in delivery.
#[derive(Debug)]
pub(crate) enum Fate {
    /// Every recipient has a final outcome: record it and delete at the ISP.
    Final,
    /// Try again next poll.
    Deferred(String),
}

impl Fetcher {
    pub fn new(config: Arc<Config>, db: FetchDb, deliver: Arc<dyn Deliver>) -> Fetcher {
        Fetcher {
            config,
            db,
            deliver,
            tokens: Arc::new(oauth2::TokenCache::default()),
            progress: progress::Progress::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            reload: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Polls one account once (all its folders), and records the outcome in
    /// `fetch_status`. Pre/postconnect commands run around it.
    pub async fn poll(&self, acc: &AccountConfig) -> PollOutcome {
        let span = tracing::info_span!("fetch", account = %acc.name);
        let started = db::now();
        let name = acc.name.clone();
        // "running" is recorded while the poll connects, not before it.
        let running = self.db.run(move |c| db::fetch::set_running(c, &name));
        let mut out = PollOutcome::default();
        let work = async {
            if let Some(argv) = &acc.preconnect
                && let Err(e) = run_hook("preconnect", argv).await
            {
                out.error = Some(e);
            }
            if out.error.is_none() {
                let fut = async {
                    match acc.protocol {
                        Protocol::Pop3 => pop3::poll(self, acc, &mut out).await,
                        Protocol::Imap => imap::poll(self, acc, &mut out).await,
                    }
                };
                if let Err(e) = tracing::Instrument::instrument(fut, span.clone()).await {
                    out.error = Some(e);
                }
            }
        };
        let ((), _) = tokio::join!(work, running);
        if let Some(argv) = &acc.postconnect
            && let Err(e) = run_hook("postconnect", argv).await
        {
            warn!(account = %acc.name, "{e}");
        }
        self.progress.finish(&acc.name);
        let status = db::fetch::Status {
            account: acc.name.clone(),
            last_poll: Some(started),
            result: Some(out.result().to_string()),
            fetched: out.fetched as i64,
            next_poll: None,
            last_error: out
                .error
                .as_ref()
                .map(|e| e.to_string())
                .or_else(|| {
                    (out.deferred > 0)
                        .then(|| format!("{} message(s) deferred by delivery", out.deferred))
                })
                .or_else(|| (!out.warnings.is_empty()).then(|| out.warnings.join("; "))),
        };
        let recorded = status.clone();
        // The event log (`zolder status`): polls that failed or brought mail.
        let event = match (&out.error, out.fetched) {
            (Some(e), _) => Some(format!("poll failed ({}): {e}", out.result())),
            (None, 0) if out.deferred == 0 && out.warnings.is_empty() => None,
            (None, n) => Some(format!(
                "fetched {n} message(s), {} deferred by delivery{}",
                out.deferred,
                out.warnings
                    .iter()
                    .map(|w| format!("; {w}"))
                    .collect::<String>()
            )),
        };
        if let Err(e) = self
            .db
            .run(move |c| {
                db::fetch::set_status(c, &recorded)?;
                match event {
                    Some(t) => db::log_event(c, "fetch", &recorded.account, &t),
                    None => Ok(()),
                }
            })
            .await
        {
            // Disk full, most likely: the log keeps what the status page cannot.
            error!(account = %acc.name, result = ?status.result, reason = ?status.last_error,
                "cannot record the poll's outcome in the database: {e}");
        }
        // The admin page's "fetched" counter.
        db::web::bump(&self.config.db_path(), "fetched", out.fetched as i64);
        match &out.error {
            None => tracing::info!(account = %acc.name, fetched = out.fetched, bytes = out.bytes,
                deleted = out.deleted, skipped = out.skipped, deferred = out.deferred, "poll done"),
            Some(e) => warn!(account = %acc.name, fetched = out.fetched, "poll failed: {e}"),
        }
        out
    }

    /// The envelope for one fetched message: `deliver_to`, or the multidrop split.
    pub(crate) fn incoming(&self, acc: &AccountConfig, raw: Vec<u8>, key: String) -> Incoming {
        let hs = multidrop::headers(&raw);
        let sender = multidrop::envelope_sender(&hs);
        let recipients = match &acc.multidrop {
            Some(md) => {
                let cfg = &self.config;
                let known = |n: &str| cfg.user(n).is_some() || cfg.aliases.contains_key(n);
                let r = multidrop::route(&raw, md, &acc.host, &cfg.postmaster, &known);
                if r.fallback {
                    warn!(account = %acc.name, key = %key, header = ?r.header,
                        "multidrop: no local recipient found, delivering to {}", r.recipients.join(","));
                }
                r.recipients
            }
            None => acc.deliver_to.clone(),
        };
        let mut env = Envelope::new(
            sender,
            recipients,
            Source::Fetch {
                account: acc.name.clone(),
                protocol: match acc.protocol {
                    Protocol::Pop3 => "pop3".into(),
                    Protocol::Imap => "imap".into(),
                },
                host: acc.host.clone(),
            },
        );
        env.idempotency_key = Some(key);
        Incoming {
            envelope: env,
            message: RawMessage::new(raw),
        }
    }

    /// The password for LOGIN/USER/PLAIN: inline, from a mode-600 file, or from a
    /// command's first output line.
    pub(crate) async fn password(&self, acc: &AccountConfig) -> Result<String, FetchError> {
        if let Some(p) = &acc.password {
            return Ok(p.clone());
        }
        if let Some(f) = &acc.password_file {
            return crate::config::read_secret_file(f).map_err(FetchError::Config);
        }
        if let Some(argv) = &acc.password_command {
            let (prog, args) = argv
                .split_first()
                .ok_or_else(|| FetchError::Config("password_command is empty".into()))?;
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::process::Command::new(prog)
                    .args(args)
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| FetchError::Config(format!("password_command {prog}: timed out")))?
            .map_err(|e| FetchError::Config(format!("password_command {prog}: {e}")))?;
            if !out.status.success() {
                return Err(FetchError::Config(format!(
                    "password_command {prog}: {}",
                    out.status
                )));
            }
            let s = String::from_utf8_lossy(&out.stdout);
            return Ok(s.lines().next().unwrap_or("").to_string());
        }
        Err(FetchError::Config(format!(
            "account {} has no password",
            acc.name
        )))
    }

    /// The largest message accepted from the ISP.
    pub(crate) fn max_message(&self) -> u64 {
        self.config.limits.message_size
    }
}

/// Judges one delivery report.
pub(crate) fn fate(r: &DeliveryReport) -> Fate {
    if r.outcomes.is_empty() {
        Fate::Deferred("delivery returned no outcome".into())
    } else if r.is_final() {
        Fate::Final
    } else {
        let why: Vec<String> = r
            .outcomes
            .iter()
            .filter_map(|(rc, o)| match o {
                crate::message::RcptOutcome::TempFail(w) => Some(format!("{rc}: {w}")),
                _ => None,
            })
            .collect();
        Fate::Deferred(why.join("; "))
    }
}

/// The Message-ID for de-duplication after a UIDVALIDITY change, or a digest of the
/// header block when there is none.
pub(crate) fn dedup_id(raw: &[u8]) -> String {
    let hs = multidrop::headers(raw);
    match multidrop::first_header(&hs, "Message-ID")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(m) if m.starts_with('<') => m.to_string(),
        Some(m) => format!("<{m}>"),
        None => {
            let end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
                .unwrap_or(raw.len());
            format!("hdr:{}", hex::encode(Sha256::digest(&raw[..end])))
        }
    }
}

/// `fetchmailrc = "PATH"` used live: seeds the seen set of each POP3 `keep` account of
/// the fetchmailrc from fetchmail's `.fetchids`, the first time zolder meets the account
/// (`db::fetchids::seed_seen_if_new`: never once zolder has recorded anything for it),
/// so the switch from fetchmail does not fetch a kept mailbox all over again. Call it
/// before polling, with the accounts about to run. Accounts that delete at the ISP are
/// not seeded: a UIDL fetchmail saw but could not delete would be deleted unfetched.
/// Problems are logged: a missing or broken `.fetchids` never stops the polls.
pub async fn seed_from_fetchids(f: &Fetcher, accounts: &[AccountConfig]) -> u64 {
    let wanted: Vec<String> = accounts
        .iter()
        .filter(|a| a.source.is_some() && a.keep && a.protocol == Protocol::Pop3)
        .map(|a| a.name.clone())
        .collect();
    if f.config.fetchmailrc.is_none() || wanted.is_empty() {
        return 0;
    }
    let cfg = f.config.clone();
    let found = tokio::task::spawn_blocking(move || {
        crate::config::fetchmailrc::load::live_seen_state(&cfg)
    })
    .await;
    let (idfile, plan) = match found {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return 0,
        Ok(Err(e)) => {
            warn!("fetchmailrc: .fetchids not imported: {e}");
            return 0;
        }
        Err(e) => {
            warn!("fetchmailrc: .fetchids not imported: {e}");
            return 0;
        }
    };
    let mut total = 0;
    for (name, uids) in plan.pop3 {
        if !wanted.contains(&name) || uids.is_empty() {
            continue;
        }
        let n = name.clone();
        match f
            .db
            .run(move |c| {
                db::fetchids::seed_seen_if_new(
                    c,
                    &n,
                    db::fetch::POP3_FOLDER,
                    uids.iter().map(String::as_str),
                    db::now(),
                )
            })
            .await
        {
            Ok(0) => {}
            Ok(k) => {
                tracing::info!(account = %name, idfile = %idfile.display(),
                    "seeded {k} seen UIDLs from fetchmail's .fetchids: those messages are not fetched again");
                total += k as u64;
            }
            Err(e) => warn!(account = %name, "seeding from {}: {e}", idfile.display()),
        }
    }
    total
}

/// Runs a pre/postconnect program (argv, no shell); a non-zero exit is an error.
async fn run_hook(what: &str, argv: &[String]) -> Result<(), FetchError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| FetchError::Config(format!("{what} is empty")))?;
    let st = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .map_err(|_| FetchError::Connect(format!("{what} {prog}: timed out")))?
    .map_err(|e| FetchError::Config(format!("{what} {prog}: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(FetchError::Connect(format!("{what} {prog}: {st}")))
    }
}

/// Where `zolder fetch` and the daemon find the database.
pub fn db_path(cfg: &Config) -> PathBuf {
    cfg.db_path()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RcptOutcome;

    #[test]
    fn fates() {
        let mut r = DeliveryReport::default();
        assert!(matches!(fate(&r), Fate::Deferred(_)));
        r.outcomes.push(("a".into(), RcptOutcome::Delivered));
        r.outcomes
            .push(("b".into(), RcptOutcome::PermFail(550, "no".into())));
        assert!(matches!(fate(&r), Fate::Final));
        r.outcomes
            .push(("c".into(), RcptOutcome::TempFail("disk full".into())));
        match fate(&r) {
            Fate::Deferred(w) => assert_eq!(w, "c: disk full"),
            Fate::Final => panic!(),
        }
    }

    #[test]
    fn dedup_ids() {
        assert_eq!(dedup_id(b"Message-ID: <a@b>\r\n\r\nx"), "<a@b>");
        assert_eq!(dedup_id(b"Message-Id:  a@b\n\nx"), "<a@b>");
        let h = dedup_id(b"Subject: x\r\n\r\nbody");
        assert!(h.starts_with("hdr:") && h.len() == 68);
        assert_eq!(h, dedup_id(b"Subject: x\r\n\r\nother body"));
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn a_database_error_says_database_once() {
        let e = FetchError::from(db::DbError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(13),
            Some("database or disk is full".into()),
        )));
        let t = e.to_string();
        assert!(t.starts_with("database: "), "{t}");
        assert!(!t.contains("database: database:"), "{t}");
    }
}
