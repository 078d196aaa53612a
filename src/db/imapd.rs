//! SQL for what imapd needs to be fast on big mailboxes: the header cache
//! (`message_headers`, migrations/0009_imapd_cache.sql) and batch reads of the
//! message index by UID set (one statement per batch instead of one per message).
//!
//! Owned by imapd, called through `spool::imap`; the rows of `messages` stay the
//! spool's (`db::spool`). Functions take a `&Connection` so they work inside a
//! caller's transaction.

use super::spool::MessageRow;
use super::{Connection, OptionalExtension, Result, params};

/// UIDs per `IN (…)` statement; a shorter list is padded with its last UID, so there
/// is one prepared statement per query shape.
const IN_CHUNK: usize = 128;

/// Runs `each` for the rows of `uids` (sorted, deduplicated) found by `sql_range`
/// (parameters: mailbox, first UID, last UID) when the set is dense, or by `sql_in`
/// (`{in}` replaced by `IN_CHUNK` placeholders) when it is sparse.
fn for_uids<T>(
    conn: &Connection,
    mailbox_id: i64,
    uids: &[u32],
    sql_range: &str,
    sql_in: &str,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    mut each: impl FnMut(u32, T),
) -> Result<()> {
    let (Some(&first), Some(&last)) = (uids.first(), uids.last()) else {
        return Ok(());
    };
    let wanted = |u: u32| uids.binary_search(&u).is_ok();
    // Dense (a range like 1:*): one range scan, rows not asked for are skipped.
    if ((last - first) as usize) < uids.len().saturating_mul(4) {
        let mut st = conn.prepare_cached(sql_range)?;
        let mut rows = st.query(params![mailbox_id, first as i64, last as i64])?;
        while let Some(r) = rows.next()? {
            let uid = r.get::<_, i64>(0)? as u32;
            if wanted(uid) {
                each(uid, map(r)?);
            }
        }
        return Ok(());
    }
    let marks = vec!["?"; IN_CHUNK].join(",");
    let sql = sql_in.replace("{in}", &marks);
    let mut st = conn.prepare_cached(&sql)?;
    for chunk in uids.chunks(IN_CHUNK) {
        let mut args: Vec<i64> = Vec::with_capacity(IN_CHUNK + 1);
        args.push(mailbox_id);
        args.extend(chunk.iter().map(|&u| u as i64));
        let pad = *chunk.last().unwrap_or(&first) as i64;
        args.resize(IN_CHUNK + 1, pad);
        let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let uid = r.get::<_, i64>(0)? as u32;
            each(uid, map(r)?);
        }
    }
    Ok(())
}

/// The index rows of `uids` (sorted ascending, deduplicated), by UID; UIDs that are
/// gone are left out.
pub fn messages_in(conn: &Connection, mailbox_id: i64, uids: &[u32]) -> Result<Vec<MessageRow>> {
    use super::spool::MESSAGE_COLS as COLS;
    let mut out = Vec::with_capacity(uids.len());
    for_uids(
        conn,
        mailbox_id,
        uids,
        &format!(
            "SELECT {COLS} FROM messages WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid"
        ),
        &format!(
            "SELECT {COLS} FROM messages WHERE mailbox_id = ? AND uid IN ({{in}}) ORDER BY uid"
        ),
        super::spool::message_row,
        |_, row| out.push(row),
    )?;
    Ok(out)
}

/// Cached headers of `uids` (sorted ascending, deduplicated): (UID, header) for
/// those present.
pub fn headers_in(conn: &Connection, mailbox_id: i64, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut out = Vec::with_capacity(uids.len());
    for_uids(
        conn,
        mailbox_id,
        uids,
        "SELECT uid, header FROM message_headers WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3",
        "SELECT uid, header FROM message_headers WHERE mailbox_id = ? AND uid IN ({in})",
        |r| r.get::<_, Vec<u8>>(1),
        |uid, h| out.push((uid, h)),
    )?;
    out.sort_unstable_by_key(|p| p.0);
    Ok(out)
}

/// Caches headers (a row already there is kept: a message's bytes never change).
/// Only for UIDs that are indexed in `messages` (the caller just read them).
pub fn put_headers(conn: &Connection, mailbox_id: i64, headers: &[(u32, &[u8])]) -> Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT OR IGNORE INTO message_headers (mailbox_id, uid, header)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM messages WHERE mailbox_id = ?1 AND uid = ?2)",
    )?;
    for (uid, h) in headers {
        st.execute(params![mailbox_id, *uid as i64, h])?;
    }
    Ok(())
}

/// Sets the flags of several messages under one fresh MODSEQ (one STORE command);
/// returns that MODSEQ (the current HIGHESTMODSEQ when nothing changed).
pub fn set_flags_many(conn: &Connection, mailbox_id: i64, flags: &[(u32, String)]) -> Result<u64> {
    if flags.is_empty() {
        let m: i64 = conn
            .prepare_cached("SELECT highestmodseq FROM mailboxes WHERE id = ?1")?
            .query_row([mailbox_id], |r| r.get(0))?;
        return Ok(m as u64);
    }
    let modseq = super::spool::next_modseq(conn, mailbox_id)?;
    let mut st = conn.prepare_cached(
        "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    for (uid, f) in flags {
        st.execute(params![mailbox_id, *uid as i64, f, modseq as i64])?;
    }
    Ok(modseq)
}

/// What a session's view of a mailbox holds per message, read in one pass:
/// `each(uid, size, internal_date, flags, modseq)` in UID order. The flags are
/// borrowed from SQLite's row buffer (no allocation per message).
pub fn for_each_meta(
    conn: &Connection,
    mailbox_id: i64,
    mut each: impl FnMut(u32, u64, i64, &str, u64),
) -> Result<()> {
    let mut st = conn.prepare_cached(
        "SELECT uid, size, internal_date, flags, modseq FROM messages WHERE mailbox_id = ?1 ORDER BY uid",
    )?;
    let mut rows = st.query([mailbox_id])?;
    while let Some(r) = rows.next()? {
        let flags = match r.get_ref(3)? {
            rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(""),
            _ => "",
        };
        each(
            r.get::<_, i64>(0)? as u32,
            r.get::<_, i64>(1)? as u64,
            r.get(2)?,
            flags,
            r.get::<_, i64>(4)? as u64,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::spool::{NewMessage, create_mailbox, expunge, insert_message};

    #[test]
    fn batch_reads_and_header_cache() {
        let c = crate::db::open_memory().unwrap();
        let mb = create_mailbox(&c, "bouke", "INBOX", None).unwrap();
        let names: Vec<String> = (0..600).map(|i| format!("f{i}")).collect();
        for n in &names {
            insert_message(
                &c,
                mb.id,
                &NewMessage {
                    file: Some(n),
                    offset: None,
                    length: None,
                    size: 10,
                    internal_date: 1,
                    flags: "\\Seen",
                    message_id: None,
                },
            )
            .unwrap();
        }
        // Dense and sparse sets give the same rows.
        let dense: Vec<u32> = (10..=20).collect();
        let rows = messages_in(&c, mb.id, &dense).unwrap();
        assert_eq!(rows.iter().map(|r| r.uid).collect::<Vec<_>>(), dense);
        let sparse: Vec<u32> = (1..=600).step_by(7).chain([9999]).collect();
        let rows = messages_in(&c, mb.id, &sparse).unwrap();
        assert_eq!(rows.len(), sparse.len() - 1);
        assert_eq!(rows[1].file.as_deref(), Some("f7"));

        put_headers(
            &c,
            mb.id,
            &[(3, b"A: b\r\n\r\n"), (5, b"C: d\r\n\r\n"), (9999, b"x")],
        )
        .unwrap();
        let h = headers_in(&c, mb.id, &[1, 3, 5, 9999]).unwrap();
        assert_eq!(
            h,
            vec![(3, b"A: b\r\n\r\n".to_vec()), (5, b"C: d\r\n\r\n".to_vec())]
        );
        // The cached header goes with its message.
        expunge(&c, mb.id, &[3]).unwrap();
        assert_eq!(headers_in(&c, mb.id, &[3, 5]).unwrap().len(), 1);

        let mut n = 0;
        for_each_meta(&c, mb.id, |_, _, _, f, _| {
            assert_eq!(f, "\\Seen");
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 599);
    }
}

/// `\Recent` (RFC 3501 §2.3.2, `mailboxes.recent_uid`): returns the UID up to which
/// recent was taken before, and with `take` moves it up to `upto`, so the messages
/// above the old value are recent for this caller alone. `None`: no such mailbox.
pub fn take_recent(
    conn: &Connection,
    user: &str,
    name: &str,
    upto: u32,
    take: bool,
) -> Result<Option<u32>> {
    let read = |conn: &Connection| -> Result<Option<(i64, u32)>> {
        Ok(conn
            .prepare_cached("SELECT id, recent_uid FROM mailboxes WHERE user = ?1 AND name = ?2")?
            .query_row(params![user, name], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u32))
            })
            .optional()?)
    };
    let Some((_, prev)) = read(conn)? else {
        return Ok(None);
    };
    if !take || upto <= prev {
        return Ok(Some(prev));
    }
    // Read and move in one write transaction: two sessions never both get a message.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<Option<u32>> {
        let Some((id, prev)) = read(conn)? else {
            return Ok(None);
        };
        if upto > prev {
            conn.prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")?
                .execute(params![id, upto as i64])?;
        }
        Ok(Some(prev))
    })();
    match r {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Messages of a mailbox not yet taken as recent by any session (STATUS RECENT).
pub fn recent_count(conn: &Connection, user: &str, name: &str) -> Result<u32> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
             WHERE b.user = ?1 AND b.name = ?2 AND m.uid > b.recent_uid",
        )?
        .query_row(params![user, name], |r| r.get(0))?;
    Ok(n as u32)
}
