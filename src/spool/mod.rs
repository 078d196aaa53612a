//! The mail store: every user's mailboxes on disk (Maildir, or an mbox INBOX) and
//! their index in SQLite (UIDs, flags, MODSEQs). This is the API the IMAP and POP3
//! servers and the delivery pipeline use; it knows no protocol.
//!
//! Owns `data_dir/mail/<user>/Maildir/` (Maildir++ folders `.Name/`), `data_dir/spool/<user>`
//! (mbox users' INBOX) and the index tables (through `db::spool`). It must not call
//! imapd, pop3d, deliver or queue.
//!
//! # Files
//! `mod.rs` the types and [`Spool`]'s constructor; `store.rs` the durable write path
//! ([`Spool::store_batch`]); `mailbox.rs` create/delete/rename/subscribe/list;
//! `message.rs` select, reads, flags, expunge, copy, move, changes; `sync.rs` the
//! index/disk reconcile; `commit.rs` write transactions and WAL group commit;
//! `watch.rs` [`ChangeWatcher`]; `imap.rs` what imapd needs beyond that; `maildir.rs`,
//! `mbox.rs`, `flags.rs` the formats.
//!
//! # Layout
//! * Maildir user: INBOX = `mail/<user>/Maildir/`, folder `Work.2025` =
//!   `mail/<user>/Maildir/.Work.2025/`.
//! * mbox user: INBOX = `spool/<user>` (what mutt, procmail and `/bin/mail` know);
//!   other folders are Maildir++ folders as above.
//! * Mailbox names are UTF-8, '.'-separated; `INBOX` is case-insensitive. The IMAP
//!   server converts modified UTF-7 at its edge.
//! * Default folders, created on a user's first use: INBOX, Sent, Drafts, Trash, Junk
//!   (with their special-use attributes).
//!
//! # Commit order (design.md, durability rules)
//! A message is written to `tmp/` (O_EXCL), fsynced, renamed into `new/` (or `cur/`
//! with flags), the directory fsynced, and only then its index row committed. mbox
//! appends are recorded in `mbox_pending` first, then appended and fsynced, then indexed
//! (see `migrations/0002_spool.sql`). [`Spool::store_batch`] does this for many
//! messages at once: one fsync per file, one per directory, one transaction.
//!
//! # Index guarantees (what the IMAP server may rely on)
//! * UIDs are strictly ascending per mailbox and never reused within a UIDVALIDITY.
//! * Every change (append, flag change, expunge) takes a fresh MODSEQ; the mailbox's
//!   `highestmodseq` is the largest; expunged UIDs are remembered with theirs
//!   ([`Spool::changes_since`]).
//! * `size` is RFC822.SIZE: the message with every bare LF counted as CRLF.
//! * Flags are written to the index and, for Maildir, to the `:2,` info suffix.
//! * [`Spool::select`] reconciles the index with the disk first (mail dropped into the
//!   Maildir by another program, files removed or re-flagged by one, mail appended to the
//!   mbox by procmail, crash leftovers).
//!
//! # Blocking
//! Every method does file and database I/O and blocks. From async code call them in
//! `tokio::task::spawn_blocking`, or use [`Spool::run`]:
//! ```ignore
//! let state = spool.run(move |s| s.select("bouke", "INBOX")).await?;
//! ```
//!
//! # Change notification
//! [`Spool::watch`] gives a [`ChangeWatcher`] for a user: it wakes at once for changes
//! made through this `Spool` (in-process broadcast) and within a second for changes
//! made by another process (`zolder deliver`), by polling a per-user counter row.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::config::{Config, SpoolKind};
use crate::db::spool::{self as dbs, MailboxRow, MessageRow, NewMessage};
use crate::db::{self, Connection, DbError};

mod commit;
pub mod flags;
mod imap;
mod mailbox;
pub mod maildir;
pub mod mbox;
mod message;
mod store;
mod sync;
mod watch;

use commit::{open_conn, write_tx};
pub use flags::Flags;
use maildir::{Maildir, Sub};
use message::wire_header;
use sync::DirStamp;
pub use sync::{mbox_status_flags, parse_from_line_date};
pub use watch::ChangeWatcher;

/// The name of every user's inbox.
pub const INBOX: &str = "INBOX";

/// Folders every user gets on first use, with their special-use attribute (RFC 6154).
pub const DEFAULT_FOLDERS: &[(&str, Option<&str>)] = &[
    (INBOX, None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
];

/// Errors of the mail store. [`SpoolError::is_temporary`] tells a delivery whether to
/// retry.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    #[error("user {user} has no mailbox `{mailbox}`")]
    NoMailbox { user: String, mailbox: String },
    #[error("user {user} already has a mailbox `{mailbox}`")]
    MailboxExists { user: String, mailbox: String },
    #[error("invalid mailbox name `{name}`: {why}")]
    BadName { name: String, why: &'static str },
    #[error("mailbox `{0}` cannot be deleted")]
    Protected(String),
    #[error("{mailbox} of {user} has no message with UID {uid}")]
    NoMessage {
        user: String,
        mailbox: String,
        uid: u32,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Failed(String),
}

impl SpoolError {
    fn io(path: impl Into<PathBuf>, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.into(),
            source,
        }
    }

    /// Worth retrying later (disk full, lock held, database busy…)? Anything not
    /// known to be permanent is temporary.
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            SpoolError::UnknownUser(_)
                | SpoolError::BadName { .. }
                | SpoolError::Protected(_)
                | SpoolError::MailboxExists { .. }
        )
    }

    /// A file or folder could not be created for lack of permission (sysexits 73).
    pub fn is_cant_create(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem))
    }
}

impl From<db::SqlError> for SpoolError {
    fn from(e: db::SqlError) -> Self {
        SpoolError::Db(DbError::Sql(e))
    }
}

pub type Result<T> = std::result::Result<T, SpoolError>;

/// A mailbox as LIST/STATUS see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub name: String,
    /// `\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`.
    pub special_use: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub messages: u32,
    pub unseen: u32,
}

/// One message's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgMeta {
    pub uid: u32,
    /// RFC822.SIZE (CRLF-normalised).
    pub size: u64,
    /// INTERNALDATE, unix seconds.
    pub internal_date: i64,
    pub flags: Flags,
    pub modseq: u64,
}

/// A selected mailbox: what SELECT/EXAMINE and POP3's transaction state need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxState {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// By ascending UID; the position + 1 is the message sequence number.
    pub messages: Vec<MsgMeta>,
}

/// What changed after a MODSEQ (CONDSTORE/QRESYNC, and IDLE/NOOP updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// Messages added or re-flagged after the given MODSEQ, by UID.
    pub changed: Vec<MsgMeta>,
    /// UIDs expunged after the given MODSEQ.
    pub vanished: Vec<u32>,
}

/// How STORE combines flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: replace.
    Set,
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
}

/// The result of [`Spool::store_flags`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsResult {
    /// Messages whose flags changed, with their new flags and MODSEQ.
    pub updated: Vec<MsgMeta>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE.
    pub failed: Vec<u32>,
}

/// The result of [`Spool::append`] (APPENDUID) or one copy (COPYUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// The result of [`Spool::copy`] / [`Spool::move_messages`] (COPYUID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination.
    pub uidvalidity: u32,
    /// (source UID, destination UID), in source UID order.
    pub uids: Vec<(u32, u32)>,
}

/// One message to store, for [`Spool::store_batch`].
#[derive(Debug, Clone)]
pub struct StoreRequest {
    pub user: String,
    /// Mailbox name; created if missing (as procmail and Sieve `fileinto` expect).
    pub mailbox: String,
    /// The exact bytes to store (the delivery pipeline has prepended its trace headers).
    pub bytes: Arc<Vec<u8>>,
    pub flags: Flags,
    /// INTERNALDATE; `None` = now.
    pub internal_date: Option<i64>,
    /// Exactly-once key: if already recorded for this user, nothing is stored and the
    /// outcome is [`StoreOutcome::Duplicate`]; otherwise it is recorded in the same
    /// transaction as the index row.
    pub key: Option<String>,
    /// The envelope sender, for an mbox From_ line.
    pub sender: Option<String>,
    /// Message-ID, kept in the index for de-duplication.
    pub message_id: Option<String>,
}

impl StoreRequest {
    pub fn new(user: &str, mailbox: &str, bytes: Vec<u8>) -> StoreRequest {
        StoreRequest {
            user: user.to_string(),
            mailbox: mailbox.to_string(),
            bytes: Arc::new(bytes),
            flags: Flags::new(),
            internal_date: None,
            key: None,
            sender: None,
            message_id: None,
        }
    }
}

/// What [`Spool::store_batch`] did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durably stored and indexed.
    Stored { uidvalidity: u32, uid: u32 },
    /// Its key was already recorded: stored before, nothing done now.
    Duplicate,
}

/// A change notification: `mailbox` is `None` when the change came from another
/// process (only the user is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub user: String,
    pub mailbox: Option<String>,
}

/// The number of bytes of `msg` once every bare LF is written CRLF (RFC822.SIZE).
pub fn crlf_size(msg: &[u8]) -> u64 {
    let mut n = msg.len() as u64;
    let mut prev = 0u8;
    for &b in msg {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

/// `msg` with every bare LF turned into CRLF (what IMAP FETCH and POP3 RETR send).
pub fn to_crlf(msg: &[u8]) -> Cow<'_, [u8]> {
    if crlf_size(msg) == msg.len() as u64 {
        return Cow::Borrowed(msg);
    }
    let mut out = Vec::with_capacity(crlf_size(msg) as usize);
    let mut prev = 0u8;
    for &b in msg {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Cow::Owned(out)
}

/// Checks a mailbox name and returns its normal form (`inbox` → `INBOX`).
pub fn normalize_name(name: &str) -> Result<String> {
    let bad = |why| {
        Err(SpoolError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return bad("empty hierarchy level ('.' at the start or end, or '..')");
    }
    if name.starts_with("zolder-") {
        return bad("names starting with `zolder-` are reserved");
    }
    Ok(name.to_string())
}

/// Where one mailbox's messages live.
#[derive(Debug, Clone)]
enum Store {
    Maildir(Maildir),
    Mbox(PathBuf),
}

#[derive(Debug, Clone)]
struct UserEntry {
    name: String,
    kind: SpoolKind,
}

/// The mail store. Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    hostname: String,
    db_path: PathBuf,
    users: HashMap<String, UserEntry>,
    pool: Mutex<Vec<Connection>>,
    ready: Mutex<HashSet<String>>,
    notify: Mutex<HashMap<String, broadcast::Sender<Change>>>,
    /// Each user's change counter as last read by a watcher, and when: many idle
    /// watchers of one user share one database read per half poll interval.
    counters: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// Per Maildir mailbox (by id): the directory times at which the index was
    /// known to match the disk, so a select of an unchanged folder skips listing it.
    stamps: Mutex<HashMap<i64, DirStamp>>,
    lock_timeout: Duration,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

/// A pooled database connection; goes back to the pool when dropped.
struct Pooled<'a> {
    conn: Option<Connection>,
    pool: &'a Mutex<Vec<Connection>>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // A connection left inside a transaction (a panic mid-way) is not reused.
            if c.is_autocommit() {
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                // Enough for every session busy at once in the benchmark's 50-client
                // run: a connection opened anew costs a file open and the schema check.
                if pool.len() < 32 {
                    pool.push(c);
                }
            }
        }
    }
}

impl Spool {
    /// Opens the store for the users in `cfg`, with the database at `cfg.db_path()`.
    pub fn open(cfg: &Config) -> Result<Spool> {
        let users = cfg
            .users
            .iter()
            .map(|u| (u.name.clone(), u.spool))
            .collect::<Vec<_>>();
        Spool::open_with(&cfg.data_dir, &cfg.hostname, users)
    }

    /// Opens the store under `data_dir` for `users` (name, spool kind).
    pub fn open_with(
        data_dir: &Path,
        hostname: &str,
        users: Vec<(String, SpoolKind)>,
    ) -> Result<Spool> {
        let db_path = data_dir.join("zolder.db");
        let conn = open_conn(&db_path)?;
        let users = users
            .into_iter()
            .map(|(name, kind)| (name.to_ascii_lowercase(), UserEntry { name, kind }))
            .collect();
        Ok(Spool {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                hostname: hostname.to_string(),
                db_path,
                users,
                pool: Mutex::new(vec![conn]),
                ready: Mutex::new(HashSet::new()),
                notify: Mutex::new(HashMap::new()),
                counters: Mutex::new(HashMap::new()),
                stamps: Mutex::new(HashMap::new()),
                lock_timeout: Duration::from_secs(60),
            }),
        })
    }

    /// Changes how long an mbox lock is waited for (default 60 s).
    pub fn with_lock_timeout(self, t: Duration) -> Spool {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.lock_timeout = t;
                Spool {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Spool { inner },
        }
    }

    /// Runs `f` on the blocking thread pool (the way to call this API from async code).
    pub async fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Spool) -> T + Send + 'static,
        T: Send + 'static,
    {
        let s = self.clone();
        match tokio::task::spawn_blocking(move || f(&s)).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Is `user` someone who gets mail here (a `[[users]]` entry)?
    pub fn has_user(&self, user: &str) -> bool {
        self.inner.users.contains_key(&user.to_ascii_lowercase())
    }

    /// The user's name as configured (case as in the config).
    pub fn canonical_user(&self, user: &str) -> Option<&str> {
        self.inner
            .users
            .get(&user.to_ascii_lowercase())
            .map(|u| u.name.as_str())
    }

    fn user(&self, user: &str) -> Result<UserEntry> {
        self.inner
            .users
            .get(&user.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| SpoolError::UnknownUser(user.to_string()))
    }

    fn conn(&self) -> Result<Pooled<'_>> {
        let pooled = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.inner.db_path)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: &self.inner.pool,
        })
    }

    /// The Maildir root of a user (`mail/<user>/Maildir`).
    pub fn maildir_root(&self, user: &str) -> PathBuf {
        self.inner.data_dir.join("mail").join(user).join("Maildir")
    }

    /// The mbox spool file of a user (`spool/<user>`).
    pub fn mbox_path(&self, user: &str) -> PathBuf {
        self.inner.data_dir.join("spool").join(user)
    }

    fn store_of(&self, u: &UserEntry, mailbox: &str) -> Store {
        if mailbox == INBOX {
            match u.kind {
                SpoolKind::Mbox => Store::Mbox(self.mbox_path(&u.name)),
                SpoolKind::Maildir => Store::Maildir(Maildir::new(self.maildir_root(&u.name))),
            }
        } else {
            Store::Maildir(Maildir::new(
                self.maildir_root(&u.name).join(format!(".{mailbox}")),
            ))
        }
    }

    /// Creates the user's folders and index rows on first use; picks up Maildir++
    /// folders another program made. Cheap after the first call in a process.
    pub fn prepare_user(&self, user: &str) -> Result<()> {
        let u = self.user(user)?;
        let lc = u.name.to_ascii_lowercase();
        if self
            .inner
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&lc)
        {
            return Ok(());
        }
        let root = self.maildir_root(&u.name);
        Maildir::new(&root)
            .create(false)
            .map_err(|e| SpoolError::io(&root, e))?;
        if u.kind == SpoolKind::Mbox {
            let dir = self.inner.data_dir.join("spool");
            std::fs::create_dir_all(&dir).map_err(|e| SpoolError::io(&dir, e))?;
        }
        let mut wanted: Vec<(String, Option<&str>)> = DEFAULT_FOLDERS
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        // Maildir++ folders already on disk (a Maildir moved in from Dovecot/Courier).
        if let Ok(rd) = std::fs::read_dir(&root) {
            for ent in rd.flatten() {
                let n = ent.file_name().to_string_lossy().into_owned();
                if let Some(name) = n.strip_prefix('.')
                    && Maildir::new(ent.path()).exists()
                    && normalize_name(name).is_ok()
                {
                    wanted.push((name.to_string(), None));
                }
            }
        }
        // Leftovers of writers killed mid-message.
        for (name, _) in &wanted {
            if let Store::Maildir(md) = self.store_of(&u, name) {
                match md.clean_tmp(Duration::from_secs(36 * 3600)) {
                    Ok(0) => {}
                    Ok(n) => debug!(user = %u.name, folder = %name, "removed {n} stale tmp/ files"),
                    Err(e) => warn!(user = %u.name, folder = %name, "cleaning tmp/: {e}"),
                }
            }
        }
        let mut conn = self.conn()?;
        let existing: HashSet<String> = dbs::mailboxes(&conn, &u.name)?
            .into_iter()
            .map(|m| m.name)
            .collect();
        let missing: Vec<_> = wanted
            .into_iter()
            .filter(|(n, _)| !existing.contains(n))
            .collect();
        for (name, _) in &missing {
            if let Store::Maildir(md) = self.store_of(&u, name) {
                md.create(name != INBOX)
                    .map_err(|e| SpoolError::io(md.root(), e))?;
            }
        }
        if !missing.is_empty() {
            let tx = write_tx(&mut conn)?;
            for (name, special) in &missing {
                if dbs::mailbox(&tx, &u.name, name)?.is_none() {
                    dbs::create_mailbox(&tx, &u.name, name, *special)?;
                }
            }
            dbs::bump_changes(&tx, &u.name)?;
            tx.commit()?;
        }
        self.inner
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lc);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
