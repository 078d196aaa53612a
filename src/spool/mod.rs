//! The mail store: every user's mailboxes on disk (Maildir, or an mbox INBOX) and
//! their index in SQLite (UIDs, flags, MODSEQs). This is the API the IMAP and POP3
//! servers and the delivery pipeline use; it knows no protocol.
//!
//! Owns `data_dir/mail/<user>/Maildir/` (Maildir++ folders `.Name/`), `data_dir/spool/<user>`
//! (mbox users' INBOX) and the index tables (through `db::spool`). It must not call
//! imapd, pop3d, deliver or queue.
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

pub mod flags;
mod imap;
pub mod maildir;
pub mod mbox;

pub use flags::Flags;
use maildir::{Maildir, Sub};

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

/// Files [`Spool::store_batch`] writes before fsyncing them together (bounds the open
/// descriptors of a large batch).
const SYNC_GROUP: usize = 256;

/// fsyncs the written-but-unsynced files of a batch together; a file whose fsync
/// fails is removed and its job fails.
fn sync_group(
    unsynced: &mut Vec<(usize, PathBuf, std::fs::File)>,
    jobs: &mut [Job],
    results: &mut [Option<Result<StoreOutcome>>],
) {
    let synced = maildir::sync_files(&unsynced.iter().map(|u| &u.2).collect::<Vec<_>>());
    for ((ji, path, file), r) in unsynced.drain(..).zip(synced) {
        drop(file);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&path);
            let j = &mut jobs[ji];
            j.failed = true;
            results[j.idx] = Some(Err(SpoolError::io(path, e)));
        }
    }
}

/// A job inside [`Spool::store_batch`].
struct Job {
    idx: usize,
    user: String,
    mb: MailboxRow,
    store: Store,
    /// Maildir: the base name, the name in tmp/, and the path it was published at.
    name: String,
    tmp: String,
    path: Option<PathBuf>,
    /// Maildir keyed delivery found its file already in place (crash leftover).
    existing: bool,
    /// mbox: where the message bytes went, and its pending row.
    offset: u64,
    length: u64,
    pending: Option<i64>,
    /// Its key turned out to be recorded already (seen under the mbox lock).
    dup: bool,
    size: u64,
    date: i64,
    failed: bool,
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

    fn mailbox_row(&self, conn: &Connection, u: &UserEntry, name: &str) -> Result<MailboxRow> {
        dbs::mailbox(conn, &u.name, name)?.ok_or_else(|| SpoolError::NoMailbox {
            user: u.name.clone(),
            mailbox: name.to_string(),
        })
    }

    fn info(conn: &Connection, m: MailboxRow) -> Result<MailboxInfo> {
        let c = dbs::counts(conn, m.id)?;
        Ok(MailboxInfo {
            name: m.name,
            special_use: m.special_use,
            subscribed: m.subscribed,
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            messages: c.messages,
            unseen: c.unseen,
        })
    }

    /// Every mailbox of `user`, by name, with message and unseen counts (LIST,
    /// LIST-STATUS). Does not sync with the disk; [`select`](Self::select) does.
    pub fn mailboxes(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let conn = self.conn()?;
        dbs::mailboxes(&conn, &u.name)?
            .into_iter()
            .map(|m| Self::info(&conn, m))
            .collect()
    }

    /// One mailbox's STATUS (no disk sync).
    pub fn status(&self, user: &str, mailbox: &str) -> Result<MailboxInfo> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Self::info(&conn, m)
    }

    /// Creates a mailbox (IMAP CREATE).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        self.create_row(&mut conn, &u, &name, true)?;
        self.notify(&u.name, &name);
        Ok(())
    }

    fn create_row(
        &self,
        conn: &mut Connection,
        u: &UserEntry,
        name: &str,
        fail_if_exists: bool,
    ) -> Result<MailboxRow> {
        if let Some(m) = dbs::mailbox(conn, &u.name, name)? {
            if fail_if_exists {
                return Err(SpoolError::MailboxExists {
                    user: u.name.clone(),
                    mailbox: name.to_string(),
                });
            }
            return Ok(m);
        }
        if let Store::Maildir(md) = self.store_of(u, name) {
            md.create(name != INBOX)
                .map_err(|e| SpoolError::io(md.root(), e))?;
            maildir::fsync_dir(&self.maildir_root(&u.name))
                .map_err(|e| SpoolError::io(self.maildir_root(&u.name), e))?;
        }
        let tx = write_tx(&mut *conn)?;
        let m = match dbs::mailbox(&tx, &u.name, name)? {
            Some(m) => m,
            None => dbs::create_mailbox(&tx, &u.name, name, None)?,
        };
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        Ok(m)
    }

    /// Deletes a mailbox and its messages (IMAP DELETE). INBOX cannot be deleted.
    /// Sub-folders (`Name.Child`) are separate Maildir++ folders and stay.
    pub fn delete_mailbox(&self, user: &str, mailbox: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        if name == INBOX {
            return Err(SpoolError::Protected(name));
        }
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        // Move the folder aside first (atomic), then forget it, then remove it: a crash
        // leaves at worst an ignored `.zolder-deleted…` folder, never half a mailbox.
        let Store::Maildir(md) = self.store_of(&u, &name) else {
            return Err(SpoolError::Protected(name));
        };
        let trash = self
            .maildir_root(&u.name)
            .join(format!(".zolder-deleted.{:016x}", rand::random::<u64>()));
        let moved = match std::fs::rename(md.root(), &trash) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(SpoolError::io(md.root(), e)),
        };
        let tx = write_tx(&mut conn)?;
        dbs::delete_mailbox(&tx, m.id)?;
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        if moved && let Err(e) = std::fs::remove_dir_all(&trash) {
            warn!(path = %trash.display(), "removing a deleted mailbox: {e}");
        }
        self.notify(&u.name, &name);
        Ok(())
    }

    /// Renames a mailbox and its sub-folders (IMAP RENAME). Renaming INBOX moves all
    /// its messages into a new mailbox and leaves INBOX empty (RFC 3501 6.3.5).
    pub fn rename_mailbox(&self, user: &str, from: &str, to: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let from = normalize_name(from)?;
        let to = normalize_name(to)?;
        if to == INBOX {
            return Err(SpoolError::MailboxExists {
                user: u.name.clone(),
                mailbox: to,
            });
        }
        if from == INBOX {
            self.create_mailbox(&u.name, &to)?;
            let uids: Vec<u32> = self
                .select(&u.name, INBOX)?
                .messages
                .iter()
                .map(|m| m.uid)
                .collect();
            self.move_messages(&u.name, INBOX, &uids, &to)?;
            return Ok(());
        }
        let mut conn = self.conn()?;
        let all = dbs::mailboxes(&conn, &u.name)?;
        if all.iter().any(|m| m.name == to) {
            return Err(SpoolError::MailboxExists {
                user: u.name.clone(),
                mailbox: to,
            });
        }
        let prefix = format!("{from}.");
        let moving: Vec<&MailboxRow> = all
            .iter()
            .filter(|m| m.name == from || m.name.starts_with(&prefix))
            .collect();
        if !moving.iter().any(|m| m.name == from) {
            return Err(SpoolError::NoMailbox {
                user: u.name.clone(),
                mailbox: from,
            });
        }
        let root = self.maildir_root(&u.name);
        let mut renames = Vec::new();
        for m in &moving {
            let new_name = format!("{to}{}", &m.name[from.len()..]);
            normalize_name(&new_name)?;
            renames.push((m.id, m.name.clone(), new_name));
        }
        for (_, old, new) in &renames {
            let (a, b) = (root.join(format!(".{old}")), root.join(format!(".{new}")));
            if let Err(e) = std::fs::rename(&a, &b)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(SpoolError::io(a, e));
            }
        }
        maildir::fsync_dir(&root).map_err(|e| SpoolError::io(&root, e))?;
        let tx = write_tx(&mut conn)?;
        for (id, _, new) in &renames {
            dbs::rename_mailbox(&tx, *id, new)?;
        }
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        self.notify(&u.name, &to);
        Ok(())
    }

    /// SUBSCRIBE / UNSUBSCRIBE.
    pub fn subscribe(&self, user: &str, mailbox: &str, subscribed: bool) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let tx = write_tx(&mut conn)?;
        dbs::set_subscribed(&tx, m.id, subscribed)?;
        tx.commit()
    }

    /// Opens a mailbox: reconciles the index with the disk, then returns UIDVALIDITY,
    /// UIDNEXT, HIGHESTMODSEQ and every message's metadata (SELECT, EXAMINE, POP3).
    pub fn select(&self, user: &str, mailbox: &str) -> Result<MailboxState> {
        let (conn, m) = self.open_synced(user, mailbox)?;
        let messages = dbs::messages(&conn, m.id)?.into_iter().map(meta).collect();
        Ok(MailboxState {
            name: m.name,
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            messages,
        })
    }

    /// Reconciles a mailbox's index with the disk; returns a connection and the
    /// mailbox row as it stands after that (what [`select`](Self::select) lists).
    fn open_synced(&self, user: &str, mailbox: &str) -> Result<(Pooled<'_>, MailboxRow)> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let changed = match self.store_of(&u, &name) {
            Store::Maildir(md) => self.sync_maildir(&mut conn, &m, &md)?,
            // A reader does not wait long for mutt or procmail: the index as it stands
            // is served and the next select catches up.
            Store::Mbox(path) => match mbox::MboxLock::acquire(
                &path,
                self.inner.lock_timeout.min(Duration::from_secs(3)),
            ) {
                Ok(lock) => self.sync_mbox(&mut conn, &m, &lock)?,
                Err(e) => {
                    warn!(user = %u.name, "mbox not synced, lock unavailable: {e}");
                    false
                }
            },
        };
        if changed {
            self.notify(&u.name, &name);
            let m = self.mailbox_row(&conn, &u, &name)?;
            return Ok((conn, m));
        }
        Ok((conn, m))
    }

    /// The metadata of one message.
    pub fn message_meta(&self, user: &str, mailbox: &str, uid: u32) -> Result<MsgMeta> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        dbs::message(&conn, m.id, uid)?
            .map(meta)
            .ok_or_else(|| SpoolError::NoMessage {
                user: u.name.clone(),
                mailbox: name,
                uid,
            })
    }

    /// The stored bytes of one message, exactly as delivered (line endings as stored;
    /// use [`to_crlf`] for the wire).
    pub fn read_message(&self, user: &str, mailbox: &str, uid: u32) -> Result<Vec<u8>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let gone = || SpoolError::NoMessage {
            user: u.name.clone(),
            mailbox: name.clone(),
            uid,
        };
        let row = dbs::message(&conn, m.id, uid)?.ok_or_else(gone)?;
        drop(conn);
        match self.store_of(&u, &name) {
            Store::Maildir(md) => {
                let base = row.file.as_deref().ok_or_else(gone)?;
                let info = Flags::parse(&row.flags).maildir_info();
                let (path, _) = md
                    .find(base, &info)
                    .map_err(|e| SpoolError::io(md.root(), e))?
                    .ok_or_else(gone)?;
                std::fs::read(&path).map_err(|e| SpoolError::io(path, e))
            }
            Store::Mbox(path) => {
                let (o, l) = row.offset.zip(row.length).ok_or_else(gone)?;
                mbox::read(&path, o, l).map_err(|e| SpoolError::io(path, e))
            }
        }
    }

    /// Several messages of one mailbox (IMAP FETCH): one index connection, one
    /// mailbox lookup and one index query for all of them. `None` for a UID that is
    /// gone. With `headers_only`, a message may be given as its header only (up to
    /// and including the blank line that ends it): served from the header cache
    /// (`db::imapd`), else read from the file and cached for next time.
    pub fn read_messages(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        headers_only: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // found[i] is the message of sorted[i].
        let mut found: Vec<Option<Vec<u8>>> = vec![None; sorted.len()];
        let (mb_id, rows) = {
            let conn = self.conn()?;
            let m = self.mailbox_row(&conn, &u, &name)?;
            let mut missing = Vec::new();
            if headers_only {
                // A cached header exists only while its message does (the trigger
                // in migrations/0009 removes it with the row).
                let mut cached = db::imapd::headers_in(&conn, m.id, &sorted)?
                    .into_iter()
                    .peekable();
                for (i, uid) in sorted.iter().enumerate() {
                    match cached.next_if(|c| c.0 == *uid) {
                        Some((_, h)) => found[i] = Some(h),
                        None => missing.push(*uid),
                    }
                }
            } else {
                missing = sorted.clone();
            }
            let rows = if missing.is_empty() {
                Vec::new()
            } else {
                db::imapd::messages_in(&conn, m.id, &missing)?
            };
            (m.id, rows)
        };
        let store = self.store_of(&u, &name);
        let mut fresh: Vec<(u32, Vec<u8>)> = Vec::new();
        for row in rows {
            let bytes = match &store {
                Store::Maildir(md) => {
                    let Some(base) = row.file.as_deref() else {
                        continue;
                    };
                    let info = Flags::parse(&row.flags).maildir_info();
                    match read_maildir_file(md, base, &info, headers_only)? {
                        Some(b) => b,
                        None => continue,
                    }
                }
                Store::Mbox(path) => match row.offset.zip(row.length) {
                    Some((o, l)) => mbox::read(path, o, l).map_err(|e| SpoolError::io(path, e))?,
                    None => continue,
                },
            };
            if headers_only {
                fresh.push((row.uid, wire_header(&bytes)));
            }
            if let Ok(i) = sorted.binary_search(&row.uid) {
                found[i] = Some(bytes);
            }
        }
        if !fresh.is_empty() {
            // Cache the headers just read. Losing this on a crash costs only a
            // re-read, so the commit does not wait for the disk.
            if let Err(e) = self.cache_headers(mb_id, &fresh) {
                debug!(user = %u.name, mailbox = %name, "header cache not written: {e}");
            }
        }
        Ok(uids
            .iter()
            .map(|uid| sorted.binary_search(uid).ok().and_then(|i| found[i].take()))
            .collect())
    }

    /// Writes headers into the cache in one transaction, without a WAL sync.
    pub(crate) fn cache_headers(&self, mailbox_id: i64, heads: &[(u32, Vec<u8>)]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let refs: Vec<(u32, &[u8])> = heads.iter().map(|(u, h)| (*u, h.as_slice())).collect();
        db::imapd::put_headers(&tx, mailbox_id, &refs)?;
        // A cache: the WAL is synced by the next durable commit.
        let _unsynced = tx.commit_deferred()?;
        Ok(())
    }

    /// Stores one message (IMAP APPEND). Returns its UID (APPENDUID).
    pub fn append(
        &self,
        user: &str,
        mailbox: &str,
        bytes: Vec<u8>,
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<Appended> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        {
            // APPEND to a missing mailbox is an error ([TRYCREATE]), unlike delivery.
            self.prepare_user(&u.name)?;
            let conn = self.conn()?;
            self.mailbox_row(&conn, &u, &name)?;
        }
        let mut req = StoreRequest::new(&u.name, &name, bytes);
        req.flags = flags.clone();
        req.internal_date = internal_date;
        match self.store_batch(vec![req]).pop() {
            Some(Ok(StoreOutcome::Stored { uidvalidity, uid })) => {
                Ok(Appended { uidvalidity, uid })
            }
            Some(Ok(StoreOutcome::Duplicate)) => Err(SpoolError::Failed(
                "append without a key reported a duplicate".into(),
            )),
            Some(Err(e)) => Err(e),
            None => Err(SpoolError::Failed("empty batch result".into())),
        }
    }

    /// Changes flags (IMAP STORE). UIDs not in the mailbox are skipped. With
    /// `unchanged_since` (CONDSTORE), messages whose MODSEQ is higher are left alone
    /// and reported in `failed`. Maildir files are renamed to carry the new flags.
    pub fn store_flags(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let store = self.store_of(&u, &name);
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let mut out = FlagsResult::default();
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let new_flags = |old: &Flags| {
            let mut new = match op {
                FlagOp::Set => Flags::new(),
                FlagOp::Add | FlagOp::Remove => old.clone(),
            };
            match op {
                FlagOp::Set | FlagOp::Add => new.add_all(flags),
                FlagOp::Remove => new.remove_all(flags),
            }
            new
        };
        let track = |touched: &mut Vec<PathBuf>, from: PathBuf, md: &Maildir| {
            for d in [from, md.dir(Sub::Cur)] {
                if !touched.contains(&d) {
                    touched.push(d);
                }
            }
        };

        // 1. Maildir, unconditional STORE: rename the files before taking the write
        // lock, so other sessions' commits do not wait for this one's file system
        // work. Remember what each rename was based on.
        //
        // The renames' directories are fsynced after the index commit, before its WAL
        // sync: both are durable before the client hears OK, and a crash in between
        // leaves either the new name (the next sync takes the flags from it) or the
        // old flags everywhere — nothing acknowledged is lost either way. (Unlike
        // delivery and expunge, where the order of file and index matters.)
        let mut planned: HashMap<u32, String> = HashMap::new();
        let mut touched: Vec<PathBuf> = Vec::new();
        if let (Store::Maildir(md), None) = (&store, unchanged_since) {
            let stamp = self.stamp_before(m.id, md);
            for row in db::imapd::messages_in(&conn, m.id, &sorted)? {
                let Some(base) = row.file.as_deref() else {
                    continue;
                };
                let old = Flags::parse(&row.flags);
                let new = new_flags(&old);
                if new == old {
                    continue;
                }
                match rename_info(md, base, &old.maildir_info(), &new.maildir_info())? {
                    Renamed::From(from) => track(&mut touched, from, md),
                    Renamed::Unchanged => {}
                    Renamed::Gone => continue,
                }
                planned.insert(row.uid, row.flags);
            }
            if !touched.is_empty() {
                self.stamp_after(m.id, md, stamp);
            }
        }

        // 2. Under the write lock, from the rows as they are now: a row another
        // session changed meanwhile is recomputed (and its file renamed again).
        let tx = write_tx(&mut conn)?;
        let rows = db::imapd::messages_in(&tx, m.id, &sorted)?;
        let stamp = match &store {
            Store::Maildir(md) => self.stamp_before(m.id, md),
            Store::Mbox(_) => None,
        };
        let renamed_before = touched.len();
        let mut changes: Vec<(u32, Flags, &MessageRow)> = Vec::new();
        for row in &rows {
            if unchanged_since.is_some_and(|s| row.modseq > s) {
                out.failed.push(row.uid);
                continue;
            }
            let old = Flags::parse(&row.flags);
            let new = new_flags(&old);
            if new == old {
                continue;
            }
            if let (Store::Maildir(md), Some(base)) = (&store, row.file.as_deref())
                && planned.get(&row.uid) != Some(&row.flags)
            {
                match rename_info(md, base, &old.maildir_info(), &new.maildir_info())? {
                    Renamed::From(from) => track(&mut touched, from, md),
                    Renamed::Unchanged => {}
                    // Removed by another program: the next select expunges it.
                    Renamed::Gone => continue,
                }
            }
            changes.push((row.uid, new, row));
        }
        if let Store::Maildir(md) = &store
            && touched.len() > renamed_before
        {
            self.stamp_after(m.id, md, stamp);
        }
        // One MODSEQ for the whole command (RFC 7162 allows it; Dovecot does the same).
        let db_flags: Vec<(u32, String)> =
            changes.iter().map(|(u, f, _)| (*u, f.to_db())).collect();
        let modseq = db::imapd::set_flags_many(&tx, m.id, &db_flags)?;
        for (uid, new, row) in changes {
            out.updated.push(MsgMeta {
                uid,
                size: row.size,
                internal_date: row.internal_date,
                flags: new,
                modseq,
            });
        }
        if !out.updated.is_empty() {
            dbs::bump_changes(&tx, &u.name)?;
        }
        let ticket = tx.commit_deferred()?;
        if touched.is_empty() {
            ticket.sync()?;
        } else {
            // The directories and the WAL are synced at the same time (their order
            // does not matter here, see step 1): on a journalling file system the two
            // usually share one journal commit.
            std::thread::scope(|sc| {
                let dirs = sc.spawn(|| {
                    for d in &touched {
                        maildir::fsync_dir(d).map_err(|e| SpoolError::io(d, e))?;
                    }
                    Ok::<(), SpoolError>(())
                });
                let wal = ticket.sync();
                dirs.join().unwrap_or_else(|_| {
                    Err(SpoolError::Failed("directory sync panicked".into()))
                })?;
                wal
            })?;
        }
        if !out.updated.is_empty() {
            self.notify(&u.name, &name);
        }
        Ok(out)
    }

    /// Removes messages for good (IMAP EXPUNGE / UID EXPUNGE, POP3 DELE+QUIT).
    /// Removes exactly `uids` — the IMAP server picks those flagged `\Deleted`.
    /// Returns the UIDs that were removed.
    pub fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        if uids.is_empty() {
            return Ok(vec![]);
        }
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let gone = match self.store_of(&u, &name) {
            Store::Maildir(md) => {
                // Files first, then the index: a crash in between leaves index rows for
                // missing files, which the next select expunges. The other order could
                // bring an expunged message back.
                let mut sorted = uids.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let mut touched: Vec<PathBuf> = Vec::new();
                let stamp = self.stamp_before(m.id, &md);
                for row in db::imapd::messages_in(&conn, m.id, &sorted)? {
                    let Some(base) = row.file.as_deref() else {
                        continue;
                    };
                    let info = Flags::parse(&row.flags).maildir_info();
                    if let Some(dir) = remove_message_file(&md, base, &info)?
                        && !touched.contains(&dir)
                    {
                        touched.push(dir);
                    }
                }
                for d in &touched {
                    maildir::fsync_dir(d).map_err(|e| SpoolError::io(d, e))?;
                }
                if !touched.is_empty() {
                    self.stamp_after(m.id, &md, stamp);
                }
                let tx = write_tx(&mut conn)?;
                let gone = dbs::expunge(&tx, m.id, uids)?;
                dbs::bump_changes(&tx, &u.name)?;
                tx.commit()?;
                gone
            }
            Store::Mbox(path) => {
                let lock = mbox::MboxLock::acquire(&path, self.inner.lock_timeout)
                    .map_err(|e| SpoolError::io(&path, e))?;
                self.sync_mbox(&mut conn, &m, &lock)?;
                let rows = dbs::messages(&conn, m.id)?;
                let dropped: HashSet<u32> = uids.iter().copied().collect();
                let keep: Vec<&MessageRow> =
                    rows.iter().filter(|r| !dropped.contains(&r.uid)).collect();
                let spans: Vec<(u64, u64)> = keep
                    .iter()
                    .map(|r| (r.offset.unwrap_or(0), r.length.unwrap_or(0)))
                    .collect();
                let new_offsets =
                    mbox::rewrite(&lock, &spans).map_err(|e| SpoolError::io(&path, e))?;
                let tx = write_tx(&mut conn)?;
                let gone = dbs::expunge(&tx, m.id, uids)?;
                for (r, off) in keep.iter().zip(new_offsets) {
                    if r.offset != Some(off) {
                        dbs::set_mbox_offset(&tx, m.id, r.uid, off)?;
                    }
                }
                dbs::bump_changes(&tx, &u.name)?;
                tx.commit()?;
                drop(lock);
                gone
            }
        };
        if !gone.is_empty() {
            self.notify(&u.name, &name);
        }
        Ok(gone)
    }

    /// Copies messages to another mailbox of the same user, keeping flags and
    /// INTERNALDATE (IMAP COPY). The destination must exist.
    pub fn copy(&self, user: &str, from: &str, uids: &[u32], to: &str) -> Result<CopyResult> {
        let u = self.user(user)?;
        let from = normalize_name(from)?;
        let to = normalize_name(to)?;
        let dest = {
            let conn = self.conn()?;
            self.mailbox_row(&conn, &u, &to)?
        };
        let mut out = CopyResult {
            uidvalidity: dest.uidvalidity,
            uids: Vec::new(),
        };
        let mut sorted: Vec<u32> = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // In slices, so a large COPY does not hold every message in memory.
        for part in sorted.chunks(64) {
            let mut reqs = Vec::new();
            let mut srcs = Vec::new();
            for &uid in part {
                let meta = match self.message_meta(&u.name, &from, uid) {
                    Ok(m) => m,
                    Err(SpoolError::NoMessage { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let bytes = match self.read_message(&u.name, &from, uid) {
                    Ok(b) => b,
                    Err(SpoolError::NoMessage { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let mut r = StoreRequest::new(&u.name, &to, bytes);
                r.flags = meta.flags;
                r.internal_date = Some(meta.internal_date);
                reqs.push(r);
                srcs.push(uid);
            }
            for (src, res) in srcs.into_iter().zip(self.store_batch(reqs)) {
                match res? {
                    StoreOutcome::Stored { uidvalidity, uid } => {
                        out.uidvalidity = uidvalidity;
                        out.uids.push((src, uid));
                    }
                    StoreOutcome::Duplicate => {}
                }
            }
        }
        Ok(out)
    }

    /// Moves messages (IMAP MOVE): copy, then expunge from the source.
    pub fn move_messages(
        &self,
        user: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<CopyResult> {
        let res = self.copy(user, from, uids, to)?;
        let moved: Vec<u32> = res.uids.iter().map(|(s, _)| *s).collect();
        self.expunge(user, from, &moved)?;
        Ok(res)
    }

    /// What changed in a mailbox after `modseq` (no disk sync).
    pub fn changes_since(&self, user: &str, mailbox: &str, modseq: u64) -> Result<Changes> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Ok(Changes {
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            changed: dbs::messages_changed_since(&conn, m.id, modseq)?
                .into_iter()
                .map(meta)
                .collect(),
            vanished: dbs::expunged_since(&conn, m.id, modseq)?,
        })
    }

    /// What `user`'s mailboxes hold together (bytes and messages), from the index:
    /// quota checks in delivery and IMAP.
    pub fn usage(&self, user: &str) -> Result<crate::db::quota::Usage> {
        let u = self.user(user)?;
        let conn = self.conn()?;
        Ok(crate::db::quota::usage(&conn, &u.name)?)
    }

    /// The user's change counter: differs whenever any of their mailboxes changed,
    /// in any process. Cheap (one row).
    pub fn change_counter(&self, user: &str) -> Result<u64> {
        let u = self.user(user)?;
        let conn = self.conn()?;
        Ok(dbs::changes_counter(&conn, &u.name)?)
    }

    /// A watcher that wakes when `user`'s mail changes (for IDLE).
    pub fn watch(&self, user: &str) -> Result<ChangeWatcher> {
        let u = self.user(user)?;
        let rx = self.sender(&u.name).subscribe();
        let seen = self.change_counter(&u.name)?;
        Ok(ChangeWatcher {
            spool: self.clone(),
            user: u.name,
            rx,
            seen,
            poll: Duration::from_secs(1),
        })
    }

    fn sender(&self, user: &str) -> broadcast::Sender<Change> {
        let mut map = self.inner.notify.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.to_ascii_lowercase())
            .or_insert_with(|| broadcast::channel(64).0)
            .clone()
    }

    fn notify(&self, user: &str, mailbox: &str) {
        let _ = self.sender(user).send(Change {
            user: user.to_string(),
            mailbox: Some(mailbox.to_string()),
        });
    }

    /// Stores many messages with one fsync per file, one per directory and one
    /// transaction (group commit). Returns one result per request, in order; a
    /// `Stored`/`Duplicate` result is durable when this returns.
    pub fn store_batch(&self, reqs: Vec<StoreRequest>) -> Vec<Result<StoreOutcome>> {
        let n = reqs.len();
        let mut results: Vec<Option<Result<StoreOutcome>>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return vec![];
        }
        let mut conn = match self.conn() {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return (0..n)
                    .map(|_| Err(SpoolError::Failed(msg.clone())))
                    .collect();
            }
        };
        let now = db::now();

        // 1. Resolve users and mailboxes; drop requests whose key is already recorded.
        let mut jobs: Vec<Job> = Vec::with_capacity(n);
        let mut batch_keys: HashSet<(String, String, String)> = HashSet::new();
        for (idx, r) in reqs.iter().enumerate() {
            let resolved = (|| -> Result<Option<Job>> {
                let u = self.user(&r.user)?;
                self.prepare_user(&u.name)?;
                let name = normalize_name(&r.mailbox)?;
                if let Some(k) = &r.key {
                    // The same keyed message twice for one mailbox in one batch is one.
                    let id = (u.name.to_ascii_lowercase(), name.clone(), k.clone());
                    if !batch_keys.insert(id) || dbs::key_seen(&conn, k, &u.name)? {
                        return Ok(None);
                    }
                }
                let mb = match dbs::mailbox(&conn, &u.name, &name)? {
                    Some(m) => m,
                    None => self.create_row(&mut conn, &u, &name, false)?,
                };
                Ok(Some(Job {
                    idx,
                    user: u.name.clone(),
                    store: self.store_of(&u, &name),
                    mb,
                    name: String::new(),
                    tmp: String::new(),
                    path: None,
                    existing: false,
                    offset: 0,
                    length: 0,
                    pending: None,
                    dup: false,
                    size: crlf_size(&r.bytes),
                    date: r.internal_date.unwrap_or(now),
                    failed: false,
                }))
            })();
            match resolved {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) => results[idx] = Some(Ok(StoreOutcome::Duplicate)),
                Err(e) => results[idx] = Some(Err(e)),
            }
        }

        // 2. Maildir: write every file, fsync them all (several in flight at once),
        //    publish them, fsync each directory once.
        let mut stamps: Vec<(i64, Maildir, Option<DirStamp>)> = Vec::new();
        for j in &jobs {
            if let Store::Maildir(md) = &j.store
                && !stamps.iter().any(|s| s.0 == j.mb.id)
            {
                stamps.push((j.mb.id, md.clone(), self.stamp_before(j.mb.id, md)));
            }
        }
        let mut unsynced: Vec<(usize, PathBuf, std::fs::File)> = Vec::new();
        for ji in 0..jobs.len() {
            if unsynced.len() >= SYNC_GROUP {
                sync_group(&mut unsynced, &mut jobs, &mut results);
            }
            let j = &mut jobs[ji];
            let Store::Maildir(md) = &j.store else {
                continue;
            };
            let r = &reqs[j.idx];
            let info = r.flags.maildir_part();
            let info = (!info.is_empty()).then(|| info.maildir_info());
            j.name = match &r.key {
                Some(k) => {
                    let id = format!("{}\0{}\0{}", j.user.to_ascii_lowercase(), j.mb.name, k);
                    let digest = Sha256::digest(id.as_bytes());
                    maildir::keyed_name(&self.inner.hostname, &hex::encode(&digest[..16]))
                }
                None => maildir::unique_name(&self.inner.hostname, r.bytes.len() as u64, j.size),
            };
            let res = (|| -> Result<()> {
                if r.key.is_some() {
                    // An earlier attempt that died between publishing and indexing left
                    // the file in place (or a directory sync indexed it since, perhaps
                    // moving it to cur/). Exact paths and the index only: scanning cur/
                    // on every delivery would cost too much in a big mailbox.
                    let target = md.target(&j.name, info.as_deref());
                    let found = if target.exists() {
                        Some(target)
                    } else if dbs::file_indexed(&conn, j.mb.id, &j.name)? {
                        md.find(&j.name, info.as_deref().unwrap_or(""))
                            .map_err(|e| SpoolError::io(md.root(), e))?
                            .map(|(p, _)| p)
                    } else {
                        None
                    };
                    if let Some(p) = found {
                        debug!(file = %p.display(), "keyed delivery found its file from an earlier attempt");
                        j.existing = true;
                        j.path = Some(p);
                        return Ok(());
                    }
                }
                // A keyed name is not unique by itself (a killed attempt may have
                // left it in tmp/): write under a unique name, link into place.
                j.tmp = if r.key.is_some() {
                    maildir::unique_name(&self.inner.hostname, r.bytes.len() as u64, j.size)
                } else {
                    j.name.clone()
                };
                let (path, file) = md
                    .write_tmp_unsynced(&j.tmp, &r.bytes, r.internal_date)
                    .map_err(|e| SpoolError::io(md.tmp_dir().join(&j.tmp), e))?;
                unsynced.push((ji, path, file));
                Ok(())
            })();
            if let Err(e) = res {
                j.failed = true;
                results[j.idx] = Some(Err(e));
            }
        }
        sync_group(&mut unsynced, &mut jobs, &mut results);
        let mut dirs: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for (ji, j) in jobs.iter_mut().enumerate() {
            let Store::Maildir(md) = &j.store else {
                continue;
            };
            if j.failed || j.existing {
                continue;
            }
            let r = &reqs[j.idx];
            let info = r.flags.maildir_part();
            let info = (!info.is_empty()).then(|| info.maildir_info());
            let published = if r.key.is_some() {
                md.publish_link(&j.tmp, &j.name, info.as_deref())
            } else {
                md.publish(&j.name, info.as_deref()).map(Some)
            };
            match published {
                Ok(None) => {
                    // A racing attempt with the same key put it there first.
                    j.existing = true;
                    j.path = Some(md.target(&j.name, info.as_deref()));
                }
                Ok(Some(p)) => {
                    dirs.entry(p.parent().map(Path::to_path_buf).unwrap_or_default())
                        .or_default()
                        .push(ji);
                    j.path = Some(p);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(md.tmp_dir().join(&j.tmp));
                    j.failed = true;
                    results[j.idx] = Some(Err(SpoolError::io(md.root(), e)));
                }
            }
        }
        for (dir, members) in &dirs {
            if let Err(e) = maildir::fsync_dir(dir) {
                let msg = format!("{}: {e}", dir.display());
                for &ji in members {
                    let j = &mut jobs[ji];
                    if let Some(p) = &j.path {
                        let _ = std::fs::remove_file(p);
                    }
                    j.failed = true;
                    results[j.idx] = Some(Err(SpoolError::Failed(msg.clone())));
                }
            }
        }

        for (id, md, before) in stamps {
            self.stamp_after(id, &md, before);
        }

        // 3. mbox: per mailbox, lock, recover, record pending appends, append, fsync.
        let mut locks: Vec<(mbox::MboxLock, u64, Vec<usize>)> = Vec::new();
        let mut by_mbox: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (ji, j) in jobs.iter().enumerate() {
            if matches!(j.store, Store::Mbox(_)) && !j.failed {
                by_mbox.entry(j.mb.id).or_default().push(ji);
            }
        }
        for (_, members) in by_mbox {
            let (path, mb) = match &jobs[members[0]].store {
                Store::Mbox(p) => (p.clone(), jobs[members[0]].mb.clone()),
                Store::Maildir(_) => continue,
            };
            match self.mbox_append(&mut conn, &mb, &path, &reqs, &mut jobs, &members) {
                Ok(Some(lock)) => locks.push(lock),
                Ok(None) => {}
                Err(e) => {
                    let msg = e.to_string();
                    for &ji in &members {
                        if !jobs[ji].failed {
                            jobs[ji].failed = true;
                            results[jobs[ji].idx] = Some(Err(SpoolError::Failed(msg.clone())));
                        }
                    }
                }
            }
        }
        for j in jobs.iter_mut().filter(|j| j.dup) {
            // mbox duplicates found under the lock.
            j.failed = true;
            results[j.idx] = Some(Ok(StoreOutcome::Duplicate));
        }

        // 4. One transaction indexes everything and records the keys.
        let committed = (|| -> Result<Vec<(usize, StoreOutcome)>> {
            let tx = write_tx(&mut conn)?;
            let mut done = Vec::new();
            let mut users = HashSet::new();
            for j in jobs.iter().filter(|j| !j.failed) {
                let r = &reqs[j.idx];
                if let Some(k) = &r.key
                    && matches!(j.store, Store::Maildir(_))
                    && dbs::key_seen(&tx, k, &j.user)?
                {
                    done.push((j.idx, StoreOutcome::Duplicate));
                    continue;
                }
                let flags = r.flags.to_db();
                let (uid, _, _) = dbs::insert_message(
                    &tx,
                    j.mb.id,
                    &NewMessage {
                        file: match j.store {
                            Store::Maildir(_) => Some(j.name.as_str()),
                            Store::Mbox(_) => None,
                        },
                        offset: matches!(j.store, Store::Mbox(_)).then_some(j.offset),
                        length: matches!(j.store, Store::Mbox(_)).then_some(j.length),
                        size: j.size,
                        internal_date: j.date,
                        flags: &flags,
                        message_id: r.message_id.as_deref(),
                    },
                )?;
                // The header cache (imapd's FETCH of headers, SEARCH on headers)
                // is filled while the bytes are at hand.
                db::imapd::put_headers(&tx, j.mb.id, &[(uid, &wire_header(&r.bytes))])?;
                if let Some(k) = &r.key {
                    dbs::record_key(&tx, k, &j.user)?;
                }
                if let Some(p) = j.pending {
                    dbs::delete_pending(&tx, p)?;
                }
                users.insert(j.user.clone());
                done.push((
                    j.idx,
                    StoreOutcome::Stored {
                        uidvalidity: j.mb.uidvalidity,
                        uid,
                    },
                ));
            }
            for u in &users {
                dbs::bump_changes(&tx, u)?;
            }
            tx.commit()?;
            Ok(done)
        })();
        match committed {
            Ok(done) => {
                for (idx, o) in done {
                    if o == StoreOutcome::Duplicate {
                        // A racing delivery of the same key won; ours is redundant.
                        // A keyed name is the same in both deliveries: when the winner
                        // indexed that very file (we linked it first, its link found
                        // ours), it is the winner's copy now and must stay.
                        if let Some(j) = jobs.iter().find(|j| j.idx == idx && !j.existing)
                            && let Some(p) = &j.path
                            && !matches!(
                                dbs::file_indexed(&conn, j.mb.id, &j.name),
                                Ok(true) | Err(_)
                            )
                        {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    results[idx] = Some(Ok(o));
                }
            }
            Err(e) => {
                // Nothing was indexed: take back what we wrote so a retry does not
                // find a second copy (a crash here is what the recovery paths handle).
                let msg = e.to_string();
                for j in jobs.iter().filter(|j| !j.failed) {
                    if let (Store::Maildir(_), Some(p), false) = (&j.store, &j.path, j.existing) {
                        let _ = std::fs::remove_file(p);
                    }
                    results[j.idx] = Some(Err(SpoolError::Failed(msg.clone())));
                }
                for (lock, start, _) in &locks {
                    let _ = lock.file.set_len(*start);
                    let _ = lock.file.sync_all();
                }
            }
        }
        drop(locks);
        let mut notified = HashSet::new();
        for j in &jobs {
            if matches!(results[j.idx], Some(Ok(StoreOutcome::Stored { .. })))
                && notified.insert((j.user.clone(), j.mb.name.clone()))
            {
                self.notify(&j.user, &j.mb.name);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SpoolError::Failed("not processed".into()))))
            .collect()
    }

    /// Appends the `members` jobs to one mbox. Returns the held lock (released after
    /// the index commit) with the file length before the append.
    fn mbox_append(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        path: &Path,
        reqs: &[StoreRequest],
        jobs: &mut [Job],
        members: &[usize],
    ) -> Result<Option<(mbox::MboxLock, u64, Vec<usize>)>> {
        let lock = mbox::MboxLock::acquire(path, self.inner.lock_timeout)
            .map_err(|e| SpoolError::io(path, e))?;
        self.sync_mbox(conn, mb, &lock)?;
        // Keys again, now that no other writer can append.
        let mut todo = Vec::new();
        for &ji in members {
            let r = &reqs[jobs[ji].idx];
            if let Some(k) = &r.key
                && dbs::key_seen(conn, k, &jobs[ji].user)?
            {
                jobs[ji].dup = true;
                continue;
            }
            todo.push(ji);
        }
        if todo.is_empty() {
            return Ok(None);
        }
        let start = lock.len().map_err(|e| SpoolError::io(path, e))?;
        let mut tail = mbox::tail(&lock.file, start).map_err(|e| SpoolError::io(path, e))?;
        let mut buf = Vec::new();
        let mut pend = Vec::new();
        for &ji in &todo {
            let r = &reqs[jobs[ji].idx];
            let at = start + buf.len() as u64;
            let c = mbox::chunk(&tail, r.sender.as_deref(), jobs[ji].date, &r.bytes);
            jobs[ji].offset = at + c.msg_start;
            jobs[ji].length = c.msg_len;
            pend.push(dbs::PendingAppend {
                id: 0,
                mailbox_id: mb.id,
                start: at,
                offset: at + c.msg_start,
                length: c.msg_len,
                total: c.bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&c.bytes)),
                size: jobs[ji].size,
                internal_date: jobs[ji].date,
                flags: r.flags.to_db(),
                message_id: r.message_id.clone(),
                delivery_key: r.key.clone(),
            });
            buf.extend_from_slice(&c.bytes);
            tail = b"\n\n".to_vec();
        }
        let tx = write_tx(&mut *conn)?;
        for (p, &ji) in pend.iter().zip(&todo) {
            jobs[ji].pending = Some(dbs::add_pending(&tx, p)?);
        }
        tx.commit()?;
        use std::os::unix::fs::FileExt;
        let written = lock
            .file
            .write_all_at(&buf, start)
            .and_then(|_| lock.file.sync_all());
        if let Err(e) = written {
            // Never leave half a message: cut the file back and forget the appends.
            let _ = lock.file.set_len(start);
            let _ = lock.file.sync_all();
            let tx = write_tx(&mut *conn)?;
            for &ji in &todo {
                if let Some(p) = jobs[ji].pending {
                    dbs::delete_pending(&tx, p)?;
                }
            }
            tx.commit()?;
            return Err(SpoolError::io(path, e));
        }
        Ok(Some((lock, start, todo)))
    }

    /// Brings an mbox's index up to date, holding its lock: finishes or undoes appends
    /// a crashed writer left, indexes mail other programs appended, and re-indexes from
    /// scratch (new UIDVALIDITY) if another program rewrote the file. Returns whether
    /// anything changed.
    fn sync_mbox(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        lock: &mbox::MboxLock,
    ) -> Result<bool> {
        let path = &lock.path;
        let ioerr = |e| SpoolError::io(path, e);
        let mut len = lock.len().map_err(ioerr)?;
        let mut changed = false;
        let pending = dbs::pending(conn, mb.id)?;
        if !pending.is_empty() {
            let tx = write_tx(&mut *conn)?;
            for p in &pending {
                let complete = len >= p.start + p.total && {
                    let mut buf = vec![0u8; p.total as usize];
                    use std::os::unix::fs::FileExt;
                    lock.file.read_exact_at(&mut buf, p.start).map_err(ioerr)?;
                    hex::encode(Sha256::digest(&buf)) == p.sha256
                };
                if complete {
                    lock.file.sync_all().map_err(ioerr)?;
                    dbs::insert_message(
                        &tx,
                        mb.id,
                        &NewMessage {
                            file: None,
                            offset: Some(p.offset),
                            length: Some(p.length),
                            size: p.size,
                            internal_date: p.internal_date,
                            flags: &p.flags,
                            message_id: p.message_id.as_deref(),
                        },
                    )?;
                    if let Some(k) = &p.delivery_key {
                        dbs::record_key(&tx, k, &mb.user)?;
                    }
                    warn!(mbox = %path.display(), offset = p.start, "indexed an append a crashed writer completed");
                } else if len > p.start {
                    warn!(mbox = %path.display(), offset = p.start, "truncating an append a crashed writer left incomplete");
                    lock.file.set_len(p.start).map_err(ioerr)?;
                    lock.file.sync_all().map_err(ioerr)?;
                    len = p.start;
                }
                dbs::delete_pending(&tx, p.id)?;
            }
            dbs::bump_changes(&tx, &mb.user)?;
            tx.commit()?;
            changed = true;
        }
        // Did another program rewrite the file under us?
        let intact = match dbs::last_mbox_message(conn, mb.id)? {
            Some(last) => mbox::looks_intact(
                &lock.file,
                len,
                last.offset.unwrap_or(0),
                last.length.unwrap_or(0),
            )
            .map_err(ioerr)?,
            None => true,
        };
        let from = if intact {
            dbs::mbox_end(conn, mb.id)?
        } else {
            warn!(mbox = %path.display(), "mbox was rewritten by another program; re-indexing with a new UIDVALIDITY");
            0
        };
        if !intact || len > from + 2 {
            let spans = mbox::scan(&lock.file, from).map_err(ioerr)?;
            if !intact || !spans.is_empty() {
                let tx = write_tx(&mut *conn)?;
                if !intact {
                    dbs::reset_mailbox(&tx, mb.id)?;
                }
                for s in spans {
                    let body = mbox::read(path, s.offset, s.length).map_err(ioerr)?;
                    let date = parse_from_line_date(&s.from_line).unwrap_or_else(db::now);
                    let flags = mbox_status_flags(&body);
                    dbs::insert_message(
                        &tx,
                        mb.id,
                        &NewMessage {
                            file: None,
                            offset: Some(s.offset),
                            length: Some(s.length),
                            size: crlf_size(&body),
                            internal_date: date,
                            flags: &flags.to_db(),
                            message_id: None,
                        },
                    )?;
                }
                dbs::bump_changes(&tx, &mb.user)?;
                tx.commit()?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The folder's directory times, when the index is known to match them: the
    /// stamp recorded for this mailbox equals what is on disk now. Called before a
    /// change of our own; pass the result to [`stamp_after`](Self::stamp_after).
    fn stamp_before(&self, mailbox_id: i64, md: &Maildir) -> Option<DirStamp> {
        let now = DirStamp::read(md)?;
        let map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&mailbox_id)
            .filter(|s| s.same_dirs(&now) && s.listed.elapsed() < DirStamp::MAX_TRUST)
            .map(|_| now)
    }

    /// After a change of our own (indexed by us): when the folder matched the index
    /// before it, it still does, at the new directory times.
    fn stamp_after(&self, mailbox_id: i64, md: &Maildir, before: Option<DirStamp>) {
        let mut map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        match (before, DirStamp::read(md)) {
            (Some(b), Some(mut now)) => {
                now.listed = b.listed;
                map.insert(mailbox_id, now);
            }
            _ => {
                map.remove(&mailbox_id);
            }
        }
    }

    /// Reconciles a Maildir folder with its index: files that appeared are indexed,
    /// files that vanished are expunged, flags changed in file names are taken over.
    ///
    /// Skipped (the folder is not listed) when `new/` and `cur/` carry the directory
    /// times recorded the last time the index matched them — Dovecot's check. A
    /// time is recorded only once it is a second old, so a change made within the
    /// same clock tick as our look cannot hide behind an unchanged time; and every
    /// folder is listed again at least every [`DirStamp::MAX_TRUST`].
    fn sync_maildir(&self, conn: &mut Connection, mb: &MailboxRow, md: &Maildir) -> Result<bool> {
        let before = DirStamp::read(md);
        if let Some(b) = &before {
            let map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if map
                .get(&mb.id)
                .is_some_and(|s| s.same_dirs(b) && s.listed.elapsed() < DirStamp::MAX_TRUST)
            {
                return Ok(false);
            }
        }
        let changed = self.sync_maildir_listing(conn, mb, md)?;
        let mut map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        match before.filter(DirStamp::settled) {
            Some(b) => {
                map.insert(mb.id, b);
            }
            None => {
                map.remove(&mb.id);
            }
        }
        Ok(changed)
    }

    fn sync_maildir_listing(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        md: &Maildir,
    ) -> Result<bool> {
        let ioerr = |e| SpoolError::io(md.root(), e);
        let mut disk: HashMap<String, maildir::Entry> = md
            .list()
            .map_err(ioerr)?
            .into_iter()
            .map(|e| (e.base.clone(), e))
            .collect();
        let rows = dbs::messages(conn, mb.id)?;
        let indexed: HashMap<&str, &MessageRow> = rows
            .iter()
            .filter_map(|r| r.file.as_deref().map(|f| (f, r)))
            .collect();
        let mut missing: Vec<u32> = rows
            .iter()
            .filter(|r| r.file.as_deref().is_none_or(|f| !disk.contains_key(f)))
            .map(|r| r.uid)
            .collect();
        if !missing.is_empty() {
            // A second look: a file renamed while we listed may have been missed once.
            for e in md.list().map_err(ioerr)? {
                disk.entry(e.base.clone()).or_insert(e);
            }
            missing.retain(|uid| {
                rows.iter()
                    .find(|r| r.uid == *uid)
                    .and_then(|r| r.file.as_deref())
                    .is_none_or(|f| !disk.contains_key(f))
            });
        }
        let mut fresh: Vec<(i64, &maildir::Entry)> = Vec::new();
        let mut drift: Vec<(u32, Flags)> = Vec::new();
        for e in disk.values() {
            match indexed.get(e.base.as_str()) {
                None => {
                    let p = md.dir(e.sub).join(e.file_name());
                    let mtime = std::fs::metadata(&p)
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_else(db::now);
                    fresh.push((mtime, e));
                }
                Some(r) => {
                    if let Some(info) = &e.info {
                        let old = Flags::parse(&r.flags);
                        let on_disk = Flags::from_maildir_info(info);
                        if on_disk != old.maildir_part() {
                            let mut new = old.keyword_part();
                            new.add_all(&on_disk);
                            drift.push((r.uid, new));
                        }
                    }
                }
            }
        }
        if missing.is_empty() && fresh.is_empty() && drift.is_empty() {
            return Ok(false);
        }
        fresh.sort_by(|a, b| (a.0, &a.1.base).cmp(&(b.0, &b.1.base)));
        let tx = write_tx(&mut *conn)?;
        dbs::expunge(&tx, mb.id, &missing)?;
        for (mtime, e) in &fresh {
            let p = md.dir(e.sub).join(e.file_name());
            let size = match maildir::name_wsize(&e.base) {
                Some(w) => w,
                None => match std::fs::read(&p) {
                    Ok(b) => crlf_size(&b),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(SpoolError::io(p, err)),
                },
            };
            let flags = e
                .info
                .as_deref()
                .map(Flags::from_maildir_info)
                .unwrap_or_default();
            dbs::insert_message(
                &tx,
                mb.id,
                &NewMessage {
                    file: Some(&e.base),
                    offset: None,
                    length: None,
                    size,
                    internal_date: *mtime,
                    flags: &flags.to_db(),
                    message_id: None,
                },
            )?;
        }
        for (uid, f) in &drift {
            dbs::set_flags(&tx, mb.id, *uid, &f.to_db())?;
        }
        dbs::bump_changes(&tx, &mb.user)?;
        tx.commit()?;
        if !fresh.is_empty() || !missing.is_empty() {
            debug!(mailbox = %mb.name, user = %mb.user, added = fresh.len(), removed = missing.len(), "maildir synced");
        }
        Ok(true)
    }
}

/// The modification times of a Maildir folder's `new/` and `cur/`, and when the
/// folder was last listed in full.
#[derive(Debug, Clone, Copy)]
struct DirStamp {
    new: std::time::SystemTime,
    cur: std::time::SystemTime,
    listed: std::time::Instant,
}

impl DirStamp {
    /// A folder is listed in full at least this often, whatever its times say.
    const MAX_TRUST: Duration = Duration::from_secs(60);

    fn read(md: &Maildir) -> Option<DirStamp> {
        let m = |sub| {
            std::fs::metadata(md.dir(sub))
                .and_then(|m| m.modified())
                .ok()
        };
        Some(DirStamp {
            new: m(Sub::New)?,
            cur: m(Sub::Cur)?,
            listed: std::time::Instant::now(),
        })
    }

    fn same_dirs(&self, other: &DirStamp) -> bool {
        self.new == other.new && self.cur == other.cur
    }

    /// Both times at least a second in the past: any later change gets a later time.
    fn settled(&self) -> bool {
        let limit = std::time::SystemTime::now() - Duration::from_secs(1);
        self.new <= limit && self.cur <= limit
    }
}

/// Every write transaction is IMMEDIATE: it takes SQLite's write lock at BEGIN, where
/// the busy timeout applies. A deferred transaction that reads first and writes later
/// fails at once with "database is locked" when another process committed meanwhile.
///
/// Writers in this process also take turns on a mutex first: SQLite's busy handler
/// waits by sleeping (1, 2, 5, 10 … ms), so fifty IMAP sessions committing at once
/// through their own connections would mostly sleep. The mutex hands the write lock
/// over at once; other processes still meet the busy timeout.
fn write_tx(conn: &mut Connection) -> Result<WriteTx<'_>> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let tx = conn.transaction_with_behavior(db::TransactionBehavior::Immediate)?;
    Ok(WriteTx { tx, _turn: turn })
}

/// A write transaction holding this process's writer turn (see [`write_tx`]).
/// Dropped without [`commit`](Self::commit), it rolls back, then gives the turn up.
struct WriteTx<'c> {
    tx: db::Transaction<'c>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl<'c> Deref for WriteTx<'c> {
    type Target = db::Transaction<'c>;
    fn deref(&self) -> &db::Transaction<'c> {
        &self.tx
    }
}

impl WriteTx<'_> {
    /// Commits durably: returns once the WAL holding this commit is on disk.
    fn commit(self) -> Result<()> {
        self.commit_deferred()?.sync()
    }

    /// Commits and gives the writer turn back at once; the commit is durable only
    /// after [`WalTicket::sync`]. Lets a caller put its own disk syncs (directory
    /// fsyncs) between the commit and the WAL's, so both overlap with others' work.
    fn commit_deferred(self) -> Result<WalTicket> {
        let WriteTx { tx, _turn } = self;
        let wal = tx
            .path()
            .filter(|p| !p.is_empty())
            .map(|p| format!("{p}-wal"));
        tx.commit()?;
        drop(_turn);
        Ok(match wal {
            Some(path) => {
                let group = WalGroup::of(&path);
                let ticket = group
                    .committed
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                WalTicket(Some((group, path, ticket)))
            }
            None => WalTicket(None),
        })
    }
}

/// Spool connections commit with `synchronous = NORMAL` (no fsync inside SQLite) and
/// then sync the WAL themselves through [`WalTicket::sync`]: one fsync covers every
/// commit made before it started (group commit), so fifty sessions committing at
/// once wait for a few fsyncs instead of fifty in a row. A commit is acknowledged
/// only after its sync, exactly as with `synchronous = FULL`.
fn open_conn(path: &Path) -> Result<Connection> {
    let c = db::open(path)?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

/// The WAL file of one database: commits counted, and how many are known synced.
struct WalGroup {
    committed: std::sync::atomic::AtomicU64,
    synced: Mutex<u64>,
}

impl WalGroup {
    fn of(wal: &str) -> Arc<WalGroup> {
        static GROUPS: Mutex<Option<HashMap<String, Arc<WalGroup>>>> = Mutex::new(None);
        let mut g = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(HashMap::new)
            .entry(wal.to_string())
            .or_insert_with(|| {
                Arc::new(WalGroup {
                    committed: std::sync::atomic::AtomicU64::new(0),
                    synced: Mutex::new(0),
                })
            })
            .clone()
    }
}

/// A commit whose WAL sync is still to be done (see [`open_conn`]).
#[must_use = "a commit is durable only after sync()"]
struct WalTicket(Option<(Arc<WalGroup>, String, u64)>);

impl WalTicket {
    /// Returns once this commit's WAL frames are on disk: at once when a sync that
    /// started after the commit has finished, else after one (shared) fsync.
    fn sync(self) -> Result<()> {
        let Some((group, path, ticket)) = self.0 else {
            return Ok(());
        };
        let mut synced = group.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= ticket {
            return Ok(());
        }
        // Every commit counted so far wrote its frames before being counted.
        let upto = group.committed.load(std::sync::atomic::Ordering::SeqCst);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| SpoolError::io(&path, e))?;
        *synced = upto;
        Ok(())
    }
}

fn meta(r: MessageRow) -> MsgMeta {
    MsgMeta {
        uid: r.uid,
        size: r.size,
        internal_date: r.internal_date,
        flags: Flags::parse(&r.flags),
        modseq: r.modseq,
    }
}

/// The date of a From_ line (`From sender Wed Nov 25 14:46:27 2026`), as unix seconds.
pub fn parse_from_line_date(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("From ")?;
    let mut parts = rest.split_ascii_whitespace();
    parts.next()?; // sender
    let date: Vec<&str> = parts.take(5).collect();
    if date.len() < 5 {
        return None;
    }
    let s = date.join(" ");
    chrono::NaiveDateTime::parse_from_str(&s, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// Flags from the `Status:`/`X-Status:` headers mutt and Dovecot write into mboxes.
pub fn mbox_status_flags(msg: &[u8]) -> Flags {
    let mut f = Flags::new();
    let head_end = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| msg.windows(4).position(|w| w == b"\r\n\r\n"))
        .unwrap_or(msg.len());
    for line in msg[..head_end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("status:") {
            if v.contains('r') {
                f.insert(Flags::SEEN);
            }
        } else if let Some(v) = line.get(9..).filter(|_| lower.starts_with("x-status:")) {
            for (c, flag) in [
                ('A', Flags::ANSWERED),
                ('F', Flags::FLAGGED),
                ('D', Flags::DELETED),
                ('T', Flags::DRAFT),
            ] {
                if v.contains(c) {
                    f.insert(flag);
                }
            }
        }
    }
    f
}

/// Reads a Maildir message (only its header with `headers_only`). Opens the path the
/// index expects first (no separate existence check), then `new/`, then looks the
/// base name up in `cur/` (flags changed by another program). `None` when gone.
fn read_maildir_file(
    md: &Maildir,
    base: &str,
    info: &str,
    headers_only: bool,
) -> Result<Option<Vec<u8>>> {
    let read = |p: &Path| {
        if headers_only {
            read_header(p)
        } else {
            std::fs::read(p)
        }
    };
    for p in [
        md.dir(Sub::Cur).join(format!("{base}:2,{info}")),
        md.dir(Sub::New).join(base),
    ] {
        match read(&p) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(p, e)),
        }
    }
    let Some((p, _)) = md
        .find(base, info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(None);
    };
    match read(&p) {
        Ok(b) => Ok(Some(b)),
        // Expunged (unlinked) by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(p, e)),
    }
}

/// What [`rename_info`] did.
enum Renamed {
    /// Moved out of this directory (into `cur/`).
    From(PathBuf),
    /// Already carried the new info.
    Unchanged,
    /// The file is gone.
    Gone,
}

/// Renames a Maildir message from its `old_info` flags to `new_info` (into `cur/`).
/// Tries the path the index expects, then `new/`, then looks the base name up in
/// `cur/` (flags changed by another program).
fn rename_info(md: &Maildir, base: &str, old_info: &str, new_info: &str) -> Result<Renamed> {
    let to = md.dir(Sub::Cur).join(format!("{base}:2,{new_info}"));
    for (dir, name) in [
        (Sub::Cur, format!("{base}:2,{old_info}")),
        (Sub::New, base.to_string()),
    ] {
        let from = md.dir(dir).join(&name);
        if from == to {
            return Ok(Renamed::Unchanged);
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => return Ok(Renamed::From(md.dir(dir))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(from, e)),
        }
    }
    let Some((from, e)) = md
        .find(base, old_info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(Renamed::Gone);
    };
    if from == to {
        return Ok(Renamed::Unchanged);
    }
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(Renamed::From(md.dir(e.sub))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Renamed::Gone),
        Err(e) => Err(SpoolError::io(from, e)),
    }
}

/// Unlinks a Maildir message (expected at `cur/<base>:2,<info>`, else `new/`, else
/// found by name in `cur/`). Returns the directory it was in; `None` when it was
/// already gone.
fn remove_message_file(md: &Maildir, base: &str, info: &str) -> Result<Option<PathBuf>> {
    for (dir, name) in [
        (Sub::Cur, format!("{base}:2,{info}")),
        (Sub::New, base.to_string()),
    ] {
        let p = md.dir(dir).join(&name);
        match std::fs::remove_file(&p) {
            Ok(()) => return Ok(Some(md.dir(dir))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(p, e)),
        }
    }
    let Some((p, e)) = md
        .find(base, info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(None);
    };
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(Some(md.dir(e.sub))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(p, e)),
    }
}

/// The header of a message as the wire shows it (CRLF line ends), up to and
/// including the blank line that ends it: what `message_headers` caches.
pub(crate) fn wire_header(raw: &[u8]) -> Vec<u8> {
    let end = header_end_in(raw, 0).unwrap_or(raw.len());
    to_crlf(&raw[..end]).into_owned()
}

/// A message file's header: its bytes up to and including the empty line that ends
/// the header, or the whole file when there is none. Reads in small steps so a FETCH
/// of headers does not pull in large bodies.
fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        let start = buf.len().saturating_sub(2);
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = header_end_in(&buf, start) {
            buf.truncate(end);
            return Ok(buf);
        }
    }
}

/// Where the header of `raw` ends (just past its empty line), looking at newlines
/// from `from` on; `None` when no empty line has been seen yet.
fn header_end_in(raw: &[u8], from: usize) -> Option<usize> {
    // The message may begin with the empty line (no header at all).
    if raw.starts_with(b"\n") {
        return Some(1);
    }
    if raw.starts_with(b"\r\n") {
        return Some(2);
    }
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', &raw[i..]) {
        let nl = i + p;
        match (raw.get(nl + 1), raw.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// Wakes when a user's mail changes; see [`Spool::watch`].
pub struct ChangeWatcher {
    spool: Spool,
    user: String,
    rx: broadcast::Receiver<Change>,
    seen: u64,
    poll: Duration,
}

impl ChangeWatcher {
    /// Sets how often the cross-process counter is polled (default 1 s).
    pub fn poll_every(mut self, d: Duration) -> ChangeWatcher {
        self.poll = d;
        self
    }

    /// Waits for the next change. Changes made through this process's [`Spool`] wake
    /// it at once (with the mailbox named); changes by other processes within one poll
    /// interval (mailbox `None`). After it returns, re-read the mailbox
    /// ([`Spool::changes_since`]).
    pub async fn changed(&mut self) -> Change {
        loop {
            tokio::select! {
                r = self.rx.recv() => {
                    self.seen = self.counter(true).await.unwrap_or(self.seen);
                    match r {
                        Ok(c) => return c,
                        Err(broadcast::error::RecvError::Lagged(_)) |
                        Err(broadcast::error::RecvError::Closed) => {
                            return Change { user: self.user.clone(), mailbox: None };
                        }
                    }
                }
                _ = tokio::time::sleep(self.poll) => {
                    if let Some(c) = self.counter(false).await
                        && c != self.seen {
                            self.seen = c;
                            return Change { user: self.user.clone(), mailbox: None };
                        }
                }
            }
        }
    }

    /// The user's change counter. Unless `fresh`, a value another watcher of the
    /// same user read less than half a poll interval ago is used instead of asking
    /// the database again (a stale value only delays a wake by that much).
    async fn counter(&self, fresh: bool) -> Option<u64> {
        let key = self.user.to_ascii_lowercase();
        let counters = &self.spool.inner.counters;
        if !fresh {
            let map = counters.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(at, c)) = map.get(&key)
                && at.elapsed() < self.poll / 2
            {
                return Some(c);
            }
        }
        let user = self.user.clone();
        let at = std::time::Instant::now();
        let c = self
            .spool
            .run(move |s| s.change_counter(&user))
            .await
            .ok()?;
        let mut map = counters.lock().unwrap_or_else(|e| e.into_inner());
        // Keep whichever reading started last.
        if map.get(&key).is_none_or(|&(t, _)| t <= at) {
            map.insert(key, (at, c));
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(kind: SpoolKind) -> (tempfile::TempDir, Spool) {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open_with(d.path(), "test.host", vec![("bouke".into(), kind)]).unwrap();
        (d, s)
    }

    #[test]
    fn crlf_sizes() {
        assert_eq!(crlf_size(b"a\nb\r\nc\n"), 9);
        assert_eq!(to_crlf(b"a\nb\r\n").as_ref(), b"a\r\nb\r\n");
        assert!(matches!(to_crlf(b"a\r\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("inBox").unwrap(), "INBOX");
        for bad in ["", "a/b", ".a", "a.", "a..b", "x\ty"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_name("Work.2025").unwrap(), "Work.2025");
    }

    #[test]
    fn default_folders_and_special_use() {
        let (_d, s) = spool(SpoolKind::Maildir);
        let boxes = s.mailboxes("bouke").unwrap();
        let names: Vec<_> = boxes.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
        assert_eq!(boxes[3].special_use.as_deref(), Some("\\Sent"));
        assert!(s.maildir_root("bouke").join(".Junk/cur").is_dir());
        assert!(matches!(
            s.mailboxes("nobody"),
            Err(SpoolError::UnknownUser(_))
        ));
    }

    fn roundtrip(kind: SpoolKind) {
        let (_d, s) = spool(kind);
        let m1 = b"Subject: one\n\nFrom the start\nbody\n".to_vec();
        let m2 = b"Subject: two\r\n\r\nbody\r\n".to_vec();
        let a1 = s
            .append("bouke", "INBOX", m1.clone(), &Flags::new(), Some(1000))
            .unwrap();
        let a2 = s
            .append("bouke", "inbox", m2.clone(), &Flags::parse("\\Seen"), None)
            .unwrap();
        assert_eq!((a1.uid, a2.uid), (1, 2));
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(st.messages.len(), 2);
        assert_eq!(st.uidnext, 3);
        assert_eq!(st.messages[0].size, m1.len() as u64 + 4);
        assert_eq!(st.messages[0].internal_date, 1000);
        assert!(st.messages[1].flags.contains("\\Seen"));
        assert_eq!(s.read_message("bouke", "INBOX", 1).unwrap(), m1);
        assert_eq!(s.read_message("bouke", "INBOX", 2).unwrap(), m2);

        let before = st.highestmodseq;
        let r = s
            .store_flags(
                "bouke",
                "INBOX",
                &[1],
                FlagOp::Add,
                &Flags::parse("\\Flagged $Junk"),
                None,
            )
            .unwrap();
        assert_eq!(r.updated.len(), 1);
        assert!(r.updated[0].modseq > before);
        // CONDSTORE: unchanged since an old MODSEQ fails.
        let r = s
            .store_flags(
                "bouke",
                "INBOX",
                &[1],
                FlagOp::Add,
                &Flags::parse("\\Seen"),
                Some(before),
            )
            .unwrap();
        assert_eq!(r.failed, vec![1]);
        let ch = s.changes_since("bouke", "INBOX", before).unwrap();
        assert_eq!(ch.changed.len(), 1);
        assert_eq!(ch.changed[0].flags.to_db(), "$Junk \\Flagged");
        assert_eq!(s.read_message("bouke", "INBOX", 1).unwrap(), m1);

        let c = s.copy("bouke", "INBOX", &[1, 2, 99], "Trash").unwrap();
        assert_eq!(c.uids, vec![(1, 1), (2, 2)]);
        assert_eq!(s.read_message("bouke", "Trash", 2).unwrap(), m2);
        let t = s.select("bouke", "Trash").unwrap();
        assert!(t.messages[0].flags.contains("\\Flagged"));
        assert_eq!(t.messages[0].internal_date, 1000);

        let ms = s.highestmodseq_of("INBOX");
        assert_eq!(s.expunge("bouke", "INBOX", &[1]).unwrap(), vec![1]);
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(
            st.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(s.read_message("bouke", "INBOX", 2).unwrap(), m2);
        assert_eq!(
            s.changes_since("bouke", "INBOX", ms).unwrap().vanished,
            vec![1]
        );
        let a3 = s
            .append("bouke", "INBOX", m1.clone(), &Flags::new(), None)
            .unwrap();
        assert_eq!(a3.uid, 3, "UIDs are not reused");
        assert_eq!(s.read_message("bouke", "INBOX", 3).unwrap(), m1);
    }

    impl Spool {
        fn highestmodseq_of(&self, mb: &str) -> u64 {
            self.status("bouke", mb).unwrap().highestmodseq
        }
    }

    #[test]
    fn maildir_roundtrip() {
        roundtrip(SpoolKind::Maildir);
    }

    #[test]
    fn mbox_roundtrip() {
        roundtrip(SpoolKind::Mbox);
    }

    #[test]
    fn maildir_flags_in_file_names_and_external_changes() {
        let (_d, s) = spool(SpoolKind::Maildir);
        s.append(
            "bouke",
            "INBOX",
            b"S: a\n\nx\n".to_vec(),
            &Flags::new(),
            None,
        )
        .unwrap();
        let root = s.maildir_root("bouke");
        assert_eq!(std::fs::read_dir(root.join("new")).unwrap().count(), 1);
        s.store_flags(
            "bouke",
            "INBOX",
            &[1],
            FlagOp::Set,
            &Flags::parse("\\Seen \\Answered"),
            None,
        )
        .unwrap();
        let cur: Vec<_> = std::fs::read_dir(root.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(cur.len(), 1);
        assert!(cur[0].ends_with(":2,RS"), "{cur:?}");
        // Another program flags it, and drops in a new message.
        let old = root.join("cur").join(&cur[0]);
        let newname = cur[0].replace(":2,RS", ":2,FRS");
        std::fs::rename(&old, root.join("cur").join(&newname)).unwrap();
        std::fs::write(root.join("new").join("123.ext.host"), b"S: b\n\ny\n").unwrap();
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(st.messages.len(), 2);
        assert!(st.messages[0].flags.contains("\\Flagged"));
        assert_eq!(st.messages[1].size, 11);
        // And removes one.
        std::fs::remove_file(root.join("cur").join(&newname)).unwrap();
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(
            st.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn mailbox_create_rename_delete() {
        let (_d, s) = spool(SpoolKind::Maildir);
        s.create_mailbox("bouke", "Work").unwrap();
        s.create_mailbox("bouke", "Work.2025").unwrap();
        assert!(matches!(
            s.create_mailbox("bouke", "Work"),
            Err(SpoolError::MailboxExists { .. })
        ));
        s.append(
            "bouke",
            "Work.2025",
            b"S: w\n\nw\n".to_vec(),
            &Flags::new(),
            None,
        )
        .unwrap();
        s.rename_mailbox("bouke", "Work", "Job").unwrap();
        let names: Vec<_> = s
            .mailboxes("bouke")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"Job.2025".to_string()));
        assert!(!names.contains(&"Work".to_string()));
        assert_eq!(
            s.read_message("bouke", "Job.2025", 1).unwrap(),
            b"S: w\n\nw\n"
        );
        s.delete_mailbox("bouke", "Job.2025").unwrap();
        assert!(!s.maildir_root("bouke").join(".Job.2025").exists());
        assert!(matches!(
            s.delete_mailbox("bouke", "INBOX"),
            Err(SpoolError::Protected(_))
        ));
        // INBOX rename moves the messages.
        s.append(
            "bouke",
            "INBOX",
            b"S: i\n\ni\n".to_vec(),
            &Flags::new(),
            None,
        )
        .unwrap();
        s.rename_mailbox("bouke", "INBOX", "Old").unwrap();
        assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 0);
        assert_eq!(s.select("bouke", "Old").unwrap().messages.len(), 1);
    }

    #[test]
    fn keyed_batch_stores_once() {
        for kind in [SpoolKind::Maildir, SpoolKind::Mbox] {
            let (_d, s) = spool(kind);
            let mk = || {
                let mut r = StoreRequest::new("bouke", "INBOX", b"S: k\n\nk\n".to_vec());
                r.key = Some("pop3:acct:UIDL1".into());
                r
            };
            let first = s.store_batch(vec![mk()]);
            assert!(matches!(first[0], Ok(StoreOutcome::Stored { uid: 1, .. })));
            let again = s.store_batch(vec![mk(), mk()]);
            assert!(
                again
                    .iter()
                    .all(|r| matches!(r, Ok(StoreOutcome::Duplicate)))
            );
            assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 1);
        }
    }

    #[test]
    fn keyed_maildir_file_left_by_a_crash_is_adopted_not_duplicated() {
        let (_d, s) = spool(SpoolKind::Maildir);
        let mut r = StoreRequest::new("bouke", "INBOX", b"S: k\n\nk\n".to_vec());
        r.key = Some("imap:a:INBOX:7:1".into());
        s.store_batch(vec![r.clone()]);
        // Simulate "renamed but not committed": forget the index row and key.
        {
            let conn = s.conn().unwrap();
            conn.execute_batch("DELETE FROM messages; DELETE FROM delivery_keys;")
                .unwrap();
        }
        let out = s.store_batch(vec![r]);
        assert!(matches!(out[0], Ok(StoreOutcome::Stored { .. })));
        let files = std::fs::read_dir(s.maildir_root("bouke").join("new"))
            .unwrap()
            .count();
        assert_eq!(files, 1);
        assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 1);
    }

    #[test]
    fn mbox_recovers_pending_appends_and_external_mail() {
        let (_d, s) = spool(SpoolKind::Mbox);
        s.append(
            "bouke",
            "INBOX",
            b"S: 1\n\none\n".to_vec(),
            &Flags::new(),
            None,
        )
        .unwrap();
        let path = s.mbox_path("bouke");
        let good_len = std::fs::metadata(&path).unwrap().len();
        // A crashed writer: pending row recorded, half the bytes written.
        let chunk = mbox::chunk(b"\n\n", Some("x@y"), 0, b"S: 2\n\ntwo\n");
        {
            let conn = s.conn().unwrap();
            let mb = dbs::mailbox(&conn, "bouke", "INBOX").unwrap().unwrap();
            dbs::add_pending(
                &conn,
                &dbs::PendingAppend {
                    id: 0,
                    mailbox_id: mb.id,
                    start: good_len,
                    offset: good_len + chunk.msg_start,
                    length: chunk.msg_len,
                    total: chunk.bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&chunk.bytes)),
                    size: 12,
                    internal_date: 0,
                    flags: String::new(),
                    message_id: None,
                    delivery_key: Some("k2".into()),
                },
            )
            .unwrap();
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        f.write_all(&chunk.bytes[..chunk.bytes.len() / 2]).unwrap();
        drop(f);
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(st.messages.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        // procmail appends a message.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"From ext@host Wed Nov 25 14:46:27 2026\nStatus: RO\nS: 3\n\n>From three\n\n")
            .unwrap();
        drop(f);
        let st = s.select("bouke", "INBOX").unwrap();
        assert_eq!(st.messages.len(), 2);
        assert!(st.messages[1].flags.contains("\\Seen"));
        assert_eq!(
            s.read_message("bouke", "INBOX", st.messages[1].uid)
                .unwrap(),
            b"Status: RO\nS: 3\n\nFrom three\n"
        );
    }

    #[tokio::test]
    async fn watcher_wakes_on_append() {
        let (_d, s) = spool(SpoolKind::Maildir);
        s.prepare_user("bouke").unwrap();
        let mut w = s.watch("bouke").unwrap();
        let s2 = s.clone();
        s.run(move |_| s2.append("bouke", "INBOX", b"S: w\n\n".to_vec(), &Flags::new(), None))
            .await
            .unwrap();
        let c = w.changed().await;
        assert_eq!(c.mailbox.as_deref(), Some("INBOX"));
    }

    #[test]
    fn header_ends_and_header_reads() {
        assert_eq!(header_end_in(b"A: b\r\n\r\nbody", 0), Some(8));
        assert_eq!(header_end_in(b"A: b\n\nbody", 0), Some(6));
        assert_eq!(header_end_in(b"\r\nbody", 0), Some(2));
        assert_eq!(header_end_in(b"A: b\r\nC: d\r\n", 0), None);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        // A header longer than one read step, then a large body.
        let mut msg = b"Subject: x\r\n".to_vec();
        for i in 0..1000 {
            msg.extend_from_slice(format!("X-H{i}: value\r\n").as_bytes());
        }
        let head_len = msg.len() + 2;
        msg.extend_from_slice(b"\r\n");
        msg.extend(std::iter::repeat_n(b'a', 100_000));
        std::fs::write(&p, &msg).unwrap();
        assert_eq!(read_header(&p).unwrap(), &msg[..head_len]);
        std::fs::write(&p, b"A: b\r\nno end").unwrap();
        assert_eq!(read_header(&p).unwrap(), b"A: b\r\nno end");
    }

    #[test]
    fn from_line_dates() {
        assert_eq!(
            parse_from_line_date("From a@b Thu Jan  1 00:00:10 1970"),
            Some(10)
        );
        assert_eq!(parse_from_line_date("From a@b junk"), None);
    }
}
