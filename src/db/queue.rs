//! SQL for the outgoing queue (`migrations/0004_queue.sql`): one row per message, one
//! per recipient. Owned by `crate::queue`; nothing else writes these tables.
//!
//! The queue decides states and times; this file only stores them. Acceptance inserts
//! happen in one transaction per group-commit batch ([`insert_batch`]); the runner's
//! per-recipient bookkeeping goes through [`set_outcome`].

use super::{Connection, OptionalExtension, Result, params};

/// A message row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: String,
    /// `None` = the null sender `<>`.
    pub sender: Option<String>,
    pub arrival: i64,
    pub size: i64,
    pub source: String,
    pub message_id: Option<String>,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub auth_user: Option<String>,
    pub warned: bool,
}

/// A recipient row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptRow {
    pub rcpt: String,
    pub local: bool,
    pub state: String,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_attempt: Option<i64>,
    pub last_error: Option<String>,
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

impl RcptRow {
    /// A fresh recipient, due at `now`.
    pub fn new(rcpt: &str, local: bool, now: i64) -> RcptRow {
        RcptRow {
            rcpt: rcpt.to_string(),
            local,
            state: "queued".into(),
            attempts: 0,
            next_attempt: now,
            last_attempt: None,
            last_error: None,
            notify: None,
            orcpt: None,
        }
    }
    pub fn is_pending(&self) -> bool {
        self.state == "queued" || self.state == "inflight"
    }
}

const MSG_COLS: &str =
    "id, sender, arrival, size, source, message_id, envid, ret, auth_user, warned";
const RCPT_COLS: &str =
    "rcpt, local, state, attempts, next_attempt, last_attempt, last_error, notify, orcpt";

fn msg_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    let sender: String = r.get(1)?;
    Ok(MessageRow {
        id: r.get(0)?,
        sender: if sender.is_empty() {
            None
        } else {
            Some(sender)
        },
        arrival: r.get(2)?,
        size: r.get(3)?,
        source: r.get(4)?,
        message_id: r.get(5)?,
        envid: r.get(6)?,
        ret: r.get(7)?,
        auth_user: r.get(8)?,
        warned: r.get::<_, i64>(9)? != 0,
    })
}

fn rcpt_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RcptRow> {
    Ok(RcptRow {
        rcpt: r.get(0)?,
        local: r.get::<_, i64>(1)? != 0,
        state: r.get(2)?,
        attempts: r.get(3)?,
        next_attempt: r.get(4)?,
        last_attempt: r.get(5)?,
        last_error: r.get(6)?,
        notify: r.get(7)?,
        orcpt: r.get(8)?,
    })
}

/// Inserts several messages with their recipients in ONE transaction (group commit).
/// Returns once the transaction is committed (durable under `synchronous = FULL`).
pub fn insert_batch(conn: &mut Connection, batch: &[(MessageRow, Vec<RcptRow>)]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut m = tx.prepare_cached(
            "INSERT INTO queue_messages (id, sender, arrival, size, source, message_id, envid, ret, auth_user, warned)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut r = tx.prepare_cached(
            "INSERT INTO queue_recipients (message_id, rcpt, local, state, attempts, next_attempt, last_attempt, last_error, notify, orcpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(message_id, rcpt) DO NOTHING",
        )?;
        for (msg, rcpts) in batch {
            m.execute(params![
                msg.id,
                msg.sender.clone().unwrap_or_default(),
                msg.arrival,
                msg.size,
                msg.source,
                msg.message_id,
                msg.envid,
                msg.ret,
                msg.auth_user,
                msg.warned as i64
            ])?;
            for rc in rcpts {
                r.execute(params![
                    msg.id,
                    rc.rcpt,
                    rc.local as i64,
                    rc.state,
                    rc.attempts,
                    rc.next_attempt,
                    rc.last_attempt,
                    rc.last_error,
                    rc.notify,
                    rc.orcpt
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Puts recipients a crashed run left `inflight` back to `queued` (at-least-once:
/// they are sent again). Returns how many.
pub fn reset_inflight(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE queue_recipients SET state = 'queued' WHERE state = 'inflight'",
        [],
    )?)
}

/// Ids of messages with a pending recipient of the given kind, due at `now` (or any
/// time when `ignore_backoff`), oldest first, at most `limit`.
pub fn due_messages(
    conn: &Connection,
    local: bool,
    now: i64,
    ignore_backoff: bool,
    limit: usize,
) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT r.message_id FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id
         WHERE r.state = 'queued' AND r.local = ?1 AND (?2 OR r.next_attempt <= ?3)
         ORDER BY m.arrival, m.id LIMIT ?4",
    )?;
    let rows = st.query_map(
        params![local as i64, ignore_backoff, now, limit as i64],
        |r| r.get(0),
    )?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// The earliest `next_attempt` of any queued recipient of the given kind.
pub fn next_due(conn: &Connection, local: bool) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt) FROM queue_recipients WHERE state = 'queued' AND local = ?1",
        [local as i64],
        |r| r.get(0),
    )?)
}

pub fn message(conn: &Connection, id: &str) -> Result<Option<MessageRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {MSG_COLS} FROM queue_messages WHERE id = ?1"),
            [id],
            msg_from_row,
        )
        .optional()?)
}

pub fn recipients(conn: &Connection, id: &str) -> Result<Vec<RcptRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {RCPT_COLS} FROM queue_recipients WHERE message_id = ?1 ORDER BY rcpt"
    ))?;
    let rows = st.query_map([id], rcpt_from_row)?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Every message (oldest first) with its recipients: `zolder queue list`, `mailq`.
pub fn list(conn: &Connection) -> Result<Vec<(MessageRow, Vec<RcptRow>)>> {
    let mut st = conn.prepare(&format!(
        "SELECT {MSG_COLS} FROM queue_messages ORDER BY arrival, id"
    ))?;
    let msgs: Vec<MessageRow> = st
        .query_map([], msg_from_row)?
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let r = recipients(conn, &m.id)?;
        out.push((m, r));
    }
    Ok(out)
}

/// Marks recipients as handed to a transport (before DATA / before local delivery).
///
/// The marker needs no fsync of its own: `reset_inflight` turns every `inflight` row
/// back into `queued` at start-up, so after a power loss "marked" and "not marked"
/// recover to the same state. The runner's connection commits it (like the outcomes)
/// with `synchronous = NORMAL`, see [`set_synchronous`].
pub fn mark_inflight(conn: &mut Connection, id: &str, rcpts: &[String]) -> Result<()> {
    let tx = conn.transaction()?;
    mark_inflight_in(&tx, id, rcpts)?;
    tx.commit()?;
    Ok(())
}

fn mark_inflight_in(tx: &rusqlite::Transaction<'_>, id: &str, rcpts: &[String]) -> Result<()> {
    let mut st = tx.prepare_cached(
        "UPDATE queue_recipients SET state = 'inflight' WHERE message_id = ?1 AND rcpt = ?2 AND state = 'queued'",
    )?;
    for r in rcpts {
        st.execute(params![id, r])?;
    }
    Ok(())
}

/// One recipient's new bookkeeping after an attempt.
#[derive(Debug, Clone)]
pub struct OutcomeUpdate {
    pub rcpt: String,
    /// 'queued' (retry at `next_attempt`), 'sent' or 'failed'.
    pub state: &'static str,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// Records the outcomes of one attempt at message `id` in one transaction, together
/// with the in-flight markers of messages handed to the transport since the last
/// commit (`inflight`: message id and its recipients) — one commit per message on
/// the relay's pipelined path.
pub fn set_outcomes(
    conn: &mut Connection,
    id: &str,
    now: i64,
    ups: &[OutcomeUpdate],
    inflight: &[(String, Vec<String>)],
) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "UPDATE queue_recipients SET state = ?3, attempts = attempts + 1, next_attempt = ?4,
                 last_attempt = ?5, last_error = COALESCE(?6, last_error)
             WHERE message_id = ?1 AND rcpt = ?2",
        )?;
        for u in ups {
            st.execute(params![
                id,
                u.rcpt,
                u.state,
                u.next_attempt,
                now,
                u.last_error
            ])?;
        }
    }
    for (mid, rcpts) in inflight {
        mark_inflight_in(&tx, mid, rcpts)?;
    }
    tx.commit()?;
    Ok(())
}

/// Notes `reason` as the last error of every queued remote recipient that does not
/// already carry it, without counting an attempt (no [smarthost]: nothing was tried).
/// Returns how many remote recipients are waiting.
pub fn note_remote_waiting(conn: &Connection, reason: &str) -> Result<usize> {
    conn.execute(
        "UPDATE queue_recipients SET last_error = ?1
         WHERE state = 'queued' AND local = 0 AND (last_error IS NULL OR last_error != ?1)",
        [reason],
    )?;
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM queue_recipients WHERE state = 'queued' AND local = 0",
        [],
        |r| r.get::<_, i64>(0),
    )? as usize)
}

/// Puts a recipient back without counting an attempt (a run stopped before trying it).
pub fn requeue(conn: &Connection, id: &str, rcpt: &str) -> Result<()> {
    conn.execute(
        "UPDATE queue_recipients SET state = 'queued' WHERE message_id = ?1 AND rcpt = ?2 AND state = 'inflight'",
        params![id, rcpt],
    )?;
    Ok(())
}

/// Ids of messages whose every recipient is final ('sent' or 'failed').
pub fn finished_messages(conn: &Connection, limit: usize) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT m.id FROM queue_messages m WHERE NOT EXISTS
           (SELECT 1 FROM queue_recipients r WHERE r.message_id = m.id AND r.state IN ('queued', 'inflight'))
         LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Messages older than `before` that were not yet warned about and still have a
/// recipient waiting (delay warnings).
pub fn unwarned_older_than(conn: &Connection, before: i64) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT m.id FROM queue_messages m WHERE m.warned = 0 AND m.arrival <= ?1 AND EXISTS
           (SELECT 1 FROM queue_recipients r WHERE r.message_id = m.id AND r.state = 'queued' AND r.attempts > 0)",
    )?;
    let rows = st.query_map([before], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn mark_warned(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("UPDATE queue_messages SET warned = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Deletes messages (their recipients go by cascade) in one transaction.
pub fn delete_messages(conn: &mut Connection, ids: &[String]) -> Result<usize> {
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut d1 = tx.prepare_cached("DELETE FROM queue_recipients WHERE message_id = ?1")?;
        let mut d2 = tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1")?;
        for id in ids {
            d1.execute([id])?;
            n += d2.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Makes every waiting recipient of `id` (or of every message, `None`) due now.
pub fn retry_now(conn: &Connection, id: Option<&str>, now: i64) -> Result<usize> {
    Ok(match id {
        Some(id) => conn.execute(
            "UPDATE queue_recipients SET next_attempt = ?2 WHERE message_id = ?1 AND state = 'queued'",
            params![id, now],
        )?,
        None => conn.execute(
            "UPDATE queue_recipients SET next_attempt = ?1 WHERE state = 'queued'",
            params![now],
        )?,
    })
}

/// Every message id in the queue (start-up consistency check against the files).
pub fn all_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare("SELECT id FROM queue_messages")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Counts per state, for `zolder status`: (queued, inflight, failed_pending_removal).
pub fn counts(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT COUNT(DISTINCT message_id), COUNT(*) FROM queue_recipients WHERE state IN ('queued','inflight')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Sets how this connection syncs commits. The runner's per-recipient bookkeeping
/// (in-flight markers, outcomes) uses NORMAL; the rule:
/// * In WAL mode a NORMAL commit has reached the OS when it returns, so it survives a
///   process crash (SIGKILL): after one, the only message sent again is the one past
///   its final dot whose outcome was not yet committed (the relay records each
///   outcome before the next message's data goes out).
/// * A power loss may lose the latest NORMAL commits: those recipients are sent again
///   (duplicates, never loss), because a queue file is removed only after a FULL
///   commit, which also makes every earlier commit in the WAL durable. The relay pass
///   makes such a commit at least every few seconds, bounding the repeat.
/// * Acceptance (the queue's committer) and removal always run under FULL.
pub fn set_synchronous(conn: &Connection, full: bool) -> Result<()> {
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, arrival: i64) -> MessageRow {
        MessageRow {
            id: id.into(),
            sender: Some("bouke@zolder.thuis".into()),
            arrival,
            size: 10,
            source: "test".into(),
            message_id: None,
            envid: None,
            ret: None,
            auth_user: None,
            warned: false,
        }
    }

    #[test]
    fn insert_due_outcome_finish() {
        let mut c = crate::db::open_memory().unwrap();
        insert_batch(
            &mut c,
            &[
                (
                    msg("A", 10),
                    vec![RcptRow::new("x@remote.example", false, 10)],
                ),
                (
                    msg("B", 20),
                    vec![
                        RcptRow::new("bouke", true, 20),
                        RcptRow::new("y@remote.example", false, 500),
                    ],
                ),
            ],
        )
        .unwrap();
        assert_eq!(due_messages(&c, false, 100, false, 10).unwrap(), vec!["A"]);
        assert_eq!(
            due_messages(&c, false, 100, true, 10).unwrap(),
            vec!["A", "B"]
        );
        assert_eq!(due_messages(&c, true, 100, false, 10).unwrap(), vec!["B"]);
        assert_eq!(next_due(&c, false).unwrap(), Some(10));
        mark_inflight(&mut c, "A", &["x@remote.example".into()]).unwrap();
        assert_eq!(reset_inflight(&c).unwrap(), 1);
        set_outcomes(
            &mut c,
            "A",
            100,
            &[OutcomeUpdate {
                rcpt: "x@remote.example".into(),
                state: "sent",
                next_attempt: 100,
                last_error: None,
            }],
            &[("B".into(), vec!["y@remote.example".into()])],
        )
        .unwrap();
        assert_eq!(finished_messages(&c, 10).unwrap(), vec!["A"]);
        assert_eq!(recipients(&c, "B").unwrap()[1].state, "inflight");
        assert_eq!(reset_inflight(&c).unwrap(), 1);
        let r = recipients(&c, "A").unwrap();
        assert_eq!(r[0].attempts, 1);
        assert_eq!(delete_messages(&mut c, &["A".into()]).unwrap(), 1);
        assert_eq!(list(&c).unwrap().len(), 1);
        assert_eq!(retry_now(&c, Some("B"), 5).unwrap(), 2);
    }
}
