//! SQL for imapd's URLAUTH mailbox access keys (`urlauth_keys`,
//! migrations/0015_imapext.sql): one random key per (user, mailbox).

use super::{Connection, OptionalExtension, Result, params};

/// The key of a user's mailbox, if one was made.
pub fn key(conn: &Connection, user: &str, mailbox: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT key FROM urlauth_keys WHERE user = ?1 AND mailbox = ?2",
            [user, mailbox],
            |r| r.get(0),
        )
        .optional()?)
}

/// The key of a user's mailbox, storing `fresh` as it when there is none yet.
pub fn key_or_insert(
    conn: &Connection,
    user: &str,
    mailbox: &str,
    fresh: &[u8],
) -> Result<Vec<u8>> {
    conn.execute(
        "INSERT OR IGNORE INTO urlauth_keys (user, mailbox, key, created) VALUES (?1, ?2, ?3, ?4)",
        params![user, mailbox, fresh, super::now()],
    )?;
    Ok(key(conn, user, mailbox)?.unwrap_or_else(|| fresh.to_vec()))
}

/// RESETKEY: drops the key of one mailbox, or of all the user's mailboxes.
pub fn reset(conn: &Connection, user: &str, mailbox: Option<&str>) -> Result<usize> {
    Ok(match mailbox {
        Some(m) => conn.execute(
            "DELETE FROM urlauth_keys WHERE user = ?1 AND mailbox = ?2",
            [user, m],
        )?,
        None => conn.execute("DELETE FROM urlauth_keys WHERE user = ?1", [user])?,
    })
}
