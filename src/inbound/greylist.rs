//! Greylisting (off by default): the first time a (client /24, sender, recipient)
//! triple is seen it gets `451 4.7.1`; a retry after `greylist_delay` seconds passes,
//! and the triple is then let through at once until it has been unused for
//! `greylist_expire_days`. Kept in SQLite (`greylist`, migration 0011). Clients on a
//! DNSWL, backup MX hosts and DKIM-passing mail are never greylisted (the session does
//! not ask for them).

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, params};

/// The network a client is greylisted as: its /24 (IPv4) or /64 (IPv6).
pub fn network(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A stored triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub first_seen: i64,
    pub last_seen: i64,
    pub passed: bool,
}

/// What to do with an attempt at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grey {
    /// Let through (and mark passed).
    Pass,
    /// `451 4.7.1`, this many seconds still to wait.
    Defer(i64),
    /// First sight (or an expired entry): record it and defer.
    New,
}

/// The greylisting rule.
pub fn decide(seen: Option<Seen>, now: i64, delay: i64, expire: i64) -> Grey {
    match seen {
        None => Grey::New,
        Some(s) if now - s.last_seen > expire => Grey::New,
        Some(s) if s.passed => Grey::Pass,
        Some(s) if now - s.first_seen >= delay => Grey::Pass,
        Some(s) => Grey::Defer(delay - (now - s.first_seen)),
    }
}

/// Checks and records one attempt; `Ok(true)` = pass.
pub fn check(
    conn: &Connection,
    ip: IpAddr,
    sender: &str,
    rcpt: &str,
    now: i64,
    delay: i64,
    expire: i64,
) -> rusqlite::Result<bool> {
    let net = network(ip);
    let sender = sender.to_ascii_lowercase();
    let rcpt = rcpt.to_ascii_lowercase();
    let seen: Option<Seen> = conn
        .query_row(
            "SELECT first_seen, last_seen, passed FROM greylist WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
            params![net, sender, rcpt],
            |r| {
                Ok(Seen {
                    first_seen: r.get(0)?,
                    last_seen: r.get(1)?,
                    passed: r.get::<_, i64>(2)? != 0,
                })
            },
        )
        .optional()?;
    match decide(seen, now, delay, expire) {
        Grey::New => {
            conn.execute(
                "INSERT OR REPLACE INTO greylist (net, sender, rcpt, first_seen, last_seen, passed) VALUES (?1, ?2, ?3, ?4, ?4, 0)",
                params![net, sender, rcpt, now],
            )?;
            // Housekeeping, now and then: forget what has long been unused.
            if now % 64 == 0 {
                conn.execute(
                    "DELETE FROM greylist WHERE last_seen < ?1",
                    params![now - expire],
                )?;
            }
            Ok(false)
        }
        Grey::Defer(_) => Ok(false),
        Grey::Pass => {
            conn.execute(
                "UPDATE greylist SET passed = 1, last_seen = ?4 WHERE net = ?1 AND sender = ?2 AND rcpt = ?3",
                params![net, sender, rcpt, now],
            )?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(network("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn rule() {
        let d = 300;
        let e = 86400;
        assert_eq!(decide(None, 1000, d, e), Grey::New);
        let s = Seen {
            first_seen: 1000,
            last_seen: 1000,
            passed: false,
        };
        assert_eq!(decide(Some(s), 1100, d, e), Grey::Defer(200));
        assert_eq!(decide(Some(s), 1300, d, e), Grey::Pass);
        let p = Seen { passed: true, ..s };
        assert_eq!(decide(Some(p), 1001, d, e), Grey::Pass);
        assert_eq!(decide(Some(p), 1000 + e + 1, d, e), Grey::New);
    }

    #[test]
    fn stored_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::db::open(&dir.path().join("z.db")).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let sib: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(!check(&c, ip, "a@x.example", "b@zolder.test", 1000, 300, 86400).unwrap());
        assert!(!check(&c, sib, "A@x.example", "b@zolder.test", 1100, 300, 86400).unwrap());
        assert!(!check(&c, ip, "a@x.example", "c@zolder.test", 1400, 300, 86400).unwrap());
        assert!(check(&c, sib, "a@x.example", "b@zolder.test", 1300, 300, 86400).unwrap());
        assert!(check(&c, ip, "a@x.example", "b@zolder.test", 1301, 300, 86400).unwrap());
    }
}
