//! The outgoing queue: durable store-and-forward between the injectors (the LAN SMTP
//! server, `zolder sendmail`, the maildrop, mail a delivery generated) and the two
//! transports the daemon hands it (the local delivery pipeline and the smarthost relay,
//! each a [`crate::message::Deliver`]).
//!
//! * [`Queue::enqueue`]: a message is acknowledged only once its file is fsynced and
//!   renamed into `queue/msg/`, that folder fsynced, and its rows committed. A
//!   committer thread batches the folder fsync and the SQLite transaction across every
//!   session waiting at that moment (group commit); each session fsyncs its own file
//!   on a blocking thread, so those fsyncs run in parallel too.
//! * [`runner`]: wakes on new mail, on the next due retry, on the smarthost schedule
//!   and on `zolder flush`; delivers, records per-recipient outcomes, retries with
//!   Postfix's backoff, bounces ([`bounce`]) and removes finished messages.
//! * [`maildrop`] and [`control`]: local injection by users who do not own
//!   `data_dir`, and the socket `zolder flush` / `sendmail` talk to.
//!
//! Uses `db` and the two `Deliver`s; never calls submit, spool or relay directly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::config::Config;
use crate::db;
use crate::db::queue::{MessageRow, RcptRow};
use crate::message::Address;
use crate::message::headers;

pub mod bounce;
pub mod control;
pub mod maildrop;
pub mod runner;
pub mod schedule;
pub mod store;

pub use runner::{FlushSummary, FlushTarget, Runner};
pub use store::Store;

/// The current time in unix seconds; injectable so tests can age the queue.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(db::now)
}

/// One recipient of a message to enqueue, with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRcpt {
    pub addr: String,
    /// `NEVER` or a comma list of `SUCCESS`, `FAILURE`, `DELAY`; `None` = default
    /// (failure and delay).
    pub notify: Option<String>,
    /// `rfc822;addr` as the client gave it.
    pub orcpt: Option<String>,
}

impl NewRcpt {
    pub fn plain(addr: impl Into<String>) -> NewRcpt {
        NewRcpt {
            addr: addr.into(),
            notify: None,
            orcpt: None,
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// A pre-chosen queue id (the SMTP session names it in `Received:`; the maildrop
    /// reuses the drop file's name so a second pickup is refused as a duplicate).
    pub id: Option<String>,
    /// `None` = the null sender `<>`.
    pub sender: Option<String>,
    pub recipients: Vec<NewRcpt>,
    pub bytes: Vec<u8>,
    /// Where it came from, for logs and `zolder queue show`.
    pub source: String,
    pub envid: Option<String>,
    /// DSN RET: `FULL` or `HDRS`.
    pub ret: Option<String>,
    pub auth_user: Option<String>,
}

impl NewMessage {
    pub fn new(
        sender: Option<String>,
        recipients: Vec<String>,
        bytes: Vec<u8>,
        source: &str,
    ) -> Self {
        NewMessage {
            id: None,
            sender,
            recipients: recipients.into_iter().map(NewRcpt::plain).collect(),
            bytes,
            source: source.to_string(),
            envid: None,
            ret: None,
            auth_user: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue: {0}")]
    Db(#[from] db::DbError),
    #[error("queue: message has no recipients")]
    NoRecipients,
    #[error("queue: message {0} is already queued")]
    Duplicate(String),
    #[error("queue: {0}")]
    Other(String),
}

/// A fresh queue id: time-ordered hex (microseconds) plus 24 random bits, so ids from
/// the daemon, `sendmail` and the maildrop never collide and sort by arrival.
impl From<crate::message::Generated> for NewMessage {
    /// Mail a delivery generated (a vacation reply, a redirect, a notice, a bounce),
    /// queued by whoever called the delivery; its source names the reason.
    fn from(g: crate::message::Generated) -> Self {
        let source = format!("generated:{}", g.reason);
        NewMessage::new(g.sender, g.recipients, g.bytes, &source)
    }
}

pub fn new_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("{micros:013X}{:06X}", rand::random::<u32>() & 0xFF_FFFF)
}

/// Is a queue id safe as a file name (also checks ids read from the maildrop)?
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Is this recipient delivered here (bare name, or a local domain)?
pub fn is_local_rcpt(cfg: &Config, rcpt: &str) -> bool {
    match Address::parse(rcpt) {
        Some(a) => a.is_bare() || cfg.is_local_domain(&a.domain),
        None => false,
    }
}

/// The rows for one message.
fn rows(cfg: &Config, m: &NewMessage, id: &str, now: i64) -> (MessageRow, Vec<RcptRow>) {
    let msg = MessageRow {
        id: id.to_string(),
        sender: m.sender.clone().filter(|s| !s.is_empty()),
        arrival: now,
        size: m.bytes.len() as i64,
        source: m.source.clone(),
        message_id: headers::get(&m.bytes, "Message-ID"),
        envid: m.envid.clone(),
        ret: m.ret.clone(),
        auth_user: m.auth_user.clone(),
        warned: false,
    };
    let mut seen = std::collections::HashSet::new();
    let rcpts = m
        .recipients
        .iter()
        .filter(|r| seen.insert(r.addr.to_ascii_lowercase()))
        .map(|r| RcptRow {
            notify: r.notify.clone(),
            orcpt: r.orcpt.clone(),
            ..RcptRow::new(&r.addr, is_local_rcpt(cfg, &r.addr), now)
        })
        .collect();
    (msg, rcpts)
}

/// Adds `Date:` and `Message-ID:` when missing (Postfix does this for local
/// submissions), so that every retry sends identical bytes and a duplicate after a
/// crash can be recognised downstream. Prepends only; never rewrites.
pub fn complete_headers(bytes: Vec<u8>, hostname: &str, id: &str) -> Vec<u8> {
    let has_date = headers::get(&bytes, "Date").is_some();
    let has_mid = headers::get(&bytes, "Message-ID").is_some();
    if has_date && has_mid {
        return bytes;
    }
    let eol = headers::eol(&bytes);
    let mut out = Vec::with_capacity(bytes.len() + 128);
    if !has_date {
        out.extend_from_slice(format!("Date: {}{eol}", rfc2822_now()).as_bytes());
    }
    if !has_mid {
        out.extend_from_slice(format!("Message-ID: <{id}@{hostname}>{eol}").as_bytes());
    }
    out.extend_from_slice(&bytes);
    out
}

/// The current date in RFC 5322 form.
pub fn rfc2822_now() -> String {
    chrono::Local::now()
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

struct Job {
    msg: MessageRow,
    rcpts: Vec<RcptRow>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// The queue handle: cheap to clone, shared by every injector and the runner.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    store: Store,
    db_path: PathBuf,
    jobs: std::sync::mpsc::Sender<Job>,
    wake: Notify,
    clock: Clock,
    flush_tx: mpsc::UnboundedSender<runner::FlushRequest>,
    flush_rx: Mutex<Option<mpsc::UnboundedReceiver<runner::FlushRequest>>>,
    /// The committer thread, joined when the last handle goes.
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Ends the committer and waits for it: it closes its database connection, and a
    /// process that exits right after (`zolder fetch`, `sendmail`) must not cut that
    /// close — the last connection's checkpoint — short.
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

impl Queue {
    /// Opens the queue under `cfg.data_dir` and starts its committer thread.
    pub fn open(cfg: Arc<Config>, clock: Clock) -> Result<Queue, QueueError> {
        let store = Store::new(&cfg.data_dir);
        store.create()?;
        let db_path = cfg.db_path();
        let mut conn = db::open(&db_path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let st = store.clone();
        let handle = std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || committer(&mut conn, &st, rx))?;
        let (ftx, frx) = mpsc::unbounded_channel();
        Ok(Queue {
            inner: Arc::new(Inner {
                cfg,
                store,
                db_path,
                jobs: tx,
                wake: Notify::new(),
                clock,
                flush_tx: ftx,
                flush_rx: Mutex::new(Some(frx)),
                committer: Mutex::new(Some(handle)),
            }),
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.inner.cfg
    }
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }
    pub fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// Durably queues one message; returns its queue id once file and rows are
    /// committed (the caller may then answer 250 / exit 0).
    pub async fn enqueue(&self, m: NewMessage) -> Result<String, QueueError> {
        if m.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let id = m.id.clone().unwrap_or_else(new_id);
        if !valid_id(&id) {
            return Err(QueueError::Other(format!("bad queue id `{id}`")));
        }
        let (msg, rcpts) = rows(&self.inner.cfg, &m, &id, self.now());
        let store = self.inner.store.clone();
        let wid = id.clone();
        let bytes = m.bytes;
        tokio::task::spawn_blocking(move || store.write(&wid, &bytes))
            .await
            .map_err(|e| QueueError::Other(format!("writer task: {e}")))?
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    QueueError::Duplicate(id.clone())
                } else {
                    QueueError::Io(e)
                }
            })?;
        let (rtx, rrx) = oneshot::channel();
        self.inner
            .jobs
            .send(Job {
                msg,
                rcpts,
                reply: rtx,
            })
            .map_err(|_| QueueError::Other("committer stopped".into()))?;
        let res = rrx
            .await
            .map_err(|_| QueueError::Other("committer stopped".into()))?;
        if let Err(e) = res {
            let _ = self.inner.store.remove(&id);
            return Err(if e.contains("UNIQUE") {
                QueueError::Duplicate(id)
            } else {
                QueueError::Other(e)
            });
        }
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Wakes the runner (new mail, `zolder queue retry`, a maildrop poke).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await
    }

    /// Asks the runner for a flush (relay everything now, ignoring backoff) and waits
    /// for its summary. `None` when no runner is running.
    pub async fn flush(&self) -> Option<FlushSummary> {
        self.flush_target(FlushTarget::All).await
    }

    /// A flush of the messages `target` selects (`sendmail -qI`/`-qR`).
    pub async fn flush_target(&self, target: FlushTarget) -> Option<FlushSummary> {
        let (tx, rx) = oneshot::channel();
        self.inner.flush_tx.send((target, tx)).ok()?;
        self.inner.wake.notify_one();
        rx.await.ok()
    }

    pub(crate) fn take_flush_rx(&self) -> Option<mpsc::UnboundedReceiver<runner::FlushRequest>> {
        self.inner
            .flush_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The committer thread: takes every job waiting, fsyncs `queue/msg/` once, inserts
/// all rows in one transaction, answers each. While it commits, new jobs pile up and
/// form the next batch, so the batch size follows the load by itself.
fn committer(conn: &mut db::Connection, store: &Store, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 512 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let res = store.sync_dir().map_err(|e| e.to_string()).and_then(|_| {
            let batch: Vec<(MessageRow, Vec<RcptRow>)> = jobs
                .iter()
                .map(|j| (j.msg.clone(), j.rcpts.clone()))
                .collect();
            db::queue::insert_batch(conn, &batch).map_err(|e| e.to_string())
        });
        match res {
            Ok(()) => {
                for j in jobs {
                    let _ = j.reply.send(Ok(()));
                }
            }
            Err(e) if jobs.len() > 1 => {
                // One bad apple (a duplicate id) must not fail its neighbours: retry
                // each on its own.
                warn!(error = %e, n = jobs.len(), "queue batch commit failed; committing one by one");
                for j in jobs {
                    let r = db::queue::insert_batch(conn, &[(j.msg.clone(), j.rcpts.clone())])
                        .map_err(|e| e.to_string());
                    let _ = j.reply.send(r);
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Queues a message without a daemon (the `sendmail` command run by the owner of
/// `data_dir`): file fsync, rename, folder fsync, then one committed transaction.
pub fn enqueue_direct(cfg: &Config, m: NewMessage, now: i64) -> Result<String, QueueError> {
    if m.recipients.is_empty() {
        return Err(QueueError::NoRecipients);
    }
    let store = Store::new(&cfg.data_dir);
    store.create()?;
    let id = m.id.clone().unwrap_or_else(new_id);
    let (msg, rcpts) = rows(cfg, &m, &id, now);
    store.write(&id, &m.bytes)?;
    store.sync_dir()?;
    let mut conn = db::open(&cfg.db_path())?;
    if let Err(e) = db::queue::insert_batch(&mut conn, &[(msg, rcpts)]) {
        let _ = store.remove(&id);
        return Err(e.into());
    }
    info!(queue_id = %id, "queued");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_valid() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(valid_id(&a));
        assert!(!valid_id("../x"));
    }

    #[test]
    fn completes_headers_once() {
        let m = complete_headers(b"Subject: x\n\nbody\n".to_vec(), "zolder.thuis", "ABC");
        let s = String::from_utf8(m.clone()).unwrap();
        assert!(s.starts_with("Date: "), "{s}");
        assert!(s.contains("Message-ID: <ABC@zolder.thuis>\n"), "{s}");
        assert_eq!(complete_headers(m.clone(), "h", "X"), m);
    }
}
