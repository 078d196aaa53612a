//! What the IMAP server needs from the spool beyond its main API: a mailbox's
//! counters without a disk sync or a count (imapd checks them after every command,
//! so this must be one indexed row), and the lean open of a mailbox for a session's
//! view (no per-message allocation: a 50 000-message SELECT stays cheap). Added by
//! imapd; kept apart from the spool's own code.

use super::{Result, Spool, normalize_name};

impl Spool {
    /// (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) of a mailbox.
    pub fn counters(&self, user: &str, mailbox: &str) -> Result<(u32, u32, u64)> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Ok((m.uidvalidity, m.uidnext, m.highestmodseq))
    }

    /// Opens a mailbox like [`select`](Self::select) (reconciling with the disk) and
    /// hands each message to `each(uid, size, internal_date, flags, modseq)` in UID
    /// order, the flags borrowed from the index row. Returns (UIDVALIDITY, UIDNEXT,
    /// HIGHESTMODSEQ) and whether the messages were read: when the mailbox is still
    /// at `known` (UIDVALIDITY, HIGHESTMODSEQ) — every change takes a new MODSEQ —
    /// the caller's copy is current and nothing is read. Counters and rows come from
    /// one read transaction, so they describe the same moment.
    pub fn select_each(
        &self,
        user: &str,
        mailbox: &str,
        known: Option<(u32, u64)>,
        each: impl FnMut(u32, u64, i64, &str, u64),
    ) -> Result<((u32, u32, u64), bool)> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let (conn, _) = self.open_synced(user, mailbox)?;
        let tx = conn.unchecked_transaction()?;
        let m = self.mailbox_row(&tx, &u, &name)?;
        let counters = (m.uidvalidity, m.uidnext, m.highestmodseq);
        if known == Some((m.uidvalidity, m.highestmodseq)) {
            return Ok((counters, false));
        }
        crate::db::imapd::for_each_meta(&tx, m.id, each)?;
        tx.commit()?;
        Ok((counters, true))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::config::SpoolKind;
    use crate::spool::{FlagOp, Flags, Spool};

    /// Sets both directory times to `secs` after the epoch (long settled).
    fn age_dirs(root: &std::path::Path, secs: u64) {
        for d in ["new", "cur"] {
            let f = std::fs::File::open(root.join(d)).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        }
    }

    fn uids(s: &Spool) -> Vec<u32> {
        let mut v = Vec::new();
        s.select_each("bouke", "INBOX", None, |uid, _, _, _, _| v.push(uid))
            .unwrap();
        v
    }

    #[test]
    fn unchanged_folder_is_not_listed_but_changes_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let s =
            Spool::open_with(d.path(), "h", vec![("bouke".into(), SpoolKind::Maildir)]).unwrap();
        for i in 0..3 {
            let m = format!("Subject: {i}\n\nbody\n").into_bytes();
            s.append("bouke", "INBOX", m, &Flags::new(), None).unwrap();
        }
        let root = s.maildir_root("bouke");
        age_dirs(&root, 1_700_000_000);
        assert_eq!(uids(&s), vec![1, 2, 3]); // listed; the settled times are recorded

        // A file slipped in with the directory times put back: proof that an
        // unchanged folder is not listed.
        std::fs::write(root.join("new").join("100.hidden.h"), b"S: x\n\ny\n").unwrap();
        age_dirs(&root, 1_700_000_000);
        assert_eq!(uids(&s), vec![1, 2, 3]);

        // Another program's delivery changes the directory time: seen.
        std::fs::write(root.join("new").join("101.other.h"), b"S: y\n\nz\n").unwrap();
        assert_eq!(uids(&s).len(), 5);

        // Our own changes keep the record current (no listing needed to trust it)
        // and are in the index at once.
        age_dirs(&root, 1_700_000_100);
        assert_eq!(uids(&s).len(), 5);
        s.store_flags(
            "bouke",
            "INBOX",
            &[1],
            FlagOp::Add,
            &Flags::parse("\\Seen"),
            None,
        )
        .unwrap();
        s.expunge("bouke", "INBOX", &[2]).unwrap();
        assert_eq!(uids(&s), vec![1, 3, 4, 5]);
        // A file removed behind our back (directory time changes) is expunged.
        let cur = std::fs::read_dir(root.join("cur"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::remove_file(cur.path()).unwrap();
        assert_eq!(uids(&s).len(), 3);
    }
}
