//! SQL for the fetcher's state: which ISP messages were already fetched and delivered
//! (`fetch_seen`), each IMAP folder's UIDVALIDITY and last UID (`fetch_state`), and the
//! outcome of each account's last poll (`fetch_status`, read by `zolder status`), and
//! each OAuth2 account's current refresh and access token (`fetch_oauth2`).
//!
//! Owned by `fetch/`; `config::fetchmailrc` may write `fetch_seen` rows when it imports a
//! `.fetchids` file. POP3 rows use folder `''` and the UIDL as `uid`; IMAP rows use
//! `uid = "<uidvalidity>:<uid>"`, plus one de-duplication row per message whose `uid` is
//! its Message-ID (or `hdr:<sha256 of the header>`), used after a UIDVALIDITY change.

use std::collections::HashSet;

use super::{Connection, OptionalExtension, Result, params};

/// The folder name POP3 rows use (POP3 has a single mailbox).
pub const POP3_FOLDER: &str = "";

/// Every `uid` recorded for (account, folder).
pub fn seen_set(conn: &Connection, account: &str, folder: &str) -> Result<HashSet<String>> {
    let mut st =
        conn.prepare_cached("SELECT uid FROM fetch_seen WHERE account = ?1 AND folder = ?2")?;
    let rows = st.query_map(params![account, folder], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// `uid`s of (account, folder) recorded before `before` (unix seconds): candidates for
/// `delete_after_days`.
pub fn seen_before(
    conn: &Connection,
    account: &str,
    folder: &str,
    before: i64,
) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(
        "SELECT uid FROM fetch_seen WHERE account = ?1 AND folder = ?2 AND seen_at < ?3",
    )?;
    let rows = st.query_map(params![account, folder, before], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Which of these `uids` are recorded (one indexed look-up each: for a few candidates
/// out of a large folder, instead of loading [`seen_set`]).
pub fn seen_among(
    conn: &Connection,
    account: &str,
    folder: &str,
    uids: &[String],
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for u in uids {
        if is_seen(conn, account, folder, u)? {
            out.insert(u.clone());
        }
    }
    Ok(out)
}

/// Is this one `uid` recorded?
pub fn is_seen(conn: &Connection, account: &str, folder: &str, uid: &str) -> Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT 1 FROM fetch_seen WHERE account = ?1 AND folder = ?2 AND uid = ?3",
    )?;
    Ok(st
        .query_row(params![account, folder, uid], |_| Ok(()))
        .optional()?
        .is_some())
}

/// One durable step of a poll, in one transaction: record `seen` uids, forget `forget`
/// uids, and (IMAP) move the folder's state to (uidvalidity, last_uid).
pub fn commit_step(
    conn: &mut Connection,
    account: &str,
    folder: &str,
    seen: &[String],
    forget: &[String],
    state: Option<(u32, u32)>,
    now: i64,
) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO fetch_seen (account, folder, uid, seen_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?;
        for u in seen {
            ins.execute(params![account, folder, u, now])?;
        }
        let mut del = tx.prepare_cached(
            "DELETE FROM fetch_seen WHERE account = ?1 AND folder = ?2 AND uid = ?3",
        )?;
        for u in forget {
            del.execute(params![account, folder, u])?;
        }
        if let Some((validity, last)) = state {
            tx.execute(
                "INSERT INTO fetch_state (account, folder, uidvalidity, last_uid) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,
                     last_uid = MAX(CASE WHEN fetch_state.uidvalidity = excluded.uidvalidity
                                         THEN fetch_state.last_uid ELSE 0 END, excluded.last_uid)",
                params![account, folder, validity, last],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// An IMAP folder's (uidvalidity, last_uid), if it was ever polled.
pub fn state(conn: &Connection, account: &str, folder: &str) -> Result<Option<(u32, u32)>> {
    Ok(conn
        .query_row(
            "SELECT uidvalidity, last_uid FROM fetch_state WHERE account = ?1 AND folder = ?2",
            params![account, folder],
            |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)),
        )
        .optional()?)
}

/// One row of `fetch_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub account: String,
    pub last_poll: Option<i64>,
    pub result: Option<String>,
    pub fetched: i64,
    pub next_poll: Option<i64>,
    pub last_error: Option<String>,
}

/// Runs `f` with `synchronous = NORMAL`, then puts the connection's setting back.
/// For `fetch_status` rows: they only inform `zolder status`, so their commit waits for
/// the next fsync (the next seen-state commit, or the checkpoint when the connection
/// closes) instead of paying its own — a re-poll with nothing new otherwise spends
/// more on two status fsyncs than on the poll. Seen state is never written this way.
fn unsynced<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let before: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if before <= 1 {
        return f(conn);
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let r = f(conn);
    conn.pragma_update(None, "synchronous", before)?;
    r
}

/// Marks an account's poll as running (since now). The last result and its reason
/// stay: a poll that cannot record its end (disk full) leaves them visible.
pub fn set_running(conn: &Connection, account: &str) -> Result<()> {
    unsynced(conn, |conn| {
        conn.execute(
            "INSERT INTO fetch_status (account, running_since) VALUES (?1, ?2)
             ON CONFLICT(account) DO UPDATE SET running_since = excluded.running_since",
            params![account, super::now()],
        )?;
        Ok(())
    })
}

/// Accounts whose poll is marked running: (account, since).
pub fn running(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut st = conn.prepare(
        "SELECT account, running_since FROM fetch_status WHERE running_since IS NOT NULL",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Records the outcome of a poll (`last_error` is kept from earlier polls when `None`
/// and the result is "ok", so the admin still sees what went wrong last).
pub fn set_status(conn: &Connection, s: &Status) -> Result<()> {
    unsynced(conn, |conn| set_status_synced(conn, s))
}

fn set_status_synced(conn: &Connection, s: &Status) -> Result<()> {
    conn.execute(
        "INSERT INTO fetch_status (account, last_poll, result, fetched, next_poll, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(account) DO UPDATE SET last_poll = excluded.last_poll,
             result = excluded.result, fetched = excluded.fetched,
             next_poll = excluded.next_poll, running_since = NULL,
             last_error = COALESCE(excluded.last_error, fetch_status.last_error)",
        params![
            s.account,
            s.last_poll,
            s.result,
            s.fetched,
            s.next_poll,
            s.last_error
        ],
    )?;
    Ok(())
}

/// Only the next poll time (the scheduler sets it when it plans).
pub fn set_next_poll(conn: &Connection, account: &str, next: Option<i64>) -> Result<()> {
    unsynced(conn, |conn| set_next_poll_synced(conn, account, next))
}

fn set_next_poll_synced(conn: &Connection, account: &str, next: Option<i64>) -> Result<()> {
    conn.execute(
        "INSERT INTO fetch_status (account, next_poll) VALUES (?1, ?2)
         ON CONFLICT(account) DO UPDATE SET next_poll = excluded.next_poll",
        params![account, next],
    )?;
    Ok(())
}

/// Every account's status row, by name.
pub fn statuses(conn: &Connection) -> Result<Vec<Status>> {
    let mut st = conn.prepare(
        "SELECT account, last_poll, result, fetched, next_poll, last_error
         FROM fetch_status ORDER BY account",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Status {
            account: r.get(0)?,
            last_poll: r.get(1)?,
            result: r.get(2)?,
            fetched: r.get(3)?,
            next_poll: r.get(4)?,
            last_error: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// An account's stored OAuth2 tokens (`fetch_oauth2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Tokens {
    /// SHA-256 (hex) of the configured refresh token the stored one descends from.
    pub origin: String,
    pub refresh_token: String,
    pub access_token: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

/// The stored tokens of `account`, if any.
pub fn oauth2_tokens(conn: &Connection, account: &str) -> Result<Option<OAuth2Tokens>> {
    Ok(conn
        .query_row(
            "SELECT origin, refresh_token, access_token, expires_at FROM fetch_oauth2
             WHERE account = ?1",
            params![account],
            |r| {
                Ok(OAuth2Tokens {
                    origin: r.get(0)?,
                    refresh_token: r.get(1)?,
                    access_token: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Replaces the stored tokens of `account` (one commit: a rotated refresh token must
/// survive a crash right after the endpoint handed it out).
pub fn set_oauth2_tokens(
    conn: &Connection,
    account: &str,
    t: &OAuth2Tokens,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO fetch_oauth2 (account, origin, refresh_token, access_token, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(account) DO UPDATE SET origin = excluded.origin,
             refresh_token = excluded.refresh_token, access_token = excluded.access_token,
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        params![
            account,
            t.origin,
            t.refresh_token,
            t.access_token,
            t.expires_at,
            now
        ],
    )?;
    Ok(())
}

/// Forgets the stored access token of `account` (the server refused it); the refresh
/// token stays.
pub fn clear_oauth2_access(conn: &Connection, account: &str) -> Result<()> {
    conn.execute(
        "UPDATE fetch_oauth2 SET access_token = NULL, expires_at = NULL WHERE account = ?1",
        params![account],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status rows are written without their own fsync, and the connection goes back
    /// to `synchronous = FULL` for the seen state written after them.
    #[test]
    fn status_writes_leave_the_connection_fully_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::db::open(&dir.path().join("z.db")).unwrap();
        let sync = |c: &Connection| -> i64 {
            c.pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sync(&c), 2);
        set_running(&c, "a").unwrap();
        set_next_poll(&c, "a", Some(5)).unwrap();
        set_status(
            &c,
            &Status {
                account: "a".into(),
                result: Some("ok".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(sync(&c), 2, "back to FULL");
        commit_step(&mut c, "a", "", &["u1".into()], &[], None, 1).unwrap();
        assert!(
            seen_among(&c, "a", "", &["u1".into(), "u2".into()])
                .unwrap()
                .contains("u1")
        );
        assert_eq!(seen_among(&c, "a", "", &["u2".into()]).unwrap().len(), 0);
        // A connection already at NORMAL stays there.
        c.pragma_update(None, "synchronous", "NORMAL").unwrap();
        set_running(&c, "a").unwrap();
        assert_eq!(sync(&c), 1);
    }

    #[test]
    fn seen_state_and_status_roundtrip() {
        let mut c = crate::db::open_memory().unwrap();
        commit_step(&mut c, "a", "", &["u1".into(), "u2".into()], &[], None, 100).unwrap();
        commit_step(&mut c, "a", "", &["u3".into()], &["u1".into()], None, 200).unwrap();
        let s = seen_set(&c, "a", "").unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.contains("u2") && s.contains("u3"));
        assert_eq!(
            seen_before(&c, "a", "", 150).unwrap(),
            vec!["u2".to_string()]
        );
        assert!(is_seen(&c, "a", "", "u3").unwrap());
        assert!(!is_seen(&c, "b", "", "u3").unwrap());

        commit_step(&mut c, "a", "INBOX", &[], &[], Some((7, 10)), 1).unwrap();
        // A lower last_uid under the same UIDVALIDITY never moves the state back.
        commit_step(&mut c, "a", "INBOX", &[], &[], Some((7, 5)), 1).unwrap();
        assert_eq!(state(&c, "a", "INBOX").unwrap(), Some((7, 10)));
        // A new UIDVALIDITY starts over.
        commit_step(&mut c, "a", "INBOX", &[], &[], Some((8, 3)), 1).unwrap();
        assert_eq!(state(&c, "a", "INBOX").unwrap(), Some((8, 3)));

        set_next_poll(&c, "a", Some(50)).unwrap();
        set_status(
            &c,
            &Status {
                account: "a".into(),
                last_poll: Some(10),
                result: Some("tempfail".into()),
                fetched: 0,
                next_poll: Some(70),
                last_error: Some("connection refused".into()),
            },
        )
        .unwrap();
        set_status(
            &c,
            &Status {
                account: "a".into(),
                last_poll: Some(80),
                result: Some("ok".into()),
                fetched: 3,
                next_poll: Some(90),
                last_error: None,
            },
        )
        .unwrap();
        let all = statuses(&c).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].fetched, 3);
        assert_eq!(all[0].last_error.as_deref(), Some("connection refused"));
    }
}
