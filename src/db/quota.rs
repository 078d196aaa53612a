//! SQL for IMAP QUOTA (RFC 9208): a user's storage and message count over all
//! their mailboxes, from the message index.

use super::{Connection, OptionalExtension, Result};

/// What a user's mailboxes hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of RFC822.SIZE (octets).
    pub bytes: u64,
    pub messages: u64,
}

/// The user's usage, summed over every mailbox of theirs.
pub fn usage(conn: &Connection, user: &str) -> Result<Usage> {
    let (b, n): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(m.size), 0), COUNT(*)
         FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
         WHERE b.user = ?1",
        [user],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Usage {
        bytes: b.max(0) as u64,
        messages: n.max(0) as u64,
    })
}

/// One mailbox's size, `\Deleted` count and their size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    pub bytes: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
}

/// `None` when the user has no such mailbox.
pub fn mailbox_usage(conn: &Connection, user: &str, name: &str) -> Result<Option<MailboxUsage>> {
    let row: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT COALESCE(SUM(m.size), 0),
                    COALESCE(SUM(CASE WHEN (' ' || m.flags || ' ') LIKE '% \\Deleted %' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN (' ' || m.flags || ' ') LIKE '% \\Deleted %' THEN m.size ELSE 0 END), 0)
             FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id
             WHERE b.user = ?1 AND b.name = ?2
             GROUP BY b.id",
            [user, name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.map(|(b, d, db)| MailboxUsage {
        bytes: b.max(0) as u64,
        deleted: d.max(0) as u64,
        deleted_bytes: db.max(0) as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_mailboxes() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::db::open(&dir.path().join("z.db")).unwrap();
        assert_eq!(usage(&c, "bouke").unwrap(), Usage::default());
        for (id, name) in [(1, "INBOX"), (2, "Sent")] {
            c.execute(
                "INSERT INTO mailboxes (id, user, name, uidvalidity) VALUES (?1, 'bouke', ?2, 1)",
                rusqlite::params![id, name],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO mailboxes (id, user, name, uidvalidity) VALUES (3, 'an', 'INBOX', 1)",
            [],
        )
        .unwrap();
        for (mb, uid, size) in [(1, 1, 100), (1, 2, 50), (2, 1, 7), (3, 1, 1000)] {
            c.execute(
                "INSERT INTO messages (mailbox_id, uid, size, internal_date, modseq)
                 VALUES (?1, ?2, ?3, 0, 1)",
                rusqlite::params![mb, uid, size],
            )
            .unwrap();
        }
        c.execute(
            "UPDATE messages SET flags = '\\Seen \\Deleted' WHERE mailbox_id = 1 AND uid = 2",
            [],
        )
        .unwrap();
        assert_eq!(
            mailbox_usage(&c, "bouke", "INBOX").unwrap(),
            Some(MailboxUsage {
                bytes: 150,
                deleted: 1,
                deleted_bytes: 50
            })
        );
        assert_eq!(
            mailbox_usage(&c, "bouke", "Sent")
                .unwrap()
                .map(|u| u.deleted),
            Some(0)
        );
        assert_eq!(mailbox_usage(&c, "bouke", "Nope").unwrap(), None);
        c.execute(
            "INSERT INTO mailboxes (id, user, name, uidvalidity) VALUES (4, 'bouke', 'Leeg', 1)",
            [],
        )
        .unwrap();
        assert_eq!(
            mailbox_usage(&c, "bouke", "Leeg").unwrap(),
            Some(MailboxUsage::default())
        );
        assert_eq!(
            usage(&c, "Bouke").unwrap(),
            Usage {
                bytes: 157,
                messages: 3
            }
        );
    }
}
