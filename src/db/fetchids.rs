//! SQL for importing fetchmail's seen-UID state (`.fetchids`) into `fetch_seen`.
//!
//! Owns only the import path: the fetch module owns the day-to-day reads and writes of
//! `fetch_seen`/`fetch_state`/`fetch_status`. An import never overwrites what zolder
//! itself recorded (`INSERT OR IGNORE`), so running it twice, or after zolder has already
//! polled, changes nothing that matters.

use super::{Connection, Result, params};

/// Marks `uids` as already seen for `account` / `folder` (`""` for POP3), all in one
/// transaction; returns how many were new to the table.
pub fn seed_seen<'a>(
    conn: &mut Connection,
    account: &str,
    folder: &str,
    uids: impl IntoIterator<Item = &'a str>,
    seen_at: i64,
) -> Result<usize> {
    let tx = conn.transaction()?;
    let mut added = 0;
    {
        let mut st = tx.prepare(
            "INSERT OR IGNORE INTO fetch_seen (account, folder, uid, seen_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for uid in uids {
            added += st.execute(params![account, folder, uid, seen_at])?;
        }
    }
    tx.commit()?;
    Ok(added)
}

/// As [`seed_seen`], but only for an account zolder has never recorded anything for:
/// the live fetchmailrc path seeds from `.fetchids` once, at the switch, and never
/// again (a later, stale `.fetchids` must not override what zolder knows). Returns how
/// many UIDs were stored (0 when the account already had state).
pub fn seed_seen_if_new<'a>(
    conn: &mut Connection,
    account: &str,
    folder: &str,
    uids: impl IntoIterator<Item = &'a str>,
    seen_at: i64,
) -> Result<usize> {
    let known: i64 = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM fetch_seen WHERE account = ?1)
             OR EXISTS(SELECT 1 FROM fetch_state WHERE account = ?1)
             OR EXISTS(SELECT 1 FROM fetch_status WHERE account = ?1)",
        params![account],
        |r| r.get(0),
    )?;
    if known != 0 {
        return Ok(0);
    }
    seed_seen(conn, account, folder, uids, seen_at)
}

/// How many seen UIDs `account` has in `folder`.
pub fn count_seen(conn: &Connection, account: &str, folder: &str) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM fetch_seen WHERE account = ?1 AND folder = ?2",
        params![account, folder],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_idempotent_and_counts_new_rows() {
        let mut c = crate::db::open_memory().unwrap();
        let n = seed_seen(&mut c, "gmail-bouke", "", ["a1", "b2", "a1"], 100).unwrap();
        assert_eq!(n, 2);
        let n = seed_seen(&mut c, "gmail-bouke", "", ["b2", "c3"], 200).unwrap();
        assert_eq!(n, 1);
        assert_eq!(count_seen(&c, "gmail-bouke", "").unwrap(), 3);
        assert_eq!(count_seen(&c, "other", "").unwrap(), 0);
        // An existing row keeps its first seen_at.
        let t: i64 = c
            .query_row("SELECT seen_at FROM fetch_seen WHERE uid = 'b2'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(t, 100);
    }

    #[test]
    fn seeding_once_only_for_unknown_accounts() {
        let mut c = crate::db::open_memory().unwrap();
        assert_eq!(seed_seen_if_new(&mut c, "a", "", ["x", "y"], 1).unwrap(), 2);
        assert_eq!(seed_seen_if_new(&mut c, "a", "", ["z"], 2).unwrap(), 0);
        c.execute(
            "INSERT INTO fetch_status (account, last_poll, result, fetched) VALUES ('b', 1, 'ok', 0)",
            [],
        )
        .unwrap();
        assert_eq!(seed_seen_if_new(&mut c, "b", "", ["x"], 2).unwrap(), 0);
        assert_eq!(count_seen(&c, "a", "").unwrap(), 2);
    }

    #[test]
    fn fetch_tables_have_the_agreed_shape() {
        let c = crate::db::open_memory().unwrap();
        for (table, cols) in [
            ("fetch_seen", "account,folder,uid,seen_at"),
            ("fetch_state", "account,folder,uidvalidity,last_uid"),
            (
                "fetch_status",
                "account,last_poll,result,fetched,next_poll,last_error,running_since",
            ),
        ] {
            let mut st = c
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap();
            let names: Vec<String> = st
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            assert_eq!(names.join(","), cols, "{table}");
        }
    }
}
