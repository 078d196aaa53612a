//! The only module that touches rusqlite: opening the database (WAL, busy timeout,
//! `synchronous = FULL` so a commit is durable), applying `migrations/*.sql` in order
//! (tracked by `PRAGMA user_version`), and one file of SQL per owner
//! (`users.rs`, `spool.rs`, …).
//!
//! # Why FULL
//! In WAL mode `synchronous = NORMAL` may lose the last commits on power loss; zolder
//! promises that a committed index row is on disk before the ISP is told to delete, so
//! every commit syncs the WAL. Group commit (many rows per transaction) keeps that cheap.

use std::path::Path;
use std::time::Duration;

pub use rusqlite::Connection;
pub use rusqlite::Error as SqlError;
pub use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

pub mod fetch;
pub mod fetchids;
pub mod imapd;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod sortkeys;
pub mod spool;
pub mod status;
pub mod users;
pub mod web;

/// Migrations, embedded at build time: (number, name, SQL). `PRAGMA user_version` holds
/// the highest number applied; keep this list sorted and never edit a released file.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_spool",
        include_str!("../../migrations/0002_spool.sql"),
    ),
    (
        3,
        "0003_fetch",
        include_str!("../../migrations/0003_fetch.sql"),
    ),
    (
        4,
        "0004_queue",
        include_str!("../../migrations/0004_queue.sql"),
    ),
    // (5, "0005_scan", …), (6, "0006_imapd_sort", …): one per owner, added when needed.
    (
        5,
        "0005_scan",
        include_str!("../../migrations/0005_scan.sql"),
    ),
    (
        6,
        "0006_imapd_sort",
        include_str!("../../migrations/0006_imapd_sort.sql"),
    ),
    (
        7,
        "0007_queue_local_due",
        include_str!("../../migrations/0007_queue_local_due.sql"),
    ),
    (
        8,
        "0008_fetch_oauth2",
        include_str!("../../migrations/0008_fetch_oauth2.sql"),
    ),
    (
        9,
        "0009_imapd_cache",
        include_str!("../../migrations/0009_imapd_cache.sql"),
    ),
    (
        10,
        "0010_web",
        include_str!("../../migrations/0010_web.sql"),
    ),
    (
        13,
        "0013_imapd",
        include_str!("../../migrations/0013_imapd.sql"),
    ),
    (
        14,
        "0014_ops",
        include_str!("../../migrations/0014_ops.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database migration {name}: {source}")]
    Migrate {
        name: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this zolder knows ({known}); upgrade zolder"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Other(format!("{}: {e}", dir.display())))?;
    }
    let ps = path.display().to_string();
    let conn = Connection::open(path).map_err(|e| DbError::Open {
        path: ps.clone(),
        source: e,
    })?;
    configure(&conn).map_err(|e| DbError::Open {
        path: ps.clone(),
        source: e,
    })?;
    migrate(&conn, &ps)?;
    Ok(conn)
}

/// An in-memory database with the full schema (tests).
pub fn open_memory() -> Result<Connection> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    migrate(&conn, ":memory:")?;
    Ok(conn)
}

/// Set by a short command run again and again (`zolder fetch` from cron or the
/// dial-up hook): its connections leave the WAL in place when they close.
static KEEP_WAL_ON_CLOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Connections opened from now on skip the checkpoint when they close. Nothing is less
/// durable: every commit is already in the WAL (fsynced), SQLite still checkpoints it
/// into the main file every 1 000 pages, and the next opener reads it back. What it
/// saves is the close's checkpoint (two fsyncs, and a dir fsync when the WAL is made
/// anew next time) at the end of every run — most of a re-poll's own time.
pub fn keep_wal_on_close() {
    KEEP_WAL_ON_CLOSE.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if KEEP_WAL_ON_CLOSE.load(std::sync::atomic::Ordering::Relaxed) {
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
    }
    Ok(())
}

/// Applies every migration newer than `PRAGMA user_version`, each in its own
/// transaction together with the version bump.
pub fn migrate(conn: &Connection, path: &str) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

type Migration = (i64, &'static str, &'static str);

fn migrate_with(conn: &Connection, path: &str, migrations: &[Migration]) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations.iter().map(|m| m.0).max().unwrap_or(0);
    if current > known {
        return Err(DbError::TooNew {
            path: path.to_string(),
            found: current,
            known,
        });
    }
    // The common case, without taking the write lock: every migration is recorded.
    let recorded: Option<Vec<i64>> = conn
        .prepare("SELECT version FROM schema_migrations")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .ok();
    if let Some(done) = recorded
        && migrations.iter().all(|m| done.contains(&m.0))
    {
        return Ok(());
    }
    // Which migrations are applied is recorded one row each, so a migration numbered
    // below one already applied (branches landing out of order) still runs.
    // A database from before the table existed had every version up to its
    // `user_version` applied: those are recorded first.
    let setup = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            conn.execute_batch(
                "CREATE TABLE schema_migrations (
                     version INTEGER PRIMARY KEY,
                     name    TEXT NOT NULL,
                     applied INTEGER NOT NULL
                 )",
            )?;
            let now_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            for &(version, name, _) in migrations.iter().filter(|m| m.0 <= now_version) {
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied) VALUES (?1, ?2, 0)",
                    params![version, name],
                )?;
            }
        }
        conn.execute_batch("COMMIT")
    };
    if let Err(e) = setup() {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(DbError::Migrate {
            name: "schema_migrations".to_string(),
            source: e,
        });
    }
    for &(version, name, sql) in migrations {
        // IMMEDIATE: two processes starting at once must not both apply a migration.
        let run = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let done: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if !done {
                conn.execute_batch(sql)?;
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied) VALUES (?1, ?2, ?3)",
                    params![version, name, now()],
                )?;
                let now_version: i64 =
                    conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                conn.pragma_update(None, "user_version", now_version.max(version))?;
            }
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(DbError::Migrate {
                name: name.to_string(),
                source: e,
            });
        }
    }
    Ok(())
}

/// Records an event for `zolder status`.
pub fn log_event(conn: &Connection, kind: &str, subject: &str, text: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO events (time, kind, subject, text) VALUES (?1, ?2, ?3, ?4)",
        params![now(), kind, subject, text],
    )?;
    // Only the newest EVENTS_KEPT stay: the log informs `zolder status`, it is no archive.
    conn.execute(
        "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
        [EVENTS_KEPT],
    )?;
    Ok(())
}

/// How many events [`log_event`] keeps.
pub const EVENTS_KEPT: i64 = 1000;

/// Copies the database at `src` into a new file `dest` with SQLite's online backup
/// API: a consistent snapshot while the daemon goes on writing (pages copied in steps,
/// restarted by SQLite when a writer changes what was copied). `progress(remaining,
/// total)` is called after each step.
pub fn backup_to(src: &Path, dest: &Path, progress: &mut dyn FnMut(i32, i32)) -> Result<()> {
    let from = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| DbError::Open {
            path: src.display().to_string(),
            source: e,
        })?;
    from.busy_timeout(std::time::Duration::from_secs(30))?;
    let mut to = Connection::open(dest).map_err(|e| DbError::Open {
        path: dest.display().to_string(),
        source: e,
    })?;
    {
        let b = rusqlite::backup::Backup::new(&from, &mut to)?;
        loop {
            match b.step(256)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
            let p = b.progress();
            progress(p.remaining, p.pagecount);
        }
    }
    // One self-contained file: no WAL beside it.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// `PRAGMA integrity_check` of the database file at `path` (read-only): the problems
/// found, empty when it is sound.
pub fn integrity_problems(path: &Path) -> Result<Vec<String>> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
        |e| DbError::Open {
            path: path.display().to_string(),
            source: e,
        },
    )?;
    let mut st = c.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_landing_below_the_current_version_still_runs() {
        let c = Connection::open_in_memory().unwrap();
        let one: Migration = (1, "0001_a", "CREATE TABLE a (x)");
        let two: Migration = (2, "0002_b", "CREATE TABLE b (x)");
        let three: Migration = (3, "0003_c", "CREATE TABLE c (x)");
        migrate_with(&c, "mem", &[one, three]).unwrap();
        // 0002 lands after 0003 was applied: it still runs, once.
        migrate_with(&c, "mem", &[one, two, three]).unwrap();
        migrate_with(&c, "mem", &[one, two, three]).unwrap();
        for t in ["a", "b", "c"] {
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [t],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "table {t}");
        }
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn an_old_database_is_recorded_up_to_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.db");
        let c = open(&p).unwrap();
        c.execute_batch("DROP TABLE schema_migrations").unwrap();
        drop(c);
        let c = open(&p).unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
    }

    #[test]
    fn migrates_twice_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.db");
        let c = open(&p).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.last().unwrap().0);
        drop(c);
        let c = open(&p).unwrap();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
