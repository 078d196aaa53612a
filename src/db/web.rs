//! SQL of the web server (migration 0010): webmail sessions, its secrets, the
//! settings page's saved form, and the per-hour event counters the admin charts read.

use super::{Connection, OptionalExtension, Result, params};

/// One signed-in browser, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user: String,
    pub csrf: String,
    pub created: i64,
    pub last_seen: i64,
}

/// Stores a new session under the hash of its cookie.
pub fn create_session(
    c: &Connection,
    token_hash: &str,
    user: &str,
    csrf: &str,
    now: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO web_sessions (token_hash, user, csrf, created, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![token_hash, user, csrf, now],
    )?;
    Ok(())
}

/// The session with this cookie hash if it was used after `idle_since`; marks it used
/// at `now` (written at most once a minute, so page views stay read-only mostly).
pub fn touch_session(
    c: &Connection,
    token_hash: &str,
    idle_since: i64,
    now: i64,
) -> Result<Option<SessionRow>> {
    let row = c
        .query_row(
            "SELECT user, csrf, created, last_seen FROM web_sessions WHERE token_hash = ?1",
            params![token_hash],
            |r| {
                Ok(SessionRow {
                    user: r.get(0)?,
                    csrf: r.get(1)?,
                    created: r.get(2)?,
                    last_seen: r.get(3)?,
                })
            },
        )
        .optional()?;
    match row {
        Some(r) if r.last_seen > idle_since => {
            if now - r.last_seen >= 60 {
                c.execute(
                    "UPDATE web_sessions SET last_seen = ?2 WHERE token_hash = ?1",
                    params![token_hash, now],
                )?;
            }
            Ok(Some(r))
        }
        Some(_) => {
            delete_session(c, token_hash)?;
            Ok(None)
        }
        None => Ok(None),
    }
}

pub fn delete_session(c: &Connection, token_hash: &str) -> Result<()> {
    c.execute(
        "DELETE FROM web_sessions WHERE token_hash = ?1",
        params![token_hash],
    )?;
    Ok(())
}

/// Deletes sessions idle since before `idle_since`; returns how many.
pub fn expire_sessions(c: &Connection, idle_since: i64) -> Result<usize> {
    Ok(c.execute(
        "DELETE FROM web_sessions WHERE last_seen <= ?1",
        params![idle_since],
    )?)
}

/// The secret `name`, created with `fresh()` on first use.
pub fn secret(c: &Connection, name: &str, fresh: impl FnOnce() -> String) -> Result<String> {
    if let Some(v) = c
        .query_row(
            "SELECT value FROM web_secrets WHERE name = ?1",
            params![name],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    {
        return Ok(v);
    }
    let v = fresh();
    // Two processes racing: the first one's value wins, both use it.
    c.execute(
        "INSERT OR IGNORE INTO web_secrets (name, value) VALUES (?1, ?2)",
        params![name, v],
    )?;
    Ok(c.query_row(
        "SELECT value FROM web_secrets WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )?)
}

/// The settings page's saved form of `user` (JSON), if any.
pub fn settings(c: &Connection, user: &str) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT json FROM web_settings WHERE user = ?1",
        params![user],
        |r| r.get(0),
    )
    .optional()?)
}

pub fn put_settings(c: &Connection, user: &str, json: &str, now: i64) -> Result<()> {
    c.execute(
        "INSERT INTO web_settings (user, json, updated) VALUES (?1, ?2, ?3)
         ON CONFLICT (user) DO UPDATE SET json = excluded.json, updated = excluded.updated",
        params![user, json, now],
    )?;
    Ok(())
}

/// How long counter rows are kept.
pub const STATS_KEEP_HOURS: i64 = 366 * 24;

/// Adds `n` to counter `name` of the hour holding `now`, and drops rows older than
/// [`STATS_KEEP_HOURS`].
pub fn count(c: &Connection, name: &str, n: i64, now: i64) -> Result<()> {
    let hour = now.div_euclid(3600);
    c.execute(
        "INSERT INTO stats_hourly (hour, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (hour, name) DO UPDATE SET value = value + excluded.value",
        params![hour, name, n],
    )?;
    prune(c, hour)
}

/// Records a gauge reading: the hour keeps the largest value seen.
pub fn gauge(c: &Connection, name: &str, v: i64, now: i64) -> Result<()> {
    let hour = now.div_euclid(3600);
    c.execute(
        "INSERT INTO stats_hourly (hour, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (hour, name) DO UPDATE SET value = max(value, excluded.value)",
        params![hour, name, v],
    )?;
    prune(c, hour)
}

fn prune(c: &Connection, hour: i64) -> Result<()> {
    // Cheap: the primary key starts with the hour.
    c.execute(
        "DELETE FROM stats_hourly WHERE hour < ?1",
        params![hour - STATS_KEEP_HOURS],
    )?;
    Ok(())
}

/// Adds `n` to counter `name` (now) in the database at `path`, through one connection
/// kept per process: the hooks in fetch, delivery and the queue runner call this after
/// their own commit. Counters are statistics, not mail: the connection commits without
/// waiting for fsync (`synchronous = NORMAL`; the next durable commit of any connection
/// syncs the WAL), and a failure is only logged.
pub fn bump(path: &std::path::Path, name: &str, n: i64) {
    use std::sync::Mutex;
    static CONN: Mutex<Option<(std::path::PathBuf, Connection)>> = Mutex::new(None);
    if n == 0 {
        return;
    }
    let mut g = CONN.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().is_none_or(|(p, _)| p != path) {
        match super::open(path) {
            Ok(c) => {
                let _ = c.execute_batch("PRAGMA synchronous = NORMAL;");
                *g = Some((path.to_path_buf(), c));
            }
            Err(e) => {
                tracing::warn!(counter = name, error = %e, "cannot open the database for counters");
                return;
            }
        }
    }
    if let Some((_, c)) = g.as_ref()
        && let Err(e) = count(c, name, n, super::now())
    {
        tracing::warn!(counter = name, error = %e, "cannot count");
    }
}

/// `(hour, value)` of counter `name` from hour `from` on, ascending.
pub fn series(c: &Connection, name: &str, from_hour: i64) -> Result<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT hour, value FROM stats_hourly WHERE name = ?1 AND hour >= ?2 ORDER BY hour",
    )?;
    let rows = st
        .query_map(params![name, from_hour], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle() {
        let c = crate::db::open_memory().unwrap();
        create_session(&c, "h1", "bouke", "tok", 1000).unwrap();
        let s = touch_session(&c, "h1", 500, 1030).unwrap().unwrap();
        assert_eq!((s.user.as_str(), s.csrf.as_str()), ("bouke", "tok"));
        // Touched within the minute: not rewritten.
        assert_eq!(s.last_seen, 1000);
        touch_session(&c, "h1", 500, 1100).unwrap().unwrap();
        // Idle since before 1100: gone, and deleted.
        assert!(touch_session(&c, "h1", 1100, 2000).unwrap().is_none());
        assert_eq!(
            c.query_row("SELECT count(*) FROM web_sessions", [], |r| r
                .get::<_, i64>(0))
                .unwrap(),
            0
        );
        create_session(&c, "h2", "anna", "t", 10).unwrap();
        create_session(&c, "h3", "anna", "t", 100).unwrap();
        assert_eq!(expire_sessions(&c, 50).unwrap(), 1);
        delete_session(&c, "h3").unwrap();
        assert!(touch_session(&c, "h3", 0, 100).unwrap().is_none());
    }

    #[test]
    fn secret_is_made_once() {
        let c = crate::db::open_memory().unwrap();
        let a = secret(&c, "k", || "one".into()).unwrap();
        let b = secret(&c, "k", || "two".into()).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("one", "one"));
    }

    #[test]
    fn counters_add_gauges_keep_max_and_old_rows_go() {
        let c = crate::db::open_memory().unwrap();
        let t = 1_000_000 * 3600;
        count(&c, "fetched", 2, t).unwrap();
        count(&c, "fetched", 3, t + 10).unwrap();
        count(&c, "fetched", 1, t + 3600).unwrap();
        gauge(&c, "queue", 5, t).unwrap();
        gauge(&c, "queue", 2, t + 5).unwrap();
        assert_eq!(
            series(&c, "fetched", 0).unwrap(),
            vec![(1_000_000, 5), (1_000_001, 1)]
        );
        assert_eq!(series(&c, "queue", 0).unwrap(), vec![(1_000_000, 5)]);
        count(&c, "sent", 1, t + (STATS_KEEP_HOURS + 5) * 3600).unwrap();
        assert!(series(&c, "fetched", 0).unwrap().is_empty());
        put_settings(&c, "bouke", "{}", 1).unwrap();
        put_settings(&c, "bouke", "{\"a\":1}", 2).unwrap();
        assert_eq!(settings(&c, "bouke").unwrap().as_deref(), Some("{\"a\":1}"));
    }
}
