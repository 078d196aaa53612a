//! SQL for the spool's per-mailbox message index: mailboxes (UIDVALIDITY, UIDNEXT,
//! HIGHESTMODSEQ), message rows, expunged UIDs, delivery keys, the per-user change
//! counter and in-flight mbox appends.
//!
//! Owned by `spool`; nothing else writes these tables. Functions take a `&Connection`
//! so they work inside a caller's transaction (a `Transaction` derefs to one): the spool
//! decides where transactions begin and end (group commit), this file only knows SQL.
//!
//! Invariants kept here: `uidnext` and `highestmodseq` only grow; every change to a
//! mailbox takes a fresh MODSEQ from `highestmodseq`; an expunged UID is remembered in
//! `expunged` with the MODSEQ of its removal.

use super::{Connection, OptionalExtension, Result, now, params};

/// One row of `mailboxes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    pub id: i64,
    pub user: String,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub special_use: Option<String>,
    pub subscribed: bool,
}

/// One row of `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub uid: u32,
    /// Maildir base name (no `:2,` info); `None` for mbox.
    pub file: Option<String>,
    /// mbox: offset of the message bytes (after the From_ line) and their stored length.
    pub offset: Option<u64>,
    pub length: Option<u64>,
    pub size: u64,
    pub internal_date: i64,
    pub flags: String,
    pub modseq: u64,
}

/// A message to index.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub file: Option<&'a str>,
    pub offset: Option<u64>,
    pub length: Option<u64>,
    pub size: u64,
    pub internal_date: i64,
    pub flags: &'a str,
    pub message_id: Option<&'a str>,
}

/// Mailbox totals for LIST-STATUS / STATUS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: u32,
    pub unseen: u32,
}

const MAILBOX_COLS: &str =
    "id, user, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed";

fn mailbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxRow> {
    Ok(MailboxRow {
        id: r.get(0)?,
        user: r.get(1)?,
        name: r.get(2)?,
        uidvalidity: r.get::<_, i64>(3)? as u32,
        uidnext: r.get::<_, i64>(4)? as u32,
        highestmodseq: r.get::<_, i64>(5)? as u64,
        special_use: r.get(6)?,
        subscribed: r.get::<_, i64>(7)? != 0,
    })
}

pub(crate) const MESSAGE_COLS: &str =
    "uid, file, offset, length, size, internal_date, flags, modseq";

pub(crate) fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        uid: r.get::<_, i64>(0)? as u32,
        file: r.get(1)?,
        offset: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
        length: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        size: r.get::<_, i64>(4)? as u64,
        internal_date: r.get(5)?,
        flags: r.get(6)?,
        modseq: r.get::<_, i64>(7)? as u64,
    })
}

/// The mailbox `name` of `user` (names compare exactly; callers normalise INBOX).
pub fn mailbox(conn: &Connection, user: &str, name: &str) -> Result<Option<MailboxRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MAILBOX_COLS} FROM mailboxes WHERE user = ?1 AND name = ?2"
        ))?
        .query_row(params![user, name], mailbox_row)
        .optional()?)
}

/// Every mailbox of `user`, by name.
pub fn mailboxes(conn: &Connection, user: &str) -> Result<Vec<MailboxRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE user = ?1 ORDER BY name"
    ))?;
    let rows = st.query_map([user], mailbox_row)?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Creates a mailbox. Its UIDVALIDITY is the current time, but always above any
/// UIDVALIDITY this user has had, so a deleted-and-recreated name never repeats one.
pub fn create_mailbox(
    conn: &Connection,
    user: &str,
    name: &str,
    special_use: Option<&str>,
) -> Result<MailboxRow> {
    let uidvalidity = next_uidvalidity(conn, user)?;
    conn.execute(
        "INSERT INTO mailboxes (user, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed)
         VALUES (?1, ?2, ?3, 1, 1, ?4, 1)",
        params![user, name, uidvalidity, special_use],
    )?;
    let id = conn.last_insert_rowid();
    Ok(MailboxRow {
        id,
        user: user.to_string(),
        name: name.to_string(),
        uidvalidity: uidvalidity as u32,
        uidnext: 1,
        highestmodseq: 1,
        special_use: special_use.map(str::to_string),
        subscribed: true,
    })
}

/// A fresh UIDVALIDITY for `user`: the current time (seconds since 2020, which keeps a
/// century of room in 32 bits), but always above any this user had before.
pub fn next_uidvalidity(conn: &Connection, user: &str) -> Result<i64> {
    let max: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(uidvalidity) FROM mailboxes WHERE user = ?1), 0),
                    COALESCE((SELECT last FROM uidvalidity_seq WHERE user = ?1), 0))",
        [user],
        |r| r.get(0),
    )?;
    let t = (now() - 1_577_836_800).max(1);
    let v = t.max(max + 1) & 0xffff_ffff;
    conn.execute(
        "INSERT INTO uidvalidity_seq (user, last) VALUES (?1, ?2)
         ON CONFLICT(user) DO UPDATE SET last = excluded.last",
        params![user, v],
    )?;
    Ok(v)
}

/// Removes a mailbox with its message index and expunge history.
pub fn delete_mailbox(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM mbox_pending WHERE mailbox_id = ?1", [id])?;
    conn.execute("DELETE FROM mailboxes WHERE id = ?1", [id])?;
    Ok(())
}

/// Renames a mailbox row (its UIDs and UIDVALIDITY stay: the messages did not change).
pub fn rename_mailbox(conn: &Connection, id: i64, new_name: &str) -> Result<()> {
    conn.execute(
        "UPDATE mailboxes SET name = ?2 WHERE id = ?1",
        params![id, new_name],
    )?;
    Ok(())
}

pub fn set_subscribed(conn: &Connection, id: i64, subscribed: bool) -> Result<()> {
    conn.execute(
        "UPDATE mailboxes SET subscribed = ?2 WHERE id = ?1",
        params![id, subscribed as i64],
    )?;
    Ok(())
}

/// Keeps a subscription to `name`, which has no mailbox (`imap_subscriptions`).
pub fn keep_subscription(conn: &Connection, user: &str, name: &str) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO imap_subscriptions (user, name) VALUES (?1, ?2)",
        params![user, name],
    )?;
    Ok(())
}

/// Drops a kept subscription; whether there was one.
pub fn forget_subscription(conn: &Connection, user: &str, name: &str) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM imap_subscriptions WHERE user = ?1 AND name = ?2",
        params![user, name],
    )?;
    Ok(n > 0)
}

/// The user's subscriptions to names without a mailbox, by name.
pub fn kept_subscriptions(conn: &Connection, user: &str) -> Result<Vec<String>> {
    let mut st =
        conn.prepare_cached("SELECT name FROM imap_subscriptions WHERE user = ?1 ORDER BY name")?;
    let rows = st.query_map([user], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Takes the next MODSEQ of a mailbox (bumping `highestmodseq`).
pub fn next_modseq(conn: &Connection, mailbox_id: i64) -> Result<u64> {
    let m: i64 = conn
        .prepare_cached(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq",
        )?
        .query_row([mailbox_id], |r| r.get(0))?;
    Ok(m as u64)
}

/// Indexes one message: takes the next UID and MODSEQ. If a Maildir `file` is already
/// indexed in this mailbox (a racing sync got there first), returns its existing UID
/// and `false` instead of adding a second row.
pub fn insert_message(
    conn: &Connection,
    mailbox_id: i64,
    m: &NewMessage<'_>,
) -> Result<(u32, u64, bool)> {
    if let Some(f) = m.file {
        let existing = conn
            .prepare_cached("SELECT uid, modseq FROM messages WHERE mailbox_id = ?1 AND file = ?2")?
            .query_row(params![mailbox_id, f], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64))
            })
            .optional()?;
        if let Some((uid, modseq)) = existing {
            return Ok((uid, modseq, false));
        }
    }
    let (uid, modseq): (i64, i64) = conn
        .prepare_cached(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
             WHERE id = ?1 RETURNING uidnext - 1, highestmodseq",
        )?
        .query_row([mailbox_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut st = conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, file, offset, length, size, internal_date, flags, modseq, message_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    st.execute(params![
        mailbox_id,
        uid,
        m.file,
        m.offset.map(|v| v as i64),
        m.length.map(|v| v as i64),
        m.size as i64,
        m.internal_date,
        m.flags,
        modseq,
        m.message_id,
    ])?;
    Ok((uid as u32, modseq as u64, true))
}

/// Is a Maildir file already indexed in this mailbox?
pub fn file_indexed(conn: &Connection, mailbox_id: i64, file: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM messages WHERE mailbox_id = ?1 AND file = ?2")?
        .query_row(params![mailbox_id, file], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The mbox message stored last (highest offset).
pub fn last_mbox_message(conn: &Connection, mailbox_id: i64) -> Result<Option<MessageRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE mailbox_id = ?1 ORDER BY offset DESC LIMIT 1"
    ))?;
    Ok(st.query_row([mailbox_id], message_row).optional()?)
}

/// Every message row of a mailbox, by UID.
pub fn messages(conn: &Connection, mailbox_id: i64) -> Result<Vec<MessageRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE mailbox_id = ?1 ORDER BY uid"
    ))?;
    let rows = st.query_map([mailbox_id], message_row)?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn message(conn: &Connection, mailbox_id: i64, uid: u32) -> Result<Option<MessageRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE mailbox_id = ?1 AND uid = ?2"
    ))?;
    Ok(st
        .query_row(params![mailbox_id, uid as i64], message_row)
        .optional()?)
}

/// Rows changed after `modseq` (CONDSTORE/QRESYNC).
pub fn messages_changed_since(
    conn: &Connection,
    mailbox_id: i64,
    modseq: u64,
) -> Result<Vec<MessageRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"
    ))?;
    let rows = st.query_map(params![mailbox_id, modseq as i64], message_row)?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// UIDs expunged after `modseq` (QRESYNC VANISHED).
pub fn expunged_since(conn: &Connection, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>> {
    let mut st = conn.prepare_cached(
        "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
    )?;
    let rows = st.query_map(params![mailbox_id, modseq as i64], |r| {
        r.get::<_, i64>(0).map(|v| v as u32)
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Sets a message's flags under a fresh MODSEQ; returns it.
pub fn set_flags(conn: &Connection, mailbox_id: i64, uid: u32, flags: &str) -> Result<u64> {
    let modseq = next_modseq(conn, mailbox_id)?;
    conn.prepare_cached(
        "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2",
    )?
    .execute(params![mailbox_id, uid as i64, flags, modseq as i64])?;
    Ok(modseq)
}

/// Moves an mbox message's offset (after the file was rewritten by an expunge).
pub fn set_mbox_offset(conn: &Connection, mailbox_id: i64, uid: u32, offset: u64) -> Result<()> {
    conn.prepare_cached("UPDATE messages SET offset = ?3 WHERE mailbox_id = ?1 AND uid = ?2")?
        .execute(params![mailbox_id, uid as i64, offset as i64])?;
    Ok(())
}

/// Removes rows and remembers the UIDs as expunged, all under one fresh MODSEQ.
/// Returns the UIDs that were present.
pub fn expunge(conn: &Connection, mailbox_id: i64, uids: &[u32]) -> Result<Vec<u32>> {
    if uids.is_empty() {
        return Ok(vec![]);
    }
    let modseq = next_modseq(conn, mailbox_id)?;
    let mut del = conn.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")?;
    let mut rem = conn.prepare_cached(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
    )?;
    let mut gone = Vec::new();
    for &uid in uids {
        if del.execute(params![mailbox_id, uid as i64])? > 0 {
            rem.execute(params![mailbox_id, uid as i64, modseq as i64])?;
            gone.push(uid);
        }
    }
    Ok(gone)
}

/// Message count and unseen count of a mailbox.
pub fn counts(conn: &Connection, mailbox_id: i64) -> Result<Counts> {
    let (m, u): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN (' ' || flags || ' ') LIKE '% \\Seen %' THEN 0 ELSE 1 END), 0)
             FROM messages WHERE mailbox_id = ?1",
        )?
        .query_row([mailbox_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Counts {
        messages: m as u32,
        unseen: u as u32,
    })
}

/// Is `key` already recorded for `user`?
pub fn key_seen(conn: &Connection, key: &str, user: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM delivery_keys WHERE key = ?1 AND user = ?2")?
        .query_row(params![key, user], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Records `key` for `user` (idempotent).
pub fn record_key(conn: &Connection, key: &str, user: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO delivery_keys (key, user, created) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![key, user, now()])?;
    Ok(())
}

/// Bumps `user`'s change counter (call in every transaction that changes their mail).
pub fn bump_changes(conn: &Connection, user: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO spool_changes (user, counter) VALUES (?1, 1)
         ON CONFLICT(user) DO UPDATE SET counter = counter + 1",
    )?
    .execute([user])?;
    Ok(())
}

/// `user`'s change counter (0 before any change).
pub fn changes_counter(conn: &Connection, user: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT counter FROM spool_changes WHERE user = ?1")?
        .query_row([user], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

/// An mbox append in flight (see migrations/0002_spool.sql).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAppend {
    pub id: i64,
    pub mailbox_id: i64,
    pub start: u64,
    pub offset: u64,
    pub length: u64,
    pub total: u64,
    pub sha256: String,
    pub size: u64,
    pub internal_date: i64,
    pub flags: String,
    pub message_id: Option<String>,
    pub delivery_key: Option<String>,
}

/// Records an append before its bytes are written; returns its id.
pub fn add_pending(conn: &Connection, p: &PendingAppend) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO mbox_pending (mailbox_id, start, offset, length, total, sha256, size,
            internal_date, flags, message_id, delivery_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        p.mailbox_id,
        p.start as i64,
        p.offset as i64,
        p.length as i64,
        p.total as i64,
        p.sha256,
        p.size as i64,
        p.internal_date,
        p.flags,
        p.message_id,
        p.delivery_key,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Appends in flight for one mbox mailbox, oldest first.
pub fn pending(conn: &Connection, mailbox_id: i64) -> Result<Vec<PendingAppend>> {
    let mut st = conn.prepare_cached(
        "SELECT id, mailbox_id, start, offset, length, total, sha256, size, internal_date,
                flags, message_id, delivery_key
         FROM mbox_pending WHERE mailbox_id = ?1 ORDER BY start",
    )?;
    let rows = st.query_map([mailbox_id], |r| {
        Ok(PendingAppend {
            id: r.get(0)?,
            mailbox_id: r.get(1)?,
            start: r.get::<_, i64>(2)? as u64,
            offset: r.get::<_, i64>(3)? as u64,
            length: r.get::<_, i64>(4)? as u64,
            total: r.get::<_, i64>(5)? as u64,
            sha256: r.get(6)?,
            size: r.get::<_, i64>(7)? as u64,
            internal_date: r.get(8)?,
            flags: r.get(9)?,
            message_id: r.get(10)?,
            delivery_key: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn delete_pending(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM mbox_pending WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The end of the last indexed mbox message (offset + length), 0 when none.
pub fn mbox_end(conn: &Connection, mailbox_id: i64) -> Result<u64> {
    let v: i64 = conn.query_row(
        "SELECT COALESCE(MAX(offset + length), 0) FROM messages WHERE mailbox_id = ?1",
        [mailbox_id],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

/// Forgets every message of a mailbox and gives it a new UIDVALIDITY (the mbox was
/// rewritten by another program and our offsets no longer hold).
pub fn reset_mailbox(conn: &Connection, mailbox_id: i64) -> Result<u32> {
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?1", [mailbox_id])?;
    conn.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [mailbox_id])?;
    let user: String = conn.query_row(
        "SELECT user FROM mailboxes WHERE id = ?1",
        [mailbox_id],
        |r| r.get(0),
    )?;
    let v = next_uidvalidity(conn, &user)?;
    conn.execute(
        "UPDATE mailboxes SET uidvalidity = ?2, uidnext = 1, highestmodseq = highestmodseq + 1,
             recent_uid = 0
         WHERE id = ?1",
        params![mailbox_id, v],
    )?;
    Ok(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_ascend_and_expunged_are_remembered() {
        let c = crate::db::open_memory().unwrap();
        let mb = create_mailbox(&c, "bouke", "INBOX", None).unwrap();
        let nm = |f: &'static str| NewMessage {
            file: Some(f),
            offset: None,
            length: None,
            size: 10,
            internal_date: 1,
            flags: "",
            message_id: None,
        };
        let (u1, m1, _) = insert_message(&c, mb.id, &nm("a")).unwrap();
        let (u2, m2, _) = insert_message(&c, mb.id, &nm("b")).unwrap();
        assert_eq!((u1, u2), (1, 2));
        assert!(m2 > m1);
        // The same file again is not a second row.
        let (u, _, fresh) = insert_message(&c, mb.id, &nm("b")).unwrap();
        assert_eq!((u, fresh), (2, false));
        assert_eq!(expunge(&c, mb.id, &[2, 7]).unwrap(), vec![2]);
        let (u3, _, _) = insert_message(&c, mb.id, &nm("c")).unwrap();
        assert_eq!(u3, 3, "UIDs are never reused");
        assert_eq!(expunged_since(&c, mb.id, m2).unwrap(), vec![2]);
        let m = set_flags(&c, mb.id, 1, "\\Seen").unwrap();
        let ch = messages_changed_since(&c, mb.id, m - 1).unwrap();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].uid, 1);
        assert_eq!(
            counts(&c, mb.id).unwrap(),
            Counts {
                messages: 2,
                unseen: 1
            }
        );
    }

    #[test]
    fn recreated_mailbox_gets_a_new_uidvalidity() {
        let c = crate::db::open_memory().unwrap();
        let a = create_mailbox(&c, "bouke", "Work", None).unwrap();
        delete_mailbox(&c, a.id).unwrap();
        let b = create_mailbox(&c, "bouke", "Work", None).unwrap();
        assert!(b.uidvalidity > a.uidvalidity);
    }

    #[test]
    fn keys_are_per_user() {
        let c = crate::db::open_memory().unwrap();
        record_key(&c, "pop3:acct:1", "bouke").unwrap();
        record_key(&c, "pop3:acct:1", "bouke").unwrap();
        assert!(key_seen(&c, "pop3:acct:1", "BOUKE").unwrap());
        assert!(!key_seen(&c, "pop3:acct:1", "sjoerd").unwrap());
    }
}
