//! SQL for imapd's SORT/THREAD key cache (`sort_keys`, migrations/0006_imapd_sort.sql): the header
//! facts RFC 5256 sorts and threads by, parsed once per message.

use super::{Connection, OptionalExtension, Result, params};

/// One message's cached keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeyRow {
    pub uid: u32,
    pub sent: Option<i64>,
    pub subject: String,
    pub is_reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    pub message_id: Option<String>,
    /// Space-separated message IDs.
    pub refs: String,
}

fn mailbox_id(conn: &Connection, user: &str, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT id FROM mailboxes WHERE user = ?1 AND name = ?2",
            [user, name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Every cached row of a mailbox (empty when it has none or does not exist).
pub fn load(conn: &Connection, user: &str, name: &str) -> Result<Vec<SortKeyRow>> {
    let Some(id) = mailbox_id(conn, user, name)? else {
        return Ok(Vec::new());
    };
    let mut st = conn.prepare_cached(
        "SELECT uid, sent, subject, is_reply, from_addr, to_addr, cc_addr, message_id, refs,
                display_from, display_to
         FROM sort_keys WHERE mailbox_id = ?1",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(SortKeyRow {
            uid: r.get::<_, i64>(0)? as u32,
            sent: r.get(1)?,
            subject: r.get(2)?,
            is_reply: r.get::<_, i64>(3)? != 0,
            from: r.get(4)?,
            to: r.get(5)?,
            cc: r.get(6)?,
            message_id: r.get(7)?,
            refs: r.get(8)?,
            display_from: r.get(9)?,
            display_to: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Caches rows for messages of a mailbox, in one transaction. Rows for UIDs whose
/// message is gone meanwhile are not stored (they could never be removed).
pub fn store(conn: &Connection, user: &str, name: &str, rows: &[SortKeyRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let Some(id) = mailbox_id(conn, user, name)? else {
        return Ok(());
    };
    let tx = conn.unchecked_transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO sort_keys
                 (mailbox_id, uid, sent, subject, is_reply, from_addr, to_addr, cc_addr, message_id, refs,
                  display_from, display_to)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
             WHERE EXISTS (SELECT 1 FROM messages WHERE mailbox_id = ?1 AND uid = ?2)",
        )?;
        for r in rows {
            st.execute(params![
                id,
                r.uid as i64,
                r.sent,
                r.subject,
                r.is_reply as i64,
                r.from,
                r.to,
                r.cc,
                r.message_id,
                r.refs,
                r.display_from,
                r.display_to
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::db::open(&dir.path().join("z.db")).unwrap();
        c.execute(
            "INSERT INTO mailboxes (id, user, name, uidvalidity) VALUES (1, 'bouke', 'INBOX', 1)",
            [],
        )
        .unwrap();
        for uid in [1, 2] {
            c.execute(
                "INSERT INTO messages (mailbox_id, uid, size, internal_date, modseq)
                 VALUES (1, ?1, 10, 0, 1)",
                [uid],
            )
            .unwrap();
        }
        let row = |uid| SortKeyRow {
            uid,
            sent: Some(5),
            subject: "PLANS".into(),
            is_reply: true,
            from: "AN".into(),
            message_id: Some(format!("m{uid}@x")),
            refs: "a@x b@x".into(),
            ..SortKeyRow::default()
        };
        // UID 3 has no message: not cached.
        store(&c, "bouke", "INBOX", &[row(1), row(2), row(3)]).unwrap();
        let mut got = load(&c, "bouke", "INBOX").unwrap();
        got.sort_by_key(|r| r.uid);
        assert_eq!(got, vec![row(1), row(2)]);
        // Expunging the message drops its keys.
        c.execute("DELETE FROM messages WHERE mailbox_id = 1 AND uid = 1", [])
            .unwrap();
        assert_eq!(load(&c, "bouke", "INBOX").unwrap(), vec![row(2)]);
        // The mailbox going takes the rest.
        c.execute("DELETE FROM mailboxes WHERE id = 1", []).unwrap();
        assert!(load(&c, "bouke", "INBOX").unwrap().is_empty());
        store(&c, "bouke", "Nope", &[row(1)]).unwrap();
    }
}
