//! SQL for the scan stage and Sieve (migration 0005): the quarantine index, the
//! spam-training queue, bogofilter's registration memory and the Sieve duplicate store.
//!
//! The quarantine's message files are written by `deliver::quarantine`; this file only
//! keeps their index. Nothing here decides anything: callers do.

use super::{Connection, OptionalExtension, Result, now, params};

/// One quarantined message as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    pub id: i64,
    pub file: String,
    pub created: i64,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub source: String,
    pub scanner: String,
    pub verdict: String,
    pub reason: String,
    pub size: i64,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub idem_key: Option<String>,
    pub released: Option<i64>,
}

/// What to index for a new quarantined message (the file is already durable).
#[derive(Debug, Clone)]
pub struct NewQuarantine<'a> {
    pub file: &'a str,
    pub sender: Option<&'a str>,
    pub recipients: &'a [String],
    pub source: &'a str,
    pub scanner: &'a str,
    pub verdict: &'a str,
    pub reason: &'a str,
    pub size: i64,
    pub subject: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub idem_key: Option<&'a str>,
}

/// Indexes a quarantined message. Returns `None` when a row with the same delivery
/// key exists already (a re-fetch of a message quarantined before a crash).
pub fn insert(conn: &Connection, q: &NewQuarantine<'_>) -> Result<Option<i64>> {
    let rcpts = serde_json::to_string(q.recipients).unwrap_or_else(|_| "[]".into());
    let n = conn.execute(
        "INSERT INTO quarantine (file, created, sender, recipients, source, scanner, verdict,
                                 reason, size, subject, message_id, idem_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(idem_key) DO NOTHING",
        params![
            q.file,
            now(),
            q.sender,
            rcpts,
            q.source,
            q.scanner,
            q.verdict,
            q.reason,
            q.size,
            q.subject,
            q.message_id,
            q.idem_key
        ],
    )?;
    Ok(if n == 1 {
        Some(conn.last_insert_rowid())
    } else {
        None
    })
}

/// The row already holding this delivery key, if any.
pub fn find_by_key(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT id FROM quarantine WHERE idem_key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

const COLS: &str = "id, file, created, sender, recipients, source, scanner, verdict, reason,
                    size, subject, message_id, idem_key, released";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineRow> {
    let rcpts: String = r.get(4)?;
    Ok(QuarantineRow {
        id: r.get(0)?,
        file: r.get(1)?,
        created: r.get(2)?,
        sender: r.get(3)?,
        recipients: serde_json::from_str(&rcpts).unwrap_or_default(),
        source: r.get(5)?,
        scanner: r.get(6)?,
        verdict: r.get(7)?,
        reason: r.get(8)?,
        size: r.get(9)?,
        subject: r.get(10)?,
        message_id: r.get(11)?,
        idem_key: r.get(12)?,
        released: r.get(13)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<QuarantineRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM quarantine WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// Held messages (oldest first); `all` also lists released ones.
pub fn list(conn: &Connection, all: bool) -> Result<Vec<QuarantineRow>> {
    let sql = if all {
        format!("SELECT {COLS} FROM quarantine ORDER BY id")
    } else {
        format!("SELECT {COLS} FROM quarantine WHERE released IS NULL ORDER BY id")
    };
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([], row)?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn mark_released(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE quarantine SET released = ?2 WHERE id = ?1 AND released IS NULL",
        params![id, now()],
    )? == 1)
}

pub fn delete(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn.execute("DELETE FROM quarantine WHERE id = ?1", [id])? == 1)
}

/// Every file name the index knows (for sweeping orphans left by a crash).
pub fn files(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare("SELECT file FROM quarantine")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

// ---------------------------------------------------------------------------------
// Training queue
// ---------------------------------------------------------------------------------

/// Spam or ham, as taught to bogofilter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainKind {
    Spam,
    Ham,
}

impl TrainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrainKind::Spam => "spam",
            TrainKind::Ham => "ham",
        }
    }
    /// What a MOVE/COPY between two mailboxes teaches: into Junk → spam; out of Junk
    /// into anything but Trash → ham; anything else → nothing. `*_junk` is true for the
    /// mailbox with the `\Junk` special use (or named "Junk"), `to_trash` for `\Trash`.
    pub fn for_move(from_junk: bool, to_junk: bool, to_trash: bool) -> Option<TrainKind> {
        match (from_junk, to_junk) {
            (false, true) => Some(TrainKind::Spam),
            (true, false) if !to_trash => Some(TrainKind::Ham),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<TrainKind> {
        match s {
            "spam" => Some(TrainKind::Spam),
            "ham" => Some(TrainKind::Ham),
            _ => None,
        }
    }
}

/// A pending training request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingRow {
    pub id: i64,
    pub user: String,
    pub mailbox: String,
    pub uid: u32,
    pub kind: TrainKind,
    pub attempts: i64,
}

/// **The IMAP server's hook.** Call this (inside or after the transaction that moves or
/// copies the message) when a user puts a message into Junk (`TrainKind::Spam`) or takes
/// one out of Junk into another folder (`TrainKind::Ham`). `mailbox` and `uid` name the
/// message at its destination. The scan stage's worker
/// (`deliver::scan::bogofilter::train_pending`) drains the queue; nothing blocks the
/// IMAP command on bogofilter.
pub fn enqueue_training(
    conn: &Connection,
    user: &str,
    mailbox: &str,
    uid: u32,
    kind: TrainKind,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO scan_training (user, mailbox, uid, kind, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user, mailbox, uid, kind.as_str(), now()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Up to `limit` pending requests, oldest first.
pub fn pending_training(conn: &Connection, limit: usize) -> Result<Vec<TrainingRow>> {
    let mut st = conn.prepare(
        "SELECT id, user, mailbox, uid, kind, attempts FROM scan_training ORDER BY id LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| {
        let kind: String = r.get(4)?;
        Ok(TrainingRow {
            id: r.get(0)?,
            user: r.get(1)?,
            mailbox: r.get(2)?,
            uid: r.get(3)?,
            kind: TrainKind::parse(&kind).unwrap_or(TrainKind::Ham),
            attempts: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn finish_training(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM scan_training WHERE id = ?1", [id])?;
    Ok(())
}

pub fn fail_training(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE scan_training SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// What bogofilter was taught about this message digest, if anything.
pub fn registered(conn: &Connection, digest: &str) -> Result<Option<TrainKind>> {
    let k: Option<String> = conn
        .query_row(
            "SELECT kind FROM bogofilter_registered WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )
        .optional()?;
    Ok(k.as_deref().and_then(TrainKind::parse))
}

pub fn set_registered(conn: &Connection, digest: &str, kind: TrainKind) -> Result<()> {
    conn.execute(
        "INSERT INTO bogofilter_registered (digest, kind, time) VALUES (?1, ?2, ?3)
         ON CONFLICT(digest) DO UPDATE SET kind = excluded.kind, time = excluded.time",
        params![digest, kind.as_str(), now()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// Sieve duplicate / vacation store
// ---------------------------------------------------------------------------------

/// True when `id` was recorded for `user` and has not expired at `now`.
pub fn duplicate_seen(conn: &Connection, user: &str, id: &str, at: i64) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sieve_duplicates WHERE user = ?1 AND id = ?2 AND expires > ?3",
            params![user, id, at],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Records `id` for `user` until `expires` (replacing an older record).
pub fn record_duplicate(conn: &Connection, user: &str, id: &str, expires: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO sieve_duplicates (user, id, expires) VALUES (?1, ?2, ?3)
         ON CONFLICT(user, id) DO UPDATE SET expires = excluded.expires",
        params![user, id, expires],
    )?;
    Ok(())
}

/// Forgets expired records; returns how many.
pub fn purge_duplicates(conn: &Connection, at: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sieve_duplicates WHERE expires <= ?1", [at])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open_memory;

    #[test]
    fn quarantine_index_round_trip_and_key_dedup() {
        let c = open_memory().unwrap();
        let rc = vec!["bouke@zolder.thuis".to_string()];
        let q = NewQuarantine {
            file: "1-ab.eml",
            sender: Some("x@example.org"),
            recipients: &rc,
            source: "fetch",
            scanner: "clamd",
            verdict: "infected",
            reason: "Eicar",
            size: 10,
            subject: Some("hi"),
            message_id: None,
            idem_key: Some("pop3:a:1"),
        };
        let id = insert(&c, &q).unwrap().unwrap();
        assert_eq!(insert(&c, &q).unwrap(), None);
        assert_eq!(find_by_key(&c, "pop3:a:1").unwrap(), Some(id));
        let r = get(&c, id).unwrap().unwrap();
        assert_eq!(r.recipients, rc);
        assert_eq!(list(&c, false).unwrap().len(), 1);
        assert!(mark_released(&c, id).unwrap());
        assert!(!mark_released(&c, id).unwrap());
        assert!(list(&c, false).unwrap().is_empty());
        assert_eq!(list(&c, true).unwrap().len(), 1);
        assert!(delete(&c, id).unwrap());
    }

    #[test]
    fn training_queue_and_duplicates() {
        let c = open_memory().unwrap();
        let id = enqueue_training(&c, "bouke", "Junk", 7, TrainKind::Spam).unwrap();
        let p = pending_training(&c, 10).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].uid, p[0].kind), (7, TrainKind::Spam));
        fail_training(&c, id, "no such message").unwrap();
        assert_eq!(pending_training(&c, 10).unwrap()[0].attempts, 1);
        finish_training(&c, id).unwrap();
        assert!(pending_training(&c, 10).unwrap().is_empty());

        assert!(!duplicate_seen(&c, "bouke", "_v1", 100).unwrap());
        record_duplicate(&c, "bouke", "_v1", 200).unwrap();
        assert!(duplicate_seen(&c, "Bouke", "_v1", 100).unwrap());
        assert!(!duplicate_seen(&c, "bouke", "_v1", 200).unwrap());
        assert_eq!(purge_duplicates(&c, 300).unwrap(), 1);

        assert_eq!(
            TrainKind::for_move(false, true, false),
            Some(TrainKind::Spam)
        );
        assert_eq!(
            TrainKind::for_move(true, false, false),
            Some(TrainKind::Ham)
        );
        assert_eq!(TrainKind::for_move(true, false, true), None);
        assert_eq!(TrainKind::for_move(false, false, false), None);
        assert_eq!(TrainKind::for_move(true, true, false), None);

        set_registered(&c, "d", TrainKind::Spam).unwrap();
        assert_eq!(registered(&c, "d").unwrap(), Some(TrainKind::Spam));
        set_registered(&c, "d", TrainKind::Ham).unwrap();
        assert_eq!(registered(&c, "d").unwrap(), Some(TrainKind::Ham));
    }
}
