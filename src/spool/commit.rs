//! The database commit machinery: IMMEDIATE write transactions that take this
//! process's writer turn ([`write_tx`], [`WriteTx`]), and WAL group commit
//! ([`WalGroup`], [`WalTicket`]): connections run with `synchronous = NORMAL` and
//! one WAL fsync covers every commit made before it started.
//!
//! Owns when the index becomes durable. It must not know about mailboxes, messages
//! or files other than the database and its WAL.

use super::*;

/// Every write transaction is IMMEDIATE: it takes SQLite's write lock at BEGIN, where
/// the busy timeout applies. A deferred transaction that reads first and writes later
/// fails at once with "database is locked" when another process committed meanwhile.
///
/// Writers in this process also take turns on a mutex first: SQLite's busy handler
/// waits by sleeping (1, 2, 5, 10 … ms), so fifty IMAP sessions committing at once
/// through their own connections would mostly sleep. The mutex hands the write lock
/// over at once; other processes still meet the busy timeout.
pub(super) fn write_tx(conn: &mut Connection) -> Result<WriteTx<'_>> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let tx = conn.transaction_with_behavior(db::TransactionBehavior::Immediate)?;
    Ok(WriteTx { tx, _turn: turn })
}

/// A write transaction holding this process's writer turn (see [`write_tx`]).
/// Dropped without [`commit`](Self::commit), it rolls back, then gives the turn up.
pub(super) struct WriteTx<'c> {
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
    pub(super) fn commit(self) -> Result<()> {
        self.commit_deferred()?.sync()
    }

    /// Commits and gives the writer turn back at once; the commit is durable only
    /// after [`WalTicket::sync`]. Lets a caller put its own disk syncs (directory
    /// fsyncs) between the commit and the WAL's, so both overlap with others' work.
    pub(super) fn commit_deferred(self) -> Result<WalTicket> {
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
pub(super) fn open_conn(path: &Path) -> Result<Connection> {
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
pub(super) struct WalTicket(Option<(Arc<WalGroup>, String, u64)>);

impl WalTicket {
    /// Returns once this commit's WAL frames are on disk: at once when a sync that
    /// started after the commit has finished, else after one (shared) fsync.
    pub(super) fn sync(self) -> Result<()> {
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
