//! SQL for LAN users' stored password hashes.

use super::{Connection, OptionalExtension, Result, now, params};

/// Stores (or replaces) a user's password hash.
pub fn set_password(conn: &Connection, name: &str, hash: Option<&str>) -> Result<()> {
    conn.execute(
        "INSERT INTO users (name, password_hash, created) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
        params![name, hash, now()],
    )?;
    Ok(())
}

pub fn password_hash(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT password_hash FROM users WHERE name = ?1",
            [name],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

pub fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

/// (name, has_password, created) for every user in the database.
pub fn list(conn: &Connection) -> Result<Vec<(String, bool, i64)>> {
    let mut st =
        conn.prepare("SELECT name, password_hash IS NOT NULL, created FROM users ORDER BY name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn delete(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
}

/// Forgets a user's mailboxes, message index and delivery keys (`user del --purge`).
pub fn purge_mail_index(conn: &Connection, name: &str) -> Result<()> {
    conn.execute("DELETE FROM mailboxes WHERE user = ?1", [name])?;
    conn.execute("DELETE FROM delivery_keys WHERE user = ?1", [name])?;
    Ok(())
}
