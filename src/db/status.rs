//! SQL for the status report: the event log and mailbox counts (fetch accounts' rows
//! come from `db::fetch::statuses`, the queue's from `db::queue`).

use super::{Connection, Result};

/// One event-log row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub time: i64,
    pub kind: String,
    pub subject: String,
    pub text: String,
}

/// The newest `limit` events, newest first.
pub fn recent_events(conn: &Connection, limit: usize) -> Result<Vec<EventRow>> {
    let mut st =
        conn.prepare("SELECT time, kind, subject, text FROM events ORDER BY id DESC LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        Ok(EventRow {
            time: r.get(0)?,
            kind: r.get(1)?,
            subject: r.get(2)?,
            text: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Per user: (user, mailbox, messages, unseen) for every mailbox in the index.
pub fn mailbox_counts(conn: &Connection) -> Result<Vec<(String, String, i64, i64)>> {
    let mut st = conn.prepare(
        "SELECT b.user, b.name, COUNT(m.uid),
                COALESCE(SUM(CASE WHEN m.uid IS NOT NULL AND instr(m.flags, '\\Seen') = 0 THEN 1 ELSE 0 END), 0)
         FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id
         GROUP BY b.id ORDER BY b.user, b.name",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}
