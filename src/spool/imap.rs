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
    /// HIGHESTMODSEQ).
    pub fn select_each(
        &self,
        user: &str,
        mailbox: &str,
        each: impl FnMut(u32, u64, i64, &str, u64),
    ) -> Result<(u32, u32, u64)> {
        let (conn, m) = self.open_synced(user, mailbox)?;
        crate::db::imapd::for_each_meta(&conn, m.id, each)?;
        Ok((m.uidvalidity, m.uidnext, m.highestmodseq))
    }
}
